//! Wiring of the long-running agent: configuration, identity, the Commands
//! client, the executor and the poller; the pid file and its lock; signals. One
//! process: systemd supervises it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, AgentConfig, SpecVerification};
use crate::identity;
use crate::lifecycle::executor::{Executor, S3Settings};
use crate::lifecycle::layout::DeploymentRoot;
use crate::lifecycle::tracking::Tracker;
use crate::poller::schedule::Schedule;
use crate::poller::Poller;
use crate::protocol::endpoint::{
    commands_service, domain_for_region, validate_region, EndpointInputs,
};
use crate::protocol::{CommandsClient, TransportSettings};
use crate::shutdown;
use crate::spec::SpecVerifier;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error("{0}")]
    Invalid(String),
    #[error("another agent is already running with pid file {}: {detail}", file.display())]
    AlreadyRunning { file: PathBuf, detail: String },
}

/// Runs the agent in the foreground until SIGTERM or SIGINT.
pub async fn run(config_file: &Path) -> Result<(), StartupError> {
    let parsed = config::load_agent_config(config_file)?;
    let config = parsed.config;
    let log_file = crate::logging::init(&config.log_dir, &config.program_name, config.verbose);
    tracing::info!(
        "codedeploy-agent {} starting with {} (log: {})",
        crate::VERSION,
        config_file.display(),
        log_file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "stderr".into())
    );
    for warning in &parsed.warnings {
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
    let _pid_lock = PidLock::acquire(&config.pid_dir, &config.program_name)?;
    let poller = build_poller(&config).await?;
    tracing::info!(
        "polling {} as {} every {} s",
        poller.client.endpoint(),
        poller.host_identifier,
        config.wait_between_runs.as_secs()
    );

    let (stop_polling, polling_stopped) = shutdown::channel();
    let (abort_hooks, hooks_aborted) = shutdown::channel();
    let poller_task = poller.run_with(polling_stopped, hooks_aborted);
    tokio::pin!(poller_task);
    tokio::select! {
        _ = &mut poller_task => return Ok(()),
        signal = wait_for_stop_signal() => {
            tracing::info!("{signal} received: stopping; a running command may finish within {} s", config.kill_agent_max_wait.as_secs());
            stop_polling.trigger();
        }
    }
    tokio::select! {
        _ = &mut poller_task => {}
        _ = tokio::time::sleep(config.kill_agent_max_wait) => {
            tracing::warn!("the running command did not finish in time: stopping its scripts");
            abort_hooks.trigger();
            let _ = tokio::time::timeout(Duration::from_secs(30), &mut poller_task).await;
        }
    }
    tracing::info!("codedeploy-agent stopped");
    Ok(())
}

async fn build_poller(config: &AgentConfig) -> Result<Poller, StartupError> {
    let identity = identity::resolve(config).await?;
    let domain = identity
        .domain
        .clone()
        .unwrap_or_else(|| domain_for_region(&identity.region).to_string());
    validate_region(&identity.region, &domain).map_err(|e| {
        StartupError::Invalid(format!(
            "{e} (region from {})",
            config.on_premises_config_file.display()
        ))
    })?;
    config::check_fips_region(config, &identity.region).map_err(StartupError::Invalid)?;
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
        SpecVerifier::from_ca_file(&config.deployment_spec_ca_file, config.spec_verification)
            .map_err(StartupError::Invalid)?;
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
    )
    .map_err(StartupError::Invalid)?;
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
        tracker: Tracker::new(root.ongoing_dir()),
        executor: Executor {
            root,
            max_revisions: config.max_revisions,
            deployments_log: config.enable_deployments_log,
            s3: S3Settings {
                region: identity.region,
                endpoint_override: s3_endpoint,
            },
            credentials,
        },
        schedule: Schedule {
            wait_between_runs: config.wait_between_runs,
            wait_after_throttle_error: config.wait_after_throttle_error,
        },
    })
}

async fn wait_for_stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the agent with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// The pid file and the exclusive lock that keeps a second agent off this host.
struct PidLock {
    pid_file: PathBuf,
    _lock: nix::fcntl::Flock<File>,
}

impl PidLock {
    fn acquire(pid_dir: &Path, program_name: &str) -> Result<PidLock, StartupError> {
        let pid_file = pid_dir.join(format!("{program_name}.pid"));
        let lock_file = pid_dir.join(format!("{program_name}.pid.lock"));
        let cannot = |e: std::io::Error| {
            StartupError::Invalid(format!(
                "cannot create the pid file in {}: {e}",
                pid_dir.display()
            ))
        };
        std::fs::create_dir_all(pid_dir).map_err(cannot)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_file)
            .map_err(cannot)?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| {
                let holder = std::fs::read_to_string(&pid_file).unwrap_or_default();
                StartupError::AlreadyRunning {
                    file: pid_file.clone(),
                    detail: format!("{errno}; pid {}", holder.trim()),
                }
            })?;
        let mut pid = File::create(&pid_file).map_err(cannot)?;
        writeln!(pid, "{}", std::process::id()).map_err(cannot)?;
        Ok(PidLock {
            pid_file,
            _lock: lock,
        })
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}
