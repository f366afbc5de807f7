//! 2.1's RESTART mode: a deployment that names an earlier one
//! (`ReuseArchiveFromDeploymentId`) gets its revision from that deployment's
//! folder on this host instead of a download. `deployment-archive/` is copied
//! (as a local directory revision is: modes, times, links as links, never
//! following one), `bundle.tar` hard-linked (a link cannot dangle when
//! retention later removes the source), and the ETag record an official 2.x
//! agent may have left carried over.
//!
//! Reuse is only ever a shortcut: every refusal here sends the caller to the
//! normal download, and whatever a failed copy wrote is removed first. The
//! source must be a well-formed deployment id, another deployment than this
//! one, in this deployment group's folder (a deployment of another group is
//! simply not found), with a non-empty archive holding the appspec. Blocking:
//! run it off the runtime.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::error::BundleError;
use super::local::copy_local_directory;
use super::unpack::remove_tree;

/// The longest deployment id taken: real ones are `d-` and nine characters.
const MAX_DEPLOYMENT_ID_LEN: usize = 64;

/// The files of one deployment folder that reuse reads or writes.
#[derive(Debug, Clone)]
pub struct DeploymentFiles {
    pub folder: PathBuf,
    pub archive_dir: PathBuf,
    pub bundle_file: PathBuf,
    /// The ETag record an official 2.x agent keeps beside the bundle.
    pub etag_record: PathBuf,
}

/// Why the earlier deployment's folder cannot stand in for a download.
#[derive(Debug, thiserror::Error)]
pub enum ReuseRefused {
    #[error("{id:?} is not a deployment id")]
    MalformedId { id: String },
    #[error("a deployment cannot reuse its own folder")]
    SameDeployment,
    #[error("{} is not on this host (removed by retention, or another deployment group's)", .0.display())]
    NoArchive(PathBuf),
    #[error("{} is empty", .0.display())]
    EmptyArchive(PathBuf),
    #[error("{} has no appspec (the copy there is incomplete)", .0.display())]
    NoAppSpec(PathBuf),
    #[error("{} lies outside the deployment group's folder", .0.display())]
    OutsideGroup(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Copy(#[from] BundleError),
}

/// Whether `id` is a deployment id (`d-` then upper-case letters and digits),
/// and so a safe single path component.
pub fn is_deployment_id(id: &str) -> bool {
    id.len() <= MAX_DEPLOYMENT_ID_LEN
        && id.strip_prefix("d-").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
}

/// Copies `source`'s revision into `target` (of deployment `target_id` in
/// the group folder `group_dir`). On a refusal nothing of `target` is left.
pub fn reuse_archive(
    group_dir: &Path,
    source_id: &str,
    target_id: &str,
    appspec_filename: &str,
    source: &DeploymentFiles,
    target: &DeploymentFiles,
) -> Result<(), ReuseRefused> {
    if !is_deployment_id(source_id) {
        return Err(ReuseRefused::MalformedId {
            id: source_id.to_string(),
        });
    }
    if source_id == target_id {
        return Err(ReuseRefused::SameDeployment);
    }
    let archive = &source.archive_dir;
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReuseRefused::Io { path, source }
    };
    let mut entries = match fs::read_dir(archive) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ReuseRefused::NoArchive(archive.clone()))
        }
        Err(e) => return Err(io_error(archive)(e)),
    };
    if entries.next().is_none() {
        return Err(ReuseRefused::EmptyArchive(archive.clone()));
    }
    if !archive.join(appspec_filename).is_file() {
        return Err(ReuseRefused::NoAppSpec(archive.clone()));
    }
    let real_group = fs::canonicalize(group_dir).map_err(io_error(group_dir))?;
    let real_archive = fs::canonicalize(archive).map_err(io_error(archive))?;
    if !real_archive.starts_with(&real_group) {
        return Err(ReuseRefused::OutsideGroup(real_archive));
    }
    let copied = copy(source, target);
    if copied.is_err() {
        // The download that follows must not find half a revision.
        let _ = remove_tree(&target.archive_dir);
        let _ = fs::remove_file(&target.bundle_file);
        let _ = fs::remove_file(&target.etag_record);
    }
    copied
}

fn copy(source: &DeploymentFiles, target: &DeploymentFiles) -> Result<(), ReuseRefused> {
    copy_local_directory(&source.archive_dir, &target.archive_dir)?;
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReuseRefused::Io { path, source }
    };
    // A stale bundle of an earlier attempt must not sit beside the new copy.
    match fs::remove_file(&target.bundle_file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_error(&target.bundle_file)(e))
        }
        _ => {}
    }
    // A local directory revision has no bundle.tar: the archive is enough.
    if source.bundle_file.exists() {
        fs::hard_link(&source.bundle_file, &target.bundle_file)
            .map_err(io_error(&target.bundle_file))?;
    }
    if source.etag_record.is_file() {
        fs::copy(&source.etag_record, &target.etag_record)
            .map_err(io_error(&target.etag_record))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
