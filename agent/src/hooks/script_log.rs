//! Where hook output goes: the deployment's `logs/scripts.log`
//! (`YYYY-MM-DD HH:MM:SS <line>`), the deployments log shared by all deployments
//! (`[YYYY-MM-DD HH:MM:SS.mmm] [<DeploymentId>]<line>`), and the bounded tail the
//! diagnostics carry. Line formatting and output cleaning are pure; a log file
//! that cannot be written is reported once and never fails the hook.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Local};

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

/// A line of script output made printable: invalid UTF-8 replaced, terminal
/// escape sequences and a trailing carriage return removed.
pub fn clean_output(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut clean = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            clean.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates, then one final byte.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \.
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{07}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            // Character set designation: one more character.
            Some('(' | ')' | '*' | '+') => {
                chars.next();
            }
            // Any other escape is two characters long.
            _ => {}
        }
    }
    if clean.ends_with('\r') {
        clean.pop();
    }
    clean
}

/// The log of one command's scripts.
pub(crate) struct ScriptLog {
    scripts: Option<File>,
    deployments: Option<File>,
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
    ) -> ScriptLog {
        ScriptLog {
            scripts: open_append(scripts_log),
            deployments: deployments_log.and_then(open_append),
            deployment_id: deployment_id.to_string(),
            tail: VecDeque::new(),
            tail_chars: 0,
        }
    }

    /// Records one line (given without its newline) everywhere, stamped now.
    pub(crate) fn line(&mut self, line: &str) {
        let now = Local::now();
        if let Some(file) = &mut self.scripts {
            write_or_warn(file, &scripts_log_line(&now, line), "scripts log");
        }
        if let Some(file) = &mut self.deployments {
            write_or_warn(
                file,
                &deployments_log_line(&now, &self.deployment_id, line),
                "deployments log",
            );
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

fn open_append(path: &Path) -> Option<File> {
    let open = |path: &Path| -> std::io::Result<File> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        OpenOptions::new().create(true).append(true).open(path)
    };
    match open(path) {
        Ok(file) => Some(file),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot open the script log; hook output will not be kept there");
            None
        }
    }
}

fn write_or_warn(file: &mut File, text: &str, which: &str) {
    if let Err(error) = file.write_all(text.as_bytes()) {
        tracing::warn!(%error, log = which, "cannot write hook output");
    }
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
            (b"\x1b[1;31mred\x1b[0m text", "red text"),
            (b"\x1b]0;title\x07after", "after"),
            (b"\x1b]8;;http://x\x1b\\link", "link"),
            (b"\x1b(Bdone", "done"),
            (b"tab\tkept", "tab\tkept"),
        ];
        for (raw, expected) in cases {
            assert_eq!(clean_output(raw), *expected, "{raw:?}");
        }
    }

    #[test]
    fn the_tail_keeps_only_what_the_diagnostics_need() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ScriptLog::open(&dir.path().join("logs/scripts.log"), None, "d-1");
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
