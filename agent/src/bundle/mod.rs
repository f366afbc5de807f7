//! Revision bundles: fetching them (S3) and unpacking them safely into
//! `deployment-archive/`. Fetching and unpacking never interpret the revision's
//! content beyond the single-top-level-folder rule; the appspec is read later.

mod error;
mod s3;
mod unpack;

pub use error::{ArchiveFormat, BundleError, S3Object};
pub use s3::{download_s3, s3_client};
pub use unpack::unpack;
