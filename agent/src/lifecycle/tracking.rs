//! Ongoing-deployment tracking: `<root>/<ongoing>/<DeploymentId>` holds the
//! HostCommandIdentifier of the command being executed, so that after a crash the
//! next start can tell the service which commands were cut short. Commands of
//! different deployments run at once, each with its own file; one deployment
//! never runs two commands at once (its group is serialised), so one file per
//! deployment is enough.
//!
//! The same calls keep the agent's own record of each command (`record.rs`),
//! which `status` reads: a command's start, its end, and its failure after a
//! restart. The record is for operators; a failure to write it is logged and
//! never fails the command.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use chrono::Utc;

use super::layout::DeploymentRoot;
use super::record::{self, CommandLine, CommandState};
use crate::atomic_file::Durability;

/// Tracking files older than this are left over from long ago and ignored.
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Tracker {
    root: DeploymentRoot,
}

/// A command that was running when the agent last stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptedCommand {
    pub deployment_id: String,
    pub host_command_identifier: String,
    pub started: SystemTime,
}

/// The command being tracked: which deployment, which lifecycle event.
#[derive(Debug, Clone, Copy)]
pub struct TrackedCommand<'a> {
    pub group_id: &'a str,
    pub deployment_id: &'a str,
    pub command: &'a str,
    pub host_command_identifier: &'a str,
}

/// How a tracked command ended, as the service was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub state: CommandState,
    pub error_code: Option<u8>,
    pub message: Option<String>,
}

impl Tracker {
    pub fn new(root: DeploymentRoot) -> Tracker {
        Tracker { root }
    }

    fn dir(&self) -> PathBuf {
        self.root.ongoing_dir()
    }

    /// Writes the tracking file (an error is returned: the caller decides)
    /// and the record's start line (logged when it cannot be written).
    pub fn start(&self, command: &TrackedCommand<'_>) -> std::io::Result<()> {
        self.record(command, CommandState::InProgress, None, None);
        // Its temporary name starts with a dot, which `take_interrupted` skips.
        crate::atomic_file::replace(
            &self.dir().join(command.deployment_id),
            None,
            Durability::Unsynced,
            |out| out.write_all(command.host_command_identifier.as_bytes()),
        )
    }

    /// Records how the command ended: before the service is told, so that
    /// whoever learns the result from the service finds it on disk too.
    pub fn ended(&self, command: &TrackedCommand<'_>, ending: &Ending) {
        self.record(
            command,
            ending.state,
            ending.error_code,
            ending.message.clone(),
        );
    }

    /// Removes the tracking file, once the service has been told.
    pub fn finish(&self, deployment_id: &str) {
        match std::fs::remove_file(self.dir().join(deployment_id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove tracking file for {deployment_id}: {e}"),
        }
    }

    /// Records that a command cut short by a restart was reported failed; its
    /// group is found by the deployment's folder.
    pub fn record_interrupted(&self, interrupted: &InterruptedCommand, code: u8, message: &str) {
        let Some(group_id) = group_of(&self.root, &interrupted.deployment_id) else {
            return;
        };
        let command = TrackedCommand {
            group_id: &group_id,
            deployment_id: &interrupted.deployment_id,
            command: &self
                .last_command(&group_id, &interrupted.deployment_id)
                .unwrap_or_default(),
            host_command_identifier: &interrupted.host_command_identifier,
        };
        self.record(
            &command,
            CommandState::Failed,
            Some(code),
            Some(message.to_string()),
        );
    }

    /// The command the record last names for a deployment.
    fn last_command(&self, group_id: &str, deployment_id: &str) -> Option<String> {
        let file = record::path(&self.root.deployment(group_id, deployment_id));
        let text = std::fs::read_to_string(file).ok()?;
        record::summarize(&text).map(|s| s.last.command)
    }

    fn record(
        &self,
        command: &TrackedCommand<'_>,
        state: CommandState,
        error_code: Option<u8>,
        message: Option<String>,
    ) {
        let file = record::path(
            &self
                .root
                .deployment(command.group_id, command.deployment_id),
        );
        let line = CommandLine {
            at: Utc::now(),
            command: command.command.to_string(),
            host_command: command.host_command_identifier.to_string(),
            state,
            error_code,
            message,
        };
        if let Err(e) = record::append(&file, &line) {
            tracing::warn!("cannot write {}: {e}", file.display());
        }
    }

    /// The commands cut short by a stop, oldest first, ignoring stale files;
    /// the tracking folder is emptied either way.
    pub fn take_interrupted(&self, now: SystemTime) -> Vec<InterruptedCommand> {
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(now);
            let content = std::fs::read_to_string(&path).unwrap_or_default();
            let _ = std::fs::remove_file(&path);
            if name.starts_with('.') || content.trim().is_empty() {
                continue;
            }
            found.push(InterruptedCommand {
                deployment_id: name,
                host_command_identifier: content.trim().to_string(),
                started: modified,
            });
        }
        fresh_oldest_first(found, now)
    }
}

/// The group whose folder holds a folder for `deployment_id`.
fn group_of(root: &DeploymentRoot, deployment_id: &str) -> Option<String> {
    std::fs::read_dir(root.path())
        .ok()?
        .flatten()
        .find(|entry| entry.path().join(deployment_id).is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
}

/// The commands that are not stale, oldest first (pure).
pub fn fresh_oldest_first(
    commands: Vec<InterruptedCommand>,
    now: SystemTime,
) -> Vec<InterruptedCommand> {
    let mut fresh: Vec<InterruptedCommand> = commands
        .into_iter()
        .filter(|c| {
            now.duration_since(c.started)
                .map(|age| age < STALE_AFTER)
                .unwrap_or(true)
        })
        .collect();
    fresh.sort_by_key(|c| c.started);
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(id: &str, age_secs: u64, now: SystemTime) -> InterruptedCommand {
        InterruptedCommand {
            deployment_id: id.into(),
            host_command_identifier: format!("hc-{id}"),
            started: now - Duration::from_secs(age_secs),
        }
    }

    #[test]
    fn every_fresh_command_is_reported_oldest_first() {
        let now = SystemTime::now();
        let ids = |commands: Vec<InterruptedCommand>| {
            fresh_oldest_first(commands, now)
                .into_iter()
                .map(|c| c.deployment_id)
                .collect::<Vec<_>>()
        };
        let cases: [(Vec<InterruptedCommand>, Vec<&str>); 4] = [
            (
                vec![
                    cmd("d-b", 60, now),
                    cmd("d-old", 90_000, now),
                    cmd("d-a", 600, now),
                ],
                vec!["d-a", "d-b"],
            ),
            (vec![cmd("d-old", 90_000, now)], vec![]),
            (vec![], vec![]),
            // A clock set back since the file was written: not stale.
            (
                vec![cmd("d-future", 0, now + Duration::from_secs(60))],
                vec!["d-future"],
            ),
        ];
        for (commands, expected) in cases {
            assert_eq!(ids(commands), expected);
        }
    }

    fn tracked<'a>(deployment_id: &'a str, host_command: &'a str) -> TrackedCommand<'a> {
        TrackedCommand {
            group_id: "group-1",
            deployment_id,
            command: "BeforeInstall",
            host_command_identifier: host_command,
        }
    }

    fn succeeded() -> Ending {
        Ending {
            state: CommandState::Succeeded,
            error_code: None,
            message: None,
        }
    }

    #[test]
    fn tracking_files_round_trip_and_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = Tracker::new(DeploymentRoot::new(dir.path(), "ongoing-deployment"));
        tracker.start(&tracked("d-1", "hc-1")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ongoing-deployment/d-1")).unwrap(),
            "hc-1"
        );
        tracker.start(&tracked("d-3", "hc-3")).unwrap();
        let taken: Vec<(String, String)> = tracker
            .take_interrupted(SystemTime::now() + Duration::from_secs(1))
            .into_iter()
            .map(|c| (c.deployment_id, c.host_command_identifier))
            .collect();
        assert_eq!(taken.len(), 2, "{taken:?}");
        for pair in [("d-1", "hc-1"), ("d-3", "hc-3")] {
            assert!(
                taken.contains(&(pair.0.into(), pair.1.into())),
                "{pair:?} in {taken:?}"
            );
        }
        assert_eq!(tracker.take_interrupted(SystemTime::now()), vec![]);
        tracker.start(&tracked("d-2", "hc-2")).unwrap();
        tracker.ended(&tracked("d-2", "hc-2"), &succeeded());
        tracker.finish("d-2");
        assert_eq!(tracker.take_interrupted(SystemTime::now()), vec![]);
    }

    #[test]
    fn the_record_follows_a_command_from_start_to_end_and_past_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let root = DeploymentRoot::new(dir.path(), "ongoing-deployment");
        let tracker = Tracker::new(root.clone());
        let read = |deployment: &str| {
            let file = record::path(&root.deployment("group-1", deployment));
            record::summarize(&std::fs::read_to_string(file).unwrap()).unwrap()
        };
        tracker.start(&tracked("d-1", "hc-1")).unwrap();
        assert_eq!(read("d-1").last.state, CommandState::InProgress);
        tracker.ended(&tracked("d-1", "hc-1"), &succeeded());
        tracker.finish("d-1");
        assert_eq!(read("d-1").last.state, CommandState::Succeeded);

        tracker.start(&tracked("d-2", "hc-2")).unwrap();
        for interrupted in tracker.take_interrupted(SystemTime::now() + Duration::from_secs(1)) {
            tracker.record_interrupted(&interrupted, 7, "Failed: after a restart");
        }
        let last = read("d-2").last;
        assert_eq!(
            (last.command.as_str(), last.state, last.error_code),
            ("BeforeInstall", CommandState::Failed, Some(7))
        );
    }
}
