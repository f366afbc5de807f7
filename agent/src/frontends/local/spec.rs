//! The deployment specification a local deployment runs with: the same JSON
//! the service would send (PROTOCOL.md), in a `TEXT/JSON` envelope, read back
//! by the daemon's own spec parser so both take the same path from here on.
//! Pure.

use serde_json::{json, Map, Value};

use super::options::{BundleSource, LocalDeployment};
use crate::deployment_spec::{parse_spec, DeploymentSpec, SpecError};
use crate::protocol::Envelope;

/// The envelope format of specs nobody signed; only the local CLI uses it.
pub const UNSIGNED_FORMAT: &str = "TEXT/JSON";

/// The spec JSON of `deployment` under `deployment_id`.
pub fn spec_json(deployment: &LocalDeployment, deployment_id: &str) -> Value {
    let revision = match &deployment.source {
        BundleSource::S3 {
            bucket,
            key,
            bundle_type,
            version,
            etag,
        } => {
            let mut s3 = Map::new();
            s3.insert("Bucket".into(), json!(bucket));
            s3.insert("Key".into(), json!(key));
            s3.insert("BundleType".into(), json!(bundle_type.name()));
            if let Some(version) = version {
                s3.insert("Version".into(), json!(version));
            }
            if let Some(etag) = etag {
                s3.insert("ETag".into(), json!(etag));
            }
            json!({"RevisionType": "S3", "S3Revision": s3})
        }
        BundleSource::LocalFile { path, bundle_type } => json!({
            "RevisionType": "Local File",
            "LocalRevision": {"Location": path.display().to_string(), "BundleType": bundle_type.name()}
        }),
        BundleSource::LocalDirectory { path } => json!({
            "RevisionType": "Local Directory",
            "LocalRevision": {"Location": path.display().to_string(), "BundleType": "directory"}
        }),
        BundleSource::GitHub {
            account,
            repository,
            commit,
            bundle_type,
        } => json!({
            "RevisionType": "GitHub",
            "GitHubRevision": {
                "Account": account,
                "Repository": repository,
                "CommitId": commit,
                "BundleType": bundle_type.name(),
                "Anonymous": true
            }
        }),
    };
    let mut spec = json!({
        "DeploymentId": deployment_id,
        "DeploymentGroupId": deployment.deployment_group_id,
        "DeploymentGroupName": deployment.deployment_group_name,
        "ApplicationName": deployment.application_name,
        "DeploymentCreator": "user",
        "DeploymentType": "IN_PLACE",
        "AppSpecFilename": deployment.appspec_filename,
        "Revision": revision,
        "AllPossibleLifecycleEvents": deployment.all_possible_events,
    });
    if let Some(behavior) = deployment.file_exists_behavior {
        spec["AgentActionOverrides"] =
            json!({"AgentOverrides": {"FileExistsBehavior": behavior.name()}});
    }
    spec
}

/// The unsigned envelope the local CLI hands itself.
pub fn envelope(deployment: &LocalDeployment, deployment_id: &str) -> Envelope {
    Envelope {
        format: UNSIGNED_FORMAT.to_string(),
        payload: spec_json(deployment, deployment_id).to_string(),
    }
}

/// Opens an envelope the local CLI built: only `TEXT/JSON` is expected here.
pub fn open(envelope: &Envelope) -> Result<DeploymentSpec, SpecError> {
    if envelope.format != UNSIGNED_FORMAT {
        return Err(SpecError::UnsupportedFormat {
            format: envelope.format.clone(),
        });
    }
    parse_spec(&envelope.payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appspec::FileExistsBehavior;
    use crate::deployment_spec::{BundleType, GitHubRevision, Revision, S3Revision};
    use crate::frontends::local::options::{default_events, RawOptions};
    use std::path::PathBuf;

    fn deployment(source: BundleSource) -> LocalDeployment {
        LocalDeployment {
            source,
            file_exists_behavior: None,
            deployment_group_id: "default-local-deployment-group".into(),
            deployment_group_name: "LocalFleet".into(),
            application_name: "/srv/app".into(),
            appspec_filename: "appspec.yml".into(),
            events: default_events(),
            all_possible_events: vec!["ApplicationStop".into(), "Warmup".into()],
        }
    }

    #[test]
    fn each_source_round_trips_through_the_spec_parser() {
        let cases = [
            (
                BundleSource::LocalDirectory {
                    path: PathBuf::from("/srv/app"),
                },
                Revision::LocalDirectory {
                    location: "/srv/app".into(),
                },
            ),
            (
                BundleSource::LocalFile {
                    path: PathBuf::from("/srv/app.zip"),
                    bundle_type: BundleType::Zip,
                },
                Revision::LocalFile {
                    location: "/srv/app.zip".into(),
                    bundle_type: BundleType::Zip,
                },
            ),
            (
                BundleSource::S3 {
                    bucket: "b".into(),
                    key: "k.tgz".into(),
                    bundle_type: BundleType::Tgz,
                    version: Some("v1".into()),
                    etag: None,
                },
                Revision::S3(S3Revision {
                    bucket: "b".into(),
                    key: "k.tgz".into(),
                    bundle_type: BundleType::Tgz,
                    version: Some("v1".into()),
                    etag: None,
                }),
            ),
            (
                BundleSource::GitHub {
                    account: "acme".into(),
                    repository: "shop".into(),
                    commit: "abc123".into(),
                    bundle_type: BundleType::Zip,
                },
                Revision::GitHub(GitHubRevision {
                    account: "acme".into(),
                    repository: "shop".into(),
                    commit_id: "abc123".into(),
                    bundle_type: BundleType::Zip,
                    access_token: None,
                }),
            ),
        ];
        for (source, revision) in cases {
            let mut local = deployment(source);
            local.file_exists_behavior = Some(FileExistsBehavior::Retain);
            let spec = open(&envelope(&local, "d-ABCDEFGHI-local")).unwrap();
            assert_eq!(spec.revision, revision);
            assert_eq!(spec.deployment_id, "d-ABCDEFGHI-local");
            assert_eq!(spec.deployment_group_id, "default-local-deployment-group");
            assert_eq!(spec.deployment_group_name, "LocalFleet");
            assert_eq!(spec.application_name, "/srv/app");
            assert_eq!(spec.file_exists_behavior, Some(FileExistsBehavior::Retain));
            assert_eq!(
                spec.all_possible_lifecycle_events,
                Some(vec!["ApplicationStop".to_string(), "Warmup".to_string()])
            );
        }
    }

    #[test]
    fn no_override_leaves_the_behavior_to_the_appspec() {
        let local = deployment(BundleSource::LocalDirectory {
            path: PathBuf::from("/a"),
        });
        assert!(spec_json(&local, "d-X-local")
            .get("AgentActionOverrides")
            .is_none());
        assert_eq!(RawOptions::default().file_exists_behavior, None);
    }

    #[test]
    fn only_unsigned_envelopes_are_opened() {
        let mut envelope = envelope(
            &deployment(BundleSource::LocalDirectory {
                path: PathBuf::from("/a"),
            }),
            "d-X-local",
        );
        envelope.format = "PKCS7/JSON".into();
        assert!(matches!(
            open(&envelope),
            Err(SpecError::UnsupportedFormat { .. })
        ));
    }
}
