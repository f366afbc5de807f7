//! Why a bundle could not be fetched or unpacked. Messages keep the official
//! agent's wording where operators know it (`Error extracting tar archive: ...`,
//! `Expected deployment artifact bundle etag ...`) and add the object or entry
//! concerned.

use std::fmt;
use std::path::PathBuf;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use thiserror::Error;

use crate::deployment_spec::S3Revision;

#[derive(Debug, Error)]
pub enum BundleError {
    /// No S3 client could be set up for the download.
    #[error("Could not download the bundle {object}: {source}")]
    S3Client {
        object: S3Object,
        #[source]
        source: crate::http::ClientError,
    },

    /// GetObject was refused (S3's code and message) or got no usable answer
    /// (the SDK's whole account of it).
    #[error("Could not download the bundle {object}: {}", describe_get_object_error(.source))]
    S3Request {
        object: S3Object,
        /// Boxed: the SDK's error is large, and every `Result` of this layer
        /// would carry its size.
        #[source]
        source: Box<SdkError<GetObjectError, HttpResponse>>,
    },

    /// The body broke off on every attempt; `source` is what the last one
    /// came to.
    #[error("Could not download the bundle {object}: the download broke off: {source}")]
    S3BrokenOff {
        object: S3Object,
        #[source]
        source: BrokenOff,
    },

    /// A ranged download's object was replaced while it was being fetched:
    /// a later range no longer matched the ETag (and version) the first had,
    /// so the parts would mix two objects.
    #[error("Could not download the bundle {object}: the object changed during the download (it no longer has the ETag {etag} the download started with); nothing of it was kept, deploy again")]
    S3Changed { object: S3Object, etag: String },

    /// S3 answered a byte range with other bytes than asked (a server that
    /// ignores `Range`, or a length that does not add up).
    /// `detail` names the range (`bytes=first-last`) and what came instead.
    #[error("Could not download the bundle {object}: S3 did not answer the byte range {detail}")]
    S3RangeRefused { object: S3Object, detail: String },

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

    /// The thread unpacking a downloaded body panicked or was cancelled.
    #[error("Error extracting {format} archive: the unpack task failed: {source}")]
    UnpackTask {
        format: ArchiveFormat,
        #[source]
        source: tokio::task::JoinError,
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

/// What the transport said when a bundle's body stopped midway (a reset
/// connection, a stall past the read timeout): fetching again may help.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct BrokenOff(#[source] Box<dyn std::error::Error + Send + Sync>);

impl BrokenOff {
    pub(super) fn new(cause: impl std::error::Error + Send + Sync + 'static) -> BrokenOff {
        BrokenOff(Box::new(cause))
    }
}

/// The service's own code and message when it answered; the whole error chain
/// otherwise, with the official agent's hint for connection failures.
fn describe_get_object_error(error: &SdkError<GetObjectError, HttpResponse>) -> String {
    match error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or("UnknownError");
            match err.message() {
                Some(message) => format!("{code}: {message}"),
                None => code.to_string(),
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => format!(
            "{}. Try using s3 endpoint override.",
            DisplayErrorContext(error)
        ),
        _ => DisplayErrorContext(error).to_string(),
    }
}
