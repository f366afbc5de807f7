//! One command's conversation with the service, in lifecycle order: fetch,
//! verify and parse its deployment specification, wait for its deployment
//! group's turn, prepare it, track it, acknowledge it, execute it, and record
//! and report how it ended (through [`super::report`]). A panic is contained
//! to its command; how a failure reads to the service is decided by
//! [`CommandFailure`].

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::future::FutureExt;
use tokio::sync::OwnedSemaphorePermit;

use crate::diagnostics::Diagnostic;
use crate::lifecycle::command::{CommandOrigin, PreparedCommand};
use crate::lifecycle::failure::{CommandFailure, ExecutionError};
use crate::lifecycle::record::CommandState;
use crate::lifecycle::tracking::{Ending, TrackedCommand};
use crate::protocol::{CommandStatus, HostCommand};
use crate::shutdown::Shutdown;

use super::group_locks::GroupLocks;
use super::retry::{persist, REQUEST_PATIENCE};
use super::Poller;

/// How a tracked command ended.
pub(super) enum Conclusion {
    /// The service reported the command's result itself: recorded, not sent.
    Reported(CommandStatus),
    Succeeded(Diagnostic),
    Failed(CommandFailure),
}

impl Poller {
    /// Runs one command holding one of the concurrency slots; its identifier
    /// once it is over. The commands share the poll loop's thread, and one
    /// command's bug must not stop the others or the polling: a panic is
    /// reported as that command's failure. (Panics in the deployment's steps
    /// are caught closer, in [`Self::execute`]; this catches the rest.)
    pub(super) async fn run_command(
        &self,
        command: HostCommand,
        _slot: OwnedSemaphorePermit,
        groups: &GroupLocks,
        shutdown: Shutdown,
        abort: Shutdown,
    ) -> String {
        let id = command.host_command_identifier.clone();
        let handled = AssertUnwindSafe(self.handle(command, groups, &shutdown, abort))
            .catch_unwind()
            .await;
        if let Err(panic) = handled {
            let failure = ExecutionError::panic("handling the command", panic.as_ref()).into();
            self.fail_untracked(&id, &failure, &shutdown).await;
        }
        id
    }

    async fn handle(
        &self,
        command: HostCommand,
        groups: &GroupLocks,
        shutdown: &Shutdown,
        abort: Shutdown,
    ) {
        let id = &command.host_command_identifier;
        tracing::info!(
            "received command {} for {}",
            command.command_name,
            command.deployment_execution_id
        );
        let (event, spec) = match self.specification(&command, shutdown).await {
            Ok(ready) => ready,
            Err(failure) => return self.fail_untracked(id, &failure, shutdown).await,
        };
        // Display, not Debug: `deployment_id=d-X` greps like the rest of the line.
        let span = tracing::Span::current();
        span.record(
            "deployment_id",
            tracing::field::display(&spec.deployment_id),
        );
        span.record(
            "deployment_group_id",
            tracing::field::display(&spec.deployment_group_id),
        );
        let _turn = groups.take_turn(&spec.deployment_group_id).await;
        let prepared = match self.executor.prepare(CommandOrigin::Service, event, spec) {
            Ok(prepared) => prepared,
            Err(error) => return self.fail_untracked(id, &error.into(), shutdown).await,
        };
        // Tracked before the acknowledgement: an agent killed right after the
        // service hears "InProgress" must still find the command on restart
        // and report it, or the service would wait for it until its timeout.
        let (spec, event_name) = (&prepared.spec, prepared.event.to_string());
        let tracked = TrackedCommand {
            group_id: &spec.deployment_group_id,
            deployment_id: &spec.deployment_id,
            command: &event_name,
            host_command_identifier: id,
        };
        if let Err(error) = self.tracker.start(&tracked) {
            tracing::warn!("cannot write the ongoing-deployment tracking file: {error}");
        }
        let started = Instant::now();
        let conclusion = self
            .acknowledge_and_execute(&prepared, id, shutdown, abort)
            .await;
        self.record(&prepared, &conclusion, started);
        self.conclude(&tracked, conclusion, shutdown).await;
        self.tracker.finish(&spec.deployment_id);
    }

    /// Acknowledges a tracked command and runs it, unless the service has
    /// its result already.
    async fn acknowledge_and_execute(
        &self,
        prepared: &PreparedCommand,
        id: &str,
        shutdown: &Shutdown,
        abort: Shutdown,
    ) -> Conclusion {
        let is_noop = prepared.is_noop();
        let acknowledged = persist(
            "acknowledging the command",
            REQUEST_PATIENCE,
            shutdown,
            || self.client.acknowledge(id, is_noop),
        )
        .await;
        match acknowledged {
            Ok(Some(status @ (CommandStatus::Succeeded | CommandStatus::Failed))) => {
                tracing::info!(
                    "the service reports the command {} already: not executing it",
                    status.name()
                );
                if status == CommandStatus::Failed && is_noop {
                    Conclusion::Succeeded(Diagnostic::succeeded("CompletedNoopCommand"))
                } else {
                    Conclusion::Reported(status)
                }
            }
            Ok(_) => self.execute(prepared, abort).await,
            Err(error) => Conclusion::Failed(CommandFailure::Acknowledge(error)),
        }
    }

    /// Runs an acknowledged command; a panic in it is contained to it.
    async fn execute(&self, prepared: &PreparedCommand, abort: Shutdown) -> Conclusion {
        let (started, event) = (Instant::now(), &prepared.event);
        // Unwinding drops the hook runner, which kills a script still running.
        let executed = AssertUnwindSafe(self.executor.execute(prepared, abort))
            .catch_unwind()
            .await;
        match executed {
            Ok(Ok(())) => {
                tracing::info!("{event} succeeded in {} ms", started.elapsed().as_millis());
                Conclusion::Succeeded(Diagnostic::succeeded(""))
            }
            Ok(Err(error)) => Conclusion::Failed(error.into()),
            Err(panic) => Conclusion::Failed(
                ExecutionError::panic(format!("running {event}"), panic.as_ref()).into(),
            ),
        }
    }

    /// Records how a tracked command ended and reports it to the service:
    /// the one place where a command's end is written down.
    async fn conclude(
        &self,
        tracked: &TrackedCommand<'_>,
        conclusion: Conclusion,
        shutdown: &Shutdown,
    ) {
        let (status, diagnostic) = match conclusion {
            Conclusion::Reported(status) => {
                let state = match status {
                    CommandStatus::Failed => CommandState::Failed,
                    _ => CommandState::Succeeded,
                };
                let ending = Ending {
                    state,
                    error_code: None,
                    message: None,
                };
                return self.tracker.ended(tracked, &ending);
            }
            Conclusion::Succeeded(diagnostic) => (CommandStatus::Succeeded, diagnostic),
            Conclusion::Failed(failure) => {
                tracing::error!("{} failed: {failure}", tracked.command);
                (CommandStatus::Failed, failure.diagnostic())
            }
        };
        let failed = status == CommandStatus::Failed;
        let ending = Ending {
            state: if failed {
                CommandState::Failed
            } else {
                CommandState::Succeeded
            },
            error_code: failed.then_some(diagnostic.error_code.number()),
            message: failed.then(|| diagnostic.message.clone()),
        };
        self.tracker.ended(tracked, &ending);
        self.complete(
            tracked.host_command_identifier,
            status,
            &diagnostic,
            shutdown,
        )
        .await;
    }
}
