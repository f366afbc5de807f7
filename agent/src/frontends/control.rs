//! The official agents' service verbs: `start`, `stop`, `restart`. Under
//! systemd they hand over to `systemctl` on the packaged unit, so the unit's
//! cgroup, restart policy and stop timeout apply. Where PID 1 is not systemd,
//! `start` starts `run` in a new session (its pid file and lock as always) and
//! waits until it holds the lock; `stop` sends SIGTERM and waits as the unit
//! would (`:kill_agent_max_wait_time_seconds:` plus the unit's margin), then
//! SIGKILL. `status` is `status/`.

// Unsafe by necessity: a child's pre_exec hook (setsid) between fork and exec. Each block says why it is sound.
#![allow(unsafe_code)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::{self, AgentConfig};
use crate::frontends::status::{self, AgentState};

/// The packaged unit the verbs act on under systemd.
pub const UNIT: &str = "codedeploy-agent.service";
/// What the unit's `TimeoutStopSec` adds to the agent's own wait (7,300 s
/// for the default 7,200).
const STOP_MARGIN: Duration = Duration::from_secs(100);
/// How long `start` waits for the agent to take its lock.
const START_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Why `start` or `stop` (without systemd) did not get the agent where asked.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot find this program's path: {0}")]
    CurrentExe(#[source] std::io::Error),
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent exited at start ({status}); its log {} says why", log.display())]
    ExitedAtStart { status: ExitStatus, log: PathBuf },
    #[error("the agent (pid {pid}) did not take its lock within {} s; see {}", START_WAIT.as_secs(), log.display())]
    NoLock { pid: u32, log: PathBuf },
    /// The pid file could not be read or judged; `reason` is the status
    /// reader's sentence, as `status` prints it.
    #[error("{reason}")]
    StateUnknown { reason: String },
    #[error("pid {0} is out of range")]
    PidOutOfRange(u32),
    #[error("cannot signal pid {pid}: {source}")]
    Signal {
        pid: u32,
        #[source]
        source: nix::errno::Errno,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }
}

/// Which init the host runs: systemd leaves `/run/systemd/system` (what
/// `sd_booted()` checks).
pub fn systemd_is_init() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Runs the verb; the exit code follows LSB (0 done, 1 failed).
pub fn run_cli(verb: Verb, config_file: &Path, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    if systemd_is_init() {
        return systemctl(verb, out, err);
    }
    let config = match config::load_agent_config(config_file) {
        Ok(parsed) => parsed.config,
        Err(e) => {
            let _ = writeln!(err, "codedeploy-agent {}: {e}", verb.name());
            return 1;
        }
    };
    let result = match verb {
        Verb::Start => start(&config, config_file),
        Verb::Stop => stop(&config),
        Verb::Restart => stop(&config).and_then(|stopped| {
            start(&config, config_file).map(|started| format!("{stopped}; {started}"))
        }),
    };
    match result {
        Ok(done) => {
            let _ = writeln!(out, "codedeploy-agent: {done}");
            0
        }
        Err(why) => {
            let _ = writeln!(err, "codedeploy-agent {}: {why}", verb.name());
            1
        }
    }
}

fn systemctl(verb: Verb, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let _ = writeln!(out, "codedeploy-agent: systemctl {} {UNIT}", verb.name());
    let _ = out.flush();
    match Command::new("systemctl")
        .arg(verb.name())
        .arg(UNIT)
        .status()
    {
        Ok(status) => status.code().map_or(1, |code| code.clamp(0, 255) as u8),
        Err(e) => {
            let _ = writeln!(
                err,
                "codedeploy-agent {}: cannot run systemctl: {e}",
                verb.name()
            );
            1
        }
    }
}

fn state(config: &AgentConfig) -> AgentState {
    status::read(config, Path::new("")).agent
}

/// Starts `<this program> --config <file> run` in a session of its own,
/// detached from the terminal, and waits until it holds the pid lock.
fn start(config: &AgentConfig, config_file: &Path) -> Result<String, ControlError> {
    if let AgentState::Running { pid, .. } = state(config) {
        return Ok(format!("already running (pid {pid})"));
    }
    let program = std::env::current_exe().map_err(ControlError::CurrentExe)?;
    let mut command = Command::new(&program);
    command
        .arg("--config")
        .arg(config_file)
        .arg("run")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches nothing of the parent.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(Into::into));
    }
    let mut child = command.spawn().map_err(|source| ControlError::Spawn {
        program: program.clone(),
        source,
    })?;
    let log = config.log_dir.join(format!("{}.log", config.program_name));
    let deadline = crate::deadline::after(Instant::now(), START_WAIT);
    loop {
        if let AgentState::Running { pid, .. } = state(config) {
            if pid == child.id() {
                return Ok(format!("started (pid {pid}, log {})", log.display()));
            }
        }
        if let Ok(Some(exited)) = child.try_wait() {
            return Err(ControlError::ExitedAtStart {
                status: exited,
                log,
            });
        }
        if Instant::now() >= deadline {
            return Err(ControlError::NoLock {
                pid: child.id(),
                log,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// SIGTERM, then the wait the unit gives, then SIGKILL.
fn stop(config: &AgentConfig) -> Result<String, ControlError> {
    let pid = match state(config) {
        AgentState::Running { pid, .. } => pid,
        AgentState::NotRunning { .. } => return Ok("not running".into()),
        AgentState::Unknown { reason } => return Err(ControlError::StateUnknown { reason }),
    };
    let target = Pid::from_raw(i32::try_from(pid).map_err(|_| ControlError::PidOutOfRange(pid))?);
    kill(target, Signal::SIGTERM).map_err(|source| ControlError::Signal { pid, source })?;
    let wait = config.kill_agent_max_wait.saturating_add(STOP_MARGIN);
    let deadline = crate::deadline::after(Instant::now(), wait);
    while Instant::now() < deadline {
        if !matches!(state(config), AgentState::Running { .. }) {
            return Ok(format!("stopped (pid {pid})"));
        }
        std::thread::sleep(POLL);
    }
    let _ = kill(target, Signal::SIGKILL);
    Ok(format!(
        "pid {pid} did not stop within {} s of SIGTERM: killed",
        wait.as_secs()
    ))
}
