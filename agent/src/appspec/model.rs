//! The appspec as the rest of the agent sees it: typed, validated values. Built
//! only by the parser (`parse.rs`); nothing downstream re-validates strings.

use std::path::PathBuf;
use std::time::Duration;

use super::paths::RevisionPath;
use super::permission::Permission;
use super::FileExistsBehavior;
use crate::event::LifecycleEvent;

/// A parsed, validated appspec.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSpec {
    pub version: AppSpecVersion,
    pub os: Os,
    /// The appspec's own value; it wins over the deployment's override.
    pub file_exists_behavior: Option<FileExistsBehavior>,
    pub files: Vec<FileMapping>,
    pub permissions: Vec<Permission>,
    /// In appspec order; each event at most once.
    pub hooks: Vec<EventHooks>,
    /// Things the official agent accepts silently but that are probably mistakes
    /// (unknown keys, an octal-looking mode, an ignored SELinux role).
    pub warnings: Vec<String>,
}

impl AppSpec {
    /// The scripts of one event, in order; empty when the event has none.
    pub fn hooks_for(&self, event: &LifecycleEvent) -> &[HookScript] {
        self.hooks
            .iter()
            .find(|h| &h.event == event)
            .map(|h| h.scripts.as_slice())
            .unwrap_or(&[])
    }

    pub fn has_hooks(&self, event: &LifecycleEvent) -> bool {
        !self.hooks_for(event).is_empty()
    }
}

/// The only appspec version there is: the YAML number `0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppSpecVersion {
    V0_0,
}

/// The operating systems this agent deploys to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Linux,
}

/// One entry of `files`: copy `source` (inside the revision) to `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMapping {
    pub source: RevisionPath,
    /// Absolute and normalised.
    pub destination: PathBuf,
}

/// The scripts one lifecycle event runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHooks {
    pub event: LifecycleEvent,
    pub scripts: Vec<HookScript>,
}

/// One hook script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookScript {
    /// As written (trimmed): relative to the revision root, and known not to
    /// climb out of it with `..`. Diagnostics quote it verbatim.
    pub location: String,
    pub timeout: Duration,
    /// A valid user name for `su` (no leading `-`, no whitespace).
    pub runas: Option<String>,
    pub sudo: bool,
}

impl HookScript {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

    /// The longest `timeout` accepted. The official agent sets no maximum
    /// (the service's documented limit is an hour per event), so revisions
    /// with a few hours deploy there and must here too; a day is this
    /// agent's ceiling for one command elsewhere (the graceful-stop wait is
    /// clamped to it, and a tracking file older than that is not reported
    /// after a crash). Beyond it a deadline would be meaningless, and near
    /// `u64::MAX` seconds it cannot even be represented.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

    /// The location as a normalised path below the revision root; `None` when it
    /// would climb out (the parser refuses those, but the fields are public).
    pub fn revision_path(&self) -> Option<RevisionPath> {
        RevisionPath::parse(&self.location).filter(|p| !p.is_root())
    }
}
