//! Local revisions, for `codedeploy-local` only: a local archive becomes the
//! deployment's `bundle.tar` (hard-linked when it can be, else copied), and a
//! local directory is copied into `deployment-archive/` as it is (no unpacking,
//! no single-top-level-folder rule). The copy keeps what unpacking a tar of the
//! same tree keeps: permission bits, modification times, symbolic links as
//! links, and owners when running as root. It never follows a link, never
//! copies devices or fifos, and refuses a deployment root that lies inside the
//! directory being copied (the copy would contain itself). Names holding a
//! control character (and links whose target does) are refused as unpacking
//! refuses them, named escaped ([`crate::names`]). Blocking: run it off the
//! runtime.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::Uid;

use super::error::BundleError;
use super::unpack::remove_tree;
use crate::names;

/// Makes `bundle_file` hold the content of the local archive `source`.
pub fn link_local_file(source: &Path, bundle_file: &Path) -> Result<(), BundleError> {
    let failed = |e: io::Error| BundleError::Local {
        path: source.to_path_buf(),
        detail: format!("cannot use it as {}: {e}", bundle_file.display()),
    };
    match fs::remove_file(bundle_file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(failed(e)),
        _ => {}
    }
    // A hard link costs nothing and cannot dangle; across file systems (or when
    // the kernel refuses to link another user's file) a copy does the same job.
    if fs::hard_link(source, bundle_file).is_ok() {
        return Ok(());
    }
    fs::copy(source, bundle_file).map(|_| ()).map_err(failed)
}

/// Replaces `archive_dir` with a copy of the directory `source`.
pub fn copy_local_directory(source: &Path, archive_dir: &Path) -> Result<(), BundleError> {
    let failed = |detail: String| BundleError::Local {
        path: source.to_path_buf(),
        detail,
    };
    let real_source = fs::canonicalize(source)
        .map_err(|e| failed(format!("cannot open the bundle directory: {e}")))?;
    let parent = archive_dir.parent().unwrap_or(archive_dir);
    let real_parent = fs::canonicalize(parent)
        .map_err(|e| failed(format!("cannot open {}: {e}", parent.display())))?;
    if real_parent.starts_with(&real_source) {
        return Err(failed(format!(
            "the deployment folder {} lies inside the bundle directory, which would then copy itself; \
             choose a bundle directory outside the deployment root",
            parent.display()
        )));
    }
    let dir_error = |source| BundleError::ArchiveDir {
        path: archive_dir.to_path_buf(),
        source,
    };
    remove_tree(archive_dir).map_err(dir_error)?;
    fs::create_dir_all(archive_dir).map_err(dir_error)?;
    let mut copy = TreeCopy {
        from_root: real_source,
        restore_owners: Uid::effective().is_root(),
        pending_dirs: Vec::new(),
    };
    copy.directory(&copy.from_root.clone(), archive_dir)
        .and_then(|()| copy.finish())
        .map_err(|e| failed(e.to_string()))
}

/// Why one entry could not be copied; names it relative to the bundle.
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error("'{entry}': {source}")]
    Io {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("'{entry}' is a {kind}; a revision holds only files, directories and symbolic links")]
    Special { entry: String, kind: &'static str },
    #[error("'{entry}': {what} holds {reason}; rename it")]
    Name {
        entry: String,
        what: &'static str,
        reason: names::ControlCharacter,
    },
}

/// Refuses the entry at `path` (named `name` in messages) if its own name, or
/// the target of the link `link_target`, holds a control character.
fn check_entry_names(name: &str, path: &Path, link_target: Option<&Path>) -> Result<(), CopyError> {
    let refused = |what| {
        move |reason| CopyError::Name {
            entry: name.to_string(),
            what,
            reason,
        }
    };
    names::check(path.file_name().unwrap_or_default()).map_err(refused("its name"))?;
    match link_target {
        Some(target) => names::check(target).map_err(refused("its link target")),
        None => Ok(()),
    }
}

/// The first entry of the directory bundle `source` whose name (or link
/// target) the copy would refuse, as that refusal; links are not followed.
/// For `validate`, which must refuse what `codedeploy-local` refuses.
pub fn refused_name(source: &Path) -> io::Result<Option<String>> {
    fn walk(root: &Path, dir: &Path) -> io::Result<Option<String>> {
        let mut children: Vec<fs::DirEntry> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let path = child.path();
            let name = names::escaped(path.strip_prefix(root).unwrap_or(&path));
            let kind = child.file_type()?;
            let target = match kind.is_symlink() {
                true => Some(fs::read_link(&path)?),
                false => None,
            };
            if let Err(refusal) = check_entry_names(&name, &path, target.as_deref()) {
                return Ok(Some(refusal.to_string()));
            }
            if kind.is_dir() {
                if let Some(refusal) = walk(root, &path)? {
                    return Ok(Some(refusal));
                }
            }
        }
        Ok(None)
    }
    walk(source, source)
}

/// Directory attributes are applied last, deepest first, so that a read-only
/// directory of the revision does not stop its own content from being copied.
struct TreeCopy {
    from_root: PathBuf,
    restore_owners: bool,
    pending_dirs: Vec<(PathBuf, fs::Metadata, String)>,
}

impl TreeCopy {
    fn entry_name(&self, path: &Path) -> String {
        names::escaped(path.strip_prefix(&self.from_root).unwrap_or(path))
    }

    fn directory(&mut self, from: &Path, to: &Path) -> Result<(), CopyError> {
        let io_error = |entry: String| move |source| CopyError::Io { entry, source };
        let mut children: Vec<fs::DirEntry> = fs::read_dir(from)
            .and_then(|entries| entries.collect())
            .map_err(io_error(self.entry_name(from)))?;
        // Sorted, so that a failure always names the same entry.
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let from_path = child.path();
            let to_path = to.join(child.file_name());
            let name = self.entry_name(&from_path);
            let meta = fs::symlink_metadata(&from_path).map_err(io_error(name.clone()))?;
            let kind = meta.file_type();
            if kind.is_symlink() {
                let target = fs::read_link(&from_path).map_err(io_error(name.clone()))?;
                check_entry_names(&name, &from_path, Some(&target))?;
                symlink(&target, &to_path).map_err(io_error(name.clone()))?;
                self.restore(&name, &to_path, &meta, true)?;
                continue;
            }
            check_entry_names(&name, &from_path, None)?;
            if kind.is_dir() {
                fs::create_dir(&to_path).map_err(io_error(name.clone()))?;
                self.directory(&from_path, &to_path)?;
                self.pending_dirs.push((to_path, meta, name));
            } else if kind.is_file() {
                fs::copy(&from_path, &to_path).map_err(io_error(name.clone()))?;
                self.restore(&name, &to_path, &meta, false)?;
            } else {
                return Err(CopyError::Special {
                    entry: name,
                    kind: special_kind(&meta),
                });
            }
        }
        Ok(())
    }

    /// Owner first (chown clears setuid bits), then mode, then time.
    fn restore(
        &self,
        name: &str,
        path: &Path,
        meta: &fs::Metadata,
        is_symlink: bool,
    ) -> Result<(), CopyError> {
        let io_error = |source| CopyError::Io {
            entry: name.to_string(),
            source,
        };
        if self.restore_owners {
            std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
                .map_err(io_error)?;
        }
        if !is_symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(io_error)?;
        }
        let time = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
        utimensat(None, path, &time, &time, UtimensatFlags::NoFollowSymlink)
            .map_err(|errno| io_error(io::Error::from(errno)))
    }

    fn finish(&mut self) -> Result<(), CopyError> {
        let mut dirs = std::mem::take(&mut self.pending_dirs);
        dirs.sort_by_key(|(path, _, _)| std::cmp::Reverse(path.components().count()));
        for (path, meta, name) in dirs {
            self.restore(&name, &path, &meta, false)?;
        }
        Ok(())
    }
}

fn special_kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_fifo() {
        "fifo"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device node"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_directory_is_copied_with_modes_times_and_links() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("scripts")).unwrap();
        fs::create_dir_all(src.join("locked")).unwrap();
        fs::write(src.join("appspec.yml"), "version: 0.0\n").unwrap();
        fs::write(src.join("scripts/start.sh"), "#!/bin/sh\n").unwrap();
        fs::write(src.join("locked/inside.txt"), "x").unwrap();
        fs::set_permissions(
            src.join("scripts/start.sh"),
            fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        symlink("appspec.yml", src.join("link")).unwrap();
        fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o555)).unwrap();
        let archive = tmp.path().join("d-1/deployment-archive");
        fs::create_dir_all(&archive).unwrap();
        fs::write(archive.join("stale.txt"), "old").unwrap();

        copy_local_directory(&src, &archive).unwrap();

        assert!(!archive.join("stale.txt").exists());
        assert_eq!(
            fs::read_to_string(archive.join("appspec.yml")).unwrap(),
            "version: 0.0\n"
        );
        assert_eq!(mode(&archive.join("scripts/start.sh")), 0o750);
        assert_eq!(mode(&archive.join("locked")), 0o555);
        assert_eq!(
            fs::read_to_string(archive.join("locked/inside.txt")).unwrap(),
            "x"
        );
        assert_eq!(
            fs::read_link(archive.join("link")).unwrap(),
            Path::new("appspec.yml")
        );
        assert_eq!(
            fs::metadata(archive.join("scripts/start.sh"))
                .unwrap()
                .mtime(),
            fs::metadata(src.join("scripts/start.sh")).unwrap().mtime()
        );
        // Copying again over a read-only directory of the previous copy works.
        copy_local_directory(&src, &archive).unwrap();
    }

    #[test]
    fn a_deployment_root_inside_the_bundle_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("root/g/d-1/deployment-archive");
        fs::create_dir_all(&archive).unwrap();
        let error = copy_local_directory(tmp.path(), &archive).unwrap_err();
        assert!(
            error.to_string().contains("inside the bundle directory"),
            "{error}"
        );
    }

    #[test]
    fn special_files_are_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(&src).unwrap();
        nix::unistd::mkfifo(&src.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let archive = tmp.path().join("d/deployment-archive");
        fs::create_dir_all(archive.parent().unwrap()).unwrap();
        let error = copy_local_directory(&src, &archive)
            .unwrap_err()
            .to_string();
        assert!(error.contains("'pipe' is a fifo"), "{error}");
    }

    /// As unpacking refuses them: a newline would split the path in the
    /// cleanup file, ESC would reach the terminal; nothing is copied.
    #[test]
    fn names_with_control_characters_are_refused_escaped() {
        let tmp = tempfile::tempdir().unwrap();
        let cases = [
            (
                "x\n",
                None,
                "'app/x\\n': its name holds the control character \\n at byte 1",
            ),
            (
                "\u{1b}[31mred",
                None,
                "'app/\\u{1b}[31mred': its name holds the control character \\u{1b} at byte 0",
            ),
            (
                "link",
                Some("a\nb"),
                "'app/link': its link target holds the control character \\n at byte 1",
            ),
        ];
        for (name, link, expected) in cases {
            let src = tmp.path().join("src");
            fs::create_dir_all(src.join("app")).unwrap();
            fs::write(src.join("appspec.yml"), "version: 0.0\n").unwrap();
            match link {
                Some(target) => symlink(target, src.join("app").join(name)).unwrap(),
                None => fs::write(src.join("app").join(name), "x").unwrap(),
            }
            let archive = tmp.path().join("d/deployment-archive");
            fs::create_dir_all(archive.parent().unwrap()).unwrap();
            let error = copy_local_directory(&src, &archive)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "expected «{expected}» in {error}");
            assert!(!error.chars().any(char::is_control), "{error:?}");
            assert_eq!(
                refused_name(&src)
                    .unwrap()
                    .as_deref()
                    .map(|r| r.contains(expected)),
                Some(true),
                "{expected}"
            );
            fs::remove_dir_all(&src).unwrap();
        }
        let clean = tmp.path().join("clean");
        fs::create_dir_all(clean.join("a b")).unwrap();
        fs::write(clean.join("a b/caf\u{e9}.txt"), "x").unwrap();
        assert_eq!(refused_name(&clean).unwrap(), None);
    }

    #[test]
    fn a_local_file_becomes_the_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("app.tgz");
        fs::write(&source, b"bytes").unwrap();
        let bundle = tmp.path().join("bundle.tar");
        fs::write(&bundle, b"previous").unwrap();
        link_local_file(&source, &bundle).unwrap();
        assert_eq!(fs::read(&bundle).unwrap(), b"bytes");
        let missing = link_local_file(&tmp.path().join("nope.tgz"), &bundle).unwrap_err();
        assert!(missing.to_string().contains("nope.tgz"), "{missing}");
    }
}
