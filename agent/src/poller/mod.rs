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
//! blocking work goes to the blocking pool), not threads. One command's
//! conversation is in [`conversation`] (its spec: [`specification`]), its end
//! reported in [`report`], counted in [`metrics`]; retries in [`retry`].

mod backoff;
mod conversation;
mod group_locks;
mod metrics;
mod report;
mod retry;
pub mod schedule;
mod specification;

#[cfg(test)]
mod fleet_sim;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use crate::deployment_spec::SpecVerifier;
use crate::lifecycle::executor::Executor;
use crate::lifecycle::tracking::Tracker;
use crate::metrics::MetricsFile;
use crate::protocol::{CommandsClient, CommandsError, ErrorClass, HostCommand};
use crate::shutdown::Shutdown;

use group_locks::GroupLocks;
use schedule::{Cadence, PollOutcome, Schedule};

/// How long a poll in flight when the agent is told to stop may still answer.
const STOP_POLL_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug)]
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
    /// The textfile metrics (`:metrics_textfile:`), when configured.
    pub metrics: MetricsFile,
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
        self.executor.remove_leftovers().await;
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
                        crate::memory::return_freed_memory();
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
                                crate::memory::return_freed_memory();
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
            self.record_poll(&polled);
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
                        lifecycle_event = %command.command_name,
                        host_command = %command.host_command_identifier,
                        deployment_id = tracing::field::Empty,
                        deployment_group_id = tracing::field::Empty,
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
                crate::memory::return_freed_memory();
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
}

/// Resolves when a new schedule is sent; never when nobody can send one any more.
async fn schedule_changed(schedule: &mut watch::Receiver<Schedule>) {
    if schedule.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}
