//! The deployment specification: what one deployment is, as the service signed it.
//! Typed values only; the parser in `parse.rs` builds them from the spec JSON.

use crate::appspec::FileExistsBehavior;

/// A parsed, validated deployment specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSpec {
    /// The bare deployment id (`d-...`), never the ARN.
    pub deployment_id: String,
    pub deployment_group_id: String,
    pub deployment_group_name: String,
    pub application_name: String,
    pub deployment_creator: DeploymentCreator,
    pub deployment_type: DeploymentType,
    pub appspec_filename: String,
    pub revision: Revision,
    /// The deployment's AgentOverrides value, upper-cased; `None` when absent.
    pub file_exists_behavior: Option<FileExistsBehavior>,
    /// Set by the local CLI only.
    pub all_possible_lifecycle_events: Option<Vec<String>>,
    /// `ReuseArchiveFromDeploymentId` (2.1's RESTART mode): the earlier
    /// deployment whose folder on this host holds the same revision, as the
    /// service sent it (the ARN form reduced to the id); checked where used.
    pub reuse_archive_from: Option<String>,
}

impl DeploymentSpec {
    /// Whether the deployment undoes a blue/green one (the service created
    /// it to roll back): its traffic hooks run from other revisions.
    pub fn direction(&self) -> Direction {
        match (&self.deployment_creator, self.deployment_type) {
            (DeploymentCreator::Rollback, DeploymentType::BlueGreen) => {
                Direction::BlueGreenRollback
            }
            _ => Direction::Forward,
        }
    }
}

/// Who created the deployment (`DeploymentCreator`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentCreator {
    /// `codeDeployRollback`: the service, to roll back a deployment.
    Rollback,
    /// Anyone else, as the spec names them (`user`, `autoscaling`, ...).
    Other(String),
}

impl DeploymentCreator {
    pub fn parse(text: &str) -> DeploymentCreator {
        match text {
            "codeDeployRollback" => DeploymentCreator::Rollback,
            other => DeploymentCreator::Other(other.to_string()),
        }
    }

    pub fn user() -> DeploymentCreator {
        DeploymentCreator::Other("user".to_string())
    }
}

/// Which way a deployment goes, as far as the revision of its hooks goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    BlueGreenRollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentType {
    InPlace,
    BlueGreen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revision {
    S3(S3Revision),
    GitHub(GitHubRevision),
    LocalFile {
        location: String,
        bundle_type: BundleType,
    },
    LocalDirectory {
        location: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Revision {
    pub bucket: String,
    pub key: String,
    pub bundle_type: BundleType,
    pub version: Option<String>,
    /// As given in the spec; compared with the object's ETag with quotes stripped.
    pub etag: Option<String>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct GitHubRevision {
    pub account: String,
    pub repository: String,
    pub commit_id: String,
    pub bundle_type: BundleType,
    /// Never logged: the Debug impl hides it.
    pub access_token: Option<String>,
}

impl std::fmt::Debug for GitHubRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubRevision")
            .field("account", &self.account)
            .field("repository", &self.repository)
            .field("commit_id", &self.commit_id)
            .field("bundle_type", &self.bundle_type)
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// How a bundle is packed. `Directory` exists only for the local CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleType {
    Tar,
    Tgz,
    Zip,
    Directory,
}

impl BundleType {
    pub fn name(self) -> &'static str {
        match self {
            BundleType::Tar => "tar",
            BundleType::Tgz => "tgz",
            BundleType::Zip => "zip",
            BundleType::Directory => "directory",
        }
    }
}
