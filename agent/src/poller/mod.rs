//! The poll loop: ask the service for a command, fetch and verify its spec,
//! acknowledge, execute, complete — one command at a time — then wait as the
//! schedule says. Every wait selects on the shutdown signal; a poll in flight
//! gets a short grace, and a command, once received, is seen through. The
//! schedule is a watch channel so that a configuration reload changes it
//! between polls.

pub mod schedule;

use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tracing::Instrument;

use crate::diagnostics::{Diagnostic, ErrorCode};
use crate::event::LifecycleEvent;
use crate::lifecycle::executor::{event_for_command, Executor};
use crate::lifecycle::tracking::Tracker;
use crate::protocol::{CommandStatus, CommandsClient, CommandsError, ErrorClass, HostCommand};
use crate::shutdown::Shutdown;
use crate::spec::{parse_spec, DeploymentSpec, SpecVerifier, UnsignedSpecs};

use schedule::{error_backoff, PollOutcome, Schedule};

/// The message the official agent sends for a command cut short by a restart.
pub const FAILED_AFTER_RESTART: &str =
    "Failed: Failing in-progress lifecycle event after an agent restart.";

/// How long a poll in flight when the agent is told to stop may still answer.
const STOP_POLL_GRACE: Duration = Duration::from_secs(10);

pub struct Poller {
    pub client: CommandsClient,
    pub host_identifier: String,
    pub verifier: SpecVerifier,
    pub executor: Executor,
    pub tracker: Tracker,
    /// The current schedule; the daemon sends a new one on reload.
    pub schedule: watch::Receiver<Schedule>,
}

impl Poller {
    /// Polls until `stop` is triggered; a command in progress is finished first
    /// unless `abort` is triggered too, which stops its scripts.
    pub async fn run_with(&self, mut shutdown: Shutdown, abort: Shutdown) {
        self.report_interrupted_command(&shutdown).await;
        let mut schedule = self.schedule.clone();
        let mut consecutive_errors = 0u32;
        while !shutdown.is_triggered() {
            let started = Instant::now();
            let Some(polled) = self.poll(&mut shutdown).await else {
                break;
            };
            let outcome = match polled {
                Ok(Some(command)) => {
                    consecutive_errors = 0;
                    let span = tracing::info_span!(
                        "command",
                        command = %command.command_name,
                        host_command = %command.host_command_identifier,
                        deployment_id = tracing::field::Empty,
                    );
                    self.handle(command, shutdown.clone(), abort.clone())
                        .instrument(span)
                        .await;
                    PollOutcome::Handled
                }
                Ok(None) => {
                    consecutive_errors = 0;
                    PollOutcome::Idle
                }
                Err(error) => {
                    consecutive_errors = consecutive_errors.saturating_add(1);
                    tracing::error!(
                        "polling for commands failed ({consecutive_errors} in a row): {error}"
                    );
                    if error.class() == ErrorClass::Throttling {
                        PollOutcome::Throttled
                    } else {
                        PollOutcome::Failed
                    }
                }
            };
            let wait = schedule.borrow_and_update().next_wait(
                outcome,
                consecutive_errors,
                started.elapsed(),
            );
            if !wait.is_zero() {
                tracing::debug!("next poll in {} ms", wait.as_millis());
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.triggered() => {}
                // A reloaded schedule applies from the next poll on, at once.
                _ = schedule_changed(&mut schedule) => {}
            }
        }
        tracing::info!("polling stopped");
    }

    /// One PollHostCommand; `None` when the agent is stopping and the service
    /// held the poll past the grace.
    async fn poll(
        &self,
        shutdown: &mut Shutdown,
    ) -> Option<Result<Option<HostCommand>, CommandsError>> {
        let poll = self.client.poll_host_command(&self.host_identifier);
        tokio::pin!(poll);
        tokio::select! {
            polled = &mut poll => Some(polled),
            _ = shutdown.triggered() => {
                // The service may be holding this poll open. An answer that
                // carries a command must reach us, or that command waits for
                // the service to notice; but stopping must not wait for a long
                // hold either. A command that arrives is seen through.
                let polled = tokio::time::timeout(STOP_POLL_GRACE, &mut poll).await.ok();
                if polled.is_none() {
                    tracing::info!("abandoning the poll held by the service");
                }
                polled
            }
        }
    }

    async fn handle(&self, command: HostCommand, shutdown: Shutdown, abort: Shutdown) {
        tracing::info!(
            "received command {} for {}",
            command.command_name,
            command.deployment_execution_id
        );
        let (spec, event) = match self.prepare(&command).await {
            Ok(prepared) => prepared,
            Err(diagnostic) => {
                tracing::error!("command failed before it started: {}", diagnostic.message);
                self.complete(
                    &command.host_command_identifier,
                    CommandStatus::Failed,
                    &diagnostic,
                    &shutdown,
                )
                .await;
                return;
            }
        };
        // Display, not Debug: `deployment_id=d-X` greps like the rest of the line.
        tracing::Span::current().record(
            "deployment_id",
            tracing::field::display(&spec.deployment_id),
        );

        let is_noop = match self.executor.is_noop(&event, &spec) {
            Ok(noop) => noop,
            Err(error) => {
                tracing::error!("{error}");
                self.complete(
                    &command.host_command_identifier,
                    CommandStatus::Failed,
                    &error.to_diagnostic(),
                    &shutdown,
                )
                .await;
                return;
            }
        };
        match self
            .client
            .acknowledge(&command.host_command_identifier, is_noop)
            .await
        {
            Ok(Some(status @ (CommandStatus::Succeeded | CommandStatus::Failed))) => {
                tracing::info!(
                    "the service reports the command {} already: not executing it",
                    status.name()
                );
                if status == CommandStatus::Failed && is_noop {
                    let diagnostic = Diagnostic::succeeded("CompletedNoopCommand");
                    self.complete(
                        &command.host_command_identifier,
                        CommandStatus::Succeeded,
                        &diagnostic,
                        &shutdown,
                    )
                    .await;
                }
                return;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!("acknowledging the command failed: {error}");
                let diagnostic = Diagnostic::unknown_error(error.to_string());
                self.complete(
                    &command.host_command_identifier,
                    CommandStatus::Failed,
                    &diagnostic,
                    &shutdown,
                )
                .await;
                return;
            }
        }

        if let Err(error) = self
            .tracker
            .start(&spec.deployment_id, &command.host_command_identifier)
        {
            tracing::warn!("cannot write the ongoing-deployment tracking file: {error}");
        }
        let started = Instant::now();
        let (status, diagnostic) = match self.executor.execute(&event, &spec, abort).await {
            Ok(()) => {
                tracing::info!("{event} succeeded in {} ms", started.elapsed().as_millis());
                (CommandStatus::Succeeded, Diagnostic::succeeded(""))
            }
            Err(error) => {
                tracing::error!("{event} failed: {error}");
                (CommandStatus::Failed, error.to_diagnostic())
            }
        };
        self.complete(
            &command.host_command_identifier,
            status,
            &diagnostic,
            &shutdown,
        )
        .await;
        self.tracker.finish(&spec.deployment_id);
    }

    /// Fetches, verifies and parses the spec of a command; a failure is the
    /// diagnostic to complete the command with.
    async fn prepare(
        &self,
        command: &HostCommand,
    ) -> Result<(DeploymentSpec, LifecycleEvent), Diagnostic> {
        if command.command_name.is_empty() {
            return Err(Diagnostic::unknown_error(
                "The service sent a command without a CommandName",
            ));
        }
        if !command.host_identifier.is_empty()
            && !self.host_identifier.contains(&command.host_identifier)
            && !command.host_identifier.contains(&self.host_identifier)
        {
            return Err(Diagnostic::unknown_error(format!(
                "The command is for host {} but this host is {}",
                command.host_identifier, self.host_identifier
            )));
        }
        let response = self
            .client
            .get_deployment_specification(&command.deployment_execution_id, &self.host_identifier)
            .await
            .map_err(|e| Diagnostic::unknown_error(e.to_string()))?;
        match response.deployment_system.as_deref() {
            Some("CodeDeploy") => {}
            other => {
                return Err(Diagnostic::unknown_error(format!(
                    "Unsupported DeploymentSystem: {}; this agent runs CodeDeploy deployments",
                    other.unwrap_or("(none)")
                )))
            }
        }
        let envelope = response
            .deployment_specification
            .and_then(|s| s.generic_envelope)
            .ok_or_else(|| {
                Diagnostic::unknown_error(
                    "The service sent no DeploymentSpecification for this command",
                )
            })?;
        let json = self
            .verifier
            .open(&envelope, UnsignedSpecs::Refused)
            .map_err(|e| Diagnostic::unknown_error(e.to_string()))?;
        let spec = parse_spec(&json).map_err(|e| Diagnostic::unknown_error(e.to_string()))?;
        let event = event_for_command(&command.command_name).map_err(|e| e.to_diagnostic())?;
        Ok((spec, event))
    }

    /// Sends PutHostCommandComplete until it is delivered: retried with backoff
    /// on throttling, network and server errors; given up on a client error the
    /// service will never accept, or after a few tries once the agent is stopping.
    async fn complete(
        &self,
        host_command_identifier: &str,
        status: CommandStatus,
        diagnostic: &Diagnostic,
        shutdown: &Shutdown,
    ) {
        let payload = diagnostic.to_payload();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Instant::now();
            match self
                .client
                .complete(host_command_identifier, status, payload.clone())
                .await
            {
                Ok(()) => {
                    tracing::info!(
                        "reported {} (error code {})",
                        status.name(),
                        diagnostic.error_code
                    );
                    return;
                }
                Err(error) => {
                    let retryable = match &error {
                        CommandsError::Service { status, .. } => {
                            // Refused credentials may be rotated by the next try.
                            *status >= 500
                                || matches!(
                                    error.class(),
                                    ErrorClass::Throttling | ErrorClass::Credentials
                                )
                        }
                        _ => true,
                    };
                    if !retryable || (shutdown.is_triggered() && attempt >= 3) {
                        tracing::error!(
                            "giving up reporting {} for {host_command_identifier}: {error}",
                            status.name()
                        );
                        return;
                    }
                    let wait =
                        error_backoff(attempt, started.elapsed()).max(Duration::from_secs(1));
                    tracing::warn!(
                        "reporting {} failed (attempt {attempt}), retrying in {} s: {error}",
                        status.name(),
                        wait.as_secs()
                    );
                    tokio::time::sleep(if shutdown.is_triggered() {
                        Duration::from_secs(1)
                    } else {
                        wait
                    })
                    .await;
                }
            }
        }
    }

    /// After a restart, tells the service that the command cut short failed.
    async fn report_interrupted_command(&self, shutdown: &Shutdown) {
        let Some(interrupted) = self.tracker.take_interrupted(SystemTime::now()) else {
            return;
        };
        tracing::warn!(
            deployment_id = %interrupted.deployment_id,
            "a command was in progress when the agent stopped; reporting it failed"
        );
        let diagnostic =
            Diagnostic::failed(ErrorCode::FailedAfterRestart, "", FAILED_AFTER_RESTART, "");
        self.complete(
            &interrupted.host_command_identifier,
            CommandStatus::Failed,
            &diagnostic,
            shutdown,
        )
        .await;
    }
}

/// Resolves when a new schedule is sent; never when nobody can send one any more.
async fn schedule_changed(schedule: &mut watch::Receiver<Schedule>) {
    if schedule.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}
