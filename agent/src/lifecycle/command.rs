//! A command made ready once, before the service is told it started: its
//! lifecycle event checked, and for a hook event the revision its scripts run
//! from resolved and that revision's appspec loaded. The acknowledgement's
//! "is this a noop" and the execution both read this one value, so the
//! appspec is loaded once per hook command.

use std::path::PathBuf;

use crate::appspec::{self, AppSpec, AppSpecLookup};
use crate::deployment_spec::DeploymentSpec;
use crate::event::LifecycleEvent;

use super::failure::ExecutionError;
use super::layout::{disk, DeploymentDir, DeploymentRoot};
use super::revision::{revision_for, PreviousRevision, RevisionChoice};

/// Who asks for a command. Local revisions and custom events exist only for
/// the local CLI; the service can never reach them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandOrigin {
    /// A command the service sent (the daemon's poller).
    Service,
    /// A command `codedeploy-local` runs from the spec it built itself.
    LocalCli,
}

/// Why a hook command runs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NothingToRun {
    /// The event runs from an earlier revision and this host has none.
    NoEarlierRevision,
    /// The appspec has no scripts for the event.
    NoScripts,
}

/// What executing the command does.
#[derive(Debug)]
pub(super) enum Step {
    DownloadBundle,
    Install,
    Hooks {
        /// The deployment folder the scripts run from.
        source: DeploymentDir,
        appspec: AppSpec,
    },
    Nothing(NothingToRun),
}

/// One command, ready to be acknowledged and executed.
#[derive(Debug)]
pub struct PreparedCommand {
    pub spec: DeploymentSpec,
    pub event: LifecycleEvent,
    pub origin: CommandOrigin,
    pub(super) step: Step,
}

/// The lifecycle event a command name from the service stands for, if the
/// agent runs it.
pub fn event_for_command(command_name: &str) -> Result<LifecycleEvent, ExecutionError> {
    match LifecycleEvent::from_name(command_name) {
        event @ LifecycleEvent::Custom(_) => Err(unsupported(&event)),
        event if event.is_reserved() => Err(unsupported(&event)),
        event => Ok(event),
    }
}

fn unsupported(event: &LifecycleEvent) -> ExecutionError {
    ExecutionError::UnsupportedCommand {
        name: event.name().to_string(),
    }
}

impl PreparedCommand {
    /// Checks the event against `origin` and, for a hook event, finds its
    /// scripts under `root`. Reads the instruction pointers and the appspec.
    pub fn prepare(
        root: &DeploymentRoot,
        origin: CommandOrigin,
        event: LifecycleEvent,
        spec: DeploymentSpec,
    ) -> Result<PreparedCommand, ExecutionError> {
        if origin == CommandOrigin::Service && matches!(event, LifecycleEvent::Custom(_)) {
            return Err(unsupported(&event));
        }
        let step = match event {
            LifecycleEvent::DownloadBundle => Step::DownloadBundle,
            LifecycleEvent::Install => Step::Install,
            _ => hook_step(root, &event, &spec)?,
        };
        Ok(PreparedCommand {
            spec,
            event,
            origin,
            step,
        })
    }

    /// A command is a noop when its event has no scripts to run here.
    pub fn is_noop(&self) -> bool {
        matches!(self.step, Step::Nothing(_))
    }

    /// Why the command runs nothing, if it does.
    pub fn nothing_to_run(&self) -> Option<NothingToRun> {
        match self.step {
            Step::Nothing(why) => Some(why),
            _ => None,
        }
    }

    /// The `deployment-archive/` the event's scripts run from, if it runs any.
    pub fn scripts_archive_dir(&self) -> Option<PathBuf> {
        match &self.step {
            Step::Hooks { source, .. } => Some(source.archive_dir()),
            _ => None,
        }
    }
}

/// Where a hook event's scripts come from, and its appspec.
fn hook_step(
    root: &DeploymentRoot,
    event: &LifecycleEvent,
    spec: &DeploymentSpec,
) -> Result<Step, ExecutionError> {
    let group = &spec.deployment_group_id;
    let current = root.deployment(group, &spec.deployment_id);
    let pointer_file = match revision_for(event, spec.direction()) {
        RevisionChoice::Current => None,
        // Until this deployment has its own revision, the earlier one's
        // scripts run.
        RevisionChoice::Previous(_) if current.archive_dir().exists() => None,
        RevisionChoice::Previous(PreviousRevision::LastSuccessful) => {
            Some(root.last_successful_install_file(group))
        }
        RevisionChoice::Previous(PreviousRevision::MostRecent) => {
            Some(root.most_recent_install_file(group))
        }
    };
    let source = match &pointer_file {
        None => current.clone(),
        Some(file) => match disk::read_pointer(file)? {
            Some(previous) => previous,
            None => return Ok(Step::Nothing(NothingToRun::NoEarlierRevision)),
        },
    };
    let appspec = match appspec::load(
        &source.archive_dir(),
        &spec.appspec_filename,
        AppSpecLookup::Exact,
    ) {
        Ok(appspec) => appspec,
        Err(source_error) if source != current && !source.archive_dir().exists() => {
            return Err(ExecutionError::PreviousRevisionGone {
                folder: source.path().to_path_buf(),
                pointer_file: root.last_successful_install_file(group),
                source: Box::new(source_error),
            })
        }
        Err(e) => return Err(e.into()),
    };
    if !appspec.has_hooks(event) {
        return Ok(Step::Nothing(NothingToRun::NoScripts));
    }
    Ok(Step::Hooks { source, appspec })
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
}
