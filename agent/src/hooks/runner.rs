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

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{access, AccessFlags, Pid};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::bounds::{Confinement, Enforcer, Leftovers};
use super::environment::variables_to_remove;
use super::policy::{agent_user, HookPolicy};
use super::script_log::{clean_output, strip_controls, ScriptLog};
use crate::appspec::HookScript;
use crate::diagnostics::{Diagnostic, ErrorCode};
use crate::event::LifecycleEvent;
use crate::shutdown::Shutdown;

/// How long a script's process group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// Output lines longer than this are split, so that a script printing without
/// newlines cannot make the agent's memory grow.
const MAX_LINE_BYTES: usize = 16 * 1024;

/// After SIGKILL, how long to wait for the leader to be reaped; a process stuck
/// in the kernel must not hold the agent.
const REAP_LIMIT: Duration = Duration::from_secs(5);

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

/// Why an event failed, ready for the service's diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFailure {
    pub code: ErrorCode,
    /// The script's `location`, as written in the appspec.
    pub script_name: String,
    pub message: String,
    /// The tail of this command's script log, without timestamps.
    pub log: String,
}

impl ScriptFailure {
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic::failed(
            self.code,
            &self.script_name,
            self.message.clone(),
            &self.log,
        )
    }
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
        if let Err(failed) = locate(run.archive_dir, script) {
            if failed.code == ErrorCode::UnknownError {
                log.line(&failed.message);
                return Err(ScriptFailure {
                    code: failed.code,
                    script_name: script.location.clone(),
                    message: failed.message,
                    log: log.tail(),
                });
            }
        }
    }
    for script in run.scripts {
        if let Err(failed) = run_script(run, script, &mut log, &mut shutdown, kill_grace).await {
            return Err(ScriptFailure {
                code: failed.code,
                script_name: script.location.clone(),
                message: failed.message,
                log: log.tail(),
            });
        }
    }
    Ok(())
}

/// One script's failure before the log tail is attached.
struct Failed {
    code: ErrorCode,
    message: String,
}

/// `Script at specified location: <location>[ run as user <u>]`, the start of
/// the official failure messages.
fn described(script: &HookScript) -> String {
    match &script.runas {
        Some(user) => format!(
            "Script at specified location: {} run as user {user}",
            script.location
        ),
        None => format!("Script at specified location: {}", script.location),
    }
}

async fn run_script(
    run: &EventRun<'_>,
    script: &HookScript,
    log: &mut ScriptLog,
    shutdown: &mut Shutdown,
    kill_grace: Duration,
) -> Result<(), Failed> {
    let path = locate(run.archive_dir, script)?;
    ensure_executable(&path, script)?;
    if shutdown.is_triggered() {
        return Err(stopping(script));
    }
    log.line(&format!("Script - {}", script.location));
    // The audit line: who runs what, as whom, for which deployment.
    tracing::info!(
        "hook start: deployment {} event {} script {} (location {}) agent user {} runas {} sudo {} timeout {} s",
        run.deployment_id,
        run.event,
        path.display(),
        strip_controls(&script.location),
        agent_user(),
        script.runas.as_deref().map_or("-".into(), strip_controls),
        script.sudo,
        script.timeout.as_secs()
    );

    let (program, args) = command_line(&path, script);
    let confinement = run
        .bounds
        .confine(&format!("{}.{}", run.deployment_id, run.event));
    let spawn = |program: OsString, args: Vec<OsString>| {
        let mut command = std::process::Command::new(program);
        command
            .args(args)
            .envs(run.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout can reach everything it started.
            .process_group(0);
        let inherited = std::env::vars_os().map(|(name, _)| name);
        for name in variables_to_remove(run.env, &run.policy.env, inherited) {
            command.env_remove(name);
        }
        if let Some(bounds) = confinement.pre_exec() {
            // SAFETY: `apply_in_child` makes only async-signal-safe system
            // calls on values prepared before the fork, and the descriptors it
            // writes to stay open until `confinement` is dropped, after spawn.
            unsafe {
                command.pre_exec(move || bounds.apply_in_child());
            }
        }
        if let Some(limit) = run.policy.core_limit {
            // SAFETY: setrlimit is an async-signal-safe system call on a
            // value copied before the fork. The hook gets back the core
            // limit the agent started with (see `core_dumps`).
            unsafe {
                command.pre_exec(move || crate::core_dumps::set_core_soft_limit(limit));
            }
        }
        tokio::process::Command::from(command).spawn()
    };
    let spawned = match spawn(program.clone(), args.clone()) {
        // A script without a `#!` line: the official agent hands the path to a
        // shell, which runs such a file as a shell script. Do the same.
        Err(e)
            if e.raw_os_error() == Some(Errno::ENOEXEC as i32)
                && script.runas.is_none()
                && !script.sudo =>
        {
            spawn(
                OsString::from("/bin/sh"),
                vec![path.clone().into_os_string()],
            )
        }
        other => other,
    };
    let mut child = spawned.map_err(|e| Failed {
        code: ErrorCode::ScriptFailed,
        message: format!(
            "{} failed with error {:?} with message {e}",
            described(script),
            e.kind()
        ),
    })?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let mut abandoned = StopIfAbandoned(group);

    let deadline = crate::deadline::from_now(script.timeout);
    let mut stdout = OutputLines::new(child.stdout.take());
    let mut stderr = OutputLines::new(child.stderr.take());
    let mut status: Option<ExitStatus> = None;
    let ending = loop {
        if let Some(status) = status {
            if stdout.done() && stderr.done() {
                break Ending::Exited(status);
            }
        }
        tokio::select! {
            line = stdout.next_line(), if !stdout.done() => {
                if let Some(line) = line {
                    #[cfg(feature = "test-panic")]
                    panic_if_asked(&line);
                    log.line(&format!("[stdout]{}", clean_output(&line)));
                }
            }
            line = stderr.next_line(), if !stderr.done() => {
                if let Some(line) = line {
                    log.line(&format!("[stderr]{}", clean_output(&line)));
                }
            }
            exited = child.wait(), if status.is_none() => match exited {
                Ok(exited) => status = Some(exited),
                Err(e) => break Ending::WaitFailed(e),
            },
            _ = tokio::time::sleep_until(deadline) => {
                break match status {
                    None => Ending::TimedOut,
                    Some(_) if !stdout.done() => Ending::LeftOpen("STDOUT"),
                    Some(_) => Ending::LeftOpen("STDERR"),
                };
            }
            _ = shutdown.triggered() => break Ending::Stopping,
        }
    };

    if status.is_none() {
        if let Some(group) = group {
            terminate(group, &mut child, kill_grace, &confinement).await;
        }
    }
    // The script is over; what it left running is decided below.
    abandoned.0 = None;
    let leftovers = match &ending {
        // Usually the application the hook started: it outlives the hook.
        Ending::Exited(status) if status.success() => Leftovers::Release,
        Ending::LeftOpen(_) => Leftovers::Release,
        _ => Leftovers::Kill,
    };
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
            location = %script.location,
            cpu_seconds = cpu.as_secs_f64(),
            oom_kills = accounting.oom_kills,
            "hook script's cgroup accounting"
        );
    }
    match ending {
        Ending::Exited(status) if accounting.oom_kills > 0 && !status.success() => Err(Failed {
            code: ErrorCode::ScriptFailed,
            message: format!(
                "{} was killed because it exceeded :hook_memory_limit_mb: of {} MiB (out of memory; {})",
                described(script),
                memory_limit_mb.unwrap_or_default(),
                exit_description(status)
            ),
        }),
        Ending::Exited(status) => exit_outcome(script, status),
        Ending::TimedOut => Err(Failed {
            code: ErrorCode::ScriptTimedOut,
            message: format!(
                "Script at specified location: {} failed to complete in {} seconds",
                script.location,
                script.timeout.as_secs()
            ),
        }),
        Ending::LeftOpen(stream) => Err(Failed {
            code: ErrorCode::OutputsLeftOpen,
            message: format!(
                "Script at specified location: {} failed to close {stream}",
                script.location
            ),
        }),
        Ending::Stopping => Err(stopping(script)),
        Ending::WaitFailed(e) => Err(Failed {
            code: ErrorCode::ScriptFailed,
            message: format!(
                "{} failed with error {:?} with message {e}",
                described(script),
                e.kind()
            ),
        }),
    }
}

/// Kills a script's process group when its run is abandoned while the script
/// runs (a panic unwinding through the runner, a dropped command future):
/// nobody would read its output or enforce its timeout any more. Forgotten
/// once the script is over.
struct StopIfAbandoned(Option<Pid>);

impl Drop for StopIfAbandoned {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            tracing::warn!("the hook's run was abandoned: killing its process group {group}");
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

/// Test builds only: a hook printing this line makes the agent panic while
/// the hook runs, so that the tests can show the panic contained.
#[cfg(feature = "test-panic")]
fn panic_if_asked(line: &[u8]) {
    if line == b"codedeploy-agent-test: panic" {
        panic!("deliberate panic for a test: a hook asked for one");
    }
}

enum Ending {
    /// Exited, and both output streams reached their end.
    Exited(ExitStatus),
    TimedOut,
    /// Exited, but a leftover process kept this stream open until the deadline.
    LeftOpen(&'static str),
    Stopping,
    WaitFailed(std::io::Error),
}

fn stopping(script: &HookScript) -> Failed {
    Failed {
        code: ErrorCode::ScriptFailed,
        message: format!(
            "{} was stopped because the CodeDeploy agent is shutting down",
            described(script)
        ),
    }
}

/// `exit code N` or `killed by signal SIGKILL`, for messages.
fn exit_description(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {}", signal_name(signal)),
        (None, None) => "unknown exit status".to_string(),
    }
}

fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

fn exit_outcome(script: &HookScript, status: ExitStatus) -> Result<(), Failed> {
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(Failed {
            code: ErrorCode::ScriptFailed,
            message: format!("{} failed with exit code {code}", described(script)),
        }),
        (None, Some(signal)) => {
            let name = signal_name(signal);
            Err(Failed {
                code: ErrorCode::ScriptFailed,
                message: format!("{} failed: killed by signal {name}", described(script)),
            })
        }
        (None, None) => Err(Failed {
            code: ErrorCode::ScriptFailed,
            message: format!("{} failed with an unknown exit status", described(script)),
        }),
    }
}

/// SIGTERM to the process group (and, with bounds, to everything in the
/// script's cgroup, which a double-forked process cannot leave), SIGKILL once
/// the grace period is over (unless both are already empty), then a bounded
/// reap of the leader.
async fn terminate(
    group: Pid,
    child: &mut tokio::process::Child,
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

/// The script's path under the revision; missing → code 1, outside the
/// revision (through a link) → code 5.
fn locate(archive_dir: &Path, script: &HookScript) -> Result<PathBuf, Failed> {
    let Some(relative) = script.revision_path() else {
        return Err(Failed {
            code: ErrorCode::UnknownError,
            message: format!(
                "Script location {} leaves the revision directory {}; hooks run only scripts inside the revision",
                script.location,
                archive_dir.display()
            ),
        });
    };
    let path = relative.under(archive_dir);
    let missing = || Failed {
        code: ErrorCode::ScriptMissing,
        message: format!(
            "Script does not exist at specified location: {}",
            path.display()
        ),
    };
    let real = std::fs::canonicalize(&path).map_err(|_| missing())?;
    let real_archive = std::fs::canonicalize(archive_dir).map_err(|_| missing())?;
    if !real.starts_with(&real_archive) {
        return Err(Failed {
            code: ErrorCode::UnknownError,
            message: format!(
                "Script at specified location: {} resolves to {}, outside the revision directory {}; hooks run only scripts inside the revision",
                script.location,
                real.display(),
                real_archive.display()
            ),
        });
    }
    if !real.is_file() {
        return Err(missing());
    }
    Ok(path)
}

/// As the official agent: a script without execute permission is made
/// executable (a+x) before it runs.
fn ensure_executable(path: &Path, script: &HookScript) -> Result<(), Failed> {
    if access(path, AccessFlags::X_OK).is_ok() {
        return Ok(());
    }
    tracing::warn!(location = %script.location, "script is not executable; making it executable");
    let make_executable = || -> std::io::Result<()> {
        let mode = std::fs::metadata(path)?.permissions().mode();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o111))
    };
    make_executable().map_err(|_| Failed {
        code: ErrorCode::ScriptNotExecutable,
        message: format!(
            "Unable to set script at specified location: {} as executable",
            script.location
        ),
    })
}

/// The program and arguments for a script: the path itself; `sudo <path>`;
/// `su <user> -c '<path>'` or `sudo su <user> -c '<path>'` (the user's shell
/// reads the path, so it is quoted for it).
pub(crate) fn command_line(path: &Path, script: &HookScript) -> (OsString, Vec<OsString>) {
    match (&script.runas, script.sudo) {
        (Some(user), sudo) => {
            let su_args = vec![OsString::from(user), "-c".into(), shell_quoted(path)];
            if sudo {
                (
                    "sudo".into(),
                    std::iter::once("su".into()).chain(su_args).collect(),
                )
            } else {
                ("su".into(), su_args)
            }
        }
        (None, true) => ("sudo".into(), vec![path.into()]),
        (None, false) => (path.into(), Vec::new()),
    }
}

/// `'...'` with embedded single quotes as `'\''`: one word for any POSIX shell.
fn shell_quoted(path: &Path) -> OsString {
    let mut quoted = vec![b'\''];
    for byte in path.as_os_str().as_bytes() {
        if *byte == b'\'' {
            quoted.extend_from_slice(b"'\\''");
        } else {
            quoted.push(*byte);
        }
    }
    quoted.push(b'\'');
    OsString::from_vec(quoted)
}

/// Lines from one output pipe. `next_line` is cancel-safe (it only changes
/// state after a read completes), so it can sit in a `select!` loop.
struct OutputLines<R> {
    reader: Option<R>,
    pending: Vec<u8>,
}

impl<R: AsyncRead + Unpin> OutputLines<R> {
    fn new(reader: Option<R>) -> OutputLines<R> {
        OutputLines {
            reader,
            pending: Vec::new(),
        }
    }

    /// The pipe reached its end (or failed) and every line was handed out.
    fn done(&self) -> bool {
        self.reader.is_none() && self.pending.is_empty()
    }

    async fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(line) = self.take_line() {
                return Some(line);
            }
            let Some(reader) = &mut self.reader else {
                return (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending));
            };
            let mut chunk = [0u8; 8192];
            match reader.read(&mut chunk).await {
                Ok(0) => self.reader = None,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(error) => {
                    tracing::warn!(%error, "cannot read hook output");
                    self.reader = None;
                }
            }
        }
    }

    fn take_line(&mut self) -> Option<Vec<u8>> {
        if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=end).collect();
            line.pop();
            return Some(line);
        }
        (self.pending.len() >= MAX_LINE_BYTES)
            .then(|| self.pending.drain(..MAX_LINE_BYTES).collect())
    }
}

#[cfg(test)]
mod tests;
