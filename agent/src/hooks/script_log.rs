//! Where hook output goes: the deployment's `logs/scripts.log`
//! (`YYYY-MM-DD HH:MM:SS <line>`), the deployments log shared by all deployments
//! (`[YYYY-MM-DD HH:MM:SS.mmm] [<DeploymentId>]<line>`), and the bounded tail the
//! diagnostics carry. Line formatting and output cleaning are pure; a log file
//! that cannot be written is reported once and never fails the hook.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::iter::Peekable;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::Chars;

use chrono::{DateTime, Local};

use super::policy::HookPolicy;
use crate::config::{DirModes, ScriptsLogBounds};
use crate::diagnostics::{log_tail, LOG_TAIL_LIMIT};

/// One script-log line as scripts.log stores it.
pub fn scripts_log_line(time: &DateTime<Local>, line: &str) -> String {
    format!("{} {line}\n", time.format("%Y-%m-%d %H:%M:%S"))
}

/// One script-log line as the deployments log stores it.
pub fn deployments_log_line(time: &DateTime<Local>, deployment_id: &str, line: &str) -> String {
    format!(
        "[{}] [{deployment_id}]{line}\n",
        time.format("%Y-%m-%d %H:%M:%S%.3f")
    )
}

/// A line of script output made printable: invalid UTF-8 replaced, then
/// [`strip_controls`].
pub fn clean_output(raw: &[u8]) -> String {
    strip_controls(&String::from_utf8_lossy(raw)).into_owned()
}

/// Text without terminal control: escape sequences (CSI `ESC [`, OSC `ESC ]`,
/// DCS/SOS/PM/APC strings up to their terminator, and every other `ESC`
/// sequence: intermediates then one final character), the 8-bit C1 controls,
/// and every other control character but tab. A script's output can then
/// neither recolour nor rewrite the terminal of whoever reads scripts.log, nor
/// hide lines with carriage returns. Borrowed when there is nothing to remove.
pub fn strip_controls(text: &str) -> Cow<'_, str> {
    let is_control = |c: char| (c.is_control() && c != '\t') || c == '\u{7f}';
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut clean = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // Intermediates (space to `/`), then one final character.
                Some(' '..='/') => {
                    while chars.next_if(|c| (' '..='/').contains(c)).is_some() {}
                    chars.next();
                }
                // Any other escape is ESC and one character.
                _ => {}
            },
            // The 8-bit forms of CSI and of the string introducers.
            '\u{9b}' => skip_csi(&mut chars),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if is_control(c) => {}
            c => clean.push(c),
        }
    }
    Cow::Owned(clean)
}

/// CSI: parameter and intermediate characters, then one final character.
fn skip_csi(chars: &mut Peekable<Chars<'_>>) {
    for c in chars.by_ref() {
        if ('\u{40}'..='\u{7e}').contains(&c) {
            break;
        }
    }
}

/// OSC, DCS, SOS, PM, APC: everything up to BEL, `ESC \\` or ST.
fn skip_string(chars: &mut Peekable<Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{07}' | '\u{9c}' => break,
            '\u{1b}' if chars.peek() == Some(&'\\') => {
                chars.next();
                break;
            }
            _ => {}
        }
    }
}

/// The log of one command's scripts.
pub(crate) struct ScriptLog {
    scripts: Option<RotatingFile>,
    deployments: Option<RotatingFile>,
    deployment_id: String,
    /// The newest lines, each with its newline, just enough for the diagnostics.
    tail: VecDeque<String>,
    tail_chars: usize,
}

impl ScriptLog {
    pub(crate) fn open(
        scripts_log: &Path,
        deployments_log: Option<&Path>,
        deployment_id: &str,
        policy: &HookPolicy,
    ) -> ScriptLog {
        let mode = match policy.log_files {
            DirModes::WorldReadable => 0o644,
            DirModes::Restricted => 0o640,
        };
        let open = |path: &Path| RotatingFile::open(path, policy.scripts_log, mode);
        ScriptLog {
            scripts: open(scripts_log),
            deployments: deployments_log.and_then(open),
            deployment_id: deployment_id.to_string(),
            tail: VecDeque::new(),
            tail_chars: 0,
        }
    }

    /// Records one line (given without its newline) everywhere, stamped now.
    /// Control characters are removed here too: a line may quote the appspec.
    pub(crate) fn line(&mut self, line: &str) {
        let line = strip_controls(line);
        let now = Local::now();
        if let Some(file) = &mut self.scripts {
            file.write_line(&scripts_log_line(&now, &line));
        }
        if let Some(file) = &mut self.deployments {
            file.write_line(&deployments_log_line(&now, &self.deployment_id, &line));
        }
        let entry = format!("{line}\n");
        self.tail_chars += entry.chars().count();
        self.tail.push_back(entry);
        while self.tail.len() > 1 {
            let oldest = self.tail.front().map_or(0, |l| l.chars().count());
            if self.tail_chars - oldest < LOG_TAIL_LIMIT {
                break;
            }
            self.tail_chars -= oldest;
            self.tail.pop_front();
        }
    }

    /// The diagnostics' `log`: the newest lines, without timestamps.
    pub(crate) fn tail(&self) -> String {
        let lines: Vec<&str> = self.tail.iter().map(String::as_str).collect();
        log_tail(&lines)
    }
}

/// One step of a rotation, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RotationStep {
    Remove(PathBuf),
    Rename(PathBuf, PathBuf),
}

/// How `path` is rotated when at most `max_files` files may exist: the oldest
/// copy goes, each `.N` becomes `.N+1`, the log becomes `.1`; with one file
/// the log itself goes. Pure.
fn rotation_steps(path: &Path, max_files: u32) -> Vec<RotationStep> {
    let numbered = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    let copies = max_files.saturating_sub(1);
    if copies == 0 {
        return vec![RotationStep::Remove(path.to_path_buf())];
    }
    let mut steps = vec![RotationStep::Remove(numbered(copies))];
    steps.extend(
        (1..copies)
            .rev()
            .map(|n| RotationStep::Rename(numbered(n), numbered(n + 1))),
    );
    steps.push(RotationStep::Rename(path.to_path_buf(), numbered(1)));
    steps
}

/// A log file that never grows past its bound: before a line would take it
/// over, the file is rotated. Other writers may append to the same file (the
/// deployments log is shared); its real size is read before rotating, and a
/// file someone else already rotated is only reopened. A write error is
/// reported once, and never fails the hook.
struct RotatingFile {
    path: PathBuf,
    file: File,
    /// What this writer believes the size is; checked against the file before rotating.
    size: u64,
    bounds: ScriptsLogBounds,
    mode: u32,
    failed: bool,
}

impl RotatingFile {
    fn open(path: &Path, bounds: ScriptsLogBounds, mode: u32) -> Option<RotatingFile> {
        let opened = (|| -> io::Result<RotatingFile> {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            let file = open_append(path, mode)?;
            Ok(RotatingFile {
                path: path.to_path_buf(),
                size: file.metadata()?.len(),
                file,
                bounds,
                mode,
                failed: false,
            })
        })();
        match opened {
            Ok(file) => Some(file),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot open the script log; hook output will not be kept there");
                None
            }
        }
    }

    fn write_line(&mut self, text: &str) {
        let written = self.rotate_if_full(text.len() as u64).and_then(|()| {
            self.file.write_all(text.as_bytes())?;
            self.size += text.len() as u64;
            Ok(())
        });
        if let Err(error) = written {
            if !self.failed {
                tracing::warn!(path = %self.path.display(), %error, "cannot write hook output; further errors on this log are not reported");
                self.failed = true;
            }
        }
    }

    fn rotate_if_full(&mut self, adding: u64) -> io::Result<()> {
        if self.size == 0 || self.size + adding <= self.bounds.max_size {
            return Ok(());
        }
        let ours = self.file.metadata()?;
        self.size = ours.len();
        if self.size == 0 || self.size + adding <= self.bounds.max_size {
            return Ok(());
        }
        let rotated_by_another =
            fs::metadata(&self.path).map_or(true, |current| current.ino() != ours.ino());
        if !rotated_by_another {
            for step in rotation_steps(&self.path, self.bounds.max_files) {
                let done = match &step {
                    RotationStep::Remove(path) => fs::remove_file(path),
                    RotationStep::Rename(from, to) => fs::rename(from, to),
                };
                match done {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        self.file = open_append(&self.path, self.mode)?;
        self.size = self.file.metadata()?.len();
        Ok(())
    }
}

fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn log_lines_have_the_official_formats() {
        let time = Local.with_ymd_and_hms(2024, 3, 9, 7, 5, 1).unwrap()
            + chrono::Duration::milliseconds(42);
        assert_eq!(
            scripts_log_line(&time, "[stdout]hello"),
            "2024-03-09 07:05:01 [stdout]hello\n"
        );
        assert_eq!(
            deployments_log_line(&time, "d-ABC", "LifecycleEvent - BeforeInstall"),
            "[2024-03-09 07:05:01.042] [d-ABC]LifecycleEvent - BeforeInstall\n"
        );
    }

    #[test]
    fn output_is_cleaned_of_bad_bytes_and_escapes() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain", "plain"),
            (b"crlf\r", "crlf"),
            (b"\xff\xfeok", "\u{fffd}\u{fffd}ok"),
            // CSI: colours, cursor moves, erase, private modes.
            (b"\x1b[1;31mred\x1b[0m text", "red text"),
            (b"\x1b[2J\x1b[H\x1b[?25lhidden cursor", "hidden cursor"),
            (b"a\x1b[10;20Hb", "ab"),
            // OSC: window title and hyperlinks, ended by BEL or ST.
            (b"\x1b]0;title\x07after", "after"),
            (b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
            // DCS, APC, PM, SOS strings.
            (b"\x1bPq#0;2;0;0;0\x1b\\after", "after"),
            (b"\x1b_apc\x1b\\x\x1b^pm\x07y", "xy"),
            // Other escapes: charset, keypad, DEC line attributes, reset.
            (b"\x1b(Bdone", "done"),
            (b"\x1b=\x1b>\x1b#8\x1bcok", "ok"),
            // 8-bit C1 controls (UTF-8 encoded): CSI and OSC.
            ("\u{9b}31mred\u{9d}0;t\u{9c}!".as_bytes(), "red!"),
            // Stray controls: carriage returns, backspaces, bell, NUL, DEL.
            (b"50%\r100%", "50%100%"),
            (b"pass\x08\x08\x08\x08fail", "passfail"),
            (b"\x07\x00\x7fbeep", "beep"),
            (b"tab\tkept", "tab\tkept"),
            // An escape cut off at the end of the line.
            (b"end\x1b[", "end"),
            (b"end\x1b", "end"),
            (b"caf\xc3\xa9 \xe2\x9c\x93", "caf\u{e9} \u{2713}"),
        ];
        for (raw, expected) in cases {
            assert_eq!(clean_output(raw), *expected, "{raw:?}");
        }
        assert!(matches!(strip_controls("clean line"), Cow::Borrowed(_)));
    }

    #[test]
    fn rotation_shifts_the_copies_and_drops_the_oldest() {
        let path = Path::new("/d/logs/scripts.log");
        let p = |s: &str| PathBuf::from(s);
        use RotationStep::{Remove, Rename};
        let cases: Vec<(u32, Vec<RotationStep>)> = vec![
            (1, vec![Remove(p("/d/logs/scripts.log"))]),
            (
                2,
                vec![
                    Remove(p("/d/logs/scripts.log.1")),
                    Rename(p("/d/logs/scripts.log"), p("/d/logs/scripts.log.1")),
                ],
            ),
            (
                4,
                vec![
                    Remove(p("/d/logs/scripts.log.3")),
                    Rename(p("/d/logs/scripts.log.2"), p("/d/logs/scripts.log.3")),
                    Rename(p("/d/logs/scripts.log.1"), p("/d/logs/scripts.log.2")),
                    Rename(p("/d/logs/scripts.log"), p("/d/logs/scripts.log.1")),
                ],
            ),
        ];
        for (max_files, expected) in cases {
            assert_eq!(rotation_steps(path, max_files), expected, "{max_files}");
        }
    }

    #[test]
    fn scripts_log_stays_within_its_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let policy = HookPolicy {
            scripts_log: ScriptsLogBounds {
                max_size: 4096,
                max_files: 3,
            },
            ..HookPolicy::default()
        };
        let mut log = ScriptLog::open(&logs.join("scripts.log"), None, "d-1", &policy);
        for i in 0..2000 {
            log.line(&format!("[stdout]line {i:05} \x1b[31m{}", "x".repeat(40)));
        }
        let mut names: Vec<String> = fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["scripts.log", "scripts.log.1", "scripts.log.2"]);
        for name in &names {
            let text = fs::read_to_string(logs.join(name)).unwrap();
            assert!(text.len() <= 4096, "{name}: {} bytes", text.len());
            assert!(!text.contains('\u{1b}'), "{name}");
        }
        let newest = fs::read_to_string(logs.join("scripts.log")).unwrap();
        assert!(newest
            .trim_end()
            .ends_with(&format!("line 01999 {}", "x".repeat(40))));
        // Lines are never split by a rotation: each file starts with a whole line.
        let older = fs::read_to_string(logs.join("scripts.log.1")).unwrap();
        assert!(
            older.lines().all(|l| l.contains("[stdout]line ")),
            "{older}"
        );
    }

    #[test]
    fn the_tail_keeps_only_what_the_diagnostics_need() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ScriptLog::open(
            &dir.path().join("logs/scripts.log"),
            None,
            "d-1",
            &HookPolicy::default(),
        );
        for i in 0..1000 {
            log.line(&format!("[stdout]line {i}"));
        }
        assert!(log.tail.len() < 200);
        let tail = log.tail();
        assert!(tail.ends_with("[stdout]line 999\n"));
        assert!(tail.chars().count() <= LOG_TAIL_LIMIT);
        let written = fs::read_to_string(dir.path().join("logs/scripts.log")).unwrap();
        assert_eq!(written.lines().count(), 1000);
    }
}
