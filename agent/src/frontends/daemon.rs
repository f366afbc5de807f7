//! Wiring of the long-running agent: configuration, identity, the Commands
//! client, the executor and the poller; the pid file and its lock; signals. One
//! process: systemd supervises it.
//!
//! Signals: SIGTERM/SIGINT stop polling and let a running command finish for
//! `:kill_agent_max_wait_time_seconds:` (a second one stops its scripts at once);
//! SIGHUP re-reads the configuration file and applies `:verbose:`,
//! `:wait_between_runs:` and `:wait_after_throttle_error:` between polls, never
//! touching a command in flight (other changed keys are named in a warning: they
//! need a restart).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use crate::bundle::{Fetcher, S3Settings};
use crate::config::{self, AgentConfig, SpecVerification};
use crate::core_dumps::{self, CoreLimit};
use crate::deployment_spec::SpecVerifier;
use crate::identity::{self, IdentityOrigin};
use crate::lifecycle::executor::Executor;
use crate::lifecycle::layout::DeploymentRoot;
use crate::lifecycle::tracking::Tracker;
use crate::logging::{self, LogControl, LogSettings};
use crate::metrics::MetricsFile;
use crate::poller::schedule::Schedule;
use crate::poller::Poller;
use crate::protocol::endpoint::{
    commands_service, domain_for_region, validate_region, EndpointInputs, InvalidRegion,
};
use crate::protocol::{CommandsClient, TransportSettings};
use crate::shutdown;
use crate::version_file;

/// How long the scripts of an aborted command get to end and be reported.
const ABORT_GRACE: Duration = Duration::from_secs(30);
/// The variables through which an operator may set a proxy instead of `:proxy_uri:`.
const PROXY_VARIABLES: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error("cannot install the {signal} handler: {source}")]
    SignalHandler {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// `region_source` says where the region was read (instance metadata or
    /// the on-premises file), for the operator to fix it there.
    #[error("{source} (region from {region_source})")]
    Region {
        region_source: String,
        #[source]
        source: InvalidRegion,
    },
    #[error(transparent)]
    Fips(#[from] config::NoFipsEndpoint),
    #[error(transparent)]
    SpecCa(#[from] crate::deployment_spec::CaChainError),
    #[error(transparent)]
    HttpClient(#[from] crate::http::ClientError),
    #[error("cannot create the pid file in {}: {source}", dir.display())]
    PidFile {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `holder` is what the pid file holds (the running agent's pid, or
    /// nothing when it could not be read).
    #[error("another agent is already running with pid file {}: {source}; pid {holder}", file.display())]
    AlreadyRunning {
        file: PathBuf,
        holder: String,
        #[source]
        source: nix::errno::Errno,
    },
}

/// Runs the agent in the foreground until SIGTERM or SIGINT.
pub async fn run(config_file: &Path) -> Result<(), StartupError> {
    let parsed = config::load_agent_config(config_file)?;
    let config = parsed.config;
    let log = logging::init(&LogSettings {
        log_dir: &config.log_dir,
        program_name: &config.program_name,
        verbose: config.verbose,
        max_size: config.log_max_size,
    });
    tracing::info!(
        "codedeploy-agent {} starting with {} (log: {})",
        crate::VERSION,
        config_file.display(),
        log.file()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "stderr".into())
    );
    log_warnings(config_file, &parsed.warnings);
    // Before any credential is read: no core file may ever hold one.
    let hooks_core_limit = prepare_host(&config);
    if let Err(why) = crate::hooks::bounds::apply_to_agent(&config.agent_priority) {
        tracing::warn!("{why}; the agent keeps its current priority");
    }
    let mut signals = Signals::install()?;
    let _pid_lock = PidLock::acquire(&config.pid_dir, &config.program_name).await?;
    let (schedule, schedule_updates) = watch::channel(schedule_of(&config));
    // Start-up may wait on instance metadata: a stop request ends it cleanly.
    let poller = tokio::select! {
        built = build_poller(&config, config_file, schedule_updates, hooks_core_limit) => built?,
        signal = signals.stop() => {
            tracing::info!("{signal} received during start-up: stopping");
            return Ok(());
        }
    };
    tracing::info!(
        "polling {} as {} every {} s",
        poller.client.endpoint(),
        poller.host_identifier,
        config.wait_between_runs.as_secs()
    );

    // Start-up is done: its heap and code pages are not needed while idle.
    crate::memory::return_freed_memory();
    let (stop_polling, polling_stopped) = shutdown::channel();
    let (abort_hooks, hooks_aborted) = shutdown::channel();
    let poller_task = poller.run_with(polling_stopped, hooks_aborted);
    tokio::pin!(poller_task);
    let mut running = config;
    loop {
        tokio::select! {
            _ = &mut poller_task => return Ok(()),
            received = signals.next() => match received {
                Received::Reload => reload(config_file, &mut running, &log, &schedule),
                Received::Stop(signal) => {
                    tracing::info!(
                        "{signal} received: stopping; a running command may finish within {} s",
                        running.kill_agent_max_wait.as_secs()
                    );
                    stop_polling.trigger();
                    break;
                }
            }
        }
    }
    tokio::select! {
        _ = &mut poller_task => {}
        _ = tokio::time::sleep(running.kill_agent_max_wait) => {
            tracing::warn!("the running command did not finish in time: stopping its scripts");
            abort_hooks.trigger();
            let _ = tokio::time::timeout(ABORT_GRACE, &mut poller_task).await;
        }
        signal = signals.stop() => {
            tracing::warn!("{signal} received again: stopping the running command's scripts now");
            abort_hooks.trigger();
            let _ = tokio::time::timeout(ABORT_GRACE, &mut poller_task).await;
        }
    }
    tracing::info!("codedeploy-agent stopped");
    Ok(())
}

fn log_warnings(config_file: &Path, warnings: &[config::ConfigWarning]) {
    for warning in warnings {
        tracing::warn!(
            "{}{}: `:{}:` {}",
            config_file.display(),
            warning
                .line
                .map(|l| format!(" line {l}"))
                .unwrap_or_default(),
            warning.key,
            warning.message
        );
    }
}

fn schedule_of(config: &AgentConfig) -> Schedule {
    Schedule {
        wait_between_runs: config.wait_between_runs,
        wait_after_throttle_error: config.wait_after_throttle_error,
        poll_jitter_percent: config.poll_jitter_percent,
        startup_delay_max: config.startup_delay_max.unwrap_or(config.wait_between_runs),
    }
}

/// SIGHUP: re-reads the file and applies what can change while running. A file
/// that no longer parses leaves the running configuration as it is.
fn reload(
    config_file: &Path,
    running: &mut AgentConfig,
    log: &LogControl,
    schedule: &watch::Sender<Schedule>,
) {
    let parsed = match config::load_agent_config(config_file) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::error!("SIGHUP: keeping the running configuration: {e}");
            return;
        }
    };
    log_warnings(config_file, &parsed.warnings);
    let reread = parsed.config;
    if reread.verbose != running.verbose {
        if let Err(e) = log.set_verbose(reread.verbose) {
            tracing::warn!("SIGHUP: {e}");
        }
    }
    let new_schedule = schedule_of(&reread);
    schedule.send_if_modified(|current| {
        let changed = *current != new_schedule;
        *current = new_schedule;
        changed
    });
    let ignored = config::live_reload_ignored(running, &reread);
    if !ignored.is_empty() {
        tracing::warn!(
            "SIGHUP: {} changed in {}; restart the agent to apply",
            ignored
                .iter()
                .map(|k| format!("`:{k}:`"))
                .collect::<Vec<_>>()
                .join(", "),
            config_file.display()
        );
    }
    running.verbose = reread.verbose;
    running.wait_between_runs = reread.wait_between_runs;
    running.wait_after_throttle_error = reread.wait_after_throttle_error;
    running.poll_jitter_percent = reread.poll_jitter_percent;
    tracing::info!(
        "SIGHUP: configuration reloaded from {}: verbose {}, wait_between_runs {} s, wait_after_throttle_error {} s",
        config_file.display(),
        running.verbose,
        running.wait_between_runs.as_secs(),
        running.wait_after_throttle_error.as_secs()
    );
}

/// The signals the agent acts on, installed once at start.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> Result<Signals, StartupError> {
        let install = |kind: SignalKind, name: &'static str| {
            signal(kind).map_err(|source| StartupError::SignalHandler {
                signal: name,
                source,
            })
        };
        Ok(Signals {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
            hup: install(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    async fn stop(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }

    async fn next(&mut self) -> Received {
        tokio::select! {
            _ = self.term.recv() => Received::Stop("SIGTERM"),
            _ = self.int.recv() => Received::Stop("SIGINT"),
            _ = self.hup.recv() => Received::Reload,
        }
    }
}

/// What the agent does to the host once, before it reads any credential, each
/// step logged: core dumps per `:disable_core_dumps:`, the directories of the
/// `restrict_*_permissions` keys, then `.version`. Returns the core limit
/// hooks get back. Failures are warnings: none of this may keep the agent
/// from deploying.
fn prepare_host(config: &AgentConfig) -> Option<CoreLimit> {
    let restore_for_hooks = core_dumps::apply(config.core_dumps);
    for (dir, mode, key) in config::restricted_dirs(config) {
        let restricted = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)));
        match restricted {
            Ok(()) => tracing::info!("{key}: {} is now {mode:04o}", dir.display()),
            Err(e) => tracing::warn!("{key}: cannot make {} {mode:04o}: {e}", dir.display()),
        }
    }
    let path = version_file::path_for(&config.root_dir);
    match version_file::write(&path, crate::VERSION) {
        Ok(()) => tracing::info!(
            "wrote {} (agent_version: {})",
            path.display(),
            crate::VERSION
        ),
        Err(e) => tracing::warn!("cannot write {}: {e}", path.display()),
    }
    restore_for_hooks
}

/// What a signal asks of the running agent.
enum Received {
    Stop(&'static str),
    Reload,
}

async fn build_poller(
    config: &AgentConfig,
    config_file: &Path,
    schedule: watch::Receiver<Schedule>,
    hooks_core_limit: Option<CoreLimit>,
) -> Result<Poller, StartupError> {
    let identity = identity::resolve(config).await?;
    let domain = identity
        .domain
        .clone()
        .unwrap_or_else(|| domain_for_region(&identity.region).to_string());
    let region_source = match &identity.origin {
        IdentityOrigin::Ec2 { .. } => "instance metadata".to_string(),
        _ => config.on_premises_config_file.display().to_string(),
    };
    validate_region(&identity.region, &domain).map_err(|source| StartupError::Region {
        region_source,
        source,
    })?;
    config::check_fips_region(config, &identity.region)?;
    match &identity.origin {
        IdentityOrigin::OnPremisesUser => tracing::info!(
            "on-premises host {} in {} (IAM user keys from {})",
            identity.host_identifier,
            identity.region,
            config.on_premises_config_file.display()
        ),
        IdentityOrigin::OnPremisesSession => tracing::info!(
            "on-premises host {} in {} (IAM session, {:?})",
            identity.host_identifier,
            identity.region,
            identity.credentials
        ),
        IdentityOrigin::Ec2 { partition, role } => tracing::info!(
            "EC2 instance {} in {} (partition {partition}, domain {domain}), signing with instance-profile role {role}",
            identity.host_identifier,
            identity.region
        ),
    }
    let service = commands_service(&EndpointInputs {
        region: &identity.region,
        domain: Some(&domain),
        deploy_control_endpoint: config.deploy_control_endpoint.as_deref(),
        enable_auth_policy: config.enable_auth_policy,
        use_fips_mode: config.use_fips_mode,
    });
    if config.spec_verification == SpecVerification::SignatureOnly {
        tracing::warn!("deployment_spec_verify_chain is false: spec signatures are checked but their certificate chain is not");
    }
    let verifier =
        SpecVerifier::from_ca_file(&config.deployment_spec_ca_file, config.spec_verification)?;
    match &config.proxy_uri {
        Some(proxy) => tracing::info!(
            "Commands and S3 traffic goes through proxy {}",
            proxy.redacted()
        ),
        None => {
            let set: Vec<&str> = PROXY_VARIABLES
                .iter()
                .copied()
                .filter(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
                .collect();
            if !set.is_empty() {
                tracing::info!(
                    "no :proxy_uri:; the proxy variables {} apply (with NO_PROXY)",
                    set.join(", ")
                );
            }
        }
    }
    let credentials = Arc::new(identity.credentials);
    let transport = TransportSettings {
        read_timeout: config.http_read_timeout,
        proxy_uri: config.proxy_uri.clone(),
        user_agent: format!("codedeploy-agent-rs/{}", crate::VERSION),
    };
    let client = CommandsClient::new(
        service,
        identity.region.clone(),
        credentials.clone(),
        &transport,
        crate::VERSION.to_string(),
    )?;
    let root = DeploymentRoot::new(&config.root_dir, &config.ongoing_deployment_tracking);
    let s3_endpoint = config
        .s3_endpoint_override
        .clone()
        .or_else(|| {
            config
                .use_fips_mode
                .then(|| format!("https://s3-fips.{}.amazonaws.com", identity.region))
        })
        .or_else(|| {
            (identity.region == "eusc-de-east-1")
                .then(|| "https://s3.eusc-de-east-1.amazonaws.eu".to_string())
        });
    Ok(Poller {
        client,
        host_identifier: identity.host_identifier,
        verifier,
        tracker: Tracker::new(root.clone()),
        executor: Executor {
            root,
            max_revisions: config.max_revisions,
            deployments_log: config.enable_deployments_log,
            fetcher: Fetcher {
                s3: S3Settings {
                    region: identity.region,
                    endpoint_override: s3_endpoint,
                    proxy: config.proxy_uri.clone(),
                    download: config.bundle_download,
                },
                github_endpoint: config.github_endpoint_override.clone(),
                credentials,
                policy: config.hardening.bundle,
            },
            archive_reuse: config.enable_archive_reuse,
            install: config.hardening.install,
            hooks: crate::hooks::HookPolicy::from_config(config, hooks_core_limit),
            hook_bounds: Arc::new(crate::hooks::bounds::Enforcer::new(config.hook_bounds)),
        },
        schedule,
        max_concurrent_commands: config.max_concurrent_commands,
        metrics: match &config.metrics_textfile {
            Some(path) => MetricsFile::start(path, crate::VERSION, config_file),
            None => MetricsFile::disabled(),
        },
    })
}

/// The pid file and the exclusive lock that keeps a second agent off this host.
struct PidLock {
    pid_file: PathBuf,
    _lock: nix::fcntl::Flock<File>,
}

/// How long start-up waits for a pid lock whose recorded holder is gone.
/// A hook spawned by an agent that was then killed holds the lock from its
/// fork until its exec (the descriptor closes on exec): milliseconds, longer
/// on a loaded host, and a restart that comes at once (systemd's, an
/// operator's) must not take that for a running agent.
const ORPHANED_LOCK_PATIENCE: Duration = Duration::from_secs(5);

impl PidLock {
    async fn acquire(pid_dir: &Path, program_name: &str) -> Result<PidLock, StartupError> {
        let pid_file = pid_dir.join(format!("{program_name}.pid"));
        let lock_file = pid_dir.join(format!("{program_name}.pid.lock"));
        let cannot = |source: std::io::Error| StartupError::PidFile {
            dir: pid_dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(pid_dir).map_err(cannot)?;
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_file)
            .map_err(cannot)?;
        let deadline = tokio::time::Instant::now() + ORPHANED_LOCK_PATIENCE;
        let lock = loop {
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(lock) => break lock,
                Err((back, source)) => {
                    let holder = std::fs::read_to_string(&pid_file).unwrap_or_default();
                    let holder = holder.trim().to_string();
                    if holder_alive(&holder) || tokio::time::Instant::now() >= deadline {
                        return Err(StartupError::AlreadyRunning {
                            file: pid_file.clone(),
                            holder,
                            source,
                        });
                    }
                    file = back;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let mut pid = File::create(&pid_file).map_err(cannot)?;
        writeln!(pid, "{}", std::process::id()).map_err(cannot)?;
        Ok(PidLock {
            pid_file,
            _lock: lock,
        })
    }
}

/// Whether the process a pid file names is alive (an unreadable or empty
/// pid file names none).
fn holder_alive(holder: &str) -> bool {
    holder.parse::<u32>().is_ok_and(crate::pid::alive)
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Until another process holds `lock_file`'s lock.
    fn wait_until_held(lock_file: &Path) {
        let started = std::time::Instant::now();
        while nix::fcntl::Flock::lock(
            File::open(lock_file).unwrap(),
            nix::fcntl::FlockArg::LockSharedNonblock,
        )
        .is_ok()
        {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "flock never took the lock"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What a killed agent leaves: its pid file, and the lock held by a
    /// child that has not exec'd yet (here `flock`, holding it for 0.5 s).
    /// A new agent waits for it; a live holder is refused at once.
    #[tokio::test]
    async fn a_lock_held_after_its_agent_died_is_waited_for_a_live_agent_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let lock_file = dir.path().join("codedeploy-agent.pid.lock");
        std::fs::write(&lock_file, "").unwrap();
        let mut child = std::process::Command::new("flock")
            .arg("-x")
            .arg(&lock_file)
            .args(["sleep", "0.5"])
            .spawn()
            .unwrap();
        wait_until_held(&lock_file);
        // A pid no process has (above the kernel's largest).
        std::fs::write(dir.path().join("codedeploy-agent.pid"), "4194305\n").unwrap();
        let waited = std::time::Instant::now();
        let lock = PidLock::acquire(dir.path(), "codedeploy-agent")
            .await
            .unwrap();
        assert!(
            waited.elapsed() >= Duration::from_millis(100),
            "{:?}",
            waited.elapsed()
        );
        child.wait().unwrap();
        drop(lock);

        // Held, and the pid file names a live process (this one): refused at once.
        let mut child = std::process::Command::new("flock")
            .arg("-x")
            .arg(&lock_file)
            .args(["sleep", "2"])
            .spawn()
            .unwrap();
        wait_until_held(&lock_file);
        std::fs::write(
            dir.path().join("codedeploy-agent.pid"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        let refused = std::time::Instant::now();
        let error = PidLock::acquire(dir.path(), "codedeploy-agent")
            .await
            .err()
            .expect("a live holder refuses the start");
        assert!(refused.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(error, StartupError::AlreadyRunning { .. }),
            "{error}"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
