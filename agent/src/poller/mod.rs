//! The poll loop: ask the service for a command, and run each command it hands
//! out (fetch and verify its spec, acknowledge, execute, complete) while polling
//! goes on, up to `:max_concurrent_commands:` at once; then wait as the schedule
//! says. A command the service hands out again while it runs is not run twice;
//! two commands of one deployment group take turns. Every wait selects on the
//! shutdown signal; a poll in flight gets a short grace, and a command, once
//! received, is seen through. The schedule is a watch channel so that a
//! configuration reload changes it between polls.
//!
//! Commands are futures driven by this loop on the agent's one thread (their
//! blocking work goes to `spawn_blocking` in the executor), not threads.

pub mod schedule;

#[cfg(test)]
mod fleet_sim;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{watch, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::deployment_spec::{parse_spec, DeploymentSpec, SpecVerifier, UnsignedSpecs};
use crate::diagnostics::{Diagnostic, ErrorCode};
use crate::event::LifecycleEvent;
use crate::lifecycle::executor::{event_for_command, Executor};
use crate::lifecycle::record::CommandState;
use crate::lifecycle::tracking::{Ending, TrackedCommand, Tracker};
use crate::protocol::{CommandStatus, CommandsClient, CommandsError, ErrorClass, HostCommand};
use crate::shutdown::Shutdown;

use schedule::{retry_backoff, Cadence, PollOutcome, Schedule};

/// The message the official agent sends for a command cut short by a restart.
pub const FAILED_AFTER_RESTART: &str =
    "Failed: Failing in-progress lifecycle event after an agent restart.";

/// How long a poll in flight when the agent is told to stop may still answer.
const STOP_POLL_GRACE: Duration = Duration::from_secs(10);
/// How long a Complete is retried before the agent gives up on it (the
/// service has long timed the command out by then).
const COMPLETE_PATIENCE: Duration = Duration::from_secs(3600);
/// How long a spec fetch or an acknowledgement is retried before the command
/// is reported Failed.
const REQUEST_PATIENCE: Duration = Duration::from_secs(300);
/// Once the agent is stopping, a request is tried at most this many times.
const ATTEMPTS_WHILE_STOPPING: u32 = 5;

pub struct Poller {
    pub client: CommandsClient,
    pub host_identifier: String,
    pub verifier: SpecVerifier,
    pub executor: Executor,
    pub tracker: Tracker,
    /// The current schedule; the daemon sends a new one on reload.
    pub schedule: watch::Receiver<Schedule>,
    /// How many commands run at once (`:max_concurrent_commands:`).
    pub max_concurrent_commands: u32,
}

/// What ended a wait between polls.
enum Wake {
    Due,
    Finished(String),
    Stop,
}

impl Poller {
    /// Polls until `stop` is triggered, running up to `max_concurrent_commands`
    /// commands at once meanwhile; then waits for the running commands, unless
    /// `abort` is triggered too, which stops their scripts.
    pub async fn run_with(&self, mut shutdown: Shutdown, abort: Shutdown) {
        self.report_interrupted_commands(&shutdown).await;
        let clock = Instant::now();
        let mut rng = fastrand::Rng::new();
        let mut schedule = self.schedule.clone();
        let mut cadence = Cadence::new(&schedule.borrow_and_update(), &mut rng);
        let mut next_poll = cadence.first_poll();
        if !next_poll.is_zero() {
            tracing::info!(
                "first poll in {:.1} s (a random start-up delay keeps hosts restarted together apart)",
                next_poll.as_secs_f64()
            );
        }
        let slots = Arc::new(Semaphore::new(self.max_concurrent_commands.max(1) as usize));
        let groups = GroupLocks::default();
        // The commands running now, by HostCommandIdentifier: the service may
        // hand one out again while it runs, and it must not run twice.
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut running = FuturesUnordered::new();
        let mut finished = Vec::new();

        while !shutdown.is_triggered() {
            // Wait for the poll's time and a free slot, seeing commands end meanwhile.
            let wake = tokio::select! {
                _ = tokio::time::sleep_until(crate::deadline::after(clock, next_poll).into()) => Wake::Due,
                Some(id) = running.next(), if !running.is_empty() => Wake::Finished(id),
                _ = shutdown.triggered() => Wake::Stop,
                // A reloaded schedule applies from the next poll on, at once.
                _ = schedule_changed(&mut schedule) => Wake::Due,
            };
            let permit = match wake {
                Wake::Stop => break,
                Wake::Finished(id) => {
                    in_flight.remove(&id);
                    next_poll = cadence.after_command_finished(next_poll, clock.elapsed());
                    if running.is_empty() {
                        crate::hygiene::return_freed_memory();
                    }
                    continue;
                }
                Wake::Due => match Arc::clone(&slots).try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        tracing::debug!(
                            "{} commands running: the next poll waits for one to finish",
                            running.len()
                        );
                        let wake = tokio::select! {
                            Some(id) = running.next() => Wake::Finished(id),
                            _ = shutdown.triggered() => Wake::Stop,
                        };
                        if let Wake::Finished(id) = wake {
                            in_flight.remove(&id);
                            next_poll = cadence.after_command_finished(next_poll, clock.elapsed());
                            if running.is_empty() {
                                crate::hygiene::return_freed_memory();
                            }
                        }
                        continue;
                    }
                },
            };

            let started = clock.elapsed();
            let polled = {
                let poll = self.poll(&mut shutdown);
                tokio::pin!(poll);
                loop {
                    tokio::select! {
                        polled = &mut poll => break polled,
                        Some(id) = running.next(), if !running.is_empty() => finished.push(id),
                    }
                }
            };
            let Some(polled) = polled else {
                break;
            };
            let outcome = match polled {
                Ok(Some(command)) if in_flight.contains(&command.host_command_identifier) => {
                    tracing::warn!(
                        host_command = %command.host_command_identifier,
                        "the service handed out command {} of {} again while it is still running: not running it twice",
                        command.command_name,
                        command.deployment_execution_id
                    );
                    PollOutcome::Redelivered
                }
                Ok(Some(command)) => {
                    in_flight.insert(command.host_command_identifier.clone());
                    let span = tracing::info_span!(
                        "command",
                        command = %command.command_name,
                        host_command = %command.host_command_identifier,
                        deployment_id = tracing::field::Empty,
                    );
                    running.push(
                        self.run_command(command, permit, &groups, shutdown.clone(), abort.clone())
                            .instrument(span),
                    );
                    PollOutcome::Command
                }
                Ok(None) => PollOutcome::Idle,
                Err(error) => {
                    tracing::error!(
                        "polling for commands failed ({} in a row): {error}",
                        cadence.consecutive_failures() + 1
                    );
                    if error.class() == ErrorClass::Throttling {
                        PollOutcome::Throttled
                    } else {
                        PollOutcome::Failed
                    }
                }
            };
            let now = clock.elapsed();
            next_poll = cadence.next_poll(
                &schedule.borrow_and_update(),
                outcome,
                started,
                now,
                &mut rng,
            );
            let any_finished = !finished.is_empty();
            for id in finished.drain(..) {
                in_flight.remove(&id);
                next_poll = cadence.after_command_finished(next_poll, now);
            }
            if any_finished && running.is_empty() {
                crate::hygiene::return_freed_memory();
            }
            if next_poll > now {
                tracing::debug!("next poll in {} ms", (next_poll - now).as_millis());
            }
        }
        if !running.is_empty() {
            tracing::info!(
                "polling stopped; waiting for {} running command(s)",
                running.len()
            );
        }
        while running.next().await.is_some() {}
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

    /// Runs one command holding one of the concurrency slots; its identifier
    /// once it is over. A panic is contained here: the commands share the
    /// poll loop's thread, and one command's bug must not stop the others or
    /// the polling. (Panics in the deployment's steps are reported by
    /// `handle` itself; this catches the rest.)
    async fn run_command(
        &self,
        command: HostCommand,
        _slot: OwnedSemaphorePermit,
        groups: &GroupLocks,
        shutdown: Shutdown,
        abort: Shutdown,
    ) -> String {
        let id = command.host_command_identifier.clone();
        let handled = AssertUnwindSafe(self.handle(command, groups, shutdown.clone(), abort))
            .catch_unwind()
            .await;
        if let Err(panic) = handled {
            let diagnostic = Diagnostic::internal_error("handling the command", panic.as_ref());
            tracing::error!("{}", diagnostic.message);
            self.complete(&id, CommandStatus::Failed, &diagnostic, &shutdown)
                .await;
        }
        id
    }

    async fn handle(
        &self,
        command: HostCommand,
        groups: &GroupLocks,
        shutdown: Shutdown,
        abort: Shutdown,
    ) {
        tracing::info!(
            "received command {} for {}",
            command.command_name,
            command.deployment_execution_id
        );
        let (spec, event) = match self.prepare(&command, &shutdown).await {
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
        // One deployment group never runs two commands at once: they share
        // the group's folders and instructions files.
        let _turn = groups.take_turn(&spec.deployment_group_id).await;

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
        // Tracked before the acknowledgement: an agent killed right after the
        // service hears "InProgress" must still find the command on restart
        // and report it, or the service would wait for it until its timeout.
        let event_name = event.to_string();
        let tracked = TrackedCommand {
            group_id: &spec.deployment_group_id,
            deployment_id: &spec.deployment_id,
            command: &event_name,
            host_command_identifier: &command.host_command_identifier,
        };
        if let Err(error) = self.tracker.start(&tracked) {
            tracing::warn!("cannot write the ongoing-deployment tracking file: {error}");
        }
        self.acknowledge_and_execute(&tracked, &event, &spec, is_noop, &shutdown, abort)
            .await;
        self.tracker.finish(&spec.deployment_id);
    }

    /// Acknowledges a tracked command, runs it unless the service has its
    /// result already, and records and reports how it ended.
    async fn acknowledge_and_execute(
        &self,
        tracked: &TrackedCommand<'_>,
        event: &LifecycleEvent,
        spec: &DeploymentSpec,
        is_noop: bool,
        shutdown: &Shutdown,
        abort: Shutdown,
    ) {
        let acknowledged = self
            .persist(
                "acknowledging the command",
                REQUEST_PATIENCE,
                shutdown,
                || {
                    self.client
                        .acknowledge(tracked.host_command_identifier, is_noop)
                },
            )
            .await;
        let (status, diagnostic) = match acknowledged {
            Ok(Some(status @ (CommandStatus::Succeeded | CommandStatus::Failed))) => {
                tracing::info!(
                    "the service reports the command {} already: not executing it",
                    status.name()
                );
                if !(status == CommandStatus::Failed && is_noop) {
                    let ending = Ending {
                        state: record_state(status),
                        error_code: None,
                        message: None,
                    };
                    self.tracker.ended(tracked, &ending);
                    return;
                }
                (
                    CommandStatus::Succeeded,
                    Diagnostic::succeeded("CompletedNoopCommand"),
                )
            }
            Ok(_) => self.execute(event, spec, abort).await,
            Err(error) => {
                tracing::error!("acknowledging the command failed: {error}");
                (
                    CommandStatus::Failed,
                    Diagnostic::unknown_error(error.to_string()),
                )
            }
        };
        let failed = status == CommandStatus::Failed;
        let ending = Ending {
            state: record_state(status),
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

    /// Runs an acknowledged command; a panic in it is contained to it.
    async fn execute(
        &self,
        event: &LifecycleEvent,
        spec: &DeploymentSpec,
        abort: Shutdown,
    ) -> (CommandStatus, Diagnostic) {
        let started = Instant::now();
        // Unwinding drops the hook runner, which kills a script still running.
        let executed = AssertUnwindSafe(self.executor.execute(event, spec, abort))
            .catch_unwind()
            .await;
        match executed {
            Ok(Ok(())) => {
                tracing::info!("{event} succeeded in {} ms", started.elapsed().as_millis());
                (CommandStatus::Succeeded, Diagnostic::succeeded(""))
            }
            Ok(Err(error)) => {
                tracing::error!("{event} failed: {error}");
                (CommandStatus::Failed, error.to_diagnostic())
            }
            Err(panic) => {
                let diagnostic =
                    Diagnostic::internal_error(&format!("running {event}"), panic.as_ref());
                tracing::error!("{}", diagnostic.message);
                (CommandStatus::Failed, diagnostic)
            }
        }
    }

    /// Fetches, verifies and parses the spec of a command; a failure is the
    /// diagnostic to complete the command with.
    async fn prepare(
        &self,
        command: &HostCommand,
        shutdown: &Shutdown,
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
            .persist(
                "fetching the deployment specification",
                REQUEST_PATIENCE,
                shutdown,
                || {
                    self.client.get_deployment_specification(
                        &command.deployment_execution_id,
                        &self.host_identifier,
                    )
                },
            )
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

    /// Sends PutHostCommandComplete until it is delivered (see [`Self::persist`]:
    /// for up to an hour, every retry logged); given up only on an answer the
    /// service will never change its mind about, or once the agent is stopping.
    async fn complete(
        &self,
        host_command_identifier: &str,
        status: CommandStatus,
        diagnostic: &Diagnostic,
        shutdown: &Shutdown,
    ) {
        let payload = diagnostic.to_payload();
        let what = format!("reporting {} for {host_command_identifier}", status.name());
        let delivered = self
            .persist(&what, COMPLETE_PATIENCE, shutdown, || {
                self.client
                    .complete(host_command_identifier, status, payload.clone())
            })
            .await;
        match delivered {
            Ok(()) => tracing::info!(
                "reported {} (error code {})",
                status.name(),
                diagnostic.error_code.number()
            ),
            Err(error) => tracing::error!("giving up {what}: {error}"),
        }
    }

    /// Sends a request until the service answers it: throttling (once the
    /// client's throttle gate opens), network errors, server faults and
    /// refused credentials (which the next attempt may have replaced) are tried
    /// again with jittered backoff for up to `patience`, each retry logged.
    /// Any other refusal is final. Once the agent is stopping, a request gets
    /// [`ATTEMPTS_WHILE_STOPPING`] attempts at most.
    async fn persist<T, F, Fut>(
        &self,
        what: &str,
        patience: Duration,
        shutdown: &Shutdown,
        mut send: F,
    ) -> Result<T, CommandsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CommandsError>>,
    {
        let started = Instant::now();
        let mut rng = fastrand::Rng::new();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let error = match send().await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            let final_answer = !is_transient(&error);
            let out_of_time = started.elapsed() >= patience
                || (shutdown.is_triggered() && attempt >= ATTEMPTS_WHILE_STOPPING);
            if final_answer || out_of_time {
                if out_of_time && !final_answer {
                    tracing::error!(
                        "{what}: still failing after {attempt} attempts in {} s",
                        started.elapsed().as_secs()
                    );
                }
                return Err(error);
            }
            let wait = retry_backoff(attempt, &mut rng);
            tracing::warn!(
                "{what} failed (attempt {attempt}), trying again in {:.1} s: {error}",
                wait.as_secs_f64()
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// After a restart, tells the service that the commands cut short failed.
    async fn report_interrupted_commands(&self, shutdown: &Shutdown) {
        for interrupted in self.tracker.take_interrupted(SystemTime::now()) {
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
            self.tracker.record_interrupted(
                &interrupted,
                diagnostic.error_code.number(),
                &diagnostic.message,
            );
        }
    }
}

/// The record's name for what the service was told.
fn record_state(status: CommandStatus) -> CommandState {
    match status {
        CommandStatus::Succeeded => CommandState::Succeeded,
        CommandStatus::Failed => CommandState::Failed,
        CommandStatus::Pending | CommandStatus::InProgress => CommandState::InProgress,
    }
}

/// Whether a failed request may succeed if sent again unchanged.
fn is_transient(error: &CommandsError) -> bool {
    match error.class() {
        ErrorClass::Throttling | ErrorClass::Connection | ErrorClass::Credentials => true,
        // An answer garbled on the way (a proxy cutting the body, a broken
        // load balancer) says nothing about whether the request took effect;
        // the service takes the same acknowledgement or Complete again.
        ErrorClass::Other => match error {
            CommandsError::Service { status, .. } => *status >= 500,
            CommandsError::Decode { .. } => true,
            _ => false,
        },
    }
}

/// One lock per deployment group with a command running or waiting; a group's
/// entry is dropped when nobody holds or waits for it, so that the map does
/// not grow with every group ever deployed.
#[derive(Default)]
struct GroupLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// A command's turn in its deployment group, until dropped.
struct GroupTurn<'a> {
    locks: &'a GroupLocks,
    group: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl GroupLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        // Only inserts and removes happen under this lock: a poisoned map is
        // still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until no other command of `group` runs; commands of one group
    /// take their turns in the order they arrived.
    async fn take_turn(&self, group: &str) -> GroupTurn<'_> {
        let lock = Arc::clone(self.map().entry(group.to_string()).or_default());
        let guard = match Arc::clone(&lock).try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                tracing::info!(
                    "deployment group {group} is running another command: this one waits for it"
                );
                lock.lock_owned().await
            }
        };
        GroupTurn {
            locks: self,
            group: group.to_string(),
            guard: Some(guard),
        }
    }
}

impl Drop for GroupTurn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        if map
            .get(&self.group)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            map.remove(&self.group);
        }
    }
}

/// Resolves when a new schedule is sent; never when nobody can send one any more.
async fn schedule_changed(schedule: &mut watch::Receiver<Schedule>) {
    if schedule.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}
