//! Resource bounds for hook scripts (`:hook_cpu_percent:`,
//! `:hook_memory_limit_mb:`, `:hook_max_processes:`, `:hook_nice:`,
//! `:hook_io_priority:`): each script runs in a cgroup of its own, made for it
//! under the agent's own cgroup and removed after it.
//!
//! - cgroup v1 (where cpu, memory, pids are mounted as v1, e.g. Amazon Linux 2):
//!   `<mount>/<agent's path>/codedeploy-hooks/<script>` in each hierarchy,
//!   plus cpuacct for accounting.
//! - cgroup v2: the agent's delegated group (`Delegate=yes`); the agent moves
//!   itself into a leaf `agent` group when it must to enable controllers for
//!   its children.
//! - neither writable (a container, no root): rlimits stand in for memory and
//!   processes, CPU share is not applied, and one warning for the agent's
//!   lifetime says so.
//!
//! Without any bound configured, each script still gets a group of its own,
//! with no controller (v2 first, else systemd's named v1 hierarchy): it only
//! tracks the processes, so that a timeout, a failure or a shutdown reaches
//! those that left the script's process group (`setsid`, `setpgid`). Where
//! no group can be made, the process group is all that is stopped, and one
//! warning says so.
//!
//! Nice and I/O priority are applied in every mode. The child joins its cgroup
//! itself between fork and exec, so nothing it starts is ever outside it.
//!
//! When a script ends:
//! - timed out, or stopped by a shutdown: every process in its group is
//!   killed (`cgroup.kill`, or SIGKILL rounds over `cgroup.procs`), so a
//!   double-forked sleeper cannot escape;
//! - exited with a failure: same, the deployment is failing and nothing the
//!   hook left can be trusted (and a fork bomb must not be released unbounded);
//! - exited successfully, or left a process holding its output (code 6):
//!   what it left running is usually the application it started (the unit
//!   uses `KillMode=process` so that applications outlive the agent). Those
//!   processes are moved into the agent's own group, out of the hook's bounds,
//!   and are not killed.
//!
//! The group's own accounting gives the CPU time used (logged) and the OOM
//! kills, which turn a failure into an out-of-memory diagnostic.

mod cgroup;
mod error;
mod layout;
mod plan;
mod process;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::HookBounds;

use self::cgroup::{HookCgroup, Placement};
pub use self::error::{AgentPriorityError, CgroupError};
pub use self::layout::{detect, CgroupLayout, Controller, V1Hierarchy};
pub use self::process::apply_to_agent;
use self::process::PreExec;

/// The folder under the agent's own cgroup that holds the hooks' groups.
pub const HOOKS_GROUP: &str = "codedeploy-hooks";

/// Numbers hook groups uniquely within this process (several enforcers may
/// exist in one process, e.g. in tests).
static NEXT_GROUP: AtomicU64 = AtomicU64::new(1);

/// Applies [`HookBounds`] to every hook script of an agent. Made once per
/// agent: the choice of cgroup v1, v2 or rlimits is made once, and so is the
/// warning when the cgroups cannot be used.
#[derive(Debug)]
pub struct Enforcer {
    bounds: HookBounds,
    mode: Mode,
    /// The bounds rlimits stand in for (all of them in fallback mode, those
    /// whose controller is missing otherwise).
    fallback: HookBounds,
    warned: AtomicBool,
}

#[derive(Debug)]
enum Mode {
    /// No cgroup can be made: the script's process group is what is stopped,
    /// with at most nice and I/O priority applied.
    NoCgroup,
    Cgroups(Placement),
}

/// Why a script's descendants cannot all be reached, for the one warning.
const UNTRACKED: &str = "a script's process group is stopped on a timeout, a failed exit or a shutdown, but a process that leaves it (setsid, setpgid) is not. Run the agent as root under systemd (the unit's Delegate=yes) to track every process a hook starts";

impl Enforcer {
    /// Bounds and tracks nothing: scripts run as the agent runs, in a
    /// process group of their own (tests, and steps that run no hook).
    pub fn disabled() -> Enforcer {
        Enforcer {
            bounds: HookBounds::default(),
            mode: Mode::NoCgroup,
            fallback: HookBounds::default(),
            warned: AtomicBool::new(true),
        }
    }

    /// Finds this process's cgroups in /proc and sets up the hooks' group.
    pub fn new(bounds: HookBounds) -> Enforcer {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Enforcer::with_layout(bounds, &detect(&mountinfo, &self_cgroup), HOOKS_GROUP)
    }

    /// Uses `layout` instead of this process's cgroups, with the hooks' groups
    /// in `group_name` under it (tests point it at a tree of their own).
    pub fn with_layout(bounds: HookBounds, layout: &CgroupLayout, group_name: &str) -> Enforcer {
        let mut enforcer = Enforcer {
            bounds,
            mode: Mode::NoCgroup,
            fallback: HookBounds::default(),
            warned: AtomicBool::new(false),
        };
        if !bounds.needs_cgroup() {
            match Placement::establish(layout, &bounds, group_name) {
                Ok(placement) => {
                    tracing::debug!(
                        version = ?placement.version(),
                        "hook scripts are tracked in cgroups of their own"
                    );
                    enforcer.mode = Mode::Cgroups(placement);
                }
                Err(why) => enforcer.warn_untracked(&why.to_string()),
            }
            return enforcer;
        }
        match Placement::establish(layout, &bounds, group_name) {
            Ok(placement) => {
                enforcer.fallback = only(&bounds, &placement.missing);
                if !placement.missing.is_empty() {
                    let missing: Vec<&str> = placement.missing.iter().map(|c| c.name()).collect();
                    enforcer.warn_once(
                        &enforcer.fallback,
                        &format!("the {} controller(s) are not available", missing.join(", ")),
                    );
                }
                tracing::info!(
                    version = ?placement.version(),
                    "hook scripts run in cgroups of their own"
                );
                enforcer.mode = Mode::Cgroups(placement);
            }
            Err(why) => {
                enforcer.fallback = bounds;
                enforcer.warn_once(&bounds, &why.to_string());
            }
        }
        enforcer
    }

    pub fn bounds(&self) -> &HookBounds {
        &self.bounds
    }

    /// Logs, once, that hooks run without a tracking cgroup.
    fn warn_untracked(&self, why: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("hook scripts cannot be tracked in cgroups ({why}): {UNTRACKED}.");
        }
    }

    /// Logs the fallback warning for `fallback` unless one was logged
    /// already in this agent's lifetime.
    fn warn_once(&self, fallback: &HookBounds, why: &str) {
        let Some(message) = plan::fallback_warning(fallback, why) else {
            return;
        };
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("{message}");
        }
    }

    /// Prepares one script's bounds. `label` names its group (the deployment
    /// and event, for an operator reading the cgroup tree).
    pub(crate) fn confine(&self, label: &str) -> Confinement {
        let mut pre_exec = PreExec::with_priority(&self.bounds.priority);
        let mut cgroup = None;
        let mut fallback = self.fallback;
        if let Mode::Cgroups(placement) = &self.mode {
            let name = format!(
                "{}-{}-{}",
                sanitized(label),
                std::process::id(),
                NEXT_GROUP.fetch_add(1, Ordering::Relaxed)
            );
            match HookCgroup::create(placement, &name, &self.bounds) {
                Ok(group) => {
                    pre_exec.join = group.join_fds();
                    cgroup = Some(group);
                }
                Err(why) if self.bounds.needs_cgroup() => {
                    fallback = self.bounds;
                    self.warn_once(&fallback, &why.to_string());
                }
                Err(why) => self.warn_untracked(&why.to_string()),
            }
        }
        pre_exec.rlimits = plan::fallback_rlimits(&fallback);
        Confinement {
            cgroup,
            pre_exec,
            memory_limit_mb: self.bounds.memory_limit_mb,
        }
    }
}

impl Drop for Enforcer {
    /// The hooks' parent groups go with the agent; the kernel refuses while a
    /// hook group is still inside, which is right.
    fn drop(&mut self) {
        if let Mode::Cgroups(placement) = &self.mode {
            placement.remove_parents();
        }
    }
}

/// The part of `bounds` whose controllers are `missing` (priorities stay
/// with the bounds: they never need a cgroup).
fn only(bounds: &HookBounds, missing: &[Controller]) -> HookBounds {
    let has = |c| missing.contains(&c);
    HookBounds {
        cpu_percent: bounds.cpu_percent.filter(|_| has(Controller::Cpu)),
        memory_limit_mb: bounds.memory_limit_mb.filter(|_| has(Controller::Memory)),
        max_processes: bounds.max_processes.filter(|_| has(Controller::Pids)),
        priority: bounds.priority,
    }
}

/// Cgroup names: letters, digits, `-`, `_`, `.` only.
fn sanitized(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// How a script's processes are treated once the script is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leftovers {
    /// Kill everything still in the group.
    Kill,
    /// Move what is still running out of the bounds, into the agent's group.
    Release,
}

/// What the group recorded about a finished script.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accounting {
    pub oom_kills: u64,
    pub cpu: Option<Duration>,
}

/// One script's bounds, from before its spawn to after its end.
#[derive(Debug)]
pub(crate) struct Confinement {
    cgroup: Option<HookCgroup>,
    pre_exec: PreExec,
    memory_limit_mb: Option<u64>,
}

impl Confinement {
    /// The child's half, if there is anything to do between fork and exec.
    pub fn pre_exec(&self) -> Option<PreExec> {
        (!self.pre_exec.is_empty()).then(|| self.pre_exec.clone())
    }

    pub fn memory_limit_mb(&self) -> Option<u64> {
        self.memory_limit_mb
    }

    /// SIGTERM to every process in the group (those that left the script's
    /// process group included).
    pub fn signal_all(&self, signal: Signal) {
        if let Some(group) = &self.cgroup {
            group.signal_all(signal);
        }
    }

    /// Whether a cgroup holds every process the script starts; without one
    /// only its process group can be reached.
    pub fn tracks_descendants(&self) -> bool {
        self.cgroup.is_some()
    }

    /// Whether nothing but zombies is left in the group (`true` without one).
    pub fn is_empty(&self) -> bool {
        self.cgroup.as_ref().is_none_or(HookCgroup::is_empty)
    }

    pub async fn kill_all(&self) {
        if let Some(group) = &self.cgroup {
            group.kill_all().await;
        }
    }

    /// Empties the group as `leftovers` says, reads its accounting and removes it.
    pub async fn finish(self, leftovers: Leftovers) -> Accounting {
        let Some(group) = self.cgroup else {
            return Accounting::default();
        };
        match leftovers {
            Leftovers::Kill => group.kill_all().await,
            Leftovers::Release => group.release_leftovers().await,
        }
        let accounting = Accounting {
            oom_kills: group.oom_kills().unwrap_or(0),
            cpu: group.cpu_usage(),
        };
        group.remove().await;
        accounting
    }
}

#[cfg(test)]
impl Enforcer {
    /// Whether every configured bound goes through a cgroup (tests skip
    /// when the host cannot do that).
    pub(crate) fn uses_cgroups_fully(&self) -> bool {
        matches!(&self.mode, Mode::Cgroups(p) if p.missing.is_empty())
    }
}
