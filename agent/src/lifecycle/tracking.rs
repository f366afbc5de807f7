//! Ongoing-deployment tracking: `<root>/<ongoing>/<DeploymentId>` holds the
//! HostCommandIdentifier of the command being executed, so that after a crash the
//! next start can tell the service which commands were cut short. Commands of
//! different deployments run at once, each with its own file; one deployment
//! never runs two commands at once (its group is serialised), so one file per
//! deployment is enough.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Tracking files older than this are left over from long ago and ignored.
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Tracker {
    dir: PathBuf,
}

/// A command that was running when the agent last stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptedCommand {
    pub deployment_id: String,
    pub host_command_identifier: String,
    pub started: SystemTime,
}

impl Tracker {
    pub fn new(dir: PathBuf) -> Tracker {
        Tracker { dir }
    }

    pub fn start(&self, deployment_id: &str, host_command_identifier: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let file = self.dir.join(deployment_id);
        let temp = self.dir.join(format!(".{deployment_id}.tmp"));
        std::fs::write(&temp, host_command_identifier)?;
        std::fs::rename(&temp, &file)
    }

    pub fn finish(&self, deployment_id: &str) {
        match std::fs::remove_file(self.dir.join(deployment_id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove tracking file for {deployment_id}: {e}"),
        }
    }

    /// The commands cut short by a stop, oldest first, ignoring stale files;
    /// the tracking folder is emptied either way.
    pub fn take_interrupted(&self, now: SystemTime) -> Vec<InterruptedCommand> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
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

    #[test]
    fn tracking_files_round_trip_and_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = Tracker::new(dir.path().join("ongoing-deployment"));
        tracker.start("d-1", "hc-1").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ongoing-deployment/d-1")).unwrap(),
            "hc-1"
        );
        tracker.start("d-3", "hc-3").unwrap();
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
        tracker.start("d-2", "hc-2").unwrap();
        tracker.finish("d-2");
        assert_eq!(tracker.take_interrupted(SystemTime::now()), vec![]);
    }
}
