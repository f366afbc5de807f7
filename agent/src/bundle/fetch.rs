//! Getting a revision onto the host: from S3 (unpacked as it downloads), from
//! GitHub (downloaded whole, then unpacked as its bytes show), or from the local
//! disk (`codedeploy-local` only). The clients and the credentials they need
//! are made here, per fetch, so that rotated credentials are picked up.
//! Unpacking and copying run off the runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::blocking::{off_runtime, TaskFailed};
use crate::config::{BundleDownload, BundlePolicy, ProxyUri};
use crate::deployment_spec::{BundleType, Revision, S3Revision};
use crate::identity::{CredentialSource, IdentityError};
use crate::shutdown::Shutdown;

use super::{BundleError, GitHubClient, GitHubError, S3Object};

/// How the agent reaches S3.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub region: String,
    pub endpoint_override: Option<String>,
    /// `:proxy_uri:`; `None` lets the proxy environment variables decide.
    pub proxy: Option<ProxyUri>,
    /// When a bundle is fetched as byte ranges, and over how many connections.
    pub download: BundleDownload,
}

/// Everything a fetch needs besides the revision itself.
#[derive(Debug, Clone)]
pub struct Fetcher {
    pub s3: S3Settings,
    /// `:github_endpoint_override:`; `None` is https://api.github.com. GitHub
    /// downloads go through the same proxy as S3 (`s3.proxy`).
    pub github_endpoint: Option<String>,
    pub credentials: Arc<CredentialSource>,
    /// The operator's bundle checks (sizes, entry counts, names).
    pub policy: BundlePolicy,
}

/// Where a fetched revision goes: `bundle.tar` and `deployment-archive/`.
#[derive(Debug, Clone)]
pub struct FetchTarget {
    pub bundle_file: PathBuf,
    pub archive_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No credentials for S3: what the identity layer says is wrong.
    #[error(transparent)]
    Credentials(IdentityError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error(transparent)]
    Task(#[from] TaskFailed),
}

impl Fetcher {
    /// Puts `revision` at `target`, unpacked.
    pub async fn fetch(
        &self,
        revision: &Revision,
        target: &FetchTarget,
        stop: &Shutdown,
    ) -> Result<(), FetchError> {
        let left_to_unpack = match revision {
            Revision::S3(revision) => {
                self.fetch_s3(revision, target, stop).await?;
                None
            }
            Revision::GitHub(revision) => {
                let client =
                    GitHubClient::new(self.github_endpoint.as_deref(), self.s3.proxy.as_ref())?;
                Some(super::fetch_github(&client, revision, &target.bundle_file).await?)
            }
            Revision::LocalFile {
                location,
                bundle_type,
            } => {
                let (source, bundle_file) = (PathBuf::from(location), target.bundle_file.clone());
                off_runtime("bundle copy", move || {
                    super::link_local_file(&source, &bundle_file)
                })
                .await??;
                Some(*bundle_type)
            }
            Revision::LocalDirectory { location } => {
                let (source, archive_dir) = (PathBuf::from(location), target.archive_dir.clone());
                off_runtime("bundle copy", move || {
                    super::copy_local_directory(&source, &archive_dir)
                })
                .await??;
                None
            }
        };
        if let Some(bundle_type) = left_to_unpack {
            self.unpack(bundle_type, target, stop).await?;
        }
        Ok(())
    }

    async fn fetch_s3(
        &self,
        revision: &S3Revision,
        target: &FetchTarget,
        stop: &Shutdown,
    ) -> Result<(), FetchError> {
        let credentials = self
            .credentials
            .current()
            .await
            .map_err(FetchError::Credentials)?;
        let client = super::s3_client(
            &self.s3.region,
            self.s3.endpoint_override.as_deref(),
            credentials,
            self.s3.proxy.as_ref(),
        )
        .map_err(|source| BundleError::S3Client {
            object: S3Object::of(revision),
            source,
        })?;
        super::fetch_s3(
            &client,
            revision,
            &target.bundle_file,
            &target.archive_dir,
            &self.policy,
            self.s3.download,
            stop,
        )
        .await?;
        Ok(())
    }

    async fn unpack(
        &self,
        bundle_type: BundleType,
        target: &FetchTarget,
        stop: &Shutdown,
    ) -> Result<(), FetchError> {
        let (bundle_file, archive_dir) = (target.bundle_file.clone(), target.archive_dir.clone());
        let (policy, stop) = (self.policy, stop.clone());
        off_runtime("unpack", move || {
            super::unpack_with(&bundle_file, bundle_type, &archive_dir, &policy, &stop)
        })
        .await??;
        Ok(())
    }
}

impl FetchTarget {
    pub fn new(bundle_file: &Path, archive_dir: &Path) -> FetchTarget {
        FetchTarget {
            bundle_file: bundle_file.to_path_buf(),
            archive_dir: archive_dir.to_path_buf(),
        }
    }
}
