//! Running one lifecycle event's hook scripts (LIFECYCLE.md "Hook scripts"):
//! in order, each in its own process group with stdin closed, output logged
//! line by line, bounded by its timeout. A timed-out script's whole process
//! group gets SIGTERM, then SIGKILL after a grace period, and the failure is
//! reported at once; a script whose leftover children keep its output open
//! fails with code 6 and those children are left alone (they are usually the
//! application being started). Never runs a path that resolves outside the
//! revision directory, and never hands a path to a shell unquoted. With
//! resource bounds configured, each script also runs in its own cgroup
//! (`bounds/`), which decides what is killed and what is released at its end.
//!
//! This file holds the order of things; each step has its own file:
//! `locate` (finding the script), `spawn` (starting it), `watch` (its output,
//! exit, deadline and the shutdown), `terminate` (stopping it and what it
//! left), and `outcome` (the pure mapping from how it ended to what the user
//! is told).

mod locate;
mod outcome;
mod spawn;
mod terminate;
mod watch;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use tracing::Instrument;

use self::locate::{ensure_executable, locate};
pub use self::outcome::KillReason;
use self::outcome::{failure, Failed, Outcome};
use self::terminate::{process_group, settle, terminate, StopIfAbandoned};
use self::watch::watch;
use super::bounds::Enforcer;
use super::policy::HookPolicy;
use super::script_log::ScriptLog;
use crate::appspec::HookScript;
use crate::diagnostics::ErrorCode;
use crate::event::LifecycleEvent;
use crate::shutdown::Shutdown;

/// How long a script's process group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// One event's scripts and where their output goes.
#[derive(Debug, Clone, Copy)]
pub struct EventRun<'a> {
    pub event: &'a LifecycleEvent,
    pub scripts: &'a [HookScript],
    /// The `deployment-archive/` the scripts come from (possibly a previous
    /// deployment's, for ApplicationStop and friends).
    pub archive_dir: &'a Path,
    /// Added to the agent's environment (see `hook_environment`); hook
    /// variables missing here are removed from the child's environment.
    pub env: &'a [(String, String)],
    pub scripts_log: &'a Path,
    pub deployments_log: Option<&'a Path>,
    pub deployment_id: &'a str,
    /// The operator's choices for hook environments and logs.
    pub policy: &'a HookPolicy,
    /// Resource bounds for each script (`Enforcer::disabled()` for none).
    pub bounds: &'a Enforcer,
}

/// Why an event failed: the code and message the service is told (see
/// [`lifecycle::failure`](crate::lifecycle::failure)), and the script's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFailure {
    pub code: ErrorCode,
    /// The script's `location`, as written in the appspec.
    pub script_name: String,
    pub message: String,
    /// The tail of this command's script log, without timestamps.
    pub log: String,
    /// Whether the agent killed the script, and why.
    pub killed: Option<KillReason>,
}

impl fmt::Display for ScriptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScriptFailure {}

/// Runs the event's scripts in order, stopping at the first failure.
pub async fn run_event(run: &EventRun<'_>, shutdown: Shutdown) -> Result<(), ScriptFailure> {
    run_event_with_grace(run, shutdown, KILL_GRACE).await
}

/// [`run_event`] with a chosen SIGTERM→SIGKILL grace period.
pub async fn run_event_with_grace(
    run: &EventRun<'_>,
    mut shutdown: Shutdown,
    kill_grace: Duration,
) -> Result<(), ScriptFailure> {
    if run.scripts.is_empty() {
        return Ok(());
    }
    let mut log = ScriptLog::open(
        run.scripts_log,
        run.deployments_log,
        run.deployment_id,
        run.policy,
    );
    log.line(&format!("LifecycleEvent - {}", run.event));
    // Every location must stay inside the revision before any script runs: a
    // hostile later entry must not let the earlier ones run first. A missing
    // script is still reported when its turn comes, as the official agent does.
    for script in run.scripts {
        if let Err(refused) = locate(run.archive_dir, script) {
            if let Some(failed) = failure(script, &refused) {
                if failed.code == ErrorCode::UnknownError {
                    log.line(&failed.message);
                    return Err(reported(failed, script, &log));
                }
            }
        }
    }
    for script in run.scripts {
        // Every line logged while the script runs names it (a journal field).
        let span = tracing::info_span!("hook", hook_script = %script.location);
        let ran = run_script(run, script, &mut log, &mut shutdown, kill_grace)
            .instrument(span)
            .await;
        if let Err(failed) = ran {
            return Err(reported(failed, script, &log));
        }
    }
    Ok(())
}

/// `failed` with the script's name and the log's tail attached.
fn reported(failed: Failed, script: &HookScript, log: &ScriptLog) -> ScriptFailure {
    ScriptFailure {
        code: failed.code,
        script_name: script.location.clone(),
        message: failed.message,
        log: log.tail(),
        killed: failed.killed,
    }
}

/// One script, from finding it to what the user is told about its end.
async fn run_script(
    run: &EventRun<'_>,
    script: &HookScript,
    log: &mut ScriptLog,
    shutdown: &mut Shutdown,
    kill_grace: Duration,
) -> Result<(), Failed> {
    let judged = |outcome: Outcome| failure(script, &outcome).map_or(Ok(()), Err);
    let path = match locate(run.archive_dir, script)
        .and_then(|path| ensure_executable(&path, script).map(|()| path))
    {
        Ok(path) => path,
        Err(refused) => return judged(refused),
    };
    if shutdown.is_triggered() {
        return judged(Outcome::Stopped);
    }
    log.line(&format!("Script - {}", script.location));
    spawn::log_start(run, script, &path);

    let confinement = run
        .bounds
        .confine(&format!("{}.{}", run.deployment_id, run.event));
    let mut child = match spawn::start(run, script, &path, &confinement) {
        Ok(child) => child,
        Err(e) => return judged(Outcome::CouldNotStart(e)),
    };
    let group = process_group(&child);
    let mut abandoned = StopIfAbandoned::guard(group);
    let deadline = crate::deadline::from_now(script.timeout);
    let watched = watch(&mut child, log, shutdown, deadline).await;
    if !watched.reaped {
        if let Some(group) = group {
            terminate(group, &mut child, kill_grace, &confinement).await;
        }
    }
    abandoned.forget();
    judged(settle(watched.outcome, group, confinement, &script.location).await)
}

#[cfg(test)]
mod tests;
