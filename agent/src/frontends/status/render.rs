//! What `codedeploy-agent status` prints, for people and for machines, and
//! which LSB exit code it ends with. Pure: a [`Status`] in, text out.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::lifecycle::record::CommandState;

/// Everything `status` found on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub version: String,
    pub config_file: PathBuf,
    pub log_file: PathBuf,
    pub agent: AgentState,
    /// Commands being executed (or cut short, when the agent is not running).
    pub in_progress: Vec<InProgress>,
    /// The newest deployment of each group, by its record.
    pub last_deployments: Vec<LastDeployment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentState {
    Running {
        pid: u32,
        since: Option<DateTime<Utc>>,
    },
    NotRunning {
        /// A pid file left by an agent that did not stop cleanly.
        stale_pid: Option<u32>,
        lock_file: PathBuf,
    },
    /// The state cannot be read (e.g. the pid folder is not readable).
    Unknown { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InProgress {
    pub deployment_id: String,
    pub group_id: Option<String>,
    pub command: Option<String>,
    pub started: DateTime<Utc>,
    /// The hook script running, with its start as scripts.log gives it
    /// (the host's local time).
    pub script: Option<String>,
    pub script_started: Option<String>,
    pub scripts_log: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastDeployment {
    pub group_id: String,
    pub deployment_id: String,
    /// The last command the record names, and how it ended.
    pub command: String,
    pub state: CommandState,
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub scripts_log: PathBuf,
}

/// LSB `status` exit codes, as the official agents use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusExit {
    Running = 0,
    NotRunning = 3,
    Unknown = 4,
}

impl Status {
    pub fn exit(&self) -> StatusExit {
        match self.agent {
            AgentState::Running { .. } => StatusExit::Running,
            AgentState::NotRunning { .. } => StatusExit::NotRunning,
            AgentState::Unknown { .. } => StatusExit::Unknown,
        }
    }

    pub fn to_json(&self) -> String {
        // Strings, numbers, dates and paths only: serialising cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The text for a terminal; `now` gives the durations.
    pub fn to_text(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(match &self.agent {
            AgentState::Running { pid, since } => match since {
                Some(since) => format!(
                    "codedeploy-agent: running (pid {pid}, since {}, {})",
                    stamp(*since),
                    duration(now, *since)
                ),
                None => format!("codedeploy-agent: running (pid {pid})"),
            },
            AgentState::NotRunning {
                stale_pid: Some(pid),
                ..
            } => format!(
                "codedeploy-agent: not running (its pid file names pid {pid}, which is gone: the agent did not stop cleanly)"
            ),
            AgentState::NotRunning { lock_file, .. } => format!(
                "codedeploy-agent: not running (no process holds {})",
                lock_file.display()
            ),
            AgentState::Unknown { reason } => {
                format!("codedeploy-agent: state unknown ({reason})")
            }
        });
        line(format!(
            "version {}, configuration {}, log {}",
            self.version,
            self.config_file.display(),
            self.log_file.display()
        ));
        if self.in_progress.is_empty() {
            line("in progress: none".into());
        } else {
            let heading = match self.agent {
                AgentState::Running { .. } => "in progress:",
                _ => "cut short (reported Failed when the agent starts again):",
            };
            line(heading.into());
            for command in &self.in_progress {
                line(format!(
                    "  {} {} for {}{}",
                    command.deployment_id,
                    command.command.as_deref().unwrap_or("(command unknown)"),
                    duration(now, command.started),
                    match (&command.script, &command.script_started) {
                        (Some(script), Some(at)) => format!(", script {script} since {at}"),
                        (Some(script), None) => format!(", script {script}"),
                        _ => String::new(),
                    }
                ));
                if let Some(group) = &command.group_id {
                    line(format!("    group {group}"));
                }
                if let Some(log) = &command.scripts_log {
                    line(format!("    scripts.log: {}", log.display()));
                }
            }
        }
        if self.last_deployments.is_empty() {
            line("last deployments: none recorded".into());
        } else {
            line("last deployments:".into());
            for last in &self.last_deployments {
                let outcome = match last.state {
                    CommandState::InProgress => format!("{} in progress", last.command),
                    CommandState::Succeeded => format!("{} succeeded", last.command),
                    CommandState::Failed => format!("FAILED at {}", last.command),
                };
                line(format!(
                    "  group {}: {} {outcome} ({})",
                    last.group_id,
                    last.deployment_id,
                    stamp(last.at)
                ));
                if let Some(message) = &last.message {
                    let code = last
                        .error_code
                        .map(|c| format!("code {c}: "))
                        .unwrap_or_default();
                    line(format!("    {code}{}", one_line(message)));
                }
                line(format!("    scripts.log: {}", last.scripts_log.display()));
            }
        }
        out
    }
}

fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `42 s`, `3 min 5 s`, `2 h 7 min`, `3 d 4 h`.
fn duration(now: DateTime<Utc>, since: DateTime<Utc>) -> String {
    let secs = (now - since).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        3600..86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86400, secs % 86400 / 3600),
    }
}

/// A message on one terminal line: controls shown escaped.
fn one_line(message: &str) -> String {
    message
        .chars()
        .flat_map(char::escape_debug)
        .collect::<String>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn status(agent: AgentState) -> Status {
        Status {
            version: "0.1.0".into(),
            config_file: "/etc/codedeploy-agent/conf/codedeployagent.yml".into(),
            log_file: "/var/log/aws/codedeploy-agent/codedeploy-agent.log".into(),
            agent,
            in_progress: vec![],
            last_deployments: vec![],
        }
    }

    #[test]
    fn durations_read_naturally() {
        let now = at("2026-12-07T10:00:00Z");
        let cases = [
            ("2026-12-07T10:00:00Z", "0 s"),
            ("2026-12-07T09:59:18Z", "42 s"),
            ("2026-12-07T09:56:55Z", "3 min 5 s"),
            ("2026-12-07T07:53:00Z", "2 h 7 min"),
            ("2026-12-04T06:00:00Z", "3 d 4 h"),
            ("2026-12-07T10:00:05Z", "0 s"),
        ];
        for (since, want) in cases {
            assert_eq!(duration(now, at(since)), want, "{since}");
        }
    }

    #[test]
    fn the_text_says_running_or_not_what_runs_and_how_the_last_deployments_ended() {
        let now = at("2026-12-07T10:00:00Z");
        let mut running = status(AgentState::Running {
            pid: 4242,
            since: Some(at("2026-12-07T08:00:00Z")),
        });
        running.in_progress.push(InProgress {
            deployment_id: "d-ABC".into(),
            group_id: Some("group-1".into()),
            command: Some("BeforeInstall".into()),
            started: at("2026-12-07T09:59:48Z"),
            script: Some("scripts/warm.sh".into()),
            script_started: Some("2026-12-07 09:59:50".into()),
            scripts_log: Some("/root/group-1/d-ABC/logs/scripts.log".into()),
        });
        running.last_deployments.push(LastDeployment {
            group_id: "group-2".into(),
            deployment_id: "d-OLD".into(),
            command: "AfterInstall".into(),
            state: CommandState::Failed,
            at: at("2026-12-07T09:00:00Z"),
            error_code: Some(4),
            message: Some(
                "Script at specified location: a.sh failed with exit code 1\nmore".into(),
            ),
            scripts_log: "/root/group-2/d-OLD/logs/scripts.log".into(),
        });
        assert_eq!(running.exit(), StatusExit::Running);
        assert_eq!(
            running.to_text(now),
            "codedeploy-agent: running (pid 4242, since 2026-12-07 08:00:00 UTC, 2 h 0 min)\n\
             version 0.1.0, configuration /etc/codedeploy-agent/conf/codedeployagent.yml, log /var/log/aws/codedeploy-agent/codedeploy-agent.log\n\
             in progress:\n  \
             d-ABC BeforeInstall for 12 s, script scripts/warm.sh since 2026-12-07 09:59:50\n    \
             group group-1\n    \
             scripts.log: /root/group-1/d-ABC/logs/scripts.log\n\
             last deployments:\n  \
             group group-2: d-OLD FAILED at AfterInstall (2026-12-07 09:00:00 UTC)\n    \
             code 4: Script at specified location: a.sh failed with exit code 1\\nmore\n    \
             scripts.log: /root/group-2/d-OLD/logs/scripts.log\n"
        );

        let cases = [
            (
                AgentState::NotRunning {
                    stale_pid: None,
                    lock_file: "/opt/codedeploy-agent/state/.pid/codedeploy-agent.pid.lock".into(),
                },
                StatusExit::NotRunning,
                "codedeploy-agent: not running (no process holds /opt/codedeploy-agent/state/.pid/codedeploy-agent.pid.lock)",
            ),
            (
                AgentState::NotRunning {
                    stale_pid: Some(77),
                    lock_file: "/x.lock".into(),
                },
                StatusExit::NotRunning,
                "codedeploy-agent: not running (its pid file names pid 77, which is gone: the agent did not stop cleanly)",
            ),
            (
                AgentState::Unknown {
                    reason: "cannot open /x.lock: Permission denied (run as root)".into(),
                },
                StatusExit::Unknown,
                "codedeploy-agent: state unknown (cannot open /x.lock: Permission denied (run as root))",
            ),
        ];
        for (agent, exit, first_line) in cases {
            let stopped = status(agent);
            assert_eq!(stopped.exit(), exit);
            let text = stopped.to_text(now);
            assert_eq!(text.lines().next(), Some(first_line));
            assert!(
                text.contains("in progress: none\nlast deployments: none recorded\n"),
                "{text}"
            );
        }
    }

    #[test]
    fn the_json_names_every_field() {
        let status = status(AgentState::Running {
            pid: 1,
            since: None,
        });
        let json: serde_json::Value = serde_json::from_str(&status.to_json()).unwrap();
        assert_eq!(json["agent"]["state"], "running");
        assert_eq!(json["agent"]["pid"], 1);
        assert_eq!(json["version"], "0.1.0");
        assert!(json["in_progress"].as_array().unwrap().is_empty());
    }
}
