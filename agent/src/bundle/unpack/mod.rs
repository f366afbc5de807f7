//! Unpacking a bundle into `deployment-archive/`, in-process (tar, gzip+tar, zip),
//! never through a shell. Keeps modes (and, as root, owners: `tar -p`) and
//! modification times. Must never write outside the archive directory: entries
//! with absolute paths or `..`, entries reached through a symbolic link that an
//! earlier entry created, hard links to such places, and device nodes or fifos
//! are refused with an error naming the entry (escaped, see [`crate::names`]).
//! So are entries whose name or link target holds a control character (a
//! newline would split the path in the cleanup file), zip entries whose
//! content is not the size their central directory declares, and, whatever the
//! configuration, symbolic links that lead out of the archive, bundles that
//! unpack to more than `archive_max_extraction_size` and bundles of more than
//! `archive_max_entries` entries (a zip's declared count is refused before
//! anything is written, a tar's at the entry past the cap); the operator's
//! [`BundlePolicy`] may refuse links altogether, setuid/setgid entries, and
//! archive owners. Blocking: run it off the runtime.
//!
//! This file owns the entry points (which reader for which bundle type), what
//! the readers and the target share (an entry's kind and attributes, why an
//! extraction failed), the clean-up after a failed extraction, and the
//! single-top-level-folder rule. The readers ([`tar`], [`zip`]) only describe
//! entries; every write goes through [`target::Target`], and the bytes of a
//! file through [`content`] into a file the target opened. Nothing here
//! writes an entry itself.

mod content;
mod tar;
mod target;
mod zip;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

use super::error::{ArchiveFormat, BundleError};
use super::sparse::SparseLayout;
use crate::config::BundlePolicy;
use crate::deployment_spec::BundleType;
use crate::shutdown::{self, Shutdown};
use target::Target;

/// [`unpack_with`] under the default policy.
pub fn unpack(
    bundle: &Path,
    bundle_type: BundleType,
    archive_dir: &Path,
) -> Result<(), BundleError> {
    unpack_with(
        bundle,
        bundle_type,
        archive_dir,
        &BundlePolicy::default(),
        &shutdown::never(),
    )
}

/// Replaces `archive_dir` with the content of `bundle`, checking each entry
/// against `policy`, then applies the single-top-level-folder rule
/// (LIFECYCLE.md, DownloadBundle step 4). Gives up, removing what it wrote,
/// at the first entry (or 128 KiB of content) after `stop` is triggered.
pub fn unpack_with(
    bundle: &Path,
    bundle_type: BundleType,
    archive_dir: &Path,
    policy: &BundlePolicy,
    stop: &Shutdown,
) -> Result<(), BundleError> {
    let format = match bundle_type {
        BundleType::Tar | BundleType::Tgz => ArchiveFormat::Tar,
        BundleType::Zip => ArchiveFormat::Zip,
        BundleType::Directory => return Err(BundleError::NotAnArchive),
    };
    unpack_into(archive_dir, policy, stop, format, |target| {
        let file = fs::File::open(bundle).map_err(|source| ExtractError::Bundle {
            path: bundle.to_path_buf(),
            source,
        })?;
        match bundle_type {
            BundleType::Tgz => tar::extract(file, TarCompression::Gzip, target),
            BundleType::Zip => zip::extract(file, target),
            _ => tar::extract(file, TarCompression::None, target),
        }
    })
}

/// Whether a tar stream is gzip-compressed (a tgz bundle) or plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TarCompression {
    Gzip,
    None,
}

/// [`unpack_with`] for a tar or tgz bundle read as it arrives (the streaming
/// DownloadBundle): the same per-entry checks, the same clean-up on error, the
/// same single-top-level-folder rule. `reader` is read to the end of the
/// archive, not necessarily to its own end (trailing padding may stay unread).
pub(crate) fn unpack_tar_stream(
    reader: impl Read + Send,
    compression: TarCompression,
    archive_dir: &Path,
    policy: &BundlePolicy,
    stop: &Shutdown,
) -> Result<(), BundleError> {
    unpack_into(archive_dir, policy, stop, ArchiveFormat::Tar, |target| {
        tar::extract(reader, compression, target)
    })
}

/// Empties `archive_dir`, fills it with `extract`, and promotes a single
/// top-level folder; on any extraction error the half-filled directory goes.
fn unpack_into(
    archive_dir: &Path,
    policy: &BundlePolicy,
    stop: &Shutdown,
    format: ArchiveFormat,
    extract: impl FnOnce(&mut Target) -> Result<(), ExtractError>,
) -> Result<(), BundleError> {
    let dir_error = |source| BundleError::ArchiveDir {
        path: archive_dir.to_path_buf(),
        source,
    };
    remove_tree(archive_dir).map_err(dir_error)?;
    fs::create_dir_all(archive_dir).map_err(dir_error)?;

    let mut target = Target::new(archive_dir, policy, stop);
    if let Err(error) = extract(&mut target) {
        // Half an archive is of no use to any later step, and on a full disk
        // it is what keeps the disk full: it goes, whatever went wrong.
        let _ = remove_tree(archive_dir);
        return Err(match error {
            ExtractError::Io(e) if is_disk_full(&e) => BundleError::DiskFull,
            ExtractError::Stopped => BundleError::Stopped,
            other => BundleError::Extract {
                format,
                detail: other.to_string(),
            },
        });
    }

    promote_single_top_level_folder(archive_dir).map_err(dir_error)
}

fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(nix::libc::EDQUOT)
}

/// Why one archive could not be extracted; becomes the `detail` of
/// [`BundleError::Extract`].
#[derive(Debug, thiserror::Error)]
enum ExtractError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("cannot open the bundle {}: {source}", .path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("entry '{entry}': {reason}")]
    Unsafe { entry: String, reason: String },
    #[error("entry '{entry}': {source}")]
    Entry {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Zip(#[from] ::zip::result::ZipError),
    #[error("the revision has more than {max} entries (archive_max_entries); raise that key if this revision is genuinely that large")]
    TooManyEntries { max: u64 },
    #[error("stopped: the agent is shutting down")]
    Stopped,
}

fn unsafe_entry(entry: &str, reason: impl Into<String>) -> ExtractError {
    ExtractError::Unsafe {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

fn entry_io(name: &str, source: io::Error) -> ExtractError {
    ExtractError::Entry {
        entry: name.to_string(),
        source,
    }
}

/// What one archive entry is, once its header has been read.
enum EntryKind {
    File,
    /// A file of `tar --sparse`, written with its holes as holes.
    SparseFile(SparseContent),
    Directory,
    Symlink(PathBuf),
    HardLink(PathBuf),
}

/// How a sparse file's content reaches the unpacker ([`super::sparse`]).
enum SparseContent {
    /// Old GNU format: the tar crate fills the holes in; `size` bytes come.
    Expanded { size: u64 },
    /// A PAX format: the data chunks (`carried` bytes, after the map in 1.0).
    Pax { layout: SparseLayout, carried: u64 },
}

impl SparseContent {
    /// The file's size once unpacked, holes included.
    fn size(&self) -> u64 {
        match self {
            SparseContent::Expanded { size } => *size,
            SparseContent::Pax { layout, .. } => layout.size,
        }
    }
}

/// Ownership and times to restore on an extracted entry.
struct Attributes {
    /// Permission bits, including setuid/setgid/sticky where the format keeps them.
    mode: u32,
    /// Restored only when running as root.
    owner: Option<(Uid, Gid)>,
    mtime: Option<i64>,
}

/// If the archive's top level is exactly one directory (not a link) holding an
/// entry whose name contains "appspec" (any case), that directory's content
/// becomes the top level. This is how GitHub tarballs, and zips made of a
/// folder, still deploy.
fn promote_single_top_level_folder(archive_dir: &Path) -> io::Result<()> {
    let top: Vec<fs::DirEntry> = fs::read_dir(archive_dir)?.collect::<io::Result<_>>()?;
    let [only] = top.as_slice() else {
        return Ok(());
    };
    if !only.file_type()?.is_dir() {
        return Ok(());
    }
    let folder = only.path();
    let children: Vec<std::ffi::OsString> = fs::read_dir(&folder)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    let holds_appspec = children
        .iter()
        .any(|n| n.to_string_lossy().to_lowercase().contains("appspec"));
    if !holds_appspec {
        return Ok(());
    }
    // Move the folder aside under a name none of its children has, so that a
    // child named like the folder itself can move up.
    let mut aside_name = String::from(".codedeploy-unpack");
    while children.iter().any(|c| *c == *aside_name) {
        aside_name.push('_');
    }
    let aside = archive_dir.join(&aside_name);
    fs::rename(&folder, &aside)?;
    for child in &children {
        fs::rename(aside.join(child), archive_dir.join(child))?;
    }
    fs::remove_dir(&aside)
}

/// Removes a previous archive directory, including read-only directories that a
/// revision may have left (their mode came from the archive).
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if !meta.is_dir() => fs::remove_file(path),
        Ok(_) => match fs::remove_dir_all(path) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                make_dirs_writable(path)?;
                fs::remove_dir_all(path)
            }
            other => other,
        },
    }
}

fn make_dirs_writable(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    fs::set_permissions(
        dir,
        fs::Permissions::from_mode((meta.permissions().mode() | 0o700) & 0o7777),
    )?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_dirs_writable(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod sparse_tests;
#[cfg(test)]
pub(super) mod tests;
