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

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Group, Uid, User};

use super::error::{ArchiveFormat, BundleError};
use super::read_ahead::{fill, read_ahead};
use super::sparse::{self, PaxChunks, SparseLayout};
use crate::config::{BundlePolicy, LinkPolicy, Ownership, SetIdBits};
use crate::deployment_spec::BundleType;
use crate::folder_chain::FolderChain;
use crate::names::{self, Escaped};
use crate::shutdown::{self, Shutdown};

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
            BundleType::Tgz => extract_tar_stream(file, TarCompression::Gzip, target),
            BundleType::Zip => extract_zip(file, target),
            _ => extract_tar_stream(file, TarCompression::None, target),
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
        extract_tar_stream(reader, compression, target)
    })
}

/// Extracts a tar or tgz with two threads: `reader` is read (and inflated)
/// on the read-ahead thread while this one writes the entries.
fn extract_tar_stream(
    mut reader: impl Read + Send,
    compression: TarCompression,
    target: &mut Target,
) -> Result<(), ExtractError> {
    let extract = |tar: &mut dyn Read| extract_tar(tar, target);
    match compression {
        TarCompression::Gzip => read_ahead(&mut flate2::read::GzDecoder::new(reader), extract),
        TarCompression::None => read_ahead(&mut reader, extract),
    }
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
    Zip(#[from] zip::result::ZipError),
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

/// Whether walking to an entry may create the directories on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MissingParents {
    /// Like tar: an entry's directories need not be listed before it.
    Create,
    /// A hard link's target must already exist.
    Refuse,
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

/// The archive directory being filled, and the directories whose mode and time
/// must be set last (so that a read-only directory does not block its children).
struct Target {
    root: PathBuf,
    restore_owners: bool,
    policy: BundlePolicy,
    pending_dirs: Vec<(PathBuf, Attributes)>,
    /// Symbolic links made so far, checked again once the tree is complete.
    links: Vec<(String, PathBuf)>,
    /// Bytes of file content written so far.
    extracted: u64,
    /// Entries met so far, the archive's root (`./`) included.
    entries: u64,
    /// The folders last found to be real directories of the archive. An
    /// entry can never turn a directory into a link or a file (`clear`
    /// refuses), so the verdict stays true.
    verified: FolderChain,
    /// Checked at each entry and each buffer of content: a stop request is
    /// acted on within a second, not at the end of the archive.
    stop: Shutdown,
    /// File content goes through this buffer (empty until the first file):
    /// a few large writes per file instead of `io::copy`'s 8 KiB ones.
    copy_buffer: Vec<u8>,
}

impl Target {
    fn new(root: &Path, policy: &BundlePolicy, stop: &Shutdown) -> Target {
        Target {
            root: root.to_path_buf(),
            restore_owners: Uid::effective().is_root()
                && policy.ownership == Ownership::FromArchive,
            policy: *policy,
            pending_dirs: Vec::new(),
            links: Vec::new(),
            extracted: 0,
            entries: 0,
            verified: FolderChain::default(),
            stop: stop.clone(),
            copy_buffer: Vec::new(),
        }
    }

    /// The policy's verdict on one entry before anything of it is written.
    fn check_policy(
        &self,
        name: &str,
        relative: &Path,
        kind: &EntryKind,
        mode: u32,
    ) -> Result<(), ExtractError> {
        let refuse = |reason: String| Err(unsafe_entry(name, reason));
        match kind {
            EntryKind::Symlink(_) | EntryKind::HardLink(_)
                if self.policy.links == LinkPolicy::Refuse =>
            {
                return refuse(
                    "links are not allowed in a revision (reject_symlinks_in_bundle is true)".into(),
                )
            }
            EntryKind::Symlink(target) if !link_stays_inside(relative, target) => {
                return refuse(format!(
                    "it is a symbolic link to '{}', which leads outside the archive; links in a revision must stay inside it",
                    Escaped::of(target)
                ))
            }
            _ => {}
        }
        if self.policy.setid_bits == SetIdBits::Refuse && mode & 0o6000 != 0 {
            return refuse(format!(
                "its mode {mode:04o} has the setuid or setgid bit (reject_unsafe_permissions_in_bundle is true)"
            ));
        }
        Ok(())
    }

    /// The content budget left under `archive_max_extraction_size`.
    fn over_budget(&self, name: &str) -> ExtractError {
        unsafe_entry(
            name,
            format!(
                "the revision unpacks to more than archive_max_extraction_size ({} bytes); raise that key if this revision is genuinely that large",
                self.policy.max_extraction_size
            ),
        )
    }

    /// Refuses an archive of more than `archive_max_entries` entries, counted
    /// one by one (tar) or declared up front (zip).
    fn check_entry_count(&self, entries: u64) -> Result<(), ExtractError> {
        match entries > self.policy.max_entries {
            true => Err(ExtractError::TooManyEntries {
                max: self.policy.max_entries,
            }),
            false => Ok(()),
        }
    }

    /// The entry's place under the root; `None` for the root itself (`./`).
    fn place(&self, name: &str, path: &Path) -> Result<Option<PathBuf>, ExtractError> {
        let mut relative = PathBuf::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => relative.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(unsafe_entry(
                        name,
                        "its path contains '..' and could land outside the archive directory",
                    ))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(unsafe_entry(
                        name,
                        "its path is absolute; archive entries must be relative",
                    ))
                }
            }
        }
        Ok((!relative.as_os_str().is_empty()).then_some(relative))
    }

    /// Walks the parent directories of `relative`, refusing to pass through a
    /// symbolic link or a non-directory: an earlier entry must not redirect a
    /// later one outside the archive.
    fn prepare_parents(
        &mut self,
        name: &str,
        relative: &Path,
        missing: MissingParents,
    ) -> Result<PathBuf, ExtractError> {
        let parent = relative.parent().unwrap_or(Path::new(""));
        for current in self.verified.unknown(&self.root, parent) {
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(unsafe_entry(
                        name,
                        format!(
                            "it would be written through the symbolic link '{}' of the archive",
                            Escaped::of(current.strip_prefix(&self.root).unwrap_or(&current))
                        ),
                    ))
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(unsafe_entry(
                        name,
                        format!(
                            "its parent '{}' is not a directory",
                            Escaped::of(current.strip_prefix(&self.root).unwrap_or(&current))
                        ),
                    ))
                }
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound && missing == MissingParents::Create =>
                {
                    fs::create_dir(&current).map_err(|source| entry_io(name, source))?
                }
                Err(source) => return Err(entry_io(name, source)),
            }
        }
        self.verified.record(parent);
        Ok(self.root.join(relative))
    }

    /// Makes room for a new non-directory entry: a later entry replaces an
    /// earlier one (as tar does), by unlinking it, never by writing through it.
    fn clear(&self, name: &str, path: &Path) -> Result<(), ExtractError> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => Err(unsafe_entry(
                name,
                "a directory of the same name already exists",
            )),
            Ok(_) => fs::remove_file(path).map_err(|source| entry_io(name, source)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(entry_io(name, source)),
        }
    }

    fn extract(
        &mut self,
        name: &str,
        path: &Path,
        kind: EntryKind,
        attributes: Attributes,
        content: &mut dyn Read,
    ) -> Result<(), ExtractError> {
        // Every entry counts, before anything of it is written: what a million
        // empty files cost is their number (inodes, the install plan), not
        // their size.
        if self.stop.is_triggered() {
            return Err(ExtractError::Stopped);
        }
        self.entries += 1;
        self.check_entry_count(self.entries)?;
        names::check(path)
            .map_err(|e| unsafe_entry(name, format!("its name holds {e}; rename it")))?;
        if let EntryKind::Symlink(target) | EntryKind::HardLink(target) = &kind {
            names::check(target)
                .map_err(|e| unsafe_entry(name, format!("its link target holds {e}; change it")))?;
        }
        let Some(relative) = self.place(name, path)? else {
            return Ok(());
        };
        self.check_policy(name, &relative, &kind, attributes.mode)?;
        let dest = self.prepare_parents(name, &relative, MissingParents::Create)?;
        match kind {
            EntryKind::Directory => {
                match fs::symlink_metadata(&dest) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        return Err(unsafe_entry(
                            name,
                            "a file or link of the same name already exists",
                        ))
                    }
                    Err(_) => fs::create_dir(&dest).map_err(|source| entry_io(name, source))?,
                }
                self.pending_dirs.push((dest, attributes));
                Ok(())
            }
            EntryKind::File => {
                let mut file = self.create_file(name, &dest)?;
                // One byte more than the budget tells an oversized entry
                // apart from one that fills it exactly.
                let budget = self
                    .policy
                    .max_extraction_size
                    .saturating_sub(self.extracted);
                let copied = copy_through(
                    &mut self.copy_buffer,
                    &mut content.take(budget.saturating_add(1)),
                    &self.stop,
                    |data| file.write_all(data),
                )?
                .map_err(|source| content_io(name, source))?;
                if copied > budget {
                    return Err(self.over_budget(name));
                }
                self.extracted += copied;
                self.restore_file(name, &file, &attributes)
            }
            EntryKind::SparseFile(sparse) => {
                // What a sparse file costs is its size with the holes: the
                // holes are not written, but every later step reads them.
                let size = sparse.size();
                if size
                    > self
                        .policy
                        .max_extraction_size
                        .saturating_sub(self.extracted)
                {
                    return Err(self.over_budget(name));
                }
                let mut file = self.create_file(name, &dest)?;
                self.write_sparse(name, sparse, content, &mut file)?;
                self.extracted += size;
                self.restore_file(name, &file, &attributes)
            }
            EntryKind::Symlink(target) => {
                self.clear(name, &dest)?;
                symlink(&target, &dest).map_err(|source| entry_io(name, source))?;
                self.links.push((name.to_string(), dest.clone()));
                self.restore(name, &dest, &attributes, true)
            }
            EntryKind::HardLink(target) => {
                if let Some(reason) = hard_link_leaves(&target) {
                    return Err(unsafe_entry(name, reason));
                }
                let Some(target_relative) = self.place(name, &target)? else {
                    return Err(unsafe_entry(
                        name,
                        "it is a hard link to the archive directory itself",
                    ));
                };
                let source =
                    self.prepare_parents(name, &target_relative, MissingParents::Refuse)?;
                match fs::symlink_metadata(&source) {
                    Ok(meta) if !meta.is_dir() => {}
                    _ => {
                        return Err(unsafe_entry(
                            name,
                            format!(
                            "it is a hard link to '{}', which is not a file extracted before it",
                            Escaped::of(&target)
                        ),
                        ))
                    }
                }
                self.clear(name, &dest)?;
                fs::hard_link(&source, &dest).map_err(|source| entry_io(name, source))
            }
        }
    }

    /// Creates the file of a new entry. create_new (O_EXCL) never follows a
    /// symlink that might have appeared at the destination. What stands there
    /// already (an earlier entry of the same name) is cleared, then tried again.
    fn create_file(&self, name: &str, dest: &Path) -> Result<fs::File, ExtractError> {
        let create = || {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dest)
        };
        match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.clear(name, dest)?;
                create()
            }
            other => other,
        }
        .map_err(|source| entry_io(name, source))
    }

    /// Writes a sparse entry's content into `file`, its holes left as holes,
    /// after checking every number its headers give.
    fn write_sparse(
        &mut self,
        name: &str,
        sparse: SparseContent,
        content: &mut dyn Read,
        file: &mut fs::File,
    ) -> Result<(), ExtractError> {
        let refused = |error: sparse::SparseError| unsafe_entry(name, error.to_string());
        let ended_early = || {
            entry_io(
                name,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the archive ends inside this file",
                ),
            )
        };
        let (layout, carried) = match sparse {
            SparseContent::Expanded { size } => {
                let copied = copy_through(
                    &mut self.copy_buffer,
                    &mut content.take(size),
                    &self.stop,
                    |data| sparse::write_leaving_holes(file, data),
                )?
                .map_err(|source| content_io(name, source))?;
                if copied < size {
                    return Err(ended_early());
                }
                return file
                    .set_len(size)
                    .map_err(|source| content_io(name, source));
            }
            SparseContent::Pax { layout, carried } => (layout, carried),
        };
        let (chunks, carried) = match layout.chunks {
            PaxChunks::Listed(chunks) => (chunks, carried),
            PaxChunks::MapInContent => {
                let (chunks, consumed) = sparse::read_map(content).map_err(|e| match e {
                    sparse::MapReadError::Io(source) => entry_io(name, source),
                    sparse::MapReadError::Sparse(error) => refused(error),
                })?;
                let data = carried.checked_sub(consumed).ok_or_else(|| {
                    refused(sparse::SparseError::MalformedMap(
                        "the map is larger than the entry",
                    ))
                })?;
                (chunks, data)
            }
        };
        sparse::check_chunks(&chunks, layout.size, carried).map_err(refused)?;
        for chunk in chunks.iter().filter(|c| c.length > 0) {
            file.seek(SeekFrom::Start(chunk.offset))
                .map_err(|source| content_io(name, source))?;
            let copied = copy_through(
                &mut self.copy_buffer,
                &mut content.take(chunk.length),
                &self.stop,
                |data| file.write_all(data),
            )?
            .map_err(|source| content_io(name, source))?;
            if copied < chunk.length {
                return Err(ended_early());
            }
        }
        // What no chunk covers stays a hole.
        file.set_len(layout.size)
            .map_err(|source| content_io(name, source))
    }

    /// [`Target::restore`] for a regular file, through its open descriptor
    /// (no second walk of its path).
    fn restore_file(
        &self,
        name: &str,
        file: &fs::File,
        attributes: &Attributes,
    ) -> Result<(), ExtractError> {
        if self.restore_owners {
            if let Some((uid, gid)) = attributes.owner {
                std::os::unix::fs::fchown(file, Some(uid.as_raw()), Some(gid.as_raw()))
                    .map_err(|source| entry_io(name, source))?;
            }
        }
        file.set_permissions(fs::Permissions::from_mode(attributes.mode))
            .map_err(|source| entry_io(name, source))?;
        if let Some(mtime) = attributes.mtime {
            let time = TimeSpec::new(mtime, 0);
            nix::sys::stat::futimens(file.as_raw_fd(), &time, &time)
                .map_err(|errno| entry_io(name, io::Error::from(errno)))?;
        }
        Ok(())
    }

    /// Owner first (chown clears setuid bits), then mode, then time.
    fn restore(
        &self,
        name: &str,
        path: &Path,
        attributes: &Attributes,
        is_symlink: bool,
    ) -> Result<(), ExtractError> {
        if self.restore_owners {
            if let Some((uid, gid)) = attributes.owner {
                std::os::unix::fs::lchown(path, Some(uid.as_raw()), Some(gid.as_raw()))
                    .map_err(|source| entry_io(name, source))?;
            }
        }
        if !is_symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(attributes.mode))
                .map_err(|source| entry_io(name, source))?;
        }
        if let Some(mtime) = attributes.mtime {
            let time = TimeSpec::new(mtime, 0);
            utimensat(None, path, &time, &time, UtimensatFlags::NoFollowSymlink)
                .map_err(|errno| entry_io(name, io::Error::from(errno)))?;
        }
        Ok(())
    }

    /// Links checked on the finished tree: a link may pass the check by its
    /// text yet leave through another link (`a -> .` then `b -> a/../..`).
    /// A link whose target does not exist was judged by its text only.
    fn check_links_resolved(&self) -> Result<(), ExtractError> {
        let root = fs::canonicalize(&self.root)?;
        for (name, link) in &self.links {
            if let Ok(real) = fs::canonicalize(link) {
                if !real.starts_with(&root) {
                    return Err(unsafe_entry(
                        name,
                        format!(
                            "it is a symbolic link that resolves to '{}', outside the archive; links in a revision must stay inside it",
                            Escaped::of(&real)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Directory modes and times, deepest first.
    fn finish(&mut self) -> Result<(), ExtractError> {
        self.check_links_resolved()?;
        let mut dirs = std::mem::take(&mut self.pending_dirs);
        dirs.sort_by_cached_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, attributes) in dirs {
            let name = names::escaped(path.strip_prefix(&self.root).unwrap_or(&path));
            self.restore(&name, &path, &attributes, false)?;
        }
        Ok(())
    }
}

/// Why a hard link's target cannot name an earlier entry of the archive, by
/// its text alone; `None` when it may. Pure.
fn hard_link_leaves(target: &Path) -> Option<String> {
    let shown = Escaped::of(target);
    if target.has_root() {
        return Some(format!(
            "it is a hard link to the absolute path '{shown}'; a hard link must name a file extracted before it, by its path inside the archive"
        ));
    }
    target
        .components()
        .any(|c| c == Component::ParentDir)
        .then(|| format!(
            "it is a hard link to '{shown}', which climbs out of the archive with '..'; a hard link must name a file extracted before it, by its path inside the archive"
        ))
}

/// Whether a symbolic link at `link` (relative to the archive root) pointing
/// to `target` stays inside the archive, judged by the text alone: an absolute
/// target never does; a relative one must not climb above the root. Pure.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    let mut depth: usize = link.parent().map_or(0, |p| {
        p.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count()
    });
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    !target.as_os_str().is_empty()
}

/// Bytes of file content written at a time.
const COPY_BUFFER: usize = 128 * 1024;

/// Copies `content` to the end through `buffer`, handing each filled buffer
/// to `write`; gives up between two buffers once `stop` is triggered.
fn copy_through(
    buffer: &mut Vec<u8>,
    content: &mut dyn Read,
    stop: &Shutdown,
    mut write: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<io::Result<u64>, ExtractError> {
    if buffer.len() < COPY_BUFFER {
        buffer.resize(COPY_BUFFER, 0);
    }
    let mut copied = 0;
    loop {
        if stop.is_triggered() {
            return Err(ExtractError::Stopped);
        }
        // The buffer filled as far as the content goes, then written.
        let (len, error) = fill(content, buffer);
        if let Some(error) = error {
            return Ok(Err(error));
        }
        if len == 0 {
            return Ok(Ok(copied));
        }
        if let Err(error) = write(&buffer[..len]) {
            return Ok(Err(error));
        }
        copied += len as u64;
    }
}

/// A failure writing an entry's content: a full disk is the disk's, not the
/// entry's (it is reported as such).
fn content_io(name: &str, source: io::Error) -> ExtractError {
    match is_disk_full(&source) {
        true => ExtractError::Io(source),
        false => entry_io(name, source),
    }
}

fn entry_io(name: &str, source: io::Error) -> ExtractError {
    ExtractError::Entry {
        entry: name.to_string(),
        source,
    }
}

fn extract_tar(reader: impl Read, target: &mut Target) -> Result<(), ExtractError> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let mut path = entry.path()?.into_owned();
        let header = entry.header();
        let entry_type = header.entry_type();
        let kind = match entry_type {
            tar::EntryType::GNUSparse => {
                EntryKind::SparseFile(SparseContent::Expanded { size: entry.size() })
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => match pax_sparse(&mut entry)? {
                Some(layout) => {
                    // 0.1 and 1.0 name the file in a record; the header
                    // holds a made-up `…/GNUSparseFile.<pid>/<name>`.
                    if let Some(real) = &layout.name {
                        path = real.clone();
                    }
                    EntryKind::SparseFile(SparseContent::Pax {
                        layout,
                        carried: entry.size(),
                    })
                }
                None => EntryKind::File,
            },
            tar::EntryType::Directory => EntryKind::Directory,
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let name = names::escaped(&path);
                let target_path = entry
                    .link_name()?
                    .ok_or_else(|| unsafe_entry(&name, "a link without a target"))?
                    .into_owned();
                if entry_type == tar::EntryType::Symlink {
                    EntryKind::Symlink(target_path)
                } else {
                    EntryKind::HardLink(target_path)
                }
            }
            // Metadata records that carry no file of their own.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => continue,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(unsafe_entry(
                    &names::escaped(&path),
                    "device nodes and fifos are not allowed in a revision",
                ))
            }
            other => {
                return Err(unsafe_entry(
                    &names::escaped(&path),
                    format!("unsupported entry type {other:?}"),
                ))
            }
        };
        // Named once its real name is known (a PAX sparse file's record).
        let name = names::escaped(&path);
        let header = entry.header();
        let attributes = Attributes {
            mode: header.mode().map_err(|e| entry_io(&name, e))? & 0o7777,
            owner: target.restore_owners.then(|| tar_owner(header)).flatten(),
            mtime: header.mtime().ok().and_then(|t| i64::try_from(t).ok()),
        };
        target.extract(&name, &path, kind, attributes, &mut entry)?;
    }
    target.finish()
}

/// The PAX sparse layout an entry's extended header gives, if any. A record
/// that is not UTF-8 cannot be one of GNU tar's sparse records and is passed
/// over, as the tar crate passes over records it does not know.
fn pax_sparse<R: Read>(entry: &mut tar::Entry<R>) -> Result<Option<SparseLayout>, ExtractError> {
    let name = names::escaped(entry.path()?.as_ref());
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(None);
    };
    let mut records = Vec::new();
    for extension in extensions {
        let extension = extension.map_err(|source| entry_io(&name, source))?;
        if let (Ok(key), Ok(value)) = (extension.key(), extension.value()) {
            records.push((key, value));
        }
    }
    sparse::pax_layout(records).map_err(|error| unsafe_entry(&name, error.to_string()))
}

/// As GNU tar run by root: the archive's user and group names when they exist
/// on this host, else the numeric ids.
fn tar_owner(header: &tar::Header) -> Option<(Uid, Gid)> {
    let uid = header
        .username()
        .ok()
        .flatten()
        .filter(|n| !n.is_empty())
        .and_then(|n| User::from_name(n).ok().flatten())
        .map(|u| u.uid)
        .or_else(|| {
            header
                .uid()
                .ok()
                .and_then(|id| u32::try_from(id).ok())
                .map(Uid::from_raw)
        })?;
    let gid = header
        .groupname()
        .ok()
        .flatten()
        .filter(|n| !n.is_empty())
        .and_then(|n| Group::from_name(n).ok().flatten())
        .map(|g| g.gid)
        .or_else(|| {
            header
                .gid()
                .ok()
                .and_then(|id| u32::try_from(id).ok())
                .map(Gid::from_raw)
        })?;
    Some((uid, gid))
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

/// Deflate cannot shrink data more than about 1032:1; an entry claiming more
/// has a header that lies, which is how zip bombs get past size checks.
const MAX_ZIP_RATIO: u64 = 1100;

fn extract_zip(file: fs::File, target: &mut Target) -> Result<(), ExtractError> {
    let archive_length = file.metadata()?.len();
    let mut reader = io::BufReader::new(file);
    // The zip crate loads the whole central directory, a few hundred bytes
    // per entry: the declared count is checked before it does.
    let end_record = zip_end_record(&mut reader, archive_length)?;
    if let Some(end) = &end_record {
        target.check_entry_count(end.entries)?;
    }
    let mut archive =
        zip::ZipArchive::new(reader).map_err(|e| zip_directory_error(e, end_record))?;
    // Again on what the crate read: it may have settled on another record.
    target.check_entry_count(archive.len() as u64)?;
    check_zip_bomb(&mut archive, archive_length)?;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index)?;
        let raw_name = entry.name().to_string();
        let name = names::escaped(&raw_name);
        let unix_mode = entry.unix_mode();
        let is_dir = entry.is_dir();
        let mtime = entry.last_modified().and_then(zip_time);
        let declared = entry.size();
        let mut content = DeclaredSize {
            inner: &mut entry,
            declared,
            read: 0,
        };
        let file_type = unix_mode.map(|m| m & S_IFMT).filter(|t| *t != 0);
        let kind = match file_type {
            _ if is_dir => EntryKind::Directory,
            Some(S_IFDIR) => EntryKind::Directory,
            Some(S_IFLNK) => {
                let mut link = String::new();
                content
                    .read_to_string(&mut link)
                    .map_err(|e| entry_io(&name, e))?;
                EntryKind::Symlink(PathBuf::from(link))
            }
            None | Some(S_IFREG) => EntryKind::File,
            Some(_) => {
                return Err(unsafe_entry(
                    &name,
                    "device nodes and fifos are not allowed in a revision",
                ))
            }
        };
        // As unzip without -K: no setuid/setgid/sticky; umask-like defaults when
        // the archive carries no Unix mode.
        let default_mode = if matches!(kind, EntryKind::Directory) {
            0o755
        } else {
            0o644
        };
        let attributes = Attributes {
            mode: unix_mode.map(|m| m & 0o777).unwrap_or(default_mode),
            owner: None,
            mtime,
        };
        target.extract(&name, Path::new(&raw_name), kind, attributes, &mut content)?;
    }
    target.finish()
}

/// A zip entry's content, refused the moment it is longer than the size its
/// central directory declares, and at its end if it is shorter: the
/// extraction budget and the zip-bomb check trust that size.
struct DeclaredSize<R> {
    inner: R,
    declared: u64,
    read: u64,
}

impl<R: Read> Read for DeclaredSize<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte past the declared size is enough to know it lies.
        let room = self.declared.saturating_sub(self.read).saturating_add(1);
        let len = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.read += n as u64;
        let lie = |detail: String| {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{detail}: the zip's sizes lie (a damaged or crafted archive); build it again"
                ),
            ))
        };
        if self.read > self.declared {
            return lie(format!(
                "its content is longer than the {} bytes its central directory entry declares",
                self.declared
            ));
        }
        if n == 0 && self.read < self.declared {
            return lie(format!(
                "its content ends after {} bytes, but its central directory entry declares {}",
                self.read, self.declared
            ));
        }
        Ok(n)
    }
}

/// What the zip crate's refusal of a central directory means for the
/// operator: the crate says "Could not find EOCD" even when the record is
/// there and only the directory it points to is not.
fn zip_directory_error(error: zip::result::ZipError, end: Option<ZipEndRecord>) -> ExtractError {
    let zip::result::ZipError::InvalidArchive(detail) = &error else {
        return ExtractError::Zip(error);
    };
    let message = match end {
        None => "it has no end-of-central-directory record: it is not a zip archive, or it is truncated".to_string(),
        Some(end) => format!(
            "its end-of-central-directory record (at byte {}) declares {} entries in a central directory at byte {}, which is not what the archive holds there ({detail}): the archive is damaged or was altered after it was made; build it again",
            end.at, end.entries, end.directory_offset
        ),
    };
    ExtractError::Io(io::Error::new(io::ErrorKind::InvalidData, message))
}

/// The end-of-central-directory record: signature, 18 bytes of fields, and a
/// comment of up to 64 KiB.
const ZIP_EOCD_SIGNATURE: &[u8; 4] = b"PK\x05\x06";
const ZIP_EOCD_LENGTH: u64 = 22;
const ZIP64_LOCATOR_SIGNATURE: &[u8; 4] = b"PK\x06\x07";
const ZIP64_LOCATOR_LENGTH: u64 = 20;
const ZIP64_EOCD_SIGNATURE: &[u8; 4] = b"PK\x06\x06";

/// A zip's last end-of-central-directory record, as readers find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ZipEndRecord {
    /// Where the record starts.
    at: u64,
    /// The entry count it declares (the zip64 record's, when it points to one).
    entries: u64,
    /// Where it says the central directory starts (the classic record's field).
    directory_offset: u64,
}

/// The entry count a zip declares (see [`zip_end_record`]).
#[cfg(test)]
fn zip_declared_entries<R: Read + Seek>(reader: &mut R, length: u64) -> io::Result<Option<u64>> {
    Ok(zip_end_record(reader, length)?.map(|end| end.entries))
}

/// The last end-of-central-directory record (and the zip64 one it points
/// to) as readers find it, without reading the central directory. `None`
/// when there is no such record.
fn zip_end_record<R: Read + Seek>(reader: &mut R, length: u64) -> io::Result<Option<ZipEndRecord>> {
    let tail_length = length.min(ZIP_EOCD_LENGTH + u64::from(u16::MAX));
    let mut tail = vec![0; tail_length as usize];
    reader.seek(SeekFrom::Start(length - tail_length))?;
    reader.read_exact(&mut tail)?;
    let u16_at = |bytes: &[u8], at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |bytes: &[u8], at: usize| {
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
    };
    let u64_at = |bytes: &[u8], at: usize| {
        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
    };
    // The last signature whose comment ends within the file.
    let eocd = (0..tail.len().saturating_sub(ZIP_EOCD_LENGTH as usize - 1))
        .rev()
        .find(|&at| {
            &tail[at..at + 4] == ZIP_EOCD_SIGNATURE
                && at + ZIP_EOCD_LENGTH as usize + usize::from(u16_at(&tail, at + 20)) <= tail.len()
        });
    let Some(at) = eocd else {
        return Ok(None);
    };
    let (on_disk, total) = (u16_at(&tail, at + 8), u16_at(&tail, at + 10));
    let declared = u64::from(on_disk.max(total));
    let may_be_zip64 = on_disk == u16::MAX
        || total == u16::MAX
        || u32_at(&tail, at + 12) == u32::MAX
        || u32_at(&tail, at + 16) == u32::MAX;
    let eocd_offset = length - tail_length + at as u64;
    let found = |entries| {
        Ok(Some(ZipEndRecord {
            at: eocd_offset,
            entries,
            directory_offset: u64::from(u32_at(&tail, at + 16)),
        }))
    };
    if !may_be_zip64 || eocd_offset < ZIP64_LOCATOR_LENGTH {
        return found(declared);
    }
    let mut locator = [0; ZIP64_LOCATOR_LENGTH as usize];
    reader.seek(SeekFrom::Start(eocd_offset - ZIP64_LOCATOR_LENGTH))?;
    reader.read_exact(&mut locator)?;
    if &locator[..4] != ZIP64_LOCATOR_SIGNATURE {
        return found(declared);
    }
    let record_offset = u64_at(&locator, 8);
    let mut record = [0; 40];
    if record_offset.saturating_add(record.len() as u64) > eocd_offset {
        return found(declared);
    }
    reader.seek(SeekFrom::Start(record_offset))?;
    reader.read_exact(&mut record)?;
    if &record[..4] != ZIP64_EOCD_SIGNATURE {
        return found(declared);
    }
    // The classic record's 0xFFFF was a placeholder for these.
    found(u64_at(&record, 24).max(u64_at(&record, 32)))
}

/// Refuses, before anything is written, the two shapes of a zip bomb: an
/// entry whose declared expansion no honest deflate stream reaches, and
/// entries whose compressed data overlap (their compressed sizes add up to
/// more than the archive holds), which multiply one small kernel many times.
fn check_zip_bomb<R: io::Read + io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    archive_length: u64,
) -> Result<(), ExtractError> {
    let mut compressed_total: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index)?;
        let (size, packed) = (entry.size(), entry.compressed_size());
        if size > 1 << 20 && size / packed.max(1) > MAX_ZIP_RATIO {
            return Err(unsafe_entry(
                &names::escaped(entry.name()),
                format!(
                    "it claims {size} bytes from {packed} compressed ({}:1), more than deflate can reach ({MAX_ZIP_RATIO}:1): a zip bomb",
                    size / packed.max(1)
                ),
            ));
        }
        compressed_total = compressed_total.saturating_add(packed);
    }
    if compressed_total > archive_length {
        return Err(ExtractError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "its entries' compressed data add up to {compressed_total} bytes in a {archive_length}-byte archive: they overlap (a zip bomb)"
            ),
        )));
    }
    Ok(())
}

/// Zip times are local wall-clock times without a zone, as unzip reads them.
fn zip_time(time: zip::DateTime) -> Option<i64> {
    use chrono::{NaiveDate, TimeZone};
    let naive =
        NaiveDate::from_ymd_opt(time.year().into(), time.month().into(), time.day().into())?
            .and_hms_opt(
                time.hour().into(),
                time.minute().into(),
                time.second().into(),
            )?;
    chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
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
