//! Everything that can fail a command, and the one mapping from a failure to
//! the diagnostic the service receives (error code, script, message, log
//! tail). A failed script keeps its own code (1–4, 6); a command cut short by
//! a restart is code 7; every other failure is code 5 with its message.

use std::path::PathBuf;

use crate::appspec::AppSpecError;
use crate::blocking::TaskFailed;
use crate::bundle::FetchError;
use crate::deployment_spec::SpecError;
use crate::diagnostics::{Diagnostic, ErrorCode};
use crate::hooks::ScriptFailure;
use crate::install::InstallError;
use crate::protocol::CommandsError;

use super::layout::disk::LayoutError;

/// The message the official agent sends for a command cut short by a restart.
pub const FAILED_AFTER_RESTART: &str =
    "Failed: Failing in-progress lifecycle event after an agent restart.";

/// Why running a command (DownloadBundle, Install or an event's scripts) failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    #[error("Unsupported command type: {name}.")]
    UnsupportedCommand { name: String },
    /// Local revisions exist for `codedeploy-local`; the service never gets them.
    #[error("local revisions are only deployed by codedeploy-local")]
    LocalRevisionFromService,
    #[error(transparent)]
    AppSpec(#[from] AppSpecError),
    /// The event runs from an earlier revision whose folder this host no
    /// longer has.
    #[error(
        "{source} The previous revision's folder {} is gone from this host, so its scripts cannot run. \
         Redeploy with the option to ignore ApplicationStop failures, or remove {} to start afresh.",
        folder.display(),
        pointer_file.display()
    )]
    PreviousRevisionGone {
        folder: PathBuf,
        pointer_file: PathBuf,
        source: Box<AppSpecError>,
    },
    /// Boxed: the download errors are large and this one is rare.
    #[error(transparent)]
    Fetch(Box<FetchError>),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Task(#[from] TaskFailed),
    #[error("{}", .0.message)]
    Script(ScriptFailure),
    /// A panic in the agent stopped the step; the rest of the agent goes on.
    #[error(
        "The CodeDeploy agent hit an internal error while {doing} (panic: {reason}); \
         the command was stopped with any hook script it was running. This is a bug in the agent: please report it with the agent's log"
    )]
    Panic { doing: String, reason: String },
}

impl ExecutionError {
    /// A panic caught while `doing` something, with the panic's own message.
    pub fn panic(doing: impl Into<String>, payload: &(dyn std::any::Any + Send)) -> ExecutionError {
        let reason = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        ExecutionError::Panic {
            doing: doing.into(),
            reason,
        }
    }
}

impl From<FetchError> for ExecutionError {
    fn from(error: FetchError) -> ExecutionError {
        ExecutionError::Fetch(Box::new(error))
    }
}

/// Why a command the service sent failed, from its arrival to its end.
#[derive(Debug, thiserror::Error)]
pub enum CommandFailure {
    #[error("The service sent a command without a CommandName")]
    NoCommandName,
    #[error("The command is for host {command_host} but this host is {this_host}")]
    OtherHost {
        command_host: String,
        this_host: String,
    },
    /// Fetching the deployment specification failed after its retries.
    #[error(transparent)]
    SpecFetch(CommandsError),
    #[error("Unsupported DeploymentSystem: {}; this agent runs CodeDeploy deployments", .0.as_deref().unwrap_or("(none)"))]
    UnsupportedSystem(Option<String>),
    #[error("The service sent no DeploymentSpecification for this command")]
    NoSpecification,
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The acknowledgement was not delivered after its retries.
    #[error(transparent)]
    Acknowledge(CommandsError),
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    /// The agent stopped (or died) while the command ran.
    #[error("{FAILED_AFTER_RESTART}")]
    CutShortByRestart,
}

impl CommandFailure {
    /// Why the agent killed the failing hook script, when it did.
    pub fn killed_script(&self) -> Option<crate::hooks::KillReason> {
        match self {
            CommandFailure::Execution(ExecutionError::Script(failure)) => failure.killed,
            _ => None,
        }
    }

    /// What the service is told about this failure.
    pub fn diagnostic(&self) -> Diagnostic {
        match self {
            CommandFailure::Execution(ExecutionError::Script(failure)) => Diagnostic::failed(
                failure.code,
                &failure.script_name,
                failure.message.clone(),
                &failure.log,
            ),
            CommandFailure::CutShortByRestart => {
                Diagnostic::failed(ErrorCode::FailedAfterRestart, "", FAILED_AFTER_RESTART, "")
            }
            other => Diagnostic::unknown_error(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_gets_its_code_and_message() {
        let script = ScriptFailure {
            code: ErrorCode::ScriptTimedOut,
            script_name: "scripts/start.sh".into(),
            message:
                "Script at specified location: scripts/start.sh failed to complete in 5 seconds"
                    .into(),
            log: "[stdout]starting\n".into(),
            killed: Some(crate::hooks::KillReason::Timeout),
        };
        let cases: Vec<(CommandFailure, ErrorCode, &str, &str)> = vec![
            (
                ExecutionError::Script(script).into(),
                ErrorCode::ScriptTimedOut,
                "scripts/start.sh",
                "Script at specified location: scripts/start.sh failed to complete in 5 seconds",
            ),
            (
                CommandFailure::CutShortByRestart,
                ErrorCode::FailedAfterRestart,
                "",
                FAILED_AFTER_RESTART,
            ),
            (
                CommandFailure::NoCommandName,
                ErrorCode::UnknownError,
                "",
                "The service sent a command without a CommandName",
            ),
            (
                CommandFailure::UnsupportedSystem(None),
                ErrorCode::UnknownError,
                "",
                "Unsupported DeploymentSystem: (none); this agent runs CodeDeploy deployments",
            ),
            (
                ExecutionError::UnsupportedCommand {
                    name: "BlockTraffic".into(),
                }
                .into(),
                ErrorCode::UnknownError,
                "",
                "Unsupported command type: BlockTraffic.",
            ),
            (
                ExecutionError::panic("running Install", &"index out of bounds").into(),
                ErrorCode::UnknownError,
                "",
                "The CodeDeploy agent hit an internal error while running Install (panic: index out of bounds); \
                 the command was stopped with any hook script it was running. This is a bug in the agent: please report it with the agent's log",
            ),
        ];
        for (failure, code, script_name, message) in cases {
            let diagnostic = failure.diagnostic();
            assert_eq!(diagnostic.error_code, code, "{failure}");
            assert_eq!(diagnostic.script_name, script_name, "{failure}");
            assert_eq!(diagnostic.message, message, "{failure}");
        }
    }
}
