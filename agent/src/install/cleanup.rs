//! `<group>-cleanup`: every path the last Install created, one per line, plus
//! `semanage\0<path>` lines for SELinux contexts it registered. Written as Install
//! goes (so a crash still leaves an accurate list), replayed in reverse by the
//! next Install to remove the previous revision's files. Removal never recurses:
//! files and links are unlinked, directories removed only when empty.
//!
//! A copy lands through a partial file beside its destination (see
//! [`partial_path`]) whose name follows from the destination's, so that the
//! replay also removes the partial file of a copy a crash cut short.
//!
//! The file keeps the official format, so that a host can switch agents
//! between two deployments, but it cannot carry a path that Install did not
//! create: the writer refuses a path holding a control character (a newline
//! would make two records of one path), and the replay removes a record only
//! if it is an absolute, normalised path without control characters that the
//! previous Install's `<group>-install.json` (written before its first
//! record, by either agent) lists as a copy destination or a directory it
//! made. Any other record is left alone, named escaped in a warning.
//!
//! The replay holds neither file in memory: the cleanup file is read from its
//! end a block at a time, and `install.json` as a stream, of which only a
//! keyed 64-bit hash of each listed path is kept (8 bytes a path).

use std::fs;
use std::hash::BuildHasher;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::error::InstallError;
use crate::appspec::normalize_host_path;
use crate::names::{self, Escaped};

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
        .filter_map(parse_line)
        .collect()
}

/// One line of a cleanup file, without its newline; `None` for an empty one.
fn parse_line(line: &[u8]) -> Option<CleanupEntry> {
    if line.is_empty() {
        return None;
    }
    let path = |bytes: &[u8]| PathBuf::from(std::ffi::OsString::from_vec(bytes.to_vec()));
    Some(match line.strip_prefix(CONTEXT_PREFIX) {
        Some(context) => CleanupEntry::Context(path(context)),
        None => CleanupEntry::Path(path(line)),
    })
}

/// The paths an Install's `install.json` lists as created (copy
/// destinations and the directories it makes), as keyed hashes: the key is
/// drawn per process, so a path cannot be chosen to pass for another.
#[derive(Debug)]
pub struct Recorded {
    key: std::hash::RandomState,
    /// Sorted.
    hashes: Vec<u64>,
}

impl Recorded {
    pub fn contains(&self, path: &str) -> bool {
        self.hashes.binary_search(&self.key.hash_one(path)).is_ok()
    }
}

/// What an `install.json` lists as created, read as a stream. `None` when
/// it is not such a document.
pub fn recorded_paths(install_json: impl Read) -> Option<Recorded> {
    let mut recorded = Recorded {
        key: std::hash::RandomState::new(),
        hashes: Vec::new(),
    };
    let mut reader = serde_json::Deserializer::from_reader(install_json);
    serde::de::DeserializeSeed::deserialize(listing::Document(&mut recorded), &mut reader).ok()?;
    reader.end().ok()?;
    recorded.hashes.sort_unstable();
    recorded.hashes.dedup();
    recorded.hashes.shrink_to_fit();
    Some(recorded)
}

/// Reading `install.json` one step at a time.
mod listing {
    use std::fmt;

    use std::hash::BuildHasher;

    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    use super::Recorded;

    pub(super) struct Document<'a>(pub(super) &'a mut Recorded);
    struct Steps<'a>(&'a mut Recorded);

    #[derive(serde::Deserialize)]
    struct Step {
        #[serde(rename = "type")]
        kind: String,
        destination: Option<String>,
        directory: Option<String>,
    }

    impl<'de> DeserializeSeed<'de> for Document<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, input: D) -> Result<(), D::Error> {
            input.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Document<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object with an instructions list")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut found = false;
            while let Some(key) = map.next_key::<String>()? {
                if key == "instructions" && !found {
                    map.next_value_seed(Steps(&mut *self.0))?;
                    found = true;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if found {
                Ok(())
            } else {
                Err(de::Error::missing_field("instructions"))
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Steps<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, input: D) -> Result<(), D::Error> {
            input.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for Steps<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of steps")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut steps: A) -> Result<(), A::Error> {
            while let Some(step) = steps.next_element::<Step>()? {
                let created = match step.kind.as_str() {
                    "copy" => step.destination,
                    "mkdir" => step.directory,
                    _ => None,
                };
                if let Some(path) = created {
                    let hash = self.0.key.hash_one(path.as_str());
                    self.0.hashes.push(hash);
                }
            }
            Ok(())
        }
    }
}

/// The complete lines of a file, last first, read from the end a block at a
/// time. A last line without its newline is not a line.
struct ReverseLines {
    file: fs::File,
    /// Where the bytes in `buffer` start in the file.
    start: u64,
    /// The part of the file not handed out yet, from `start`: empty, or
    /// ending with a newline.
    buffer: Vec<u8>,
}

const BLOCK: u64 = 64 * 1024;

impl ReverseLines {
    fn new(mut file: fs::File) -> io::Result<ReverseLines> {
        let start = file.seek(SeekFrom::End(0))?;
        let mut lines = ReverseLines {
            file,
            start,
            buffer: Vec::new(),
        };
        // Up to the last newline: what follows it was being written.
        while !lines.buffer.contains(&b'\n') && lines.start > 0 {
            lines.read_block()?;
        }
        let complete = lines
            .buffer
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |at| at + 1);
        lines.buffer.truncate(complete);
        Ok(lines)
    }

    /// Puts the block before `start` in front of the buffer.
    fn read_block(&mut self) -> io::Result<()> {
        let length = BLOCK.min(self.start);
        self.start -= length;
        let mut block = vec![0u8; length as usize];
        self.file.seek(SeekFrom::Start(self.start))?;
        self.file.read_exact(&mut block)?;
        block.extend_from_slice(&self.buffer);
        self.buffer = block;
        Ok(())
    }

    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            let Some((_, body)) = self.buffer.split_last() else {
                return Ok(None);
            };
            if let Some(at) = body.iter().rposition(|b| *b == b'\n') {
                let line = body[at + 1..].to_vec();
                self.buffer.truncate(at + 1);
                return Ok(Some(line));
            }
            if self.start == 0 {
                let line = body.to_vec();
                self.buffer.clear();
                return Ok(Some(line));
            }
            self.read_block()?;
        }
    }
}

/// Why a record of a cleanup file must not be replayed, `None` when it may.
/// `recorded` is what the previous Install's `install.json` lists. Pure.
pub fn refusal(entry: &CleanupEntry, recorded: Option<&Recorded>) -> Option<String> {
    let path = match entry {
        CleanupEntry::Path(path) | CleanupEntry::Context(path) => path,
    };
    if let Err(e) = names::check(path) {
        return Some(format!("it holds {e}"));
    }
    let normal = path
        .to_str()
        .and_then(normalize_host_path)
        .is_some_and(|n| n == *path);
    if !normal {
        return Some("it is not an absolute, normalised path".to_string());
    }
    match (entry, recorded) {
        (CleanupEntry::Context(_), _) => None,
        (CleanupEntry::Path(_), None) => Some(
            "the previous Install's install.json, which lists what it created, is missing or unreadable"
                .to_string(),
        ),
        (CleanupEntry::Path(path), Some(recorded)) => (!recorded
            .contains(path.to_string_lossy().as_ref()))
        .then(|| "the previous Install's install.json does not list it as a path it created".to_string()),
    }
}

/// Replays the previous Install's cleanup file, newest entry first, then
/// deletes it; `instructions_file` is that Install's `install.json`, which
/// decides which records are replayed (see the module's documentation). No
/// cleanup file (first Install of the group): nothing to do.
pub fn run_cleanup(cleanup_file: &Path, instructions_file: &Path) -> Result<(), InstallError> {
    let read_error = |e| InstallError::io("read the cleanup file", cleanup_file)(e);
    let mut lines = match fs::File::open(cleanup_file).and_then(ReverseLines::new) {
        Ok(lines) => lines,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(read_error(e)),
    };
    let recorded = fs::File::open(instructions_file)
        .ok()
        .and_then(|json| recorded_paths(BufReader::with_capacity(64 * 1024, json)));
    while let Some(line) = lines.next_line().map_err(read_error)? {
        let Some(entry) = parse_line(&line) else {
            continue;
        };
        if let Some(reason) = refusal(&entry, recorded.as_ref()) {
            let (CleanupEntry::Path(path) | CleanupEntry::Context(path)) = &entry;
            tracing::warn!(
                cleanup_file = %cleanup_file.display(),
                "cleanup record '{}' is not replayed: {reason}",
                Escaped::of(path)
            );
            continue;
        }
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
                tracing::info!(path = %Escaped::of(path), "previous revision's directory is not empty: kept");
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
        self.write_line(created, &[created.as_os_str().as_bytes()])
    }

    pub fn record_context(&mut self, path: &Path) -> Result<(), InstallError> {
        self.write_line(path, &[CONTEXT_PREFIX, path.as_os_str().as_bytes()])
    }

    /// Refuses a path the one-path-per-line format cannot carry as one
    /// record. Unpacking and the appspec parser refuse such names first; this
    /// keeps the file true whatever a future caller passes.
    fn write_line(&mut self, path: &Path, parts: &[&[u8]]) -> Result<(), InstallError> {
        if let Err(e) = names::check(path) {
            return Err(InstallError::Refused {
                path: path.to_path_buf(),
                reason: format!("its path holds {e}, which the cleanup file cannot record"),
            });
        }
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

    /// The old format's hostile file: an entry named `x` + newline +
    /// `/etc/shadow` made two records; install.json lists the one path.
    #[test]
    fn only_records_that_install_json_lists_are_replayed() {
        let install_json = br#"{"instructions":[
            {"type":"mkdir","directory":"/srv/app"},
            {"type":"copy","source":"/r/a","destination":"/srv/app/a"},
            {"type":"copy","source":"/r/x\n/etc/shadow","destination":"/srv/app/x\n/etc/shadow"},
            {"type":"chmod","mode":"644","file":"/etc/passwd"}]}"#;
        let recorded = recorded_paths(&install_json[..]).unwrap();
        let verdicts: Vec<(String, Option<String>)> = parse_cleanup(
            b"/srv/app\n/srv/app/a\n/srv/app/x\n/etc/shadow\n/etc/passwd\nrelative\n/srv/app/../etc/hosts\n/srv/app/tab\there\nsemanage\0/srv/app/a\n",
        )
        .iter()
        .map(|entry| {
            let (CleanupEntry::Path(p) | CleanupEntry::Context(p)) = entry;
            (names::escaped(p), refusal(entry, Some(&recorded)))
        })
        .collect();
        let not_listed = Some(
            "the previous Install's install.json does not list it as a path it created".to_string(),
        );
        let not_normal = Some("it is not an absolute, normalised path".to_string());
        assert_eq!(
            verdicts,
            [
                ("/srv/app".to_string(), None),
                ("/srv/app/a".to_string(), None),
                ("/srv/app/x".to_string(), not_listed.clone()),
                ("/etc/shadow".to_string(), not_listed.clone()),
                ("/etc/passwd".to_string(), not_listed),
                ("relative".to_string(), not_normal.clone()),
                ("/srv/app/../etc/hosts".to_string(), not_normal),
                (
                    "/srv/app/tab\\there".to_string(),
                    Some("it holds the control character \\t at byte 12 (names in a revision may hold no control characters: U+0000-U+001F, U+007F-U+009F)".to_string())
                ),
                ("/srv/app/a".to_string(), None),
            ]
        );
        assert_eq!(
            refusal(&CleanupEntry::Path("/srv/app/a".into()), None).as_deref(),
            Some("the previous Install's install.json, which lists what it created, is missing or unreadable")
        );
        assert!(recorded_paths(&b"not json"[..]).is_none());
        assert!(recorded_paths(&b"{\"instructions\":[]} trailing"[..]).is_none());
        assert!(recorded_paths(&b"{\"other\":1}"[..]).is_none());
    }

    #[test]
    fn the_writer_refuses_a_path_that_would_make_two_records() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g-cleanup");
        let mut log = CleanupLog::create(&file).unwrap();
        log.record(Path::new("/srv/app/a")).unwrap();
        let error = log
            .record(Path::new("/srv/app/x\n/etc/shadow"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/srv/app/x\\n/etc/shadow") && error.contains("control character \\n"),
            "{error}"
        );
        assert_eq!(fs::read(&file).unwrap(), b"/srv/app/a\n");
    }

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

    /// The replay reads the file backwards in blocks: it must see exactly
    /// the records the forward parser sees, last first, also when lines
    /// straddle the blocks.
    #[test]
    fn reading_from_the_end_gives_the_records_in_reverse() {
        let mut long = Vec::new();
        for n in 0..20_000 {
            long.extend_from_slice(
                format!("/srv/app/{}/file-{n}\n", "d".repeat(n % 97)).as_bytes(),
            );
        }
        long.extend_from_slice(b"/srv/app/cut-sho");
        let cases: Vec<&[u8]> = vec![
            b"",
            b"/a/b",
            b"\n",
            b"/a\n/a/b\n",
            b"/a\n/a/b\n/a/c",
            b"/a\nsemanage\0/a/b\n\n",
            &long,
        ];
        let dir = tempfile::tempdir().unwrap();
        for contents in cases {
            let file = dir.path().join("g-cleanup");
            fs::write(&file, contents).unwrap();
            let mut lines = ReverseLines::new(fs::File::open(&file).unwrap()).unwrap();
            let mut backwards = Vec::new();
            while let Some(line) = lines.next_line().unwrap() {
                backwards.extend(parse_line(&line));
            }
            backwards.reverse();
            assert_eq!(
                backwards,
                parse_cleanup(contents),
                "{} bytes",
                contents.len()
            );
        }
        assert!(
            BLOCK < long.len() as u64 / 4,
            "the long case spans several blocks"
        );
    }
}
