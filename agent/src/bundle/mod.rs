//! Revision bundles: fetching them (S3, streamed through the unpacker as the
//! body arrives, a large bundle as byte ranges over several connections;
//! GitHub, downloaded whole then unpacked; or a local file or directory for
//! the local CLI) and unpacking them safely into `deployment-archive/`.
//! Fetching and unpacking never interpret the revision's content beyond the
//! single-top-level-folder rule; the appspec is read later.

mod error;
mod fetch;
mod github;
mod local;
mod read_ahead;
mod reuse;
mod s3;
mod sniff;
mod sparse;
mod stream;
mod unpack;

pub use error::{ArchiveFormat, BundleError, S3Object};
pub use fetch::{FetchError, FetchTarget, Fetcher, S3Settings};
pub use github::{fetch_github, GitHubClient, GitHubError};
pub use local::{copy_local_directory, link_local_file, refused_name};
pub use reuse::{is_deployment_id, reuse_archive, DeploymentFiles, ReuseRefused};
pub use s3::{fetch_s3, s3_client};
pub use sniff::sniff_archive;
pub use unpack::{unpack, unpack_with};
