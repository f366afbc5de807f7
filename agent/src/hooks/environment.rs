//! The variables a hook script gets on top of the agent's own environment.
//! Pure: built from the deployment spec, no access to the process environment.

use crate::event::LifecycleEvent;
use crate::spec::{DeploymentSpec, Revision};

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

/// The hook variables to remove from the child: every known one not being set.
pub(crate) fn variables_to_remove(env: &[(String, String)]) -> Vec<&'static str> {
    HOOK_VARIABLES
        .iter()
        .copied()
        .filter(|name| !env.iter().any(|(set, _)| set == name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{BundleType, DeploymentType, GitHubRevision, S3Revision};

    fn spec(revision: Revision) -> DeploymentSpec {
        DeploymentSpec {
            deployment_id: "d-ABC".into(),
            deployment_group_id: "g-1".into(),
            deployment_group_name: "fleet".into(),
            application_name: "app".into(),
            deployment_creator: "user".into(),
            deployment_type: DeploymentType::InPlace,
            appspec_filename: "appspec.yml".into(),
            revision,
            file_exists_behavior: None,
            all_possible_lifecycle_events: None,
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
            variables_to_remove(&env),
            ["BUNDLE_VERSION", "BUNDLE_ETAG", "BUNDLE_COMMIT"]
        );
    }
}
