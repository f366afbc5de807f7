//! What the poller tells the textfile metrics: every poll (a failure, or the
//! end of a throttling spell, changes the file) and every command it ran.

use std::time::Instant;

use crate::lifecycle::command::PreparedCommand;
use crate::metrics::{unix_now, CommandEnded};
use crate::protocol::{CommandsError, ErrorClass, HostCommand};

use super::conversation::Conclusion;
use super::Poller;

impl Poller {
    /// The metrics see every poll: a failure, or the end of a throttling
    /// spell, changes the file; an answered poll while idle does not.
    pub(super) fn record_poll(&self, polled: &Result<Option<HostCommand>, CommandsError>) {
        let Err(error) = polled else {
            return self.metrics.update(|m| m.poll_answered());
        };
        let kind = match error.class() {
            ErrorClass::Throttling => "throttling",
            ErrorClass::Connection => "connection",
            ErrorClass::Credentials => "credentials",
            ErrorClass::Other => "other",
        };
        self.metrics.update(|m| m.poll_failed(kind, unix_now()));
    }

    /// What the metrics count of a command this agent ran.
    pub(super) fn record(
        &self,
        prepared: &PreparedCommand,
        conclusion: &Conclusion,
        started: Instant,
    ) {
        let failure = match conclusion {
            Conclusion::Reported(_) => return,
            Conclusion::Succeeded(_) => None,
            Conclusion::Failed(failure) => Some((
                failure.diagnostic().error_code.number(),
                failure.killed_script().map(|reason| reason.name()),
            )),
        };
        let event = prepared.event.to_string();
        self.metrics.update(|m| {
            m.command_ended(&CommandEnded {
                deployment_group: &prepared.spec.deployment_group_name,
                deployment_id: &prepared.spec.deployment_id,
                lifecycle_event: &event,
                seconds: started.elapsed().as_secs_f64(),
                failure,
                now: unix_now(),
            });
            true
        });
    }
}
