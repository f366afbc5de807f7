//! The variables a hook script gets on top of the agent's own environment.
//! Pure: built from the deployment spec, no access to the process environment.

use std::ffi::OsString;

use crate::config::{EnvInheritance, HookEnvPolicy, LoaderVariables};
use crate::deployment_spec::{DeploymentSpec, Revision};
use crate::event::LifecycleEvent;

/// Every variable the agent may set for a hook. Those without a value for this
/// deployment are removed from the child's environment, so that a value the
/// agent itself happened to inherit never leaks into a script as if it were
/// the deployment's.
pub const HOOK_VARIABLES: [&str; 10] = [
    "LIFECYCLE_EVENT",
    "DEPLOYMENT_ID",
    "APPLICATION_NAME",
    "DEPLOYMENT_GROUP_NAME",
    "DEPLOYMENT_GROUP_ID",
    "BUNDLE_BUCKET",
    "BUNDLE_KEY",
    "BUNDLE_VERSION",
    "BUNDLE_ETAG",
    "BUNDLE_COMMIT",
];

/// The variables for one event of one deployment; unset ones are omitted.
pub fn hook_environment(spec: &DeploymentSpec, event: &LifecycleEvent) -> Vec<(String, String)> {
    let mut env: Vec<(&str, Option<&str>)> = vec![
        ("LIFECYCLE_EVENT", Some(event.name())),
        ("DEPLOYMENT_ID", Some(&spec.deployment_id)),
        ("APPLICATION_NAME", Some(&spec.application_name)),
        ("DEPLOYMENT_GROUP_NAME", Some(&spec.deployment_group_name)),
        ("DEPLOYMENT_GROUP_ID", Some(&spec.deployment_group_id)),
    ];
    match &spec.revision {
        Revision::S3(s3) => env.extend([
            ("BUNDLE_BUCKET", Some(s3.bucket.as_str())),
            ("BUNDLE_KEY", Some(s3.key.as_str())),
            ("BUNDLE_VERSION", s3.version.as_deref()),
            ("BUNDLE_ETAG", s3.etag.as_deref()),
        ]),
        Revision::GitHub(github) => env.push(("BUNDLE_COMMIT", Some(&github.commit_id))),
        Revision::LocalFile { .. } | Revision::LocalDirectory { .. } => {}
    }
    env.into_iter()
        .filter_map(|(name, value)| {
            value
                .filter(|v| !v.is_empty())
                .map(|v| (name.to_string(), v.to_string()))
        })
        .collect()
}

/// What a hook keeps of the agent's environment under
/// `restrict_hook_env_to_allowlist` (besides the deployment's variables): what a
/// shell and common tools need to behave, nothing that carries secrets or
/// redirects programs (proxies, AWS credentials, loader variables).
pub const HOOK_ENV_ALLOWLIST: [&str; 10] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR",
];

/// The dynamic-loader variables `strip_loader_env_in_hooks` removes: each can
/// make every program the hook starts load code of someone else's choosing.
pub const LOADER_VARIABLES: [&str; 3] = ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"];

fn allowlisted(name: &str) -> bool {
    HOOK_ENV_ALLOWLIST.contains(&name) || name.starts_with("LC_")
}

/// The variables to remove from the child's environment, given the agent's
/// own variable names (`inherited`): every known hook variable not being set,
/// the loader variables when stripped, and under the allowlist everything not
/// on it. Pure.
pub(crate) fn variables_to_remove(
    env: &[(String, String)],
    policy: &HookEnvPolicy,
    inherited: impl IntoIterator<Item = OsString>,
) -> Vec<OsString> {
    let being_set = |name: &str| env.iter().any(|(set, _)| set == name);
    let mut remove: Vec<OsString> = HOOK_VARIABLES
        .iter()
        .filter(|name| !being_set(name))
        .map(OsString::from)
        .collect();
    let mut drop = |name: OsString| {
        if !remove.contains(&name) {
            remove.push(name);
        }
    };
    if policy.loader == LoaderVariables::Strip {
        LOADER_VARIABLES.iter().for_each(|name| drop(name.into()));
    }
    if policy.inherit == EnvInheritance::Allowlist {
        for name in inherited {
            let keep = name
                .to_str()
                .is_some_and(|name| allowlisted(name) || being_set(name));
            if !keep {
                drop(name);
            }
        }
    }
    remove
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment_spec::{BundleType, DeploymentType, GitHubRevision, S3Revision};

    fn spec(revision: Revision) -> DeploymentSpec {
        DeploymentSpec {
            deployment_id: "d-ABC".into(),
            deployment_group_id: "g-1".into(),
            deployment_group_name: "fleet".into(),
            application_name: "app".into(),
            deployment_creator: crate::deployment_spec::DeploymentCreator::user(),
            deployment_type: DeploymentType::InPlace,
            appspec_filename: "appspec.yml".into(),
            revision,
            file_exists_behavior: None,
            all_possible_lifecycle_events: None,
            reuse_archive_from: None,
        }
    }

    fn s3(version: Option<&str>, etag: Option<&str>) -> Revision {
        Revision::S3(S3Revision {
            bucket: "bucket".into(),
            key: "k/b.tar".into(),
            bundle_type: BundleType::Tar,
            version: version.map(str::to_string),
            etag: etag.map(str::to_string),
        })
    }

    fn names(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn variables_follow_the_revision_type() {
        let common = [
            "LIFECYCLE_EVENT",
            "DEPLOYMENT_ID",
            "APPLICATION_NAME",
            "DEPLOYMENT_GROUP_NAME",
            "DEPLOYMENT_GROUP_ID",
        ];
        let github = Revision::GitHub(GitHubRevision {
            account: "a".into(),
            repository: "r".into(),
            commit_id: "abc123".into(),
            bundle_type: BundleType::Tar,
            access_token: Some("secret".into()),
        });
        let cases: Vec<(Revision, Vec<&str>)> = vec![
            (
                s3(Some("v1"), Some("e1")),
                vec![
                    "BUNDLE_BUCKET",
                    "BUNDLE_KEY",
                    "BUNDLE_VERSION",
                    "BUNDLE_ETAG",
                ],
            ),
            (
                s3(None, Some("e1")),
                vec!["BUNDLE_BUCKET", "BUNDLE_KEY", "BUNDLE_ETAG"],
            ),
            (s3(Some(""), None), vec!["BUNDLE_BUCKET", "BUNDLE_KEY"]),
            (github, vec!["BUNDLE_COMMIT"]),
            (
                Revision::LocalDirectory {
                    location: "/x".into(),
                },
                vec![],
            ),
        ];
        for (revision, bundle) in cases {
            let env = hook_environment(&spec(revision.clone()), &LifecycleEvent::AfterInstall);
            let expected: Vec<&str> = common
                .iter()
                .copied()
                .chain(bundle.iter().copied())
                .collect();
            assert_eq!(names(&env), expected, "{revision:?}");
            assert!(!env.iter().any(|(_, v)| v == "secret"));
        }
        let env = hook_environment(&spec(s3(Some("v1"), None)), &LifecycleEvent::AfterInstall);
        let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("LIFECYCLE_EVENT"), Some("AfterInstall"));
        assert_eq!(get("DEPLOYMENT_ID"), Some("d-ABC"));
        assert_eq!(get("BUNDLE_KEY"), Some("k/b.tar"));
        assert_eq!(get("BUNDLE_VERSION"), Some("v1"));
    }

    #[test]
    fn unset_variables_are_removed_from_the_child() {
        let env = hook_environment(&spec(s3(None, None)), &LifecycleEvent::ApplicationStart);
        assert_eq!(
            variables_to_remove(&env, &HookEnvPolicy::default(), []),
            ["BUNDLE_VERSION", "BUNDLE_ETAG", "BUNDLE_COMMIT"]
        );
    }

    #[test]
    fn the_env_policy_decides_what_the_agent_passes_on() {
        let env = hook_environment(
            &spec(s3(Some("v"), Some("e"))),
            &LifecycleEvent::ApplicationStart,
        );
        let agent = [
            "PATH",
            "HOME",
            "LC_ALL",
            "LD_PRELOAD",
            "LD_AUDIT",
            "AWS_SECRET_ACCESS_KEY",
            "HTTPS_PROXY",
            "DEPLOYMENT_ID",
            "MY_APP_SETTING",
        ];
        let policy = |inherit, loader| HookEnvPolicy { inherit, loader };
        let cases: &[(HookEnvPolicy, &[&str])] = &[
            (
                policy(EnvInheritance::Full, LoaderVariables::Keep),
                &["BUNDLE_COMMIT"],
            ),
            (
                policy(EnvInheritance::Full, LoaderVariables::Strip),
                &["BUNDLE_COMMIT", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"],
            ),
            (
                policy(EnvInheritance::Allowlist, LoaderVariables::Keep),
                &[
                    "BUNDLE_COMMIT",
                    "LD_PRELOAD",
                    "LD_AUDIT",
                    "AWS_SECRET_ACCESS_KEY",
                    "HTTPS_PROXY",
                    "MY_APP_SETTING",
                ],
            ),
            (
                policy(EnvInheritance::Allowlist, LoaderVariables::Strip),
                &[
                    "BUNDLE_COMMIT",
                    "LD_PRELOAD",
                    "LD_LIBRARY_PATH",
                    "LD_AUDIT",
                    "AWS_SECRET_ACCESS_KEY",
                    "HTTPS_PROXY",
                    "MY_APP_SETTING",
                ],
            ),
        ];
        for (policy, expected) in cases {
            let removed = variables_to_remove(&env, policy, agent.iter().map(OsString::from));
            assert_eq!(removed, *expected, "{policy:?}");
        }
    }
}
