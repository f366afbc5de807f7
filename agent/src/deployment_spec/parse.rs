//! From spec JSON to a [`DeploymentSpec`], with the official error texts for
//! missing fields. Pure.

use serde_json::Value;

use super::model::*;
use super::SpecError;
use crate::appspec::FileExistsBehavior;

pub fn parse_spec(json: &str) -> Result<DeploymentSpec, SpecError> {
    let value: Value = serde_json::from_str(json).map_err(SpecError::Json)?;
    let Value::Object(spec) = value else {
        return Err(SpecError::invalid(
            "Deployment Spec must be a JSON object".to_string(),
        ));
    };
    let text = |key: &str| -> Option<String> {
        spec.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let required = |key: &str| {
        text(key).ok_or_else(|| SpecError::invalid(format!("Deployment Spec has no {key}")))
    };

    let raw_id = required("DeploymentId")?;
    let deployment_id = match raw_id.strip_prefix("arn:") {
        Some(_) => raw_id
            .split_once("deployment/")
            .map(|(_, id)| id.to_string())
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .ok_or_else(|| {
                SpecError::invalid(format!(
                    "Deployment Spec has a DeploymentId ARN without a deployment id: {raw_id}"
                ))
            })?,
        None => raw_id,
    };
    if deployment_id.contains('/') || deployment_id == "." || deployment_id == ".." {
        return Err(SpecError::invalid(format!(
            "Deployment Spec has an invalid DeploymentId: {deployment_id}"
        )));
    }
    let deployment_group_id = required("DeploymentGroupId")?;
    if deployment_group_id.contains('/')
        || deployment_group_id == "."
        || deployment_group_id == ".."
    {
        return Err(SpecError::invalid(format!(
            "Deployment Spec has an invalid DeploymentGroupId: {deployment_group_id}"
        )));
    }
    let deployment_type = match text("DeploymentType").as_deref() {
        None | Some("IN_PLACE") => DeploymentType::InPlace,
        Some("BLUE_GREEN") => DeploymentType::BlueGreen,
        Some(other) => {
            return Err(SpecError::invalid(format!(
                "Deployment Spec has an unknown DeploymentType {other}; expected IN_PLACE or BLUE_GREEN"
            )))
        }
    };
    let file_exists_behavior = spec
        .get("AgentActionOverrides")
        .and_then(|o| o.get("AgentOverrides"))
        .and_then(|o| o.get("FileExistsBehavior"))
        .and_then(Value::as_str)
        .map(|b| b.to_uppercase().parse::<FileExistsBehavior>())
        .transpose()
        .map_err(|e| SpecError::invalid(format!("Deployment Spec AgentOverrides: {e}")))?;
    let all_possible_lifecycle_events = spec
        .get("AllPossibleLifecycleEvents")
        .and_then(Value::as_array)
        .map(|events| {
            events
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        });

    // Checked where it is used: a malformed one means "download", never a
    // failed command.
    let reuse_archive_from =
        text("ReuseArchiveFromDeploymentId").map(|id| match id.split_once("deployment/") {
            Some((_, bare)) if id.starts_with("arn:") => bare.to_string(),
            _ => id,
        });
    Ok(DeploymentSpec {
        deployment_id,
        deployment_group_id,
        deployment_group_name: required("DeploymentGroupName")?,
        application_name: required("ApplicationName")?,
        deployment_creator: text("DeploymentCreator")
            .map_or_else(DeploymentCreator::user, |t| DeploymentCreator::parse(&t)),
        deployment_type,
        appspec_filename: text("AppSpecFilename").unwrap_or_else(|| "appspec.yml".to_string()),
        revision: parse_revision(spec.get("Revision"), spec.get("GitHubAccessToken"))?,
        file_exists_behavior,
        all_possible_lifecycle_events,
        reuse_archive_from,
    })
}

fn parse_revision(
    revision: Option<&Value>,
    github_token: Option<&Value>,
) -> Result<Revision, SpecError> {
    let invalid = |m: &str| SpecError::invalid(m);
    let revision = revision
        .filter(|r| r.is_object())
        .ok_or_else(|| invalid("Deployment Spec has no Revision"))?;
    let field = |object: &Value, key: &str| -> Option<String> {
        object
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    match field(revision, "RevisionType").as_deref() {
        Some("S3") => {
            let s3 = revision.get("S3Revision").unwrap_or(&Value::Null);
            let (Some(bucket), Some(key), Some(bundle_type)) = (field(s3, "Bucket"), field(s3, "Key"), field(s3, "BundleType")) else {
                return Err(invalid("S3Revision in Deployment Spec must specify Bucket, Key and BundleType"));
            };
            let bundle_type = match bundle_type.as_str() {
                "tar" => BundleType::Tar,
                "tgz" => BundleType::Tgz,
                "zip" => BundleType::Zip,
                _ => return Err(invalid("BundleType in S3Revision must be tar, tgz or zip")),
            };
            Ok(Revision::S3(S3Revision {
                bucket,
                key,
                bundle_type,
                version: field(s3, "Version"),
                etag: field(s3, "ETag"),
            }))
        }
        Some("GitHub") => {
            let gh = revision.get("GitHubRevision").unwrap_or(&Value::Null);
            let (Some(account), Some(repository), Some(commit_id)) = (field(gh, "Account"), field(gh, "Repository"), field(gh, "CommitId")) else {
                return Err(invalid("GitHubRevision in Deployment Spec must specify Account, Repository and CommitId"));
            };
            let bundle_type = match field(gh, "BundleType").as_deref() {
                None | Some("tar") => BundleType::Tar,
                Some("zip") => BundleType::Zip,
                Some(_) => return Err(invalid("BundleType in GitHubRevision must be tar or zip")),
            };
            let access_token = github_token.and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string);
            let anonymous = gh.get("Anonymous").and_then(Value::as_bool).unwrap_or(true);
            if !anonymous && access_token.is_none() {
                return Err(invalid("GitHubRevision in Deployment Spec must specify Account, Repository, CommitId and OAuthToken"));
            }
            Ok(Revision::GitHub(GitHubRevision { account, repository, commit_id, bundle_type, access_token }))
        }
        Some("Local File") | Some("Local Directory") => {
            let local = revision.get("LocalRevision").unwrap_or(&Value::Null);
            let (Some(location), Some(bundle_type)) = (field(local, "Location"), field(local, "BundleType")) else {
                return Err(invalid("LocalRevision in Deployment Spec must specify Location and BundleType"));
            };
            let bundle_type = match bundle_type.as_str() {
                "tar" => BundleType::Tar,
                "tgz" => BundleType::Tgz,
                "zip" => BundleType::Zip,
                "directory" => return Ok(Revision::LocalDirectory { location }),
                _ => return Err(invalid("BundleType in LocalRevision must be tar, tgz, zip or directory")),
            };
            Ok(Revision::LocalFile { location, bundle_type })
        }
        Some(other) => Err(SpecError::invalid(format!("Deployment Spec has an unknown RevisionType {other}; expected S3, GitHub, Local File or Local Directory"))),
        None => Err(invalid("Deployment Spec Revision has no RevisionType")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "DeploymentId": "d-ABCDEFGHI",
            "DeploymentGroupId": "g-1",
            "DeploymentGroupName": "fleet",
            "ApplicationName": "app",
            "Revision": {"RevisionType": "S3", "S3Revision": {"Bucket": "b", "Key": "k.tgz", "BundleType": "tgz", "Version": "v1", "ETag": "\"e\""}}
        })
    }

    fn parse(v: &Value) -> Result<DeploymentSpec, SpecError> {
        parse_spec(&v.to_string())
    }

    #[test]
    fn defaults_and_s3_revision() {
        let spec = parse(&base()).unwrap();
        assert_eq!(spec.deployment_creator, DeploymentCreator::user());
        assert_eq!(spec.deployment_type, DeploymentType::InPlace);
        assert_eq!(spec.appspec_filename, "appspec.yml");
        assert_eq!(spec.file_exists_behavior, None);
        assert_eq!(
            spec.revision,
            Revision::S3(S3Revision {
                bucket: "b".into(),
                key: "k.tgz".into(),
                bundle_type: BundleType::Tgz,
                version: Some("v1".into()),
                etag: Some("\"e\"".into())
            })
        );
    }

    #[test]
    fn arn_deployment_id_is_shortened() {
        let mut v = base();
        v["DeploymentId"] = json!("arn:aws:codedeploy:us-east-1:123412341234:deployment/d-XYZ");
        assert_eq!(parse(&v).unwrap().deployment_id, "d-XYZ");
    }

    #[test]
    fn override_is_upper_cased() {
        let mut v = base();
        v["AgentActionOverrides"] = json!({"AgentOverrides": {"FileExistsBehavior": "overwrite"}});
        assert_eq!(
            parse(&v).unwrap().file_exists_behavior,
            Some(FileExistsBehavior::Overwrite)
        );
        v["AgentActionOverrides"] = json!({"AgentOverrides": {"FileExistsBehavior": "sometimes"}});
        assert!(parse(&v).is_err());
    }

    #[test]
    fn missing_fields_use_the_official_messages() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("DeploymentId");
                }),
                "Deployment Spec has no DeploymentId",
            ),
            (
                Box::new(|v| v["DeploymentGroupId"] = json!("")),
                "Deployment Spec has no DeploymentGroupId",
            ),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("DeploymentGroupName");
                }),
                "Deployment Spec has no DeploymentGroupName",
            ),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("ApplicationName");
                }),
                "Deployment Spec has no ApplicationName",
            ),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("Revision");
                }),
                "Deployment Spec has no Revision",
            ),
            (
                Box::new(|v| {
                    v["Revision"]["S3Revision"]
                        .as_object_mut()
                        .unwrap()
                        .remove("Key");
                }),
                "S3Revision in Deployment Spec must specify Bucket, Key and BundleType",
            ),
            (
                Box::new(|v| v["Revision"]["S3Revision"]["BundleType"] = json!("rar")),
                "BundleType in S3Revision must be tar, tgz or zip",
            ),
            (
                Box::new(|v| v["DeploymentGroupId"] = json!("../etc")),
                "invalid DeploymentGroupId",
            ),
            (
                Box::new(|v| v["DeploymentId"] = json!("..")),
                "invalid DeploymentId",
            ),
            (
                Box::new(|v| v["Revision"]["RevisionType"] = json!("FTP")),
                "unknown RevisionType FTP",
            ),
        ];
        for (mutate, expected) in cases {
            let mut v = base();
            mutate(&mut v);
            let message = parse(&v).unwrap_err().to_string();
            assert!(
                message.contains(expected),
                "expected {expected:?}, got {message:?}"
            );
        }
        assert!(parse_spec("not json")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
    }

    #[test]
    fn github_revision_token_is_hidden_from_debug() {
        let v = json!({
            "DeploymentId": "d-1", "DeploymentGroupId": "g", "DeploymentGroupName": "n", "ApplicationName": "a",
            "GitHubAccessToken": "ghp_secret",
            "Revision": {"RevisionType": "GitHub", "GitHubRevision": {"Account": "o", "Repository": "r", "CommitId": "abc", "Anonymous": false}}
        });
        let spec = parse(&v).unwrap();
        assert!(!format!("{spec:?}").contains("ghp_secret"));
        let mut no_token = v.clone();
        no_token
            .as_object_mut()
            .unwrap()
            .remove("GitHubAccessToken");
        assert!(parse(&no_token).is_err());
    }

    #[test]
    fn blue_green_rollback_is_recognised() {
        let mut v = base();
        v["DeploymentType"] = json!("BLUE_GREEN");
        v["DeploymentCreator"] = json!("codeDeployRollback");
        assert_eq!(parse(&v).unwrap().direction(), Direction::BlueGreenRollback);
    }
}
