//! Why the bounds cannot be applied as configured: the hooks' cgroups
//! refused ([`CgroupError`]), or the agent could not take its own priority
//! ([`AgentPriorityError`]). Neither stops a deployment; each ends up in one
//! warning, so each says which file or setting refused and, because that
//! warning is all the operator reads, the cause is in the text as well as
//! behind `source()`.

use std::io;
use std::path::{Path, PathBuf};

use super::layout::Controller;

/// Why the hooks' cgroups (the parent set up once, or one script's group)
/// cannot be used; shown in the warning that says what stands in for the
/// bounds.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no mounted cgroup hierarchy holds the {} controller(s)", names(.controllers))]
    NoHierarchy { controllers: Vec<Controller> },
    #[error("no cgroup hierarchy is mounted")]
    NothingMounted,
    /// Every hierarchy that could track the hooks refused a group.
    #[error("{}", joined(.0))]
    EveryHierarchyRefused(Vec<CgroupError>),
    #[error(
        "the {} controller(s) are not delegated to {} (run the agent under systemd with Delegate=yes)",
        names(.controllers),
        .dir.display()
    )]
    NotDelegated {
        controllers: Vec<Controller>,
        dir: PathBuf,
    },
    #[error("cannot create {}: {source}", .dir.display())]
    Create {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {value} to {}: {source}", .path.display())]
    Write {
        value: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `enable` is what was written to `cgroup.subtree_control` (`+cpu +memory`).
    #[error("cannot enable {enable} in {}: {source}", .path.display())]
    Enable {
        enable: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The agent's group still refused after the agent moved into `leaf`.
    #[error(
        "cannot enable {enable} in {} after moving the agent to {}: {source}",
        .dir.display(),
        .leaf.display()
    )]
    EnableAfterMove {
        enable: String,
        dir: PathBuf,
        leaf: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `first; second`: each refusal with its own path and cause.
fn joined(refused: &[CgroupError]) -> String {
    refused
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl CgroupError {
    /// `map_err` for a directory that could not be made.
    pub(super) fn create(dir: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
        move |source| CgroupError::Create {
            dir: dir.to_path_buf(),
            source,
        }
    }
}

fn names(controllers: &[Controller]) -> String {
    controllers
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the agent could not take its configured priority (it keeps the one it
/// has).
#[derive(Debug, thiserror::Error)]
pub enum AgentPriorityError {
    #[error("cannot list the agent's threads in /proc/self/task: {source}")]
    ListThreads {
        #[source]
        source: io::Error,
    },
    #[error("cannot set the agent's nice value to {nice}: {source}")]
    Nice {
        nice: i32,
        #[source]
        source: io::Error,
    },
    #[error("cannot set the agent's I/O priority: {source}")]
    IoPriority {
        #[source]
        source: io::Error,
    },
}
