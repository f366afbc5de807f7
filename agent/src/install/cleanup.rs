//! `<group>-cleanup`: every path the last Install created, one per line, plus
//! `semanage\0<path>` lines for SELinux contexts it registered. Written as Install
//! goes (so a crash still leaves an accurate list), replayed in reverse by the
//! next Install to remove the previous revision's files. Removal never recurses:
//! files and links are unlinked, directories removed only when empty.
//!
//! A copy lands through a partial file beside its destination (see
//! [`partial_path`]) whose name follows from the destination's, so that the
//! replay also removes the partial file of a copy a crash cut short.

use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::error::InstallError;

/// One line of a cleanup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupEntry {
    /// A file, link or directory the Install created.
    Path(PathBuf),
    /// A path whose SELinux file context the Install registered.
    Context(PathBuf),
}

const CONTEXT_PREFIX: &[u8] = b"semanage\0";

/// Parses a cleanup file, in file order. A last line without its newline was
/// being written when the agent stopped and is ignored (as the official agent
/// does): the path it names may not exist, or may not be ours.
pub fn parse_cleanup(contents: &[u8]) -> Vec<CleanupEntry> {
    let complete = match contents.iter().rposition(|b| *b == b'\n') {
        Some(last_newline) => &contents[..last_newline],
        None => return Vec::new(),
    };
    complete
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| match line.strip_prefix(CONTEXT_PREFIX) {
            Some(path) => {
                CleanupEntry::Context(PathBuf::from(std::ffi::OsString::from_vec(path.to_vec())))
            }
            None => CleanupEntry::Path(PathBuf::from(std::ffi::OsString::from_vec(line.to_vec()))),
        })
        .collect()
}

/// Replays the previous Install's cleanup file, newest entry first, then
/// deletes it. No cleanup file (first Install of the group): nothing to do.
pub fn run_cleanup(cleanup_file: &Path) -> Result<(), InstallError> {
    let contents = match fs::read(cleanup_file) {
        Ok(contents) => contents,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(InstallError::io("read the cleanup file", cleanup_file)(e)),
    };
    for entry in parse_cleanup(&contents).into_iter().rev() {
        match entry {
            CleanupEntry::Path(path) => remove_created(&path)?,
            CleanupEntry::Context(path) => forget_context(&path),
        }
    }
    fs::remove_file(cleanup_file).map_err(InstallError::io("delete the cleanup file", cleanup_file))
}

fn remove_created(path: &Path) -> Result<(), InstallError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A copy the agent was killed in leaves its partial file only.
            return remove_partial(path);
        }
        Err(e) => return Err(InstallError::io("inspect", path)(e)),
    };
    if !meta.is_dir() {
        remove_partial(path)?;
    }
    let result = if meta.is_dir() {
        match fs::remove_dir(path) {
            // Someone put files here since: the directory stays.
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
                tracing::info!(path = %path.display(), "previous revision's directory is not empty: kept");
                Ok(())
            }
            other => other,
        }
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(InstallError::io("remove the previous revision's", path)),
    }
}

/// The partial file a copy to `destination` writes before its rename:
/// `.<name>.codedeploy-partial` in the same directory. A name too long for
/// that keeps its first 200 bytes plus a hash of the whole name, so the result
/// stays within the 255 bytes a file name may have.
pub fn partial_path(destination: &Path) -> PathBuf {
    const SUFFIX: &[u8] = b".codedeploy-partial";
    const KEPT: usize = 200;
    let name = destination
        .file_name()
        .map(OsStrExt::as_bytes)
        .unwrap_or_default();
    let mut partial = vec![b'.'];
    if 1 + name.len() + SUFFIX.len() <= 255 {
        partial.extend_from_slice(name);
    } else {
        partial.extend_from_slice(&name[..KEPT]);
        partial.extend_from_slice(format!("~{:016x}", fnv1a(name)).as_bytes());
    }
    partial.extend_from_slice(SUFFIX);
    destination.with_file_name(std::ffi::OsStr::from_bytes(&partial))
}

/// FNV-1a, 64 bits: fixed for good, unlike std's hasher, because a partial
/// file named by one agent version is removed by the next.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Removes the partial file of a copy to `destination`, if one is there.
pub fn remove_partial(destination: &Path) -> Result<(), InstallError> {
    let partial = partial_path(destination);
    match fs::symlink_metadata(&partial) {
        Ok(meta) if !meta.is_dir() => fs::remove_file(&partial)
            .or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .map_err(InstallError::io("remove the interrupted copy", &partial)),
        _ => Ok(()),
    }
}

/// Best effort, as the official agent: a context that cannot be removed (no
/// semanage, already gone) must not block the next revision.
fn forget_context(path: &Path) {
    let status = std::process::Command::new("semanage")
        .arg("fcontext")
        .arg("-d")
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        tracing::warn!(path = %path.display(), ?status, "could not remove the previous revision's SELinux context");
    }
}

/// The new cleanup file, appended to as Install creates things. Each line is
/// written with one `write` call, so that a crash leaves whole lines only
/// (at worst a last line without its newline, which the reader ignores).
pub struct CleanupLog {
    file: fs::File,
    path: PathBuf,
}

impl CleanupLog {
    pub fn create(path: &Path) -> Result<CleanupLog, InstallError> {
        let open = || {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::File::create(path)
        };
        let file = open().map_err(InstallError::io("create the cleanup file", path))?;
        Ok(CleanupLog {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn record(&mut self, created: &Path) -> Result<(), InstallError> {
        self.write_line(&[created.as_os_str().as_bytes()])
    }

    pub fn record_context(&mut self, path: &Path) -> Result<(), InstallError> {
        self.write_line(&[CONTEXT_PREFIX, path.as_os_str().as_bytes()])
    }

    fn write_line(&mut self, parts: &[&[u8]]) -> Result<(), InstallError> {
        let mut line = parts.concat();
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(InstallError::io("append to the cleanup file", &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_files_parse_like_the_official_agent() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"", &[]),
            // An unterminated last line is ignored.
            (b"/a/b", &[]),
            (b"/a\n/a/b\n", &["path /a", "path /a/b"]),
            (b"/a\n/a/b\n/a/c", &["path /a", "path /a/b"]),
            (b"/a\nsemanage\0/a/b\n\n", &["path /a", "context /a/b"]),
            (b"/with space/x y\n", &["path /with space/x y"]),
        ];
        for (contents, expected) in cases {
            let parsed: Vec<String> = parse_cleanup(contents)
                .iter()
                .map(|e| match e {
                    CleanupEntry::Path(p) => format!("path {}", p.display()),
                    CleanupEntry::Context(p) => format!("context {}", p.display()),
                })
                .collect();
            assert_eq!(parsed, *expected, "{contents:?}");
        }
    }
}
