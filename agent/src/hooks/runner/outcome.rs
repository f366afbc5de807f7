//! How one hook script's run ended, and the words the user reads about it.
//! Pure: an [`Outcome`] is plain data gathered by the runner, and
//! [`failure`] turns it into the error code and message the service is told.
//! The messages mirror the official agent's, word for word, because operators
//! and tooling match on them; nothing here touches a process or a file.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;

use nix::sys::signal::Signal;

use crate::appspec::HookScript;
use crate::diagnostics::ErrorCode;
use crate::hooks::bounds::Leftovers;

/// How a script's run ended, or why it never started.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The location climbs out of the revision (`..`, an absolute path).
    LeavesRevision { archive_dir: PathBuf },
    /// The location is inside the revision but a link takes it out.
    ResolvesOutside {
        real: PathBuf,
        real_archive: PathBuf,
    },
    /// Nothing (or no file) at `path`, the absolute path it was looked for at.
    Missing { path: PathBuf },
    /// Not executable, and making it so failed.
    NotExecutable,
    /// The process could not be spawned.
    CouldNotStart(io::Error),
    /// Exited, and both output streams reached their end.
    Exited(Exit),
    /// Exited with a failure after the kernel's OOM killer struck in its
    /// cgroup: the memory bound, not the script, is the likely cause.
    OutOfMemory { exit: Exit, limit_mb: u64 },
    /// Still running at its timeout.
    TimedOut,
    /// Exited, but a leftover process kept this stream open until the deadline.
    LeftOpen(Stream),
    /// The agent is shutting down.
    Stopped,
    /// Waiting for the process failed, so how it ended is unknown.
    WaitFailed(io::Error),
}

/// How a process exited, from its wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    Code(i32),
    Signal(i32),
    Unknown,
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Unknown,
        }
    }
}

impl Exit {
    fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

/// One of a script's two output pipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "STDOUT",
            Stream::Stderr => "STDERR",
        }
    }
}

impl Outcome {
    /// What becomes of the processes the script leaves behind. A successful
    /// script's leftovers are usually the application it started, and so is
    /// whatever holds its output open: they outlive the hook. After anything
    /// else nothing the hook left can be trusted.
    pub(super) fn leftovers(&self) -> Leftovers {
        match self {
            Outcome::Exited(exit) if exit.success() => Leftovers::Release,
            Outcome::LeftOpen(_) => Leftovers::Release,
            _ => Leftovers::Kill,
        }
    }

    /// A failed exit becomes [`Outcome::OutOfMemory`] when the group's
    /// accounting counted OOM kills; everything else stays as it is.
    pub(super) fn with_oom_kills(self, oom_kills: u64, memory_limit_mb: Option<u64>) -> Outcome {
        match self {
            Outcome::Exited(exit) if oom_kills > 0 && !exit.success() => Outcome::OutOfMemory {
                exit,
                limit_mb: memory_limit_mb.unwrap_or_default(),
            },
            other => other,
        }
    }
}

/// One script's failure before the log tail is attached.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Failed {
    pub code: ErrorCode,
    pub message: String,
    /// Set when the agent killed the script rather than the script failing.
    pub killed: Option<KillReason>,
}

/// Why the agent killed a hook script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// It ran past its `timeout`.
    Timeout,
    /// The kernel's OOM killer struck in its cgroup (`:hook_memory_limit_mb:`).
    MemoryBound,
    /// The agent was shutting down.
    Shutdown,
}

impl KillReason {
    /// The label value the metrics use.
    pub fn name(self) -> &'static str {
        match self {
            KillReason::Timeout => "timeout",
            KillReason::MemoryBound => "memory_bound",
            KillReason::Shutdown => "shutdown",
        }
    }
}

/// What the service is told about `script`'s `outcome`; `None` for success.
pub(super) fn failure(script: &HookScript, outcome: &Outcome) -> Option<Failed> {
    let location = &script.location;
    let (code, message) = match outcome {
        Outcome::Exited(exit) if exit.success() => return None,
        Outcome::LeavesRevision { archive_dir } => (
            ErrorCode::UnknownError,
            format!(
                "Script location {location} leaves the revision directory {}; hooks run only scripts inside the revision",
                archive_dir.display()
            ),
        ),
        Outcome::ResolvesOutside { real, real_archive } => (
            ErrorCode::UnknownError,
            format!(
                "Script at specified location: {location} resolves to {}, outside the revision directory {}; hooks run only scripts inside the revision",
                real.display(),
                real_archive.display()
            ),
        ),
        Outcome::Missing { path } => (
            ErrorCode::ScriptMissing,
            format!(
                "Script does not exist at specified location: {}",
                path.display()
            ),
        ),
        Outcome::NotExecutable => (
            ErrorCode::ScriptNotExecutable,
            format!("Unable to set script at specified location: {location} as executable"),
        ),
        Outcome::CouldNotStart(e) | Outcome::WaitFailed(e) => (
            ErrorCode::ScriptFailed,
            format!(
                "{} failed with error {:?} with message {e}",
                described(script),
                e.kind()
            ),
        ),
        Outcome::Exited(Exit::Code(code)) => (
            ErrorCode::ScriptFailed,
            format!("{} failed with exit code {code}", described(script)),
        ),
        Outcome::Exited(Exit::Signal(signal)) => (
            ErrorCode::ScriptFailed,
            format!(
                "{} failed: killed by signal {}",
                described(script),
                signal_name(*signal)
            ),
        ),
        Outcome::Exited(Exit::Unknown) => (
            ErrorCode::ScriptFailed,
            format!("{} failed with an unknown exit status", described(script)),
        ),
        Outcome::OutOfMemory { exit, limit_mb } => (
            ErrorCode::ScriptFailed,
            format!(
                "{} was killed because it exceeded :hook_memory_limit_mb: of {limit_mb} MiB (out of memory; {})",
                described(script),
                exit_description(*exit)
            ),
        ),
        Outcome::TimedOut => (
            ErrorCode::ScriptTimedOut,
            format!(
                "Script at specified location: {location} failed to complete in {} seconds",
                script.timeout.as_secs()
            ),
        ),
        Outcome::LeftOpen(stream) => (
            ErrorCode::OutputsLeftOpen,
            format!(
                "Script at specified location: {location} failed to close {}",
                stream.name()
            ),
        ),
        Outcome::Stopped => (
            ErrorCode::ScriptFailed,
            format!(
                "{} was stopped because the CodeDeploy agent is shutting down",
                described(script)
            ),
        ),
    };
    let killed = match outcome {
        Outcome::TimedOut => Some(KillReason::Timeout),
        Outcome::OutOfMemory { .. } => Some(KillReason::MemoryBound),
        Outcome::Stopped => Some(KillReason::Shutdown),
        _ => None,
    };
    Some(Failed {
        code,
        message,
        killed,
    })
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

/// `exit code N` or `killed by signal SIGKILL`, for messages.
fn exit_description(exit: Exit) -> String {
    match exit {
        Exit::Code(code) => format!("exit code {code}"),
        Exit::Signal(signal) => format!("killed by signal {}", signal_name(signal)),
        Exit::Unknown => "unknown exit status".to_string(),
    }
}

fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}
