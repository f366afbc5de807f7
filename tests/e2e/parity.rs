//! Lifecycle parity with the official agent (1.8.x): a revision that deploys
//! with it must deploy the same way with ours. Each submodule proves one part
//! of LIFECYCLE.md and APPSPEC.md end to end, asserting the files, modes and
//! owners on disk, the hooks that ran (order, revision, environment, user) and
//! what the service was told (statuses, error codes, messages).
//!
//! This file holds the small readers the submodules share (file modes and
//! owners, scripts.log without timestamps, deployment folders); the README's
//! "Parity with the official agent" table maps each behaviour to its test.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use codedeploy_e2e::{Deployment, TestBed};

mod accounts;
mod appspec;
mod bundles;
mod file_exists;
mod files;
mod hooks;
mod permissions;
mod revisions;
mod traffic;

/// Permission bits (with setuid/setgid/sticky) of `path`, not following a
/// final symlink; `None` when nothing is there.
pub fn mode_of(path: &Path) -> Option<u32> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| m.mode() & 0o7777)
}

/// Numeric owner and group of `path`, not following a final symlink.
pub fn owner_of(path: &Path) -> Option<(u32, u32)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.uid(), m.gid()))
}

/// The mode a directory the agent makes gets: 0777 less the umask the agent
/// inherits from this test process.
pub fn default_directory_mode() -> u32 {
    let umask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022);
    0o777 & !umask
}

/// The deployment's `logs/scripts.log`, each line without its
/// `YYYY-MM-DD HH:MM:SS ` timestamp.
pub fn scripts_log(bed: &TestBed, deployment: &Deployment) -> Vec<String> {
    let path = crate::support::deployment_dir(bed, deployment).join("logs/scripts.log");
    crate::support::lines(&path)
        .into_iter()
        .map(|line| match line.get(..20) {
            // "2024-01-31 12:34:56 " is 20 bytes of ASCII.
            Some(stamp) if stamp.as_bytes().get(19) == Some(&b' ') => line[20..].to_string(),
            _ => line,
        })
        .collect()
}

/// The deployment folders under `<root>/<group id>/`, sorted.
pub fn deployment_folders(bed: &TestBed, group_id: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(bed.root_dir().join(group_id))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `<root>/deployment-instructions/<group id><suffix>`.
pub fn instructions_file(bed: &TestBed, group_id: &str, suffix: &str) -> PathBuf {
    bed.root_dir()
        .join("deployment-instructions")
        .join(format!("{group_id}{suffix}"))
}

/// The noop flag each command of `deployment` was acknowledged with, by
/// command name, in the order they were handed out.
pub fn noop_flags(bed: &TestBed, deployment: &Deployment) -> Vec<(String, Option<bool>)> {
    bed.emulator
        .deployment(&deployment.deployment_id)
        .map(|record| {
            record
                .commands
                .iter()
                .filter(|c| c.times_issued > 0)
                .map(|c| (c.command_name.clone(), c.acknowledged_noop()))
                .collect()
        })
        .unwrap_or_default()
}
