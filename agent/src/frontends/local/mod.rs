//! `codedeploy-local`: a deployment run on this host from a local directory, a
//! local archive or an S3 object, without the service. It builds the spec the
//! service would send (`spec.rs`), then runs DownloadBundle, Install and the
//! requested events in order through the daemon's own
//! [`Executor`](crate::lifecycle::executor::Executor), in the same deployment
//! root and scripts logs, as [`CommandOrigin::LocalCli`] (the only origin
//! allowed local revisions and custom events). Option checks are pure
//! (`options.rs`), and so is the text it prints (`report.rs`); this file is
//! the thin shell that loads the configuration, looks at the disk and runs.

pub mod options;
pub mod report;
pub mod spec;

use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_credential_types::Credentials;
use futures_util::FutureExt;
use tracing::Instrument;

use crate::bundle::{Fetcher, S3Settings};
use crate::config::{self, AgentConfig};
use crate::deployment_spec::{DeploymentSpec, Revision};
use crate::event::LifecycleEvent;
use crate::identity::{self, CredentialSource};
use crate::lifecycle::command::{CommandOrigin, NothingToRun};
use crate::lifecycle::executor::Executor;
use crate::lifecycle::failure::ExecutionError;
use crate::lifecycle::layout::DeploymentRoot;
use crate::logging::AgentLogFormat;
use crate::shutdown::{self, Shutdown};

pub use options::{
    plan_events, resolve, BundleSource, LocalDeployment, LocationKind, OptionError, RawOptions,
};
use report::{EventResult, SkipReason};

/// How `codedeploy-local` exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalExit {
    Succeeded = 0,
    /// The deployment ran and failed.
    Failed = 1,
    /// Bad options or configuration: nothing was deployed.
    Usage = 2,
}

/// The whole command: configuration, option checks, the deployment. Normal
/// output goes to `out`, problems with the options or configuration to `err`.
pub fn run_cli(
    raw: &RawOptions,
    config_file: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> LocalExit {
    let (config, warnings) = match config::load_or_defaults(config_file) {
        Ok((config, warnings, note)) => {
            if let Some(note) = note {
                let _ = writeln!(err, "{note}");
            }
            (config, warnings)
        }
        Err(e) => {
            let _ = writeln!(err, "codedeploy-local: {e}");
            return LocalExit::Usage;
        }
    };
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => {
            let _ = writeln!(
                err,
                "codedeploy-local: cannot read the current directory: {e}"
            );
            return LocalExit::Usage;
        }
    };
    let inspect = |path: &Path| inspect_location(path);
    let deployment = match options::resolve(raw, &cwd, inspect) {
        Ok(deployment) => deployment,
        Err(e) => {
            let _ = writeln!(err, "codedeploy-local: {e}");
            return LocalExit::Usage;
        }
    };
    init_log(&config, err);
    for warning in warnings {
        tracing::warn!("{}: {}", config_file.display(), warning.message);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(err, "codedeploy-local: cannot start the async runtime: {e}");
            return LocalExit::Failed;
        }
    };
    runtime.block_on(deploy(&config, &deployment, out))
}

/// What a local bundle location is: the archive type from its first bytes,
/// or the files at the top of a directory.
fn inspect_location(path: &Path) -> LocationKind {
    let Ok(meta) = std::fs::metadata(path) else {
        return LocationKind::Missing;
    };
    if meta.is_dir() {
        let mut files: Vec<String> = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        return LocationKind::Directory { files };
    }
    let mut head = Vec::with_capacity(512);
    let _ = std::fs::File::open(path).and_then(|f| f.take(512).read_to_end(&mut head));
    LocationKind::File {
        sniffed: crate::bundle::sniff_archive(&head),
    }
}

/// `<log_dir>/codedeploy-local.log`, in the agent log's line layout; the
/// terminal gets only the summary lines.
fn init_log(config: &AgentConfig, err: &mut dyn Write) {
    let file = config.log_dir.join("codedeploy-local.log");
    let opened = std::fs::create_dir_all(&config.log_dir)
        .and_then(|()| crate::logging::LogFile::open(&file, config.log_max_size));
    match opened {
        Ok(log) => {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            let _ = tracing_subscriber::registry()
                .with(crate::logging::default_filter(config.verbose))
                .with(
                    tracing_subscriber::fmt::layer()
                        .event_format(AgentLogFormat::new("codedeploy-local"))
                        .with_writer(log),
                )
                .try_init();
        }
        Err(e) => {
            let _ = writeln!(
                err,
                "note: cannot open the log file {}: {e}; continuing without it",
                file.display()
            );
        }
    }
}

/// Runs the deployment and prints its progress.
async fn deploy(
    config: &AgentConfig,
    deployment: &LocalDeployment,
    out: &mut dyn Write,
) -> LocalExit {
    let deployment_id = options::deployment_id(&mut fastrand::Rng::new());
    let span = tracing::info_span!("local deployment", deployment_id = %deployment_id);
    deploy_as(config, deployment, &deployment_id, out)
        .instrument(span)
        .await
}

async fn deploy_as(
    config: &AgentConfig,
    deployment: &LocalDeployment,
    deployment_id: &str,
    out: &mut dyn Write,
) -> LocalExit {
    let spec = match spec::open(&spec::envelope(deployment, deployment_id)) {
        Ok(spec) => spec,
        Err(e) => {
            let _ = writeln!(
                out,
                "codedeploy-local: the deployment specification is invalid: {e}"
            );
            return LocalExit::Failed;
        }
    };
    let executor = match executor_for(config, &spec).await {
        Ok(executor) => executor,
        Err(e) => {
            let _ = writeln!(out, "codedeploy-local: {e}");
            return LocalExit::Failed;
        }
    };
    executor.remove_leftovers().await;
    let dir = executor
        .root
        .deployment(&spec.deployment_group_id, &spec.deployment_id);
    let _ = writeln!(out, "{}", report::starting_line(dir.path()));
    let _ = out.flush();
    tracing::info!(events = ?deployment.events.iter().map(LifecycleEvent::name).collect::<Vec<_>>(), "starting local deployment");

    let (trigger, shutdown) = shutdown::channel();
    let signals = tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("stopping: the running script is terminated");
        trigger.trigger();
    });

    let mut exit = LocalExit::Succeeded;
    for event in &deployment.events {
        // Unwinding drops the hook runner, which kills a script still running.
        let (archive, outcome) =
            AssertUnwindSafe(run_event(&executor, event, &spec, shutdown.clone()))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let doing = format!("running {event}");
                    (None, Err(ExecutionError::panic(doing, panic.as_ref())))
                });
        let result = match &outcome {
            Ok(result) => result.clone(),
            Err(_) => EventResult::Failed,
        };
        let _ = writeln!(out, "{}", report::event_line(event, &result));
        if let Err(error) = outcome {
            tracing::error!(event = %event, "{error}");
            let lines = match &error {
                ExecutionError::Script(failure) => {
                    let archive = archive.clone().unwrap_or_else(|| dir.archive_dir());
                    report::script_failure_lines(&archive, failure)
                }
                other => vec![report::failure_line(event, &other.to_string())],
            };
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
            exit = LocalExit::Failed;
            break;
        }
        let _ = out.flush();
    }
    signals.abort();
    let _ = writeln!(out, "{}", report::scripts_log_line(dir.path()));
    if exit == LocalExit::Succeeded {
        let _ = writeln!(out, "{}", report::SUCCESS_LINE);
    }
    let _ = out.flush();
    exit
}

/// Runs one event; what it ran from (the `deployment-archive/` its scripts
/// are in, if any) comes back with the result for the failure report.
async fn run_event(
    executor: &Executor,
    event: &LifecycleEvent,
    spec: &DeploymentSpec,
    shutdown: Shutdown,
) -> (Option<PathBuf>, Result<EventResult, ExecutionError>) {
    let command = match executor.prepare(CommandOrigin::LocalCli, event.clone(), spec.clone()) {
        Ok(command) => command,
        Err(error) => return (None, Err(error)),
    };
    let archive = command.scripts_archive_dir();
    let result = match command.nothing_to_run() {
        Some(NothingToRun::NoEarlierRevision) => {
            Ok(EventResult::Skipped(SkipReason::NoEarlierRevision))
        }
        Some(NothingToRun::NoScripts) => Ok(EventResult::Skipped(SkipReason::NoScripts)),
        None => executor
            .execute(&command, shutdown)
            .await
            .map(|()| EventResult::Succeeded),
    };
    (archive, result)
}

/// An S3 revision, and no credentials for it in the environment nor from the
/// host's identity.
#[derive(Debug, thiserror::Error)]
#[error("cannot get credentials for S3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or {0}")]
struct NoS3Credentials(#[source] identity::IdentityError);

/// The daemon's executor over the configured deployment root. Only an S3
/// revision needs credentials: from the standard environment variables, else
/// the host's own identity (on-premises file or instance profile).
async fn executor_for(
    config: &AgentConfig,
    spec: &DeploymentSpec,
) -> Result<Executor, NoS3Credentials> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"));
    let credentials =
        match (
            &spec.revision,
            env("AWS_ACCESS_KEY_ID"),
            env("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Revision::S3(_), Some(key), Some(secret)) => CredentialSource::Static(
                Credentials::new(key, secret, env("AWS_SESSION_TOKEN"), None, "environment"),
            ),
            (Revision::S3(_), _, _) => {
                let host = identity::resolve(config).await.map_err(NoS3Credentials)?;
                region.get_or_insert(host.region);
                host.credentials
            }
            // Never used: local revisions do not reach S3.
            _ => CredentialSource::Static(Credentials::new("", "", None, None, "unused")),
        };
    let region = region.unwrap_or_else(|| "us-east-1".to_string());
    let endpoint_override = config.s3_endpoint_override.clone().or_else(|| {
        config
            .use_fips_mode
            .then(|| format!("https://s3-fips.{region}.amazonaws.com"))
    });
    Ok(Executor {
        root: DeploymentRoot::new(&config.root_dir, &config.ongoing_deployment_tracking),
        max_revisions: config.max_revisions,
        deployments_log: config.enable_deployments_log,
        fetcher: Fetcher {
            s3: S3Settings {
                region,
                endpoint_override,
                proxy: config.proxy_uri.clone(),
                download: config.bundle_download,
            },
            github_endpoint: config.github_endpoint_override.clone(),
            credentials: Arc::new(credentials),
            policy: config.hardening.bundle,
        },
        archive_reuse: config.enable_archive_reuse,
        install: config.hardening.install,
        hooks: crate::hooks::HookPolicy::from_config(config, None),
        hook_bounds: Arc::new(crate::hooks::bounds::Enforcer::new(config.hook_bounds)),
    })
}
