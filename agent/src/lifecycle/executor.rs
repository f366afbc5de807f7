//! Executes one prepared command of a deployment: DownloadBundle, Install, or
//! the hook scripts of a lifecycle event, in the deployment-root layout the
//! official agent uses. It dispatches: fetching is the bundle layer's, the
//! pointer files and retention are the layout's, installing is install's and
//! running scripts is hooks'. What takes long runs off the runtime.
//!
//! The daemon and `codedeploy-local` share this executor. What only the local
//! CLI may do (local revisions, custom events) is allowed by the
//! [`CommandOrigin`] of the [`PreparedCommand`]; commands from the service
//! never get it.

use std::sync::Arc;

use crate::appspec::{self, AppSpecLookup};
use crate::blocking::off_runtime;
use crate::bundle::{reuse_archive, DeploymentFiles, FetchTarget, Fetcher};
use crate::config::InstallPolicy;
use crate::deployment_spec::{DeploymentSpec, Revision};
use crate::event::LifecycleEvent;
use crate::hooks::{self, EventRun, HookPolicy};
use crate::install::{self, InstallRequest};
use crate::shutdown::Shutdown;

use super::command::{CommandOrigin, PreparedCommand, Step};
use super::failure::ExecutionError;
use super::layout::{disk, DeploymentDir, DeploymentRoot};

/// Everything a command needs besides the command itself.
#[derive(Debug)]
pub struct Executor {
    pub root: DeploymentRoot,
    pub max_revisions: u32,
    pub deployments_log: bool,
    /// Where revisions come from (S3, GitHub, local) and the bundle checks.
    pub fetcher: Fetcher,
    /// `:enable_archive_reuse:`: a deployment naming an earlier one may take
    /// its revision from that one's folder (2.1's RESTART mode).
    pub archive_reuse: bool,
    /// The operator's install checks.
    pub install: InstallPolicy,
    /// Hook environments, script-log bounds and the hooks' core limit.
    pub hooks: HookPolicy,
    /// Resource bounds for hook scripts (one per agent: it warns once).
    pub hook_bounds: Arc<hooks::bounds::Enforcer>,
}

impl Executor {
    /// Makes a command ready (see [`PreparedCommand::prepare`]).
    pub fn prepare(
        &self,
        origin: CommandOrigin,
        event: LifecycleEvent,
        spec: DeploymentSpec,
    ) -> Result<PreparedCommand, ExecutionError> {
        PreparedCommand::prepare(&self.root, origin, event, spec)
    }

    /// After a start: removes the temporary files that a killed agent left
    /// half-written in the deployment root (logged, never an error).
    pub async fn remove_leftovers(&self) {
        let root = self.root.clone();
        match off_runtime("tidying", move || disk::remove_leftover_temporaries(&root)).await {
            Ok(removed) => {
                for path in removed {
                    tracing::info!(
                        "removed {}, left half-written by a process that is gone",
                        path.display()
                    );
                }
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Runs a prepared command.
    pub async fn execute(
        &self,
        command: &PreparedCommand,
        shutdown: Shutdown,
    ) -> Result<(), ExecutionError> {
        let spec = &command.spec;
        let current = self
            .root
            .deployment(&spec.deployment_group_id, &spec.deployment_id);
        disk::create_logs_dir(&current)?;
        match &command.step {
            Step::DownloadBundle => {
                self.download_bundle(command.origin, spec, &current, &shutdown)
                    .await
            }
            Step::Install => self.install(spec, &current, shutdown).await,
            Step::Hooks { source, appspec } => {
                let deployments_log = self.deployments_log.then(|| self.root.deployments_log());
                let run = EventRun {
                    event: &command.event,
                    scripts: appspec.hooks_for(&command.event),
                    archive_dir: &source.archive_dir(),
                    env: &hooks::hook_environment(spec, &command.event),
                    scripts_log: &current.scripts_log(),
                    deployments_log: deployments_log.as_deref(),
                    deployment_id: &spec.deployment_id,
                    policy: &self.hooks,
                    bounds: &self.hook_bounds,
                };
                hooks::run_event(&run, shutdown)
                    .await
                    .map_err(ExecutionError::Script)
            }
            Step::Nothing(why) => {
                tracing::info!(event = %command.event, "nothing to run: {why:?}");
                Ok(())
            }
        }
    }

    async fn download_bundle(
        &self,
        origin: CommandOrigin,
        spec: &DeploymentSpec,
        current: &DeploymentDir,
        stop: &Shutdown,
    ) -> Result<(), ExecutionError> {
        let is_local = matches!(
            spec.revision,
            Revision::LocalFile { .. } | Revision::LocalDirectory { .. }
        );
        if is_local && origin == CommandOrigin::Service {
            return Err(ExecutionError::LocalRevisionFromService);
        }
        let (root, max_revisions) = (self.root.clone(), self.max_revisions);
        let (group, deployment) = (spec.deployment_group_id.clone(), spec.deployment_id.clone());
        off_runtime("retention", move || {
            disk::remove_old_revisions(&root, &group, &deployment, max_revisions)
        })
        .await?;
        let reused = self.reuse(spec, current).await;
        if !reused {
            let target = FetchTarget::new(&current.bundle_file(), &current.archive_dir());
            self.fetcher.fetch(&spec.revision, &target, stop).await?;
        }
        let source = if reused {
            "archive-reuse"
        } else {
            "downloaded"
        };
        if let Err(e) = disk::write_bundle_source(current, source) {
            tracing::warn!("{e}");
        }
        let pointer = self
            .root
            .most_recent_install_file(&spec.deployment_group_id);
        Ok(disk::write_pointer(&pointer, current)?)
    }

    /// 2.1's RESTART mode: `true` when the folder of the deployment the spec
    /// names stood in for a download. Any refusal means a download, logged.
    async fn reuse(&self, spec: &DeploymentSpec, current: &DeploymentDir) -> bool {
        let Some(source_id) = spec.reuse_archive_from.clone() else {
            return false;
        };
        if !self.archive_reuse {
            tracing::info!(
                "the deployment would reuse deployment {source_id}'s revision, but :enable_archive_reuse: is false: downloading it"
            );
            return false;
        }
        let group = &spec.deployment_group_id;
        let files = |dir: &DeploymentDir| DeploymentFiles {
            folder: dir.path().to_path_buf(),
            archive_dir: dir.archive_dir(),
            bundle_file: dir.bundle_file(),
            etag_record: dir.etag_record(),
        };
        // Only a path until reuse_archive has checked the id.
        let source = files(&self.root.deployment(group, &source_id));
        let target = files(current);
        let group_dir = self.root.group_dir(group);
        let (appspec, target_id) = (spec.appspec_filename.clone(), spec.deployment_id.clone());
        let id = source_id.clone();
        let reused = off_runtime("archive reuse", move || {
            reuse_archive(&group_dir, &id, &target_id, &appspec, &source, &target)
        })
        .await;
        let refused = match reused {
            Ok(Ok(())) => {
                tracing::info!(
                    "reusing deployment {source_id}'s revision on this host instead of downloading it"
                );
                return true;
            }
            Ok(Err(refused)) => refused.to_string(),
            Err(failed) => failed.to_string(),
        };
        tracing::warn!(
            "cannot reuse deployment {source_id}'s revision ({refused}): downloading it"
        );
        false
    }

    async fn install(
        &self,
        spec: &DeploymentSpec,
        current: &DeploymentDir,
        stop: Shutdown,
    ) -> Result<(), ExecutionError> {
        disk::create_instructions_dir(&self.root)?;
        let archive_dir = current.archive_dir();
        let group = &spec.deployment_group_id;
        let cleanup_file = self.root.cleanup_file(group);
        let instructions_file = self.root.install_instructions_file(group);
        let (spec_behavior, policy) = (spec.file_exists_behavior, self.install);
        let appspec_filename = spec.appspec_filename.clone();
        let all_possible_events = spec.all_possible_lifecycle_events.clone();
        off_runtime("install", move || -> Result<(), ExecutionError> {
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
            install::install(&InstallRequest {
                appspec: &appspec,
                archive_dir: &archive_dir,
                file_exists_behavior: install::effective_behavior(
                    appspec.file_exists_behavior,
                    spec_behavior,
                ),
                cleanup_file: &cleanup_file,
                instructions_file: &instructions_file,
                policy,
                stop: &stop,
            })?;
            Ok(())
        })
        .await??;
        let pointer = self.root.last_successful_install_file(group);
        Ok(disk::write_pointer(&pointer, current)?)
    }
}

#[cfg(test)]
mod tests;
