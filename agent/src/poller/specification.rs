//! A command's deployment specification: the checks on the command itself
//! (a name, this host), fetching the specification (retried as
//! [`super::retry`] says), the deployment system, the signed envelope opened
//! and verified, the spec parsed, and the lifecycle event the command names.

use crate::deployment_spec::{parse_spec, DeploymentSpec, UnsignedSpecs};
use crate::event::LifecycleEvent;
use crate::lifecycle::command::event_for_command;
use crate::lifecycle::failure::CommandFailure;
use crate::protocol::HostCommand;
use crate::shutdown::Shutdown;

use super::retry::{persist, REQUEST_PATIENCE};
use super::Poller;

impl Poller {
    /// Fetches, verifies and parses the specification of a command.
    pub(super) async fn specification(
        &self,
        command: &HostCommand,
        shutdown: &Shutdown,
    ) -> Result<(LifecycleEvent, DeploymentSpec), CommandFailure> {
        if command.command_name.is_empty() {
            return Err(CommandFailure::NoCommandName);
        }
        let (theirs, ours) = (&command.host_identifier, &self.host_identifier);
        if !theirs.is_empty() && !ours.contains(theirs.as_str()) && !theirs.contains(ours.as_str())
        {
            return Err(CommandFailure::OtherHost {
                command_host: theirs.clone(),
                this_host: ours.clone(),
            });
        }
        let response = persist(
            "fetching the deployment specification",
            REQUEST_PATIENCE,
            shutdown,
            || {
                self.client
                    .get_deployment_specification(&command.deployment_execution_id, ours)
            },
        )
        .await
        .map_err(CommandFailure::SpecFetch)?;
        if response.deployment_system.as_deref() != Some("CodeDeploy") {
            return Err(CommandFailure::UnsupportedSystem(
                response.deployment_system,
            ));
        }
        let envelope = response
            .deployment_specification
            .and_then(|s| s.generic_envelope)
            .ok_or(CommandFailure::NoSpecification)?;
        let json = self.verifier.open(&envelope, UnsignedSpecs::Refused)?;
        let spec = parse_spec(&json)?;
        let event = event_for_command(&command.command_name)?;
        Ok((event, spec))
    }
}
