//! The planner's two views of the disk: the unpacked revision
//! ([`FsRevision`]) and the host's existing paths ([`host_existing`]). Read-only;
//! a path that resolves outside the revision is reported, never followed.

use std::cell::RefCell;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::InstallError;
use super::plan::{Existing, RevisionTree, SourceKind};
use crate::folder_chain::FolderChain;
use crate::shutdown::{self, Shutdown};

/// `deployment-archive/` as the planner sees it.
#[derive(Debug)]
pub struct FsRevision {
    root: PathBuf,
    /// The root with links resolved, to tell whether a link stays inside.
    real_root: PathBuf,
    /// The folders found to be real directories of the revision (no link on
    /// the way): the planner asks about a tree depth first, so each folder's
    /// path is checked once, not once per entry below it. Install reads the
    /// unpacked revision only, which nothing changes meanwhile.
    real_folders: RefCell<FolderChain>,
    stop: Shutdown,
}

impl FsRevision {
    pub fn new(archive_dir: &Path) -> Result<FsRevision, InstallError> {
        let real_root = fs::canonicalize(archive_dir)
            .map_err(InstallError::io("read the revision directory", archive_dir))?;
        Ok(FsRevision {
            root: archive_dir.to_path_buf(),
            real_root,
            real_folders: RefCell::default(),
            stop: shutdown::never(),
        })
    }

    /// The planner gives up at the next entry once `stop` is triggered.
    pub fn stopped_by(self, stop: &Shutdown) -> FsRevision {
        FsRevision {
            stop: stop.clone(),
            ..self
        }
    }

    /// `parent` (revision-relative) with its links resolved; `None` when it
    /// does not resolve.
    fn resolve_parent(&self, parent: &Path) -> Option<PathBuf> {
        let mut real_folders = self.real_folders.borrow_mut();
        for current in real_folders.unknown(&self.root, parent) {
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => {}
                // A link on the way (or nothing there): resolved in full.
                _ => return fs::canonicalize(self.root.join(parent)).ok(),
            }
        }
        real_folders.record(parent);
        Some(self.real_root.join(parent))
    }

    fn inside(&self, real: &Path) -> Option<PathBuf> {
        real.strip_prefix(&self.real_root)
            .ok()
            .map(Path::to_path_buf)
    }
}

impl RevisionTree for FsRevision {
    fn kind(&self, relative: &Path) -> Option<SourceKind> {
        let path = self.absolute(relative);
        // A source written through a link (`linked/file`) must still resolve
        // inside the revision.
        if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
            let real_parent = self.resolve_parent(parent)?;
            if self.inside(&real_parent).is_none() {
                return Some(SourceKind::Outside {
                    target: real_parent,
                });
            }
        }
        let meta = fs::symlink_metadata(&path).ok()?;
        let file_type = meta.file_type();
        Some(if file_type.is_symlink() {
            match fs::metadata(&path) {
                Ok(target) if target.is_dir() => {
                    let real = fs::canonicalize(&path).ok()?;
                    SourceKind::DirectoryLink {
                        inside: self.inside(&real),
                        target: real,
                    }
                }
                _ => SourceKind::FileLink,
            }
        } else if file_type.is_dir() {
            SourceKind::Directory
        } else if file_type.is_file() {
            SourceKind::File
        } else {
            SourceKind::Unsupported
        })
    }

    fn children(&self, relative: &Path) -> Vec<OsString> {
        let mut names: Vec<OsString> = fs::read_dir(self.absolute(relative))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn stopped(&self) -> bool {
        self.stop.is_triggered()
    }

    fn absolute(&self, relative: &Path) -> PathBuf {
        if relative.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(relative)
        }
    }
}

/// What is at a host path now. A link to a directory counts as a directory
/// (hosts often link `/opt/app` or `/var/www`); a dangling link as a file.
pub fn host_existing(path: &Path) -> Existing {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Existing::Directory,
        Ok(_) => Existing::Other,
        Err(_) if fs::symlink_metadata(path).is_ok() => Existing::Other,
        Err(_) => Existing::Missing,
    }
}
