//! Telling the service how a command ended: PutHostCommandComplete, retried
//! for as long as the service may still take it; the commands that failed
//! before they could be tracked; and, after a restart, the commands the last
//! run of the agent left in progress (code 7).

use std::time::SystemTime;

use crate::diagnostics::Diagnostic;
use crate::lifecycle::failure::CommandFailure;
use crate::protocol::CommandStatus;
use crate::shutdown::Shutdown;

use super::retry::{persist, COMPLETE_PATIENCE, REQUEST_PATIENCE};
use super::Poller;

impl Poller {
    /// Reports a command that failed before it could be tracked.
    pub(super) async fn fail_untracked(
        &self,
        id: &str,
        failure: &CommandFailure,
        shutdown: &Shutdown,
    ) {
        tracing::error!("command failed before it started: {failure}");
        let diagnostic = failure.diagnostic();
        self.report_failed(id, &diagnostic, shutdown).await;
    }

    /// Counts a command that failed outside its own run (before it was
    /// tracked, or cut short by a restart) and reports it Failed.
    async fn report_failed(&self, id: &str, diagnostic: &Diagnostic, shutdown: &Shutdown) {
        let code = diagnostic.error_code.number();
        self.metrics.update(|m| {
            m.command_refused(code);
            true
        });
        self.complete(id, CommandStatus::Failed, diagnostic, shutdown)
            .await;
    }

    /// Sends PutHostCommandComplete until it is delivered (for up to an hour,
    /// every retry logged); given up only on an answer the service will never
    /// change its mind about, or once the agent is stopping.
    pub(super) async fn complete(
        &self,
        host_command_identifier: &str,
        status: CommandStatus,
        diagnostic: &Diagnostic,
        shutdown: &Shutdown,
    ) {
        let payload = diagnostic.to_payload();
        let what = format!("reporting {} for {host_command_identifier}", status.name());
        let delivered = persist(&what, COMPLETE_PATIENCE, shutdown, || {
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

    /// After a restart, tells the service that the commands cut short failed.
    /// A command whose Complete was delivered just before the agent died is
    /// still tracked on disk; the acknowledgement's answer says the service
    /// has its result already, and it is not reported a second time.
    pub(super) async fn report_interrupted_commands(&self, shutdown: &Shutdown) {
        for interrupted in self.tracker.take_interrupted(SystemTime::now()) {
            let id = &interrupted.host_command_identifier;
            let asked = persist(
                "asking the service about an interrupted command",
                REQUEST_PATIENCE,
                shutdown,
                || self.client.acknowledge(id, false),
            )
            .await;
            if let Ok(Some(status @ (CommandStatus::Succeeded | CommandStatus::Failed))) = asked {
                tracing::info!(
                    deployment_id = %interrupted.deployment_id,
                    "a command tracked when the agent stopped was reported {} before it stopped: not reporting it again",
                    status.name()
                );
                continue;
            }
            tracing::warn!(
                deployment_id = %interrupted.deployment_id,
                "a command was in progress when the agent stopped; reporting it failed"
            );
            let diagnostic = CommandFailure::CutShortByRestart.diagnostic();
            self.report_failed(id, &diagnostic, shutdown).await;
            self.tracker.record_interrupted(
                &interrupted,
                diagnostic.error_code.number(),
                &diagnostic.message,
            );
        }
    }
}
