//! The agent's own record of a deployment's commands, read by `status`:
//! `<deployment folder>/logs/commands.jsonl`, one JSON line when a command
//! starts and one when it ends. Appended, never rewritten, so an agent killed
//! mid-line leaves every earlier line whole (a torn last line is skipped).
//! The official agents neither write nor read it: a host can still switch
//! agents between two deployments.
//!
//! The format and its reading are pure; `append` is the one write.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::layout::DeploymentDir;

/// The file's name in the deployment's `logs/` folder.
pub const FILE_NAME: &str = "commands.jsonl";

/// How a command ended, or that it is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandState {
    InProgress,
    Succeeded,
    Failed,
}

impl CommandState {
    pub fn name(self) -> &'static str {
        match self {
            CommandState::InProgress => "InProgress",
            CommandState::Succeeded => "Succeeded",
            CommandState::Failed => "Failed",
        }
    }
}

/// One line of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandLine {
    pub at: DateTime<Utc>,
    pub command: String,
    pub host_command: String,
    pub state: CommandState,
    /// The diagnostics' error code and message, for a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl CommandLine {
    pub fn to_line(&self) -> String {
        // A struct of strings, numbers and a date: serialising cannot fail.
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// What the record says of a deployment: its first line's time, and its
/// last whole line (the command running, or the last one that ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub first: DateTime<Utc>,
    pub last: CommandLine,
    /// When the last command started (its `InProgress` line).
    pub last_started: Option<DateTime<Utc>>,
}

/// Reads a record's text; `None` when no line is whole.
pub fn summarize(text: &str) -> Option<Summary> {
    let mut lines = text
        .lines()
        .filter_map(|line| serde_json::from_str::<CommandLine>(line).ok());
    let first = lines.next()?;
    let mut summary = Summary {
        first: first.at,
        last_started: (first.state == CommandState::InProgress).then_some(first.at),
        last: first,
    };
    for line in lines {
        if line.state == CommandState::InProgress {
            summary.last_started = Some(line.at);
        } else if line.host_command != summary.last.host_command {
            summary.last_started = None;
        }
        summary.last = line;
    }
    Some(summary)
}

pub fn path(deployment: &DeploymentDir) -> PathBuf {
    deployment.logs_dir().join(FILE_NAME)
}

/// Appends one line, creating the folders; one `write` of the whole line.
pub fn append(file: &Path, line: &CommandLine) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    out.write_all(line.to_line().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at: &str, command: &str, hc: &str, state: CommandState) -> CommandLine {
        CommandLine {
            at: at.parse().unwrap(),
            command: command.into(),
            host_command: hc.into(),
            state,
            error_code: None,
            message: None,
        }
    }

    #[test]
    fn a_record_is_summed_up_by_its_last_whole_line() {
        use CommandState::*;
        let started = line("2026-12-07T08:00:00Z", "BeforeInstall", "hc-1", InProgress);
        let failed = CommandLine {
            error_code: Some(4),
            message: Some("Script at specified location: a.sh failed with exit code 1".into()),
            ..line("2026-12-07T08:00:09Z", "BeforeInstall", "hc-1", Failed)
        };
        let stop = line(
            "2026-12-07T07:59:58Z",
            "ApplicationStop",
            "hc-0",
            InProgress,
        );
        let stopped = line("2026-12-07T07:59:59Z", "ApplicationStop", "hc-0", Succeeded);
        let text = |lines: &[&CommandLine]| lines.iter().map(|l| l.to_line()).collect::<String>();

        // (case, the record's text, its last line and when that command started)
        type Case<'a> = (&'a str, String, Option<(CommandLine, Option<&'a str>)>);
        let cases: Vec<Case> = vec![
            ("empty", String::new(), None),
            ("only a torn line", "{\"at\":\"2026".into(), None),
            (
                "a command running",
                text(&[&stop, &stopped, &started]),
                Some((started.clone(), Some("2026-12-07T08:00:00Z"))),
            ),
            (
                "a command that failed",
                text(&[&stop, &stopped, &started, &failed]),
                Some((failed.clone(), Some("2026-12-07T08:00:00Z"))),
            ),
            (
                "a torn last line is skipped",
                text(&[&stop, &stopped]) + "{\"at\":\"2026-12-07T08:0",
                Some((stopped.clone(), Some("2026-12-07T07:59:58Z"))),
            ),
            (
                "an end without its start",
                text(&[&stop, &failed]),
                Some((failed.clone(), None)),
            ),
        ];
        for (name, text, expected) in cases {
            let summary = summarize(&text);
            let got = summary
                .as_ref()
                .map(|s| (s.last.clone(), s.last_started.map(|t| t.to_rfc3339())));
            let want = expected.map(|(l, t)| {
                (
                    l,
                    t.map(|t| t.parse::<DateTime<Utc>>().unwrap().to_rfc3339()),
                )
            });
            assert_eq!(got, want, "{name}");
            if let Some(summary) = summary {
                assert_eq!(summary.first, stop.at, "{name}");
            }
        }
    }

    #[test]
    fn lines_are_appended_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d-1/logs").join(FILE_NAME);
        let first = line(
            "2026-12-07T08:00:00Z",
            "Install",
            "hc-1",
            CommandState::InProgress,
        );
        let second = CommandLine {
            message: Some("quote \" and newline \n inside".into()),
            error_code: Some(5),
            ..line(
                "2026-12-07T08:00:01Z",
                "Install",
                "hc-1",
                CommandState::Failed,
            )
        };
        append(&file, &first).unwrap();
        append(&file, &second).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(summarize(&text).unwrap().last, second);
    }
}
