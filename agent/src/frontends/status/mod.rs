//! `codedeploy-agent status`: what the agent is doing, read from the state on
//! disk only (the pid file and its lock, ongoing-deployment tracking, the
//! deployments' command records and scripts logs). No socket, no request to
//! the running agent: it works the same whether the agent runs, hangs or is
//! gone. Printing is `render.rs`; this file reads.

mod render;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::config::{self, AgentConfig};
use crate::lifecycle::layout::{DeploymentDir, DeploymentRoot};
use crate::lifecycle::record::{self, CommandState};

pub use render::{AgentState, InProgress, LastDeployment, Status, StatusExit};

/// How much of the end of a scripts.log is read to find the running script.
const SCRIPTS_LOG_TAIL: u64 = 64 * 1024;

/// The whole verb: loads the configuration, reads the state, prints it.
pub fn run_cli(config_file: &Path, json: bool, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let config = match config::load_or_defaults(config_file) {
        Ok((config, _, note)) => {
            if let Some(note) = note {
                let _ = writeln!(err, "{note}");
            }
            config
        }
        Err(e) => {
            let _ = writeln!(err, "codedeploy-agent status: {e}");
            return StatusExit::Unknown as u8;
        }
    };
    let status = read(&config, config_file);
    let text = if json {
        status.to_json() + "\n"
    } else {
        status.to_text(Utc::now())
    };
    let _ = out.write_all(text.as_bytes());
    status.exit() as u8
}

/// Everything `status` reports, from the disk.
pub fn read(config: &AgentConfig, config_file: &Path) -> Status {
    let root = DeploymentRoot::new(&config.root_dir, &config.ongoing_deployment_tracking);
    let groups = group_dirs(&root);
    Status {
        version: crate::VERSION.to_string(),
        config_file: config_file.to_path_buf(),
        log_file: config.log_dir.join(format!("{}.log", config.program_name)),
        agent: agent_state(&config.pid_dir, &config.program_name),
        in_progress: in_progress(&root, &groups),
        last_deployments: last_deployments(&root, &groups),
    }
}

/// Running when another process holds the pid file's lock.
fn agent_state(pid_dir: &Path, program_name: &str) -> AgentState {
    let lock_file = pid_dir.join(format!("{program_name}.pid.lock"));
    let pid_file = pid_dir.join(format!("{program_name}.pid"));
    let pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
    };
    let file = match File::open(&lock_file) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return AgentState::NotRunning {
                stale_pid: None,
                lock_file,
            }
        }
        Err(e) => {
            return AgentState::Unknown {
                reason: format!(
                    "cannot open {}: {e}{}",
                    lock_file.display(),
                    if e.kind() == std::io::ErrorKind::PermissionDenied {
                        " (run status as root)"
                    } else {
                        ""
                    }
                ),
            }
        }
    };
    // A shared lock is refused while the agent holds its exclusive one, and
    // is released at once either way.
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
        Ok(_released_on_drop) => AgentState::NotRunning {
            stale_pid: pid(),
            lock_file,
        },
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => match pid() {
            Some(pid) => AgentState::Running {
                pid,
                since: modified(&pid_file),
            },
            None => AgentState::Unknown {
                reason: format!(
                    "{} is locked but {} names no pid",
                    lock_file.display(),
                    pid_file.display()
                ),
            },
        },
        Err((_, errno)) => AgentState::Unknown {
            reason: format!("cannot test the lock on {}: {errno}", lock_file.display()),
        },
    }
}

fn modified(path: &Path) -> Option<DateTime<Utc>> {
    let time = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(time.into())
}

/// The deployment groups' folders: every folder of the root but the agent's own.
fn group_dirs(root: &DeploymentRoot) -> Vec<String> {
    let own = [
        root.instructions_dir(),
        root.ongoing_dir(),
        root.deployments_log()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    ];
    let Ok(entries) = std::fs::read_dir(root.path()) else {
        return Vec::new();
    };
    let mut groups: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir() && !own.contains(&e.path()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    groups.sort();
    groups
}

fn summary(deployment: &DeploymentDir) -> Option<record::Summary> {
    let text = std::fs::read_to_string(record::path(deployment)).ok()?;
    record::summarize(&text)
}

fn in_progress(root: &DeploymentRoot, groups: &[String]) -> Vec<InProgress> {
    let Ok(entries) = std::fs::read_dir(root.ongoing_dir()) else {
        return Vec::new();
    };
    let mut found: Vec<InProgress> = entries
        .flatten()
        .filter_map(|entry| {
            let deployment_id = entry.file_name().to_string_lossy().into_owned();
            if deployment_id.starts_with('.') {
                return None;
            }
            let tracked_since = modified(&entry.path()).unwrap_or_else(Utc::now);
            let group_id = groups
                .iter()
                .find(|g| root.deployment(g, &deployment_id).path().is_dir())
                .cloned();
            let deployment = group_id
                .as_ref()
                .map(|g| root.deployment(g, &deployment_id));
            let running = deployment
                .as_ref()
                .and_then(summary)
                .filter(|s| s.last.state == CommandState::InProgress);
            let command = running.as_ref().map(|s| s.last.command.clone());
            let scripts_log = deployment.as_ref().map(DeploymentDir::scripts_log);
            let script = match (&command, &scripts_log) {
                (Some(command), Some(log)) => current_script(&tail(log, SCRIPTS_LOG_TAIL), command),
                _ => None,
            };
            Some(InProgress {
                started: running
                    .and_then(|s| s.last_started)
                    .unwrap_or(tracked_since),
                deployment_id,
                group_id,
                command,
                script: script.as_ref().map(|(s, _)| s.clone()),
                script_started: script.map(|(_, at)| at),
                scripts_log: scripts_log.filter(|log| log.exists()),
            })
        })
        .collect();
    found.sort_by_key(|c| c.started);
    found
}

fn last_deployments(root: &DeploymentRoot, groups: &[String]) -> Vec<LastDeployment> {
    groups
        .iter()
        .filter_map(|group| {
            let deployments = std::fs::read_dir(root.group_dir(group)).ok()?;
            deployments
                .flatten()
                .filter_map(|entry| {
                    let deployment_id = entry.file_name().to_string_lossy().into_owned();
                    let dir = root.deployment(group, &deployment_id);
                    summary(&dir).map(|s| (deployment_id, dir, s))
                })
                .max_by_key(|(_, _, s)| s.last.at)
                .map(|(deployment_id, dir, s)| LastDeployment {
                    group_id: group.clone(),
                    deployment_id,
                    command: s.last.command,
                    state: s.last.state,
                    at: s.last.at,
                    error_code: s.last.error_code,
                    message: s.last.message,
                    scripts_log: dir.scripts_log(),
                })
        })
        .collect()
}

/// The last `max` bytes of a file, from a line start on (empty when unreadable).
fn tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = length.saturating_sub(max);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.take(max).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match (start > 0, text.find('\n')) {
        (true, Some(cut)) => text[cut + 1..].to_string(),
        _ => text,
    }
}

/// The script of `command` that scripts.log shows started last, with the
/// time of its `Script - ` line: scripts.log's own lines, `<date> <time>
/// LifecycleEvent - <event>` then `<date> <time> Script - <location>`.
/// Pure.
pub fn current_script(scripts_log: &str, command: &str) -> Option<(String, String)> {
    let mut in_event = false;
    let mut script = None;
    for line in scripts_log.lines() {
        // `YYYY-MM-DD HH:MM:SS ` is 20 bytes.
        let (Some(at), Some(text)) = (line.get(..19), line.get(20..)) else {
            continue;
        };
        if let Some(event) = text.strip_prefix("LifecycleEvent - ") {
            in_event = event == command;
            script = None;
        } else if let Some(location) = text.strip_prefix("Script - ") {
            if in_event {
                script = Some((location.to_string(), at.to_string()));
            }
        }
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_script_is_the_last_one_of_the_command_scripts_log_shows() {
        let log = "\
2026-12-07 09:00:00 LifecycleEvent - BeforeInstall
2026-12-07 09:00:00 Script - scripts/a.sh
2026-12-07 09:00:01 [stdout]hello
2026-12-07 09:00:02 Script - scripts/b.sh
2026-12-07 09:00:03 [stdout]Script - not a script line
";
        let cases = [
            (log, "BeforeInstall", Some(("scripts/b.sh", "2026-12-07 09:00:02"))),
            (log, "AfterInstall", None),
            (
                "2026-12-07 09:00:00 LifecycleEvent - BeforeInstall\n2026-12-07 09:00:00 Script - a.sh\n2026-12-07 09:01:00 LifecycleEvent - AfterInstall\n",
                "AfterInstall",
                None,
            ),
            ("", "BeforeInstall", None),
            ("short\n", "BeforeInstall", None),
        ];
        for (text, command, want) in cases {
            let want = want.map(|(s, t)| (s.to_string(), t.to_string()));
            assert_eq!(current_script(text, command), want, "{command} in {text:?}");
        }
    }

    #[test]
    fn a_tail_starts_at_a_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scripts.log");
        std::fs::write(&file, "first line\nsecond line\nthird\n").unwrap();
        assert_eq!(tail(&file, 1000), "first line\nsecond line\nthird\n");
        assert_eq!(tail(&file, 15), "third\n");
        assert_eq!(tail(&dir.path().join("missing"), 10), "");
    }

    #[test]
    fn no_agent_and_no_deployment_read_as_not_running_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig {
            pid_dir: dir.path().join("pid"),
            root_dir: dir.path().join("root"),
            log_dir: dir.path().join("log"),
            ..AgentConfig::default()
        };
        let status = read(&config, Path::new("/etc/x.yml"));
        assert_eq!(status.exit(), StatusExit::NotRunning);
        assert!(status.in_progress.is_empty() && status.last_deployments.is_empty());

        // A pid file left behind, its lock free: the agent died.
        std::fs::create_dir_all(&config.pid_dir).unwrap();
        std::fs::write(config.pid_dir.join("codedeploy-agent.pid"), "999999\n").unwrap();
        std::fs::write(config.pid_dir.join("codedeploy-agent.pid.lock"), "").unwrap();
        assert!(matches!(
            read(&config, Path::new("/etc/x.yml")).agent,
            AgentState::NotRunning {
                stale_pid: Some(999999),
                ..
            }
        ));
    }
}
