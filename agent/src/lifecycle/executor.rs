//! Executes one command of a deployment: DownloadBundle, Install, or the hook
//! scripts of a lifecycle event, in the deployment-root layout the official agent
//! uses. Failures become the service's diagnostics here, and only here.
//!
//! The daemon and `codedeploy-local` share this executor. What only the local
//! CLI may do (local revisions, custom events) is allowed by the
//! [`CommandOrigin`] it passes; commands from the service never get it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::appspec::{self, AppSpec, AppSpecLookup};
use crate::atomic_file::Durability;
use crate::bundle;
use crate::config::Hardening;
use crate::deployment_spec::{DeploymentSpec, Revision};
use crate::diagnostics::Diagnostic;
use crate::event::LifecycleEvent;
use crate::hooks::{self, EventRun, HookPolicy, ScriptFailure};
use crate::identity::CredentialSource;
use crate::install::{self, InstallRequest};
use crate::shutdown::Shutdown;

use super::layout::{DeploymentDir, DeploymentRoot};
use super::retention::{folders_to_delete, DeploymentFolder};
use super::revision::{revision_for, PreviousRevision, RevisionChoice};

#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    #[error("Unsupported command type: {0}.")]
    UnsupportedCommand(String),
    #[error(transparent)]
    AppSpec(#[from] appspec::AppSpecError),
    #[error("{0}")]
    PreviousRevisionGone(String),
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    #[error(transparent)]
    GitHub(#[from] bundle::GitHubError),
    #[error(transparent)]
    Install(#[from] install::InstallError),
    #[error("{}", .0.message)]
    Script(ScriptFailure),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Credentials(String),
    /// A panic in the agent stopped the step (`codedeploy-local`; the daemon
    /// reports it to the service directly): the message names it.
    #[error("{0}")]
    Internal(String),
}

impl ExecutionError {
    /// The one mapping from failures to what the service is told.
    pub fn to_diagnostic(&self) -> Diagnostic {
        match self {
            ExecutionError::Script(failure) => failure.to_diagnostic(),
            other => Diagnostic::unknown_error(other.to_string()),
        }
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExecutionError {
    let context = context.into();
    move |source| ExecutionError::Io { context, source }
}

/// How the executor reaches S3.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub region: String,
    pub endpoint_override: Option<String>,
    /// `:proxy_uri:`; `None` lets the proxy environment variables decide.
    pub proxy: Option<crate::config::ProxyUri>,
}

/// Everything a command needs besides the command itself.
pub struct Executor {
    pub root: DeploymentRoot,
    pub max_revisions: u32,
    pub deployments_log: bool,
    pub s3: S3Settings,
    /// `:github_endpoint_override:`; `None` is https://api.github.com. GitHub
    /// downloads go through the same proxy as S3 (`s3.proxy`).
    pub github_endpoint: Option<String>,
    pub credentials: Arc<CredentialSource>,
    /// The operator's hardening keys (bundle, install and hook checks).
    pub hardening: Hardening,
    /// Hook environments, script-log bounds and the hooks' core limit.
    pub hooks: HookPolicy,
    /// Resource bounds for hook scripts (one per agent: it warns once).
    pub hook_bounds: Arc<hooks::bounds::Enforcer>,
}

/// The lifecycle event a command name stands for, if the agent runs it.
pub fn event_for_command(command_name: &str) -> Result<LifecycleEvent, ExecutionError> {
    match LifecycleEvent::from_name(command_name) {
        LifecycleEvent::Custom(_) => {
            Err(ExecutionError::UnsupportedCommand(command_name.to_string()))
        }
        event if event.is_reserved() => {
            Err(ExecutionError::UnsupportedCommand(command_name.to_string()))
        }
        event => Ok(event),
    }
}

/// Who asks for a command. Local revisions and custom events exist only for
/// the local CLI; the service can never reach them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandOrigin {
    /// A command the service sent (the daemon's poller).
    Service,
    /// A command `codedeploy-local` runs from the spec it built itself.
    LocalCli,
}

/// Where an event's scripts come from, once resolved against the disk.
enum ScriptSource {
    /// No earlier revision to run from: the event does nothing.
    Nothing,
    Revision(DeploymentDir),
}

impl Executor {
    fn deployment_dir(&self, spec: &DeploymentSpec) -> DeploymentDir {
        self.root
            .deployment(&spec.deployment_group_id, &spec.deployment_id)
    }

    /// A command is a noop when its event has no scripts in the relevant appspec.
    pub fn is_noop(
        &self,
        event: &LifecycleEvent,
        spec: &DeploymentSpec,
    ) -> Result<bool, ExecutionError> {
        if event.is_agent_action() {
            return Ok(false);
        }
        match self.script_source(event, spec)? {
            ScriptSource::Nothing => Ok(true),
            ScriptSource::Revision(dir) => Ok(!self.appspec_of(&dir, spec)?.has_hooks(event)),
        }
    }

    /// Runs a command the service sent.
    pub async fn execute(
        &self,
        event: &LifecycleEvent,
        spec: &DeploymentSpec,
        shutdown: Shutdown,
    ) -> Result<(), ExecutionError> {
        self.execute_for(CommandOrigin::Service, event, spec, shutdown)
            .await
    }

    /// Runs a command for `origin`: only [`CommandOrigin::LocalCli`] may run
    /// custom events and deploy local revisions.
    pub async fn execute_for(
        &self,
        origin: CommandOrigin,
        event: &LifecycleEvent,
        spec: &DeploymentSpec,
        shutdown: Shutdown,
    ) -> Result<(), ExecutionError> {
        if origin == CommandOrigin::Service && matches!(event, LifecycleEvent::Custom(_)) {
            return Err(ExecutionError::UnsupportedCommand(event.name().to_string()));
        }
        let current = self.deployment_dir(spec);
        std::fs::create_dir_all(current.logs_dir()).map_err(io_error(format!(
            "cannot create {}",
            current.logs_dir().display()
        )))?;
        match event {
            LifecycleEvent::DownloadBundle => {
                self.download_bundle(origin, spec, &current, &shutdown)
                    .await
            }
            LifecycleEvent::Install => self.install(spec, &current, shutdown).await,
            _ => self.run_hooks(event, spec, &current, shutdown).await,
        }
    }

    async fn download_bundle(
        &self,
        origin: CommandOrigin,
        spec: &DeploymentSpec,
        current: &DeploymentDir,
        stop: &Shutdown,
    ) -> Result<(), ExecutionError> {
        self.remove_old_revisions(spec);
        // What is left to unpack once the bundle is here: S3 bundles are
        // unpacked as they download, directories are copied as they are.
        let left_to_unpack = match &spec.revision {
            Revision::S3(revision) => {
                let credentials = self
                    .credentials
                    .current()
                    .await
                    .map_err(|e| ExecutionError::Credentials(e.to_string()))?;
                let client = bundle::s3_client(
                    &self.s3.region,
                    self.s3.endpoint_override.as_deref(),
                    credentials,
                    self.s3.proxy.as_ref(),
                )
                .map_err(|detail| bundle::BundleError::S3 {
                    object: bundle::S3Object::of(revision),
                    detail,
                })?;
                bundle::fetch_s3(
                    &client,
                    revision,
                    &current.bundle_file(),
                    &current.archive_dir(),
                    &self.hardening.bundle,
                    stop,
                )
                .await?;
                None
            }
            Revision::GitHub(revision) => {
                let client = bundle::GitHubClient::new(
                    self.github_endpoint.as_deref(),
                    self.s3.proxy.as_ref(),
                )?;
                // Downloaded whole, then unpacked as what its bytes show.
                Some(bundle::fetch_github(&client, revision, &current.bundle_file()).await?)
            }
            Revision::LocalFile { .. } | Revision::LocalDirectory { .. }
                if origin == CommandOrigin::Service =>
            {
                return Err(ExecutionError::Unsupported(
                    "local revisions are only deployed by codedeploy-local".to_string(),
                ))
            }
            Revision::LocalFile {
                location,
                bundle_type,
            } => {
                let (source, bundle_file) = (PathBuf::from(location), current.bundle_file());
                tokio::task::spawn_blocking(move || bundle::link_local_file(&source, &bundle_file))
                    .await
                    .map_err(|e| {
                        ExecutionError::Unsupported(format!("the bundle copy task failed: {e}"))
                    })??;
                Some(*bundle_type)
            }
            Revision::LocalDirectory { location } => {
                let (source, archive_dir) = (PathBuf::from(location), current.archive_dir());
                tokio::task::spawn_blocking(move || {
                    bundle::copy_local_directory(&source, &archive_dir)
                })
                .await
                .map_err(|e| {
                    ExecutionError::Unsupported(format!("the bundle copy task failed: {e}"))
                })??;
                None
            }
        };
        let bundle_file = current.bundle_file();
        let archive_dir = current.archive_dir();
        if let Some(bundle_type) = left_to_unpack {
            let (policy, stop) = (self.hardening.bundle, stop.clone());
            tokio::task::spawn_blocking(move || {
                bundle::unpack_with(&bundle_file, bundle_type, &archive_dir, &policy, &stop)
            })
            .await
            .map_err(|e| ExecutionError::Unsupported(format!("the unpack task failed: {e}")))??;
        }
        write_instruction_file(
            &self
                .root
                .most_recent_install_file(&spec.deployment_group_id),
            current.path(),
        )
    }

    async fn install(
        &self,
        spec: &DeploymentSpec,
        current: &DeploymentDir,
        stop: Shutdown,
    ) -> Result<(), ExecutionError> {
        let archive_dir = current.archive_dir();
        let spec_behavior = spec.file_exists_behavior;
        let cleanup_file = self.root.cleanup_file(&spec.deployment_group_id);
        let instructions_file = self
            .root
            .install_instructions_file(&spec.deployment_group_id);
        let appspec_filename = spec.appspec_filename.clone();
        let all_possible_events = spec.all_possible_lifecycle_events.clone();
        let install_policy = self.hardening.install;
        std::fs::create_dir_all(self.root.instructions_dir()).map_err(io_error(format!(
            "cannot create {}",
            self.root.instructions_dir().display()
        )))?;
        tokio::task::spawn_blocking(move || -> Result<(), ExecutionError> {
            // The appspec is parsed before anything on the host changes.
            let appspec = appspec::load(
                &archive_dir,
                &appspec_filename,
                AppSpecLookup::InstallFallback,
            )?;
            // Accepted as the official agent accepts them (a key written
            // twice keeps its last value), but in the log for whoever wonders.
            for warning in &appspec.warnings {
                tracing::warn!("{appspec_filename}: {warning}");
            }
            if let Some(all_possible) = &all_possible_events {
                appspec.check_lifecycle_events(all_possible, &appspec_filename)?;
            }
            let file_exists_behavior =
                install::effective_behavior(appspec.file_exists_behavior, spec_behavior);
            install::install(&InstallRequest {
                appspec: &appspec,
                archive_dir: &archive_dir,
                file_exists_behavior,
                cleanup_file: &cleanup_file,
                instructions_file: &instructions_file,
                policy: install_policy,
                stop: &stop,
            })?;
            Ok(())
        })
        .await
        .map_err(|e| ExecutionError::Unsupported(format!("the install task failed: {e}")))??;
        write_instruction_file(
            &self
                .root
                .last_successful_install_file(&spec.deployment_group_id),
            current.path(),
        )
    }

    async fn run_hooks(
        &self,
        event: &LifecycleEvent,
        spec: &DeploymentSpec,
        current: &DeploymentDir,
        shutdown: Shutdown,
    ) -> Result<(), ExecutionError> {
        let ScriptSource::Revision(source) = self.script_source(event, spec)? else {
            tracing::info!(event = %event, "no earlier revision on this host: nothing to run");
            return Ok(());
        };
        let appspec = self.appspec_of(&source, spec)?;
        let scripts = appspec.hooks_for(event);
        if scripts.is_empty() {
            return Ok(());
        }
        let env = hooks::hook_environment(spec, event);
        let deployments_log = self.deployments_log.then(|| self.root.deployments_log());
        let archive_dir = source.archive_dir();
        let scripts_log = current.scripts_log();
        let run = EventRun {
            event,
            scripts,
            archive_dir: &archive_dir,
            env: &env,
            scripts_log: &scripts_log,
            deployments_log: deployments_log.as_deref(),
            deployment_id: &spec.deployment_id,
            policy: &self.hooks,
            bounds: &self.hook_bounds,
        };
        hooks::run_event(&run, shutdown)
            .await
            .map_err(ExecutionError::Script)
    }

    /// The `deployment-archive/` an event's scripts run from; `None` when the
    /// event has no earlier revision to run from (it is then a noop). Lets the
    /// local CLI name the failing script's full path.
    pub fn scripts_archive_dir(
        &self,
        event: &LifecycleEvent,
        spec: &DeploymentSpec,
    ) -> Result<Option<PathBuf>, ExecutionError> {
        Ok(match self.script_source(event, spec)? {
            ScriptSource::Nothing => None,
            ScriptSource::Revision(dir) => Some(dir.archive_dir()),
        })
    }

    /// The deployment folder whose appspec and scripts an event uses.
    fn script_source(
        &self,
        event: &LifecycleEvent,
        spec: &DeploymentSpec,
    ) -> Result<ScriptSource, ExecutionError> {
        let current = self.deployment_dir(spec);
        match revision_for(event, spec.direction()) {
            RevisionChoice::Current => Ok(ScriptSource::Revision(current)),
            RevisionChoice::Previous(_) if current.archive_dir().exists() => {
                Ok(ScriptSource::Revision(current))
            }
            RevisionChoice::Previous(which) => {
                let file = match which {
                    PreviousRevision::LastSuccessful => self
                        .root
                        .last_successful_install_file(&spec.deployment_group_id),
                    PreviousRevision::MostRecent => self
                        .root
                        .most_recent_install_file(&spec.deployment_group_id),
                };
                match std::fs::read_to_string(&file) {
                    Ok(text) if !text.trim().is_empty() => Ok(ScriptSource::Revision(
                        DeploymentDir::at(PathBuf::from(text.trim())),
                    )),
                    Ok(_) => Ok(ScriptSource::Nothing),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ScriptSource::Nothing),
                    Err(e) => Err(ExecutionError::Io {
                        context: format!("cannot read {}", file.display()),
                        source: e,
                    }),
                }
            }
        }
    }

    fn appspec_of(
        &self,
        dir: &DeploymentDir,
        spec: &DeploymentSpec,
    ) -> Result<AppSpec, ExecutionError> {
        let current = self.deployment_dir(spec);
        match appspec::load(&dir.archive_dir(), &spec.appspec_filename, AppSpecLookup::Exact) {
            Ok(appspec) => Ok(appspec),
            Err(e) if dir != &current && !dir.archive_dir().exists() => Err(ExecutionError::PreviousRevisionGone(format!(
                "{e} The previous revision's folder {} is gone from this host, so its scripts cannot run. \
                 Redeploy with the option to ignore ApplicationStop failures, or remove {} to start afresh.",
                dir.path().display(),
                self.root.last_successful_install_file(&spec.deployment_group_id).display()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps at most `max_revisions` folders of the group; failures only warn.
    fn remove_old_revisions(&self, spec: &DeploymentSpec) {
        let group_dir = self.root.group_dir(&spec.deployment_group_id);
        let Ok(entries) = std::fs::read_dir(&group_dir) else {
            return;
        };
        let folders: Vec<DeploymentFolder> = entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| {
                let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                Some(DeploymentFolder {
                    name: e.file_name().to_string_lossy().into_owned(),
                    modified,
                })
            })
            .collect();
        let last_successful = std::fs::read_to_string(
            self.root
                .last_successful_install_file(&spec.deployment_group_id),
        )
        .ok()
        .and_then(|p| {
            Path::new(p.trim())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        });
        for name in folders_to_delete(
            &folders,
            &spec.deployment_id,
            last_successful.as_deref(),
            self.max_revisions,
        ) {
            let path = group_dir.join(&name);
            tracing::info!("removing old revision {}", path.display());
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!("cannot remove old revision {}: {e}", path.display());
            }
        }
    }
}

/// Replaces a deployment-instructions pointer file whole.
fn write_instruction_file(file: &Path, deployment_dir: &Path) -> Result<(), ExecutionError> {
    use std::io::Write;
    crate::atomic_file::replace(file, None, Durability::Unsynced, |out| {
        out.write_all(deployment_dir.to_string_lossy().as_bytes())
    })
    .map_err(io_error(format!("cannot write {}", file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_map_to_events() {
        assert_eq!(
            event_for_command("DownloadBundle").unwrap(),
            LifecycleEvent::DownloadBundle
        );
        assert_eq!(
            event_for_command("AfterAllowTraffic").unwrap(),
            LifecycleEvent::AfterAllowTraffic
        );
        for bad in ["BlockTraffic", "downloadBundle", "Deploy", ""] {
            assert_eq!(
                event_for_command(bad).unwrap_err().to_string(),
                format!("Unsupported command type: {bad}.")
            );
        }
    }

    fn local_spec(revision: Revision) -> DeploymentSpec {
        DeploymentSpec {
            deployment_id: "d-ABCDEFGHI-local".into(),
            deployment_group_id: "g-local".into(),
            deployment_group_name: "LocalFleet".into(),
            application_name: "app".into(),
            deployment_creator: crate::deployment_spec::DeploymentCreator::user(),
            deployment_type: crate::deployment_spec::DeploymentType::InPlace,
            appspec_filename: "appspec.yml".into(),
            revision,
            file_exists_behavior: None,
            all_possible_lifecycle_events: None,
        }
    }

    fn executor(root: &Path) -> Executor {
        Executor {
            root: DeploymentRoot::new(root, "ongoing-deployment"),
            max_revisions: 5,
            deployments_log: false,
            s3: S3Settings {
                region: "us-east-1".into(),
                endpoint_override: None,
                proxy: None,
            },
            github_endpoint: None,
            credentials: Arc::new(CredentialSource::Static(
                aws_credential_types::Credentials::new("unused", "unused", None, None, "test"),
            )),
            hardening: Hardening::default(),
            hooks: HookPolicy::default(),
            hook_bounds: Arc::new(hooks::bounds::Enforcer::disabled()),
        }
    }

    #[test]
    fn the_service_never_gets_local_revisions_or_custom_events() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join("appspec.yml"), "version: 0.0\nos: linux\n").unwrap();
        let executor = executor(&tmp.path().join("root"));
        let spec = local_spec(Revision::LocalDirectory {
            location: bundle.display().to_string(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_trigger, shutdown) = crate::shutdown::channel();
        let run = |origin, event: LifecycleEvent| {
            runtime.block_on(executor.execute_for(origin, &event, &spec, shutdown.clone()))
        };
        let custom = LifecycleEvent::Custom("Warmup".into());
        assert_eq!(
            run(CommandOrigin::Service, custom.clone())
                .unwrap_err()
                .to_string(),
            "Unsupported command type: Warmup."
        );
        assert!(run(CommandOrigin::Service, LifecycleEvent::DownloadBundle)
            .unwrap_err()
            .to_string()
            .contains("only deployed by codedeploy-local"));
        run(CommandOrigin::LocalCli, LifecycleEvent::DownloadBundle).unwrap();
        let archive = executor.deployment_dir(&spec).archive_dir();
        assert!(archive.join("appspec.yml").is_file());
        // A custom event without scripts in the appspec runs nothing.
        run(CommandOrigin::LocalCli, custom).unwrap();
    }
}
