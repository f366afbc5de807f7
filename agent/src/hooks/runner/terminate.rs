//! Ending a hook script and what it started: SIGTERM then SIGKILL to its
//! process group (and, with bounds, its cgroup) when it outlives its timeout
//! or the agent's shutdown, the kill of a run abandoned half way, and, once
//! the script is over, killing or releasing what it left running and reading
//! its cgroup's accounting.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::time::Instant;

use super::outcome::Outcome;
use crate::hooks::bounds::{Confinement, Leftovers};

/// After SIGKILL, how long to wait for the leader to be reaped; a process stuck
/// in the kernel must not hold the agent.
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// The child's process group (it leads its own), if it still has an id.
pub(super) fn process_group(child: &Child) -> Option<Pid> {
    child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
}

/// SIGTERM to the process group (and, with bounds, to everything in the
/// script's cgroup, which a double-forked process cannot leave), SIGKILL once
/// the grace period is over (unless both are already empty), then a bounded
/// reap of the leader.
pub(super) async fn terminate(
    group: Pid,
    child: &mut Child,
    grace: Duration,
    confinement: &Confinement,
) {
    let _ = killpg(group, Signal::SIGTERM);
    confinement.signal_all(Signal::SIGTERM);
    let deadline = crate::deadline::from_now(grace);
    loop {
        // A reaped leader no longer counts as a member of its group.
        let _ = child.try_wait();
        if killpg(group, None) == Err(Errno::ESRCH) && confinement.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = killpg(group, Signal::SIGKILL);
    confinement.kill_all().await;
    let _ = tokio::time::timeout(REAP_LIMIT, child.wait()).await;
}

/// Once the script is over: kills or releases what it left running, as its
/// `outcome` says, removes its cgroup and returns the outcome as the group's
/// accounting amends it (a failure under the OOM killer is out of memory).
pub(super) async fn settle(
    outcome: Outcome,
    group: Option<Pid>,
    confinement: Confinement,
    location: &str,
) -> Outcome {
    let leftovers = outcome.leftovers();
    if leftovers == Leftovers::Kill && !confinement.tracks_descendants() {
        // Without a cgroup, what the script left in its process group is all
        // that can be reached (a timeout or a shutdown has killed it already).
        if let Some(group) = group {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
    let memory_limit_mb = confinement.memory_limit_mb();
    let accounting = confinement.finish(leftovers).await;
    if let Some(cpu) = accounting.cpu {
        tracing::info!(
            location = %location,
            cpu_seconds = cpu.as_secs_f64(),
            oom_kills = accounting.oom_kills,
            "hook script's cgroup accounting"
        );
    }
    outcome.with_oom_kills(accounting.oom_kills, memory_limit_mb)
}

/// Kills a script's process group when its run is abandoned while the script
/// runs (a panic unwinding through the runner, a dropped command future):
/// nobody would read its output or enforce its timeout any more. Forgotten
/// once the script is over.
pub(super) struct StopIfAbandoned(Option<Pid>);

impl StopIfAbandoned {
    pub(super) fn guard(group: Option<Pid>) -> StopIfAbandoned {
        StopIfAbandoned(group)
    }

    /// The script is over: what it left running is decided by [`settle`].
    pub(super) fn forget(&mut self) {
        self.0 = None;
    }
}

impl Drop for StopIfAbandoned {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            tracing::warn!("the hook's run was abandoned: killing its process group {group}");
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}
