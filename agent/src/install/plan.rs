//! The install plan: from the appspec, a view of the unpacked revision and a view
//! of the host's existing paths, the ordered instructions Install will execute
//! (mkdir, copy, then chmod / setfacl / semanage / chown). Pure: both views are
//! passed in, so the rules of LIFECYCLE.md "Install" (file_exists_behavior,
//! conflicts, permissions matching) are tested without touching the disk.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use super::error::InstallError;
use crate::appspec::{AclEntry, AppSpec, FileExistsBehavior, Mode, Permission, SeLinuxContext};

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

/// The ordered instructions of one Install.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallPlan {
    pub instructions: Vec<Instruction>,
}

/// Plans the copies of `appspec.files` and the permissions that apply to them.
pub fn plan(
    appspec: &AppSpec,
    revision: &dyn RevisionTree,
    host: &dyn Fn(&Path) -> Existing,
    behavior: FileExistsBehavior,
) -> Result<InstallPlan, InstallError> {
    let mut planner = Planner {
        revision,
        host,
        behavior,
        plan: InstallPlan::default(),
        copies: CopyIndex::default(),
        directories: HashSet::new(),
        permission_targets: HashSet::new(),
    };
    for mapping in &appspec.files {
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
    for permission in &appspec.permissions {
        planner.apply_permission(permission)?;
    }
    Ok(planner.plan)
}

struct Planner<'a> {
    revision: &'a dyn RevisionTree,
    host: &'a dyn Fn(&Path) -> Existing,
    behavior: FileExistsBehavior,
    plan: InstallPlan,
    copies: CopyIndex,
    directories: HashSet<PathBuf>,
    permission_targets: HashSet<PathBuf>,
}

/// Where each planned copy's destination is in `plan.instructions`, by a
/// hash of the path: the plan's own instructions hold the paths, so a
/// revision of many files costs a few bytes per file here, not a second copy
/// of every destination. Two destinations with the same 64-bit hash (never
/// seen in practice, but possible) are told apart by the paths themselves.
#[derive(Default)]
struct CopyIndex<S = RandomState> {
    hasher: S,
    by_hash: HashMap<u64, usize>,
    colliding: HashMap<PathBuf, usize>,
}

impl<S: BuildHasher> CopyIndex<S> {
    fn get(&self, instructions: &[Instruction], destination: &Path) -> Option<usize> {
        let hash = self.hasher.hash_one(destination);
        match self.by_hash.get(&hash) {
            Some(&index) if copy_destination(instructions, index) == Some(destination) => {
                Some(index)
            }
            Some(_) => self.colliding.get(destination).copied(),
            None => None,
        }
    }

    /// Records the copy at `index`; `destination` must not be recorded yet.
    fn insert(&mut self, instructions: &[Instruction], destination: &Path, index: usize) {
        match self.by_hash.entry(self.hasher.hash_one(destination)) {
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
            Entry::Occupied(slot) => {
                debug_assert_ne!(
                    copy_destination(instructions, *slot.get()),
                    Some(destination)
                );
                self.colliding.insert(destination.to_path_buf(), index);
            }
        }
    }
}

/// A folder of the revision being copied: where it goes, and its children
/// not planned yet.
struct OpenFolder {
    source: PathBuf,
    destination: PathBuf,
    children: std::vec::IntoIter<OsString>,
}

fn copy_destination(instructions: &[Instruction], index: usize) -> Option<&Path> {
    match instructions.get(index) {
        Some(Instruction::Copy { destination, .. }) => Some(destination),
        _ => None,
    }
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
            self.mkdir(dir)?;
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
            Existing::Missing => self.mkdir(destination.clone())?,
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
        if let Some(first) = self.copy_source(destination) {
            return Err(InstallError::TwoSources {
                destination: destination.to_path_buf(),
                first,
                second: source,
            });
        }
        if self.directories.contains(destination) {
            return Err(InstallError::FileOverPlannedDirectory {
                source_path: source,
                destination: destination.to_path_buf(),
            });
        }
        self.copies.insert(
            &self.plan.instructions,
            destination,
            self.plan.instructions.len(),
        );
        self.plan.instructions.push(Instruction::Copy {
            source,
            destination: destination.to_path_buf(),
        });
        Ok(())
    }

    /// The source this plan copies to `destination`, if any.
    fn copy_source(&self, destination: &Path) -> Option<PathBuf> {
        let index = self.copies.get(&self.plan.instructions, destination)?;
        match self.plan.instructions.get(index) {
            Some(Instruction::Copy { source, .. }) => Some(source.clone()),
            _ => None,
        }
    }

    fn mkdir(&mut self, directory: PathBuf) -> Result<(), InstallError> {
        if let Some(source) = self.copy_source(&directory) {
            return Err(InstallError::DirectoryOverPlannedFile {
                source_path: source,
                directory,
            });
        }
        if self.directories.insert(directory.clone()) {
            self.plan
                .instructions
                .push(Instruction::Mkdir { directory });
        }
        Ok(())
    }

    /// A permission reaches the object itself when it is a file this plan
    /// copies, or what this plan installs below it when it is a directory
    /// (made now or already there). Pre-existing content is never touched.
    fn apply_permission(&mut self, permission: &Permission) -> Result<(), InstallError> {
        let object = &permission.object;
        if self.copies.get(&self.plan.instructions, object).is_some() {
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
            return self.set_permissions(object.clone(), permission);
        }
        if !self.directories.contains(object) && (self.host)(object) != Existing::Directory {
            return Ok(());
        }
        // Files in the order they are copied, then directories in the order
        // they are made.
        let mut matches = Vec::new();
        if permission.kinds.files {
            for file in self.plan.instructions.iter().filter_map(|step| match step {
                Instruction::Copy { destination, .. } => Some(destination),
                _ => None,
            }) {
                if permission.reaches_below(file) {
                    if permission.has_default_acl() {
                        return Err(InstallError::DefaultAclOnFile { file: file.clone() });
                    }
                    matches.push(file.clone());
                }
            }
        }
        if permission.kinds.directories {
            matches.extend(
                self.plan
                    .instructions
                    .iter()
                    .filter_map(|step| match step {
                        Instruction::Mkdir { directory } => Some(directory),
                        _ => None,
                    })
                    .filter(|d| permission.reaches_below(d))
                    .cloned(),
            );
        }
        for path in matches {
            self.set_permissions(path, permission)?;
        }
        Ok(())
    }

    /// Mode, acls, context, then owner/group (chown last: it may clear setuid).
    fn set_permissions(
        &mut self,
        file: PathBuf,
        permission: &Permission,
    ) -> Result<(), InstallError> {
        if !self.permission_targets.insert(file.clone()) {
            return Err(InstallError::PermissionsTwice { path: file });
        }
        let steps = &mut self.plan.instructions;
        if let Some(mode) = permission.mode {
            steps.push(Instruction::Chmod {
                file: file.clone(),
                mode,
            });
        }
        if !permission.acls.is_empty() {
            steps.push(Instruction::SetAcl {
                file: file.clone(),
                acl: permission.acls.clone(),
            });
        }
        if let Some(context) = &permission.context {
            steps.push(Instruction::SetContext {
                file: file.clone(),
                context: Box::new(context.clone()),
            });
        }
        if permission.owner.is_some() || permission.group.is_some() {
            steps.push(Instruction::Chown {
                file,
                owner: permission.owner.clone(),
                group: permission.group.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
