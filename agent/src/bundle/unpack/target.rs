//! The archive directory being filled: the safety core of unpacking. Owns
//! every decision about where an entry lands (no absolute paths, no `..`, no
//! walking through a symbolic link or a non-directory an earlier entry made,
//! hard links only to files extracted before them, symbolic links that stay
//! inside, checked again on the finished tree), the operator's policy and the
//! size and count caps, and the modes, owners and times restored at the end.
//! Must never create, open, link or change anything outside the archive
//! directory, nor follow a link while doing so; readers hand it entries and
//! never touch the disk themselves.

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::Uid;

use super::content::ContentWriter;
use super::{entry_io, unsafe_entry, Attributes, EntryKind, ExtractError};
use crate::config::{BundlePolicy, LinkPolicy, Ownership, SetIdBits};
use crate::folder_chain::FolderChain;
use crate::names::{self, Escaped};
use crate::shutdown::Shutdown;

/// Whether walking to an entry may create the directories on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MissingParents {
    /// Like tar: an entry's directories need not be listed before it.
    Create,
    /// A hard link's target must already exist.
    Refuse,
}

/// The archive directory being filled, and the directories whose mode and time
/// must be set last (so that a read-only directory does not block its children).
pub(super) struct Target {
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
    /// Checked at each entry (and by `writer` at each buffer of content): a
    /// stop request is acted on within a second, not at the end of the archive.
    stop: Shutdown,
    /// Writes the content of the files this target opens.
    writer: ContentWriter,
}

impl Target {
    pub(super) fn new(root: &Path, policy: &BundlePolicy, stop: &Shutdown) -> Target {
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
            writer: ContentWriter::new(stop),
        }
    }

    /// Whether the archive's owners are restored (root, and the policy's
    /// `FromArchive`): a reader looks them up only then.
    pub(super) fn restores_owners(&self) -> bool {
        self.restore_owners
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
    pub(super) fn check_entry_count(&self, entries: u64) -> Result<(), ExtractError> {
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

    /// Writes one entry described by a reader, after every check.
    pub(super) fn extract(
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
                let copied = self.writer.write(
                    name,
                    &mut content.take(budget.saturating_add(1)),
                    &mut file,
                )?;
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
                self.writer.write_sparse(name, sparse, content, &mut file)?;
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
    pub(super) fn finish(&mut self) -> Result<(), ExtractError> {
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
pub(super) fn link_stays_inside(link: &Path, target: &Path) -> bool {
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
