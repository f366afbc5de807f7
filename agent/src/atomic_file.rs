//! Replacing a file whole: the new content goes to a temporary file in the
//! same folder (its name starts with a dot), which a rename then puts in
//! place. A reader, or an agent killed mid-write, sees the old file or the new
//! one, never a part of either. The one way the agent replaces its state
//! files: deployment-instructions pointers, `install.json`, ongoing-deployment
//! tracking, `.version`.

use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
    let mut temporary = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
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
}
