//! The install plan: from the appspec, a view of the unpacked revision and a view
//! of the host's existing paths, the ordered instructions Install will execute
//! (mkdir, copy, then chmod / setfacl / semanage / chown). Pure: both views are
//! passed in, so the rules of LIFECYCLE.md "Install" (file_exists_behavior,
//! conflicts, permissions matching) are tested without touching the disk.
//!
//! The steps go to a [`StepSink`] as they are found, and the planner keeps
//! nothing per file: a revision of a million files is planned in the memory
//! of its widest folder's names. Conflicts between destinations need no
//! index either, with one exception: a walk yields every destination once,
//! so two steps can only meet when two `files` entries install into the same
//! tree, and only the copies and folders of such entries are remembered.
//! Permissions are matched against the copies and folders read back from the
//! sink, one pass per `permissions` entry.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::InstallError;
use crate::appspec::{
    AclEntry, AppSpec, FileExistsBehavior, FileMapping, Mode, Permission, SeLinuxContext,
};

/// What a revision-relative path is, as far as the planner cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    File,
    Directory,
    /// A symbolic link to anything but a directory (also a dangling one): it is
    /// recreated as a link.
    FileLink,
    /// A symbolic link to a directory: its content is copied. `inside` is the
    /// real directory's revision-relative path, `None` when it lies outside.
    DirectoryLink {
        inside: Option<PathBuf>,
        target: PathBuf,
    },
    /// Reached through a link that leaves the revision.
    Outside {
        target: PathBuf,
    },
    /// Device node, fifo or socket.
    Unsupported,
}

/// The unpacked revision, seen through revision-relative paths ("" is the root).
pub trait RevisionTree {
    /// `None` when nothing is there.
    fn kind(&self, relative: &Path) -> Option<SourceKind>;
    /// The names inside a directory, sorted.
    fn children(&self, relative: &Path) -> Vec<OsString>;
    /// Where a revision-relative path lies on disk (copy sources are absolute).
    fn absolute(&self, relative: &Path) -> PathBuf;
    /// Whether the agent was told to stop: planning gives up at the next entry.
    fn stopped(&self) -> bool {
        false
    }
}

/// What is at a host path before Install starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Missing,
    /// A directory, or a link to one.
    Directory,
    /// A file, a link to a file, or a dangling link.
    Other,
}

/// One step of the install, in the official `-install.json` vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Copy {
        source: PathBuf,
        destination: PathBuf,
    },
    Mkdir {
        directory: PathBuf,
    },
    Chmod {
        file: PathBuf,
        mode: Mode,
    },
    SetAcl {
        file: PathBuf,
        acl: Vec<AclEntry>,
    },
    SetContext {
        file: PathBuf,
        /// Boxed: the rare step would otherwise size every instruction.
        context: Box<SeLinuxContext>,
    },
    Chown {
        file: PathBuf,
        owner: Option<String>,
        group: Option<String>,
    },
}

/// The ordered instructions of one Install, held in memory: what `validate`
/// shows and what the tables test. Install itself plans into a
/// [`Spool`](super::spool::Spool) on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallPlan {
    pub instructions: Vec<Instruction>,
}

/// Where the planner puts its steps, in plan order, and where it reads back
/// the copies and folders it placed while it adds permission steps.
pub trait StepSink {
    fn push(&mut self, step: Instruction) -> Result<(), InstallError>;

    /// The steps `permission` (the `index`th of the appspec's) gives `file`.
    fn push_permission(
        &mut self,
        file: &Path,
        index: usize,
        permission: &Permission,
    ) -> Result<(), InstallError> {
        let _ = index;
        permission_steps(file, permission)
            .into_iter()
            .try_for_each(|step| self.push(step))
    }

    /// Every copy and folder is pushed: what [`StepSink::next_placed`] reads ends here.
    fn end_placing(&mut self) -> Result<(), InstallError> {
        Ok(())
    }

    /// The next Copy or Mkdir step of the plan; `read` counts the steps
    /// read so far and starts at 0 for each pass.
    fn next_placed(&mut self, read: &mut usize) -> Result<Option<Instruction>, InstallError>;
}

impl StepSink for InstallPlan {
    fn push(&mut self, step: Instruction) -> Result<(), InstallError> {
        self.instructions.push(step);
        Ok(())
    }

    fn next_placed(&mut self, read: &mut usize) -> Result<Option<Instruction>, InstallError> {
        while let Some(step) = self.instructions.get(*read) {
            *read += 1;
            if matches!(step, Instruction::Copy { .. } | Instruction::Mkdir { .. }) {
                return Ok(Some(step.clone()));
            }
        }
        Ok(None)
    }
}

/// The steps of one permission on one path: mode, acls, context, then owner
/// and group (chown last: it may clear setuid).
pub fn permission_steps(file: &Path, permission: &Permission) -> Vec<Instruction> {
    let mut steps = Vec::new();
    if let Some(mode) = permission.mode {
        steps.push(Instruction::Chmod {
            file: file.to_path_buf(),
            mode,
        });
    }
    if !permission.acls.is_empty() {
        steps.push(Instruction::SetAcl {
            file: file.to_path_buf(),
            acl: permission.acls.clone(),
        });
    }
    if let Some(context) = &permission.context {
        steps.push(Instruction::SetContext {
            file: file.to_path_buf(),
            context: Box::new(context.clone()),
        });
    }
    if permission.owner.is_some() || permission.group.is_some() {
        steps.push(Instruction::Chown {
            file: file.to_path_buf(),
            owner: permission.owner.clone(),
            group: permission.group.clone(),
        });
    }
    steps
}

/// Plans the copies of `appspec.files` and the permissions that apply to
/// them, in memory.
pub fn plan(
    appspec: &AppSpec,
    revision: &dyn RevisionTree,
    host: &dyn Fn(&Path) -> Existing,
    behavior: FileExistsBehavior,
) -> Result<InstallPlan, InstallError> {
    let mut plan = InstallPlan::default();
    plan_into(appspec, revision, host, behavior, &mut plan)?;
    Ok(plan)
}

/// Plans the copies of `appspec.files` and the permissions that apply to
/// them into `sink`. A conflict (DISALLOW and a file on the host, two sources
/// for one destination...) fails here, before anything is installed.
pub fn plan_into(
    appspec: &AppSpec,
    revision: &dyn RevisionTree,
    host: &dyn Fn(&Path) -> Existing,
    behavior: FileExistsBehavior,
    sink: &mut dyn StepSink,
) -> Result<(), InstallError> {
    let roots: Vec<Option<PathBuf>> = appspec
        .files
        .iter()
        .map(|mapping| destination_root(mapping, revision))
        .collect();
    let mut planner = Planner {
        revision,
        host,
        behavior,
        sink,
        permissions: &appspec.permissions,
        remember: false,
        copies: HashMap::new(),
        directories: HashSet::new(),
        applied: Vec::new(),
    };
    for (at, mapping) in appspec.files.iter().enumerate() {
        planner.remember = shares_a_tree(&roots, at);
        let relative = mapping.source.relative();
        match revision.kind(relative) {
            Some(SourceKind::Directory) => {
                planner.make_missing_ancestors(&mapping.destination)?;
                planner.copy_directory(relative, &mapping.destination)?;
            }
            Some(SourceKind::DirectoryLink {
                inside: Some(real), ..
            }) => {
                planner.make_missing_ancestors(&mapping.destination)?;
                planner.copy_directory(&real, &mapping.destination)?;
            }
            Some(kind) => {
                let name = relative
                    .file_name()
                    .ok_or_else(|| InstallError::UnsupportedSource {
                        path: revision.absolute(relative),
                    })?;
                let target = mapping.destination.join(name);
                planner.make_missing_ancestors(&target)?;
                if let Some(folder) = planner.copy_entry(relative, kind, &target, &[])? {
                    planner.copy_directory(&folder, &target)?;
                }
            }
            None => {
                return Err(InstallError::SourceMissing {
                    source_name: mapping.source.written().to_string(),
                    path: revision.absolute(relative),
                })
            }
        }
    }
    planner.sink.end_placing()?;
    for (index, permission) in appspec.permissions.iter().enumerate() {
        planner.apply_permission(index, permission)?;
    }
    Ok(())
}

/// The host path below which a `files` entry installs everything: its
/// destination for a folder, the file's path for anything else. `None` when
/// the source is missing (planning it fails anyway).
fn destination_root(mapping: &FileMapping, revision: &dyn RevisionTree) -> Option<PathBuf> {
    let relative = mapping.source.relative();
    match revision.kind(relative)? {
        SourceKind::Directory
        | SourceKind::DirectoryLink {
            inside: Some(_), ..
        } => Some(mapping.destination.clone()),
        _ => Some(mapping.destination.join(relative.file_name()?)),
    }
}

/// Whether the `at`th entry installs into a tree another entry installs
/// into too (one root at or below the other). Pure.
fn shares_a_tree(roots: &[Option<PathBuf>], at: usize) -> bool {
    let Some(mine) = &roots[at] else {
        return false;
    };
    roots.iter().enumerate().any(|(other, root)| {
        other != at
            && root
                .as_ref()
                .is_some_and(|root| root.starts_with(mine) || mine.starts_with(root))
    })
}

struct Planner<'a> {
    revision: &'a dyn RevisionTree,
    host: &'a dyn Fn(&Path) -> Existing,
    behavior: FileExistsBehavior,
    sink: &'a mut dyn StepSink,
    permissions: &'a [Permission],
    /// Whether the entry being planned shares a tree with another: only
    /// then are its copies and folders remembered.
    remember: bool,
    /// Remembered copies: destination to source.
    copies: HashMap<PathBuf, PathBuf>,
    /// Remembered folders this plan makes, and every missing ancestor of a
    /// destination (a few per entry).
    directories: HashSet<PathBuf>,
    /// The permissions planned so far, to catch a path two of them reach.
    applied: Vec<Applied>,
}

/// What a planned `permissions` entry gave its steps to.
enum Applied {
    /// The file it names, and nothing else.
    File(PathBuf),
    /// The copies and folders of this plan below its object that it
    /// matches (the entry at this index of the appspec).
    Below(usize),
}

/// A folder of the revision being copied: where it goes, and its children
/// not planned yet.
struct OpenFolder {
    source: PathBuf,
    destination: PathBuf,
    children: std::vec::IntoIter<OsString>,
}

impl Planner<'_> {
    /// Every missing parent of `path`, outermost first. Parents are judged by
    /// the host as it is now; ones this plan already makes are not repeated.
    fn make_missing_ancestors(&mut self, path: &Path) -> Result<(), InstallError> {
        let mut missing = Vec::new();
        let mut parent = path.parent();
        while let Some(dir) = parent {
            if dir == Path::new("/") || (self.host)(dir) != Existing::Missing {
                break;
            }
            missing.push(dir.to_path_buf());
            parent = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            self.mkdir(dir, true)?;
        }
        Ok(())
    }

    /// Copies the tree below `source` to `destination`, depth first, folder
    /// by folder in name order. A loop, not recursion: a revision of
    /// thousands of nested folders must not exhaust the thread's stack.
    fn copy_directory(&mut self, source: &Path, destination: &Path) -> Result<(), InstallError> {
        let mut open: Vec<OpenFolder> = Vec::new();
        self.open_folder(source.to_path_buf(), destination.to_path_buf(), &mut open)?;
        while let Some(folder) = open.last_mut() {
            if self.revision.stopped() {
                return Err(InstallError::Stopped);
            }
            let Some(name) = folder.children.next() else {
                open.pop();
                continue;
            };
            let child = folder.source.join(&name);
            let target = folder.destination.join(&name);
            let kind = self
                .revision
                .kind(&child)
                .ok_or_else(|| InstallError::SourceMissing {
                    source_name: child.display().to_string(),
                    path: self.revision.absolute(&child),
                })?;
            if let Some(real) = self.copy_entry(&child, kind, &target, &open)? {
                self.open_folder(real, target, &mut open)?;
            }
        }
        Ok(())
    }

    /// Makes `destination` (unless the host has it) and puts the folder on
    /// the walk.
    fn open_folder(
        &mut self,
        source: PathBuf,
        destination: PathBuf,
        open: &mut Vec<OpenFolder>,
    ) -> Result<(), InstallError> {
        match (self.host)(&destination) {
            Existing::Directory => {}
            Existing::Missing => self.mkdir(destination.clone(), self.remember)?,
            Existing::Other => {
                return Err(InstallError::DirectoryOverExistingFile {
                    directory: destination,
                })
            }
        }
        let children = self.revision.children(&source).into_iter();
        open.push(OpenFolder {
            source,
            destination,
            children,
        });
        Ok(())
    }

    /// Plans one entry; a folder to copy (a directory, or the real directory
    /// of a link to one) is returned for the walk to open. `open` holds the
    /// folders being copied, to catch links that lead back into them.
    fn copy_entry(
        &mut self,
        source: &Path,
        kind: SourceKind,
        destination: &Path,
        open: &[OpenFolder],
    ) -> Result<Option<PathBuf>, InstallError> {
        match kind {
            SourceKind::File | SourceKind::FileLink => {
                self.copy_file(source, destination).map(|()| None)
            }
            SourceKind::Directory => Ok(Some(source.to_path_buf())),
            SourceKind::DirectoryLink {
                inside: Some(real), ..
            } => {
                if open.iter().any(|folder| folder.source.starts_with(&real)) {
                    return Err(InstallError::LinkLoop {
                        link: self.revision.absolute(source),
                    });
                }
                Ok(Some(real))
            }
            SourceKind::DirectoryLink {
                inside: None,
                target,
            }
            | SourceKind::Outside { target } => Err(InstallError::LinkLeavesRevision {
                link: self.revision.absolute(source),
                target,
            }),
            SourceKind::Unsupported => Err(InstallError::UnsupportedSource {
                path: self.revision.absolute(source),
            }),
        }
    }

    fn copy_file(&mut self, source: &Path, destination: &Path) -> Result<(), InstallError> {
        match ((self.host)(destination), self.behavior) {
            (Existing::Missing, _) => {}
            (_, FileExistsBehavior::Disallow) => {
                return Err(InstallError::FileExists {
                    path: destination.to_path_buf(),
                })
            }
            (_, FileExistsBehavior::Retain) => return Ok(()),
            (Existing::Directory, FileExistsBehavior::Overwrite) => {
                return Err(InstallError::FileOverExistingDirectory {
                    path: destination.to_path_buf(),
                })
            }
            (Existing::Other, FileExistsBehavior::Overwrite) => {}
        }
        let source = self.revision.absolute(source);
        if let Some(first) = self.copies.get(destination) {
            return Err(InstallError::TwoSources {
                destination: destination.to_path_buf(),
                first: first.clone(),
                second: source,
            });
        }
        if self.directories.contains(destination) {
            return Err(InstallError::FileOverPlannedDirectory {
                source_path: source,
                destination: destination.to_path_buf(),
            });
        }
        if self.remember {
            self.copies
                .insert(destination.to_path_buf(), source.clone());
        }
        self.sink.push(Instruction::Copy {
            source,
            destination: destination.to_path_buf(),
        })
    }

    /// Plans a folder unless this plan makes it already; `remember` keeps it
    /// for the checks of later entries.
    fn mkdir(&mut self, directory: PathBuf, remember: bool) -> Result<(), InstallError> {
        if let Some(source) = self.copies.get(&directory) {
            return Err(InstallError::DirectoryOverPlannedFile {
                source_path: source.clone(),
                directory,
            });
        }
        if self.directories.contains(&directory) {
            return Ok(());
        }
        if remember {
            self.directories.insert(directory.clone());
        }
        self.sink.push(Instruction::Mkdir { directory })
    }

    /// A permission reaches the object itself when it is a file this plan
    /// copies, or what this plan installs below it when it is a directory
    /// (made now or already there). Pre-existing content is never touched.
    fn apply_permission(
        &mut self,
        index: usize,
        permission: &Permission,
    ) -> Result<(), InstallError> {
        let object = &permission.object;
        let (mut copied, mut made) = (false, false);
        let mut read = 0;
        while let Some(step) = self.sink.next_placed(&mut read)? {
            match step {
                Instruction::Copy { destination, .. } if destination == *object => copied = true,
                Instruction::Mkdir { directory } if directory == *object => made = true,
                _ => {}
            }
        }
        if copied {
            if !permission.kinds.files {
                return Ok(());
            }
            if !permission.pattern.is_everything() {
                return Err(InstallError::PatternOnFile {
                    object: object.clone(),
                    pattern: permission.pattern.to_string(),
                });
            }
            if !permission.except.is_empty() {
                return Err(InstallError::ExceptOnFile {
                    object: object.clone(),
                });
            }
            if permission.has_default_acl() {
                return Err(InstallError::DefaultAclOnFile {
                    file: object.clone(),
                });
            }
            self.set_permissions(object, index, permission, true)?;
            self.applied.push(Applied::File(object.clone()));
            return Ok(());
        }
        if !made && (self.host)(object) != Existing::Directory {
            return Ok(());
        }
        // Files in the order they are copied, then directories in the order
        // they are made: one pass each.
        for files in [true, false] {
            if !(if files {
                permission.kinds.files
            } else {
                permission.kinds.directories
            }) {
                continue;
            }
            let mut read = 0;
            while let Some(step) = self.sink.next_placed(&mut read)? {
                let path = match step {
                    Instruction::Copy { destination, .. } if files => destination,
                    Instruction::Mkdir { directory } if !files => directory,
                    _ => continue,
                };
                if !permission.reaches_below(&path) {
                    continue;
                }
                if files && permission.has_default_acl() {
                    return Err(InstallError::DefaultAclOnFile { file: path });
                }
                self.set_permissions(&path, index, permission, files)?;
            }
        }
        self.applied.push(Applied::Below(index));
        Ok(())
    }

    /// The steps of `permission` on `file`, unless an earlier permission
    /// gave it steps already.
    fn set_permissions(
        &mut self,
        file: &Path,
        index: usize,
        permission: &Permission,
        is_file: bool,
    ) -> Result<(), InstallError> {
        if self
            .applied
            .iter()
            .any(|applied| self.gave_steps(applied, file, is_file))
        {
            return Err(InstallError::PermissionsTwice {
                path: file.to_path_buf(),
            });
        }
        self.sink.push_permission(file, index, permission)
    }

    /// Whether an earlier permission gave `path` its steps.
    fn gave_steps(&self, applied: &Applied, path: &Path, is_file: bool) -> bool {
        match applied {
            Applied::File(file) => file == path,
            Applied::Below(index) => {
                let earlier = &self.permissions[*index];
                let kind = if is_file {
                    earlier.kinds.files
                } else {
                    earlier.kinds.directories
                };
                kind && earlier.reaches_below(path)
            }
        }
    }
}

#[cfg(test)]
mod tests;
