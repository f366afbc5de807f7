//! Why a bundle could not be fetched or unpacked. Messages keep the official
//! agent's wording where operators know it (`Error extracting tar archive: ...`,
//! `Expected deployment artifact bundle etag ...`) and add the object or entry
//! concerned.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

use crate::deployment_spec::S3Revision;

#[derive(Debug, Error)]
pub enum BundleError {
    #[error("Could not download the bundle {object}: {detail}")]
    S3 { object: S3Object, detail: String },

    #[error("Expected deployment artifact bundle etag {expected} but was actually {actual} (bundle {object})")]
    EtagMismatch {
        expected: String,
        actual: String,
        object: S3Object,
    },

    #[error("Could not write the bundle to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A broken, truncated or unsafe archive; `detail` names the entry.
    #[error("Error extracting {format} archive: {detail}")]
    Extract {
        format: ArchiveFormat,
        detail: String,
    },

    #[error("The disk is (or was) full during extraction.")]
    DiskFull,

    /// The agent was told to stop while the bundle was being unpacked; what
    /// was unpacked so far is removed.
    #[error("Extraction stopped: the agent is shutting down")]
    Stopped,

    #[error("Could not prepare the archive directory {path}: {source}")]
    ArchiveDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("A directory bundle is copied, not unpacked")]
    NotAnArchive,

    /// A local revision (codedeploy-local) could not be taken into the
    /// deployment folder; `detail` names the entry concerned.
    #[error("Could not use the local bundle {}: {detail}", .path.display())]
    Local { path: PathBuf, detail: String },
}

/// The archive formats, as named in extraction errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Tar,
    Zip,
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArchiveFormat::Tar => "tar",
            ArchiveFormat::Zip => "zip",
        })
    }
}

/// The S3 object a bundle comes from: `s3://bucket/key` plus the version when
/// the deployment names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
    pub version: Option<String>,
}

impl S3Object {
    pub fn of(revision: &S3Revision) -> S3Object {
        S3Object {
            bucket: revision.bucket.clone(),
            key: revision.key.clone(),
            version: revision.version.clone(),
        }
    }
}

impl fmt::Display for S3Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)?;
        if let Some(version) = &self.version {
            write!(f, " (version {version})")?;
        }
        Ok(())
    }
}
