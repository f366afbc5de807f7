//! The deployment specification: envelope verification and the spec model.

mod envelope;
pub mod model;
mod parse;

pub use envelope::{SpecVerifier, UnsignedSpecs};
pub use model::*;
pub use parse::parse_spec;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("Unsupported DeploymentSpecification format: {0}")]
    UnsupportedFormat(String),
    #[error("The deployment specification was rejected: {0}")]
    Signature(String),
    #[error("{0}")]
    Invalid(String),
}
