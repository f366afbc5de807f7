//! Replacing a file whole: the new content goes to a temporary file in the
//! same folder, which a rename then puts in place. A reader, or an agent
//! killed mid-write, sees the old file or the new one, never a part of either.
//! The one way the agent replaces its state files: deployment-instructions
//! pointers, `install.json`, ongoing-deployment tracking, `.version`.
//!
//! The temporary file is named `.tmp-<pid>-<random>` after the process that
//! writes it. A process killed mid-write leaves it behind;
//! [`remove_leftovers`] removes those of processes that are gone, and never
//! one that a live process (another agent command, `codedeploy-local`) may
//! still be writing.

use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Every temporary file's name starts with this.
const PREFIX: &str = ".tmp-";

/// A temporary file without a pid in its name was left by an earlier
/// version of the agent; one older than this cannot be in the middle of a
/// write.
const UNNAMED_WRITER_AGE: Duration = Duration::from_secs(3600);

/// Whether the content must be on disk before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync` before the rename: a power cut leaves the old file or the
    /// whole new one (for files that other files are checked against).
    Synced,
    /// The rename alone: an agent killed mid-write leaves the old file; a
    /// power cut may leave an empty one (for pointers written often).
    Unsynced,
}

/// Replaces `path` with what `write` writes, creating its folder, with
/// `mode` when given (else the process's default for new files).
pub fn replace(
    path: &Path,
    mode: Option<u32>,
    durability: Durability,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let prefix = format!("{PREFIX}{}-", std::process::id());
    let mut temporary = tempfile::Builder::new().prefix(&prefix).tempfile_in(dir)?;
    write(temporary.as_file_mut())?;
    if let Some(mode) = mode {
        temporary
            .as_file()
            .set_permissions(Permissions::from_mode(mode))?;
    }
    if durability == Durability::Synced {
        temporary.as_file().sync_all()?;
    }
    temporary.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Who wrote a temporary file, as its name tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// `.tmp-<pid>-…`.
    Process(u32),
    /// `.tmp-…` without a pid: an earlier agent's.
    Unnamed,
}

/// The writer of a temporary file named `name`; `None` when the name is not
/// one of ours (pure).
pub fn writer_of(name: &str) -> Option<Writer> {
    let rest = name.strip_prefix(PREFIX)?;
    let pid = rest
        .split_once('-')
        .and_then(|(pid, random)| (!random.is_empty()).then_some(pid))
        .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|pid| pid.parse().ok());
    Some(pid.map_or(Writer::Unnamed, Writer::Process))
}

/// Removes from `dir` the temporary files whose writer is gone: its process
/// no longer runs, or (a name without a pid) the file is over an hour old.
/// Only plain files are touched, never a link or a folder. Returns the names
/// removed; a folder that cannot be read yields none.
pub fn remove_leftovers(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(writer) = writer_of(&name) else {
            continue;
        };
        // `file_type` does not follow a symbolic link.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let gone = match writer {
            Writer::Process(pid) => !crate::pid::alive(pid),
            Writer::Unnamed => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > UNNAMED_WRITER_AGE),
        };
        if gone && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(name);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_file_is_replaced_whole_with_its_mode_and_nothing_left_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/pointer");
        replace(&path, None, Durability::Unsynced, |f| f.write_all(b"old")).unwrap();
        replace(&path, Some(0o444), Durability::Synced, |f| {
            f.write_all(b"new")
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["pointer"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pointer");
        std::fs::write(&path, "old").unwrap();
        let failed = replace(&path, None, Durability::Unsynced, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("the writer failed"))
        });
        assert_eq!(failed.unwrap_err().to_string(), "the writer failed");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_temporary_name_tells_its_writer() {
        let table: &[(&str, Option<Writer>)] = &[
            (".tmp-4242-a8Xk2q", Some(Writer::Process(4242))),
            (".tmp-1-x", Some(Writer::Process(1))),
            (".tmp-a8Xk2q", Some(Writer::Unnamed)),
            (".tmp-4242-", Some(Writer::Unnamed)),
            (".tmp--abc", Some(Writer::Unnamed)),
            (".tmp-12a-abc", Some(Writer::Unnamed)),
            (".tmp-99999999999999999999-abc", Some(Writer::Unnamed)),
            ("install.json", None),
            ("tmp-4242-abc", None),
            (".tmp", None),
        ];
        for (name, writer) in table {
            assert_eq!(writer_of(name), *writer, "{name}");
        }
    }

    #[test]
    fn a_write_names_its_temporary_file_after_the_writing_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pointer");
        let mut seen = None;
        replace(&path, None, Durability::Unsynced, |_| {
            seen = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .next();
            Ok(())
        })
        .unwrap();
        let seen = seen.expect("the temporary file exists during the write");
        assert_eq!(writer_of(&seen), Some(Writer::Process(std::process::id())));
    }

    #[test]
    fn only_the_leftovers_of_gone_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let gone = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            child.wait().unwrap();
            child.id()
        };
        let ours = std::process::id();
        let write = |name: &str| std::fs::write(dir.path().join(name), "half").unwrap();
        write(&format!(".tmp-{gone}-dead01"));
        write(&format!(".tmp-{ours}-live01"));
        write(".tmp-fresh1");
        write(".tmp-older1");
        write("install.json");
        let old = SystemTime::now() - Duration::from_secs(2 * 3600);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join(".tmp-older1"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::create_dir(dir.path().join(format!(".tmp-{gone}-folder"))).unwrap();
        std::os::unix::fs::symlink("install.json", dir.path().join(format!(".tmp-{gone}-link")))
            .unwrap();

        let mut removed = remove_leftovers(dir.path());
        removed.sort();
        assert_eq!(
            removed,
            [format!(".tmp-{gone}-dead01"), ".tmp-older1".to_string()]
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected = vec![
            format!(".tmp-{gone}-folder"),
            format!(".tmp-{gone}-link"),
            format!(".tmp-{ours}-live01"),
            ".tmp-fresh1".to_string(),
            "install.json".to_string(),
        ];
        expected.sort();
        assert_eq!(left, expected);
        assert!(remove_leftovers(&dir.path().join("missing")).is_empty());
    }
}
