//! What a test scripts into the emulator: a deployment (ids, names, the S3
//! revision, optional spec fields), the lifecycle events the service will
//! send as commands, how its specification is enveloped and signed, and how
//! acknowledgements are answered. Also the deployment specification JSON
//! built from it.

use serde_json::{json, Map, Value};

use crate::bundle::BundleType;
use crate::s3::UploadedObject;

/// The in-place order the service sends commands in.
pub const IN_PLACE_EVENTS: [&str; 7] = [
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
];

/// An S3 revision as the deployment specification names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
    pub bundle_type: BundleType,
    pub version: Option<String>,
    pub etag: Option<String>,
}

impl S3Location {
    /// The location of an uploaded object, with its version and ETag.
    pub fn of(object: &UploadedObject, bundle_type: BundleType) -> Self {
        S3Location {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            bundle_type,
            version: object.version_id.clone(),
            etag: Some(object.etag.clone()),
        }
    }
}

/// How GetDeploymentSpecification envelopes the specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecFormat {
    /// `PKCS7/JSON` signed by the signer of the CA the agent trusts.
    SignedByTestCa,
    /// `PKCS7/JSON` signed by a signer from a CA the agent does not know.
    SignedByForeignCa,
    /// `TEXT/JSON`: the JSON unsigned.
    TextJson,
    /// Any other `Format`, with the JSON as payload.
    Other(String),
}

/// A deployment the emulator hands out, one command per lifecycle event.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub deployment_id: String,
    pub group_id: String,
    pub group_name: String,
    pub application_name: String,
    pub revision: S3Location,
    pub file_exists_behavior: Option<String>,
    pub creator: Option<String>,
    pub deployment_type: Option<String>,
    pub appspec_filename: Option<String>,
    /// `ReuseArchiveFromDeploymentId` (2.1's RESTART mode): the deployment
    /// whose folder on the host holds the same revision.
    pub reuse_archive_from: Option<String>,
    /// Command names, in the order they are handed out.
    pub events: Vec<String>,
    pub spec_format: SpecFormat,
    /// What PutHostCommandAcknowledgement answers (`CommandStatus`).
    pub ack_status: String,
    /// Replaces the generated specification JSON when set.
    pub spec_override: Option<Value>,
    /// Whether the answer also carries `VariantId` and a `VariantEnvelope`
    /// (a copy of the generic one), which the agent must ignore.
    pub with_variant: bool,
}

impl Deployment {
    /// A deployment of `revision` to group `group_name` of `application_name`,
    /// with a fresh deployment id, a fresh group id, and the in-place events.
    pub fn new(application_name: &str, group_name: &str, revision: S3Location) -> Self {
        Deployment {
            deployment_id: new_deployment_id(),
            group_id: new_group_id(),
            group_name: group_name.to_string(),
            application_name: application_name.to_string(),
            revision,
            file_exists_behavior: None,
            creator: None,
            deployment_type: None,
            appspec_filename: None,
            reuse_archive_from: None,
            events: IN_PLACE_EVENTS.iter().map(|e| e.to_string()).collect(),
            spec_format: SpecFormat::SignedByTestCa,
            ack_status: "InProgress".to_string(),
            spec_override: None,
            with_variant: true,
        }
    }

    /// A new deployment to the same group as `previous` (same group id,
    /// name and application), of another revision.
    pub fn next_in_group(previous: &Deployment, revision: S3Location) -> Self {
        Deployment::new(&previous.application_name, &previous.group_name, revision)
            .group_id(&previous.group_id)
    }

    pub fn deployment_id(mut self, id: &str) -> Self {
        self.deployment_id = id.to_string();
        self
    }

    pub fn group_id(mut self, id: &str) -> Self {
        self.group_id = id.to_string();
        self
    }

    pub fn events(mut self, events: &[&str]) -> Self {
        self.events = events.iter().map(|e| e.to_string()).collect();
        self
    }

    pub fn file_exists_behavior(mut self, behavior: &str) -> Self {
        self.file_exists_behavior = Some(behavior.to_string());
        self
    }

    pub fn creator(mut self, creator: &str) -> Self {
        self.creator = Some(creator.to_string());
        self
    }

    pub fn deployment_type(mut self, deployment_type: &str) -> Self {
        self.deployment_type = Some(deployment_type.to_string());
        self
    }

    /// A restart of `previous`: the same revision, to be taken from
    /// `previous`'s folder on the host (`ReuseArchiveFromDeploymentId`).
    pub fn restart_of(previous: &Deployment) -> Self {
        let mut restart = Deployment::next_in_group(previous, previous.revision.clone());
        restart.reuse_archive_from = Some(previous.deployment_id.clone());
        restart
    }

    /// Sets `ReuseArchiveFromDeploymentId` as given.
    pub fn reuse_archive_from(mut self, deployment_id: &str) -> Self {
        self.reuse_archive_from = Some(deployment_id.to_string());
        self
    }

    pub fn appspec_filename(mut self, name: &str) -> Self {
        self.appspec_filename = Some(name.to_string());
        self
    }

    pub fn spec_format(mut self, format: SpecFormat) -> Self {
        self.spec_format = format;
        self
    }

    pub fn ack_status(mut self, status: &str) -> Self {
        self.ack_status = status.to_string();
        self
    }

    /// Answers GetDeploymentSpecification with the generic envelope only.
    pub fn without_variant(mut self) -> Self {
        self.with_variant = false;
        self
    }

    pub fn spec_override(mut self, spec: Value) -> Self {
        self.spec_override = Some(spec);
        self
    }

    /// The deployment specification JSON (absent optionals omitted).
    pub fn spec_json(&self) -> Value {
        if let Some(spec) = &self.spec_override {
            return spec.clone();
        }
        let mut s3 = Map::new();
        s3.insert("Bucket".into(), json!(self.revision.bucket));
        s3.insert("Key".into(), json!(self.revision.key));
        s3.insert(
            "BundleType".into(),
            json!(self.revision.bundle_type.as_str()),
        );
        if let Some(version) = &self.revision.version {
            s3.insert("Version".into(), json!(version));
        }
        if let Some(etag) = &self.revision.etag {
            s3.insert("ETag".into(), json!(etag));
        }
        let mut spec = Map::new();
        spec.insert("DeploymentId".into(), json!(self.deployment_id));
        spec.insert("DeploymentGroupId".into(), json!(self.group_id));
        spec.insert("DeploymentGroupName".into(), json!(self.group_name));
        spec.insert("ApplicationName".into(), json!(self.application_name));
        for (key, value) in [
            ("DeploymentCreator", &self.creator),
            ("DeploymentType", &self.deployment_type),
            ("AppSpecFilename", &self.appspec_filename),
            ("ReuseArchiveFromDeploymentId", &self.reuse_archive_from),
        ] {
            if let Some(value) = value {
                spec.insert(key.into(), json!(value));
            }
        }
        spec.insert(
            "Revision".into(),
            json!({"RevisionType": "S3", "S3Revision": s3}),
        );
        if let Some(behavior) = &self.file_exists_behavior {
            spec.insert(
                "AgentActionOverrides".into(),
                json!({"AgentOverrides": {"FileExistsBehavior": behavior}}),
            );
        }
        Value::Object(spec)
    }
}

fn random_chars(alphabet: &[u8], n: usize) -> String {
    let mut bytes = vec![0u8; n];
    openssl::rand::rand_bytes(&mut bytes).expect("the openssl RNG is available");
    bytes
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect()
}

/// `d-` and nine upper-case letters or digits, as the service makes them.
pub fn new_deployment_id() -> String {
    format!(
        "d-{}",
        random_chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 9)
    )
}

/// A UUID-shaped deployment group id.
pub fn new_group_id() -> String {
    let hex = random_chars(b"0123456789abcdef", 32);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> S3Location {
        S3Location {
            bucket: "b".into(),
            key: "k.tgz".into(),
            bundle_type: BundleType::Tgz,
            version: Some("v1".into()),
            etag: Some("e1".into()),
        }
    }

    #[test]
    fn ids_have_the_service_shape() {
        let id = new_deployment_id();
        assert_eq!(id.len(), 11);
        assert!(id.starts_with("d-"));
        assert!(id[2..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        let group = new_group_id();
        assert_eq!(group.len(), 36);
        assert_eq!(group.matches('-').count(), 4);
    }

    #[test]
    fn spec_json_omits_absent_optionals() {
        let d = Deployment::new("App", "Group", location());
        let spec = d.spec_json();
        assert_eq!(spec["DeploymentId"], json!(d.deployment_id));
        assert_eq!(spec["Revision"]["RevisionType"], "S3");
        assert_eq!(spec["Revision"]["S3Revision"]["BundleType"], "tgz");
        assert_eq!(spec["Revision"]["S3Revision"]["Version"], "v1");
        assert!(spec.get("DeploymentCreator").is_none());
        assert!(spec.get("AgentActionOverrides").is_none());
    }

    #[test]
    fn spec_json_carries_the_optionals_that_are_set() {
        let d = Deployment::new("App", "Group", location())
            .file_exists_behavior("OVERWRITE")
            .creator("user")
            .deployment_type("IN_PLACE")
            .appspec_filename("appspec.yaml");
        let spec = d.spec_json();
        assert_eq!(
            spec["AgentActionOverrides"]["AgentOverrides"]["FileExistsBehavior"],
            "OVERWRITE"
        );
        assert_eq!(spec["DeploymentCreator"], "user");
        assert_eq!(spec["DeploymentType"], "IN_PLACE");
        assert_eq!(spec["AppSpecFilename"], "appspec.yaml");
        let next = Deployment::next_in_group(&d, location());
        assert_eq!(next.group_id, d.group_id);
        assert_ne!(next.deployment_id, d.deployment_id);
    }
}
