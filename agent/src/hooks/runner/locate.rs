//! Finding a hook script before it runs: its path under the revision, which
//! must stay inside the revision even through links, and its execute bit.
//! Never hands out a path that resolves outside the revision directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

use super::outcome::Outcome;
use crate::appspec::HookScript;

/// The script's path under the revision; missing, or outside the revision
/// (through `..` or a link), is the outcome the user is told about.
pub(super) fn locate(archive_dir: &Path, script: &HookScript) -> Result<PathBuf, Outcome> {
    let Some(relative) = script.revision_path() else {
        return Err(Outcome::LeavesRevision {
            archive_dir: archive_dir.to_path_buf(),
        });
    };
    let path = relative.under(archive_dir);
    let missing = || Outcome::Missing { path: path.clone() };
    let real = std::fs::canonicalize(&path).map_err(|_| missing())?;
    let real_archive = std::fs::canonicalize(archive_dir).map_err(|_| missing())?;
    if !real.starts_with(&real_archive) {
        return Err(Outcome::ResolvesOutside { real, real_archive });
    }
    if !real.is_file() {
        return Err(missing());
    }
    Ok(path)
}

/// As the official agent: a script without execute permission is made
/// executable (a+x) before it runs.
pub(super) fn ensure_executable(path: &Path, script: &HookScript) -> Result<(), Outcome> {
    if access(path, AccessFlags::X_OK).is_ok() {
        return Ok(());
    }
    tracing::warn!(location = %script.location, "script is not executable; making it executable");
    let make_executable = || -> std::io::Result<()> {
        let mode = std::fs::metadata(path)?.permissions().mode();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o111))
    };
    make_executable().map_err(|_| Outcome::NotExecutable)
}
