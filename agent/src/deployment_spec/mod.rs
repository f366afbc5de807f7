//! The deployment specification: envelope verification and the spec model.

mod envelope;
pub mod model;
mod parse;

pub use envelope::{CaChainError, InvalidChain, SpecVerifier, UnsignedSpecs};
pub use model::*;
pub use parse::parse_spec;

/// Why a deployment specification cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("Unsupported DeploymentSpecification format: {format}")]
    UnsupportedFormat { format: String },
    /// A check of the PKCS#7 envelope failed; `check` says which, OpenSSL why.
    #[error("The deployment specification was rejected: {check}: {source}")]
    Signature {
        check: &'static str,
        #[source]
        source: openssl::error::ErrorStack,
    },
    #[error("The deployment specification was rejected: the signed content is not UTF-8 text")]
    NotUtf8(#[source] std::str::Utf8Error),
    #[error("Deployment Spec is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// What is wrong with one field of a well-formed spec: the message is
    /// the whole error, written for the person reading the failed command.
    #[error("{message}")]
    Invalid { message: String },
}

impl SpecError {
    pub(crate) fn invalid(message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            message: message.into(),
        }
    }
}
