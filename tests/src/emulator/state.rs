//! The emulated service's memory and rules: the scripted deployments, their
//! commands and where each stands, every call received, and the effect of
//! each (already authenticated and parsed) request. One command is out at a
//! time: the next one is handed out only after the previous one completed
//! Succeeded; a Failed completion ends its deployment.
//!
//! No I/O here: the server in `mod.rs` feeds requests in and writes answers.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{json, Value};

use super::deployment::Deployment;
use super::spec;
use super::wire::{is_valid_execution_id, Envelope, Operation, Request, ServiceError};
use crate::ca::TestPki;

/// Where a command stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandState {
    /// Not handed out yet.
    Pending,
    /// Returned by PollHostCommand, not acknowledged.
    Issued,
    Acknowledged,
    Succeeded,
    Failed,
}

/// The diagnostics payload of a completion.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Diagnostics {
    pub error_code: i64,
    #[serde(default)]
    pub script_name: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub log: String,
}

impl Diagnostics {
    /// Parses a `{"Format":"JSON","Payload":"{...}"}` envelope's payload.
    pub fn parse(envelope: &Envelope) -> Result<Diagnostics, String> {
        serde_json::from_str(&envelope.payload).map_err(|e| {
            format!(
                "diagnostics payload is not {{error_code:int, script_name, message, log}}: {e}: {}",
                envelope.payload
            )
        })
    }
}

/// One PutHostCommandComplete received for a command.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub status: String,
    pub envelope: Option<Envelope>,
    /// The parsed payload, or why it could not be parsed.
    pub diagnostics: Result<Diagnostics, String>,
    pub at: SystemTime,
}

/// One command of a deployment and everything the host said about it.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandRecord {
    pub host_command_identifier: String,
    pub deployment_execution_id: String,
    pub command_name: String,
    pub nonce: i64,
    pub state: CommandState,
    /// How many times PollHostCommand returned it.
    pub times_issued: usize,
    /// The Diagnostics of each acknowledgement.
    pub acknowledgements: Vec<Option<Envelope>>,
    pub updates: Vec<Option<Envelope>>,
    pub completions: Vec<Completion>,
}

impl CommandRecord {
    /// The first completion (the one the service keeps).
    pub fn completion(&self) -> Option<&Completion> {
        self.completions.first()
    }

    /// The first completion's parsed diagnostics.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        self.completion().and_then(|c| c.diagnostics.as_ref().ok())
    }

    /// `IsCommandNoop` of the first acknowledgement, when it carried one.
    pub fn acknowledged_noop(&self) -> Option<bool> {
        let envelope = self.acknowledgements.first()?.as_ref()?;
        let payload: Value = serde_json::from_str(&envelope.payload).ok()?;
        payload.get("IsCommandNoop")?.as_bool()
    }
}

/// Where a deployment stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeploymentStatus {
    /// Waiting for the deployments before it.
    Queued,
    InProgress,
    Succeeded,
    /// The command (by name) that failed.
    Failed(String),
}

/// A scripted deployment and its commands.
#[derive(Clone, Debug)]
pub struct DeploymentRecord {
    pub deployment: Deployment,
    pub status: DeploymentStatus,
    pub commands: Vec<CommandRecord>,
}

impl DeploymentRecord {
    pub fn command(&self, name: &str) -> Option<&CommandRecord> {
        self.commands.iter().find(|c| c.command_name == name)
    }

    /// Names of the commands handed out so far, in order.
    pub fn issued(&self) -> Vec<&str> {
        self.commands
            .iter()
            .filter(|c| c.times_issued > 0)
            .map(|c| c.command_name.as_str())
            .collect()
    }
}

/// One HTTP request received, and the answer.
#[derive(Clone, Debug)]
pub struct Call {
    pub seq: usize,
    pub at: SystemTime,
    /// Time since the emulator started.
    pub elapsed: Duration,
    pub method: String,
    /// `None` when the target named no known operation.
    pub operation: Option<Operation>,
    /// The request body as JSON (`Null` when it was not JSON).
    pub request: Value,
    /// Headers received (lower-case names).
    pub headers: Vec<(String, String)>,
    pub status: u16,
    pub response: Value,
    /// `__type` of an error answer.
    pub error_type: Option<String>,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) struct Injection {
    pub operation: Operation,
    pub error: ServiceError,
    pub remaining: usize,
}

pub(crate) struct State {
    pub region: String,
    pub host_identifier: String,
    pub pki: TestPki,
    pub deployments: Vec<DeploymentRecord>,
    pub calls: Vec<Call>,
    pub injections: Vec<Injection>,
    next_nonce: i64,
    /// Bumped on every change, for waiters.
    pub generation: u64,
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    openssl::rand::rand_bytes(&mut bytes).expect("the openssl RNG is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()[..n].to_string()
}

impl State {
    pub fn new(region: &str, host_identifier: &str, pki: TestPki) -> Self {
        State {
            region: region.to_string(),
            host_identifier: host_identifier.to_string(),
            pki,
            deployments: Vec::new(),
            calls: Vec::new(),
            injections: Vec::new(),
            next_nonce: 1,
            generation: 0,
        }
    }

    pub fn add_deployment(&mut self, deployment: Deployment) {
        let execution = random_hex(12);
        let commands = deployment
            .events
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let nonce = self.next_nonce;
                self.next_nonce += 1;
                CommandRecord {
                    host_command_identifier: format!(
                        "hc-{}-{}-{}",
                        deployment.deployment_id,
                        i + 1,
                        random_hex(16)
                    ),
                    deployment_execution_id: format!(
                        "{}/{}/{execution}/{}",
                        deployment.deployment_id,
                        self.region,
                        i + 1
                    ),
                    command_name: name.clone(),
                    nonce,
                    state: CommandState::Pending,
                    times_issued: 0,
                    acknowledgements: Vec::new(),
                    updates: Vec::new(),
                    completions: Vec::new(),
                }
            })
            .collect();
        self.deployments.push(DeploymentRecord {
            deployment,
            status: DeploymentStatus::Queued,
            commands,
        });
        self.generation += 1;
    }

    /// The first deployment not yet ended.
    fn current(&mut self) -> Option<&mut DeploymentRecord> {
        self.deployments.iter_mut().find(|d| {
            matches!(
                d.status,
                DeploymentStatus::Queued | DeploymentStatus::InProgress
            )
        })
    }

    /// Takes the next injected error for `op`, if any.
    pub fn injected_error(&mut self, op: Operation) -> Option<ServiceError> {
        let injection = self
            .injections
            .iter_mut()
            .find(|i| i.operation == op && i.remaining > 0)?;
        injection.remaining -= 1;
        Some(injection.error.clone())
    }

    /// Is a command waiting to be handed out?
    pub fn has_command_to_issue(&self) -> bool {
        self.deployments
            .iter()
            .find(|d| {
                matches!(
                    d.status,
                    DeploymentStatus::Queued | DeploymentStatus::InProgress
                )
            })
            .and_then(|d| {
                d.commands
                    .iter()
                    .find(|c| c.state != CommandState::Succeeded)
            })
            .is_some_and(|c| c.state == CommandState::Pending)
    }

    fn find_command(&mut self, id: &str) -> Result<(&mut DeploymentRecord, usize), ServiceError> {
        for deployment in &mut self.deployments {
            if let Some(i) = deployment
                .commands
                .iter()
                .position(|c| c.host_command_identifier == id)
            {
                return Ok((deployment, i));
            }
        }
        Err(ServiceError::client(
            "ClientException",
            format!("HostCommandIdentifier '{id}' does not name a command handed out to this host"),
        ))
    }

    fn check_host(&self, host: &str) -> Result<(), ServiceError> {
        if host == self.host_identifier {
            Ok(())
        } else {
            Err(ServiceError::client(
                "ClientException",
                format!(
                    "HostIdentifier '{host}' is not the identifier of a registered host (expected '{}')",
                    self.host_identifier
                ),
            ))
        }
    }

    /// Applies a request; returns the answer body.
    pub fn apply(&mut self, request: Request) -> Result<Value, ServiceError> {
        self.generation += 1;
        match request {
            Request::Poll { host_identifier } => self.poll(&host_identifier),
            Request::GetSpec {
                deployment_execution_id,
                host_identifier,
            } => self.get_spec(&deployment_execution_id, &host_identifier),
            Request::Acknowledge {
                host_command_identifier,
                diagnostics,
                ..
            } => self.acknowledge(&host_command_identifier, diagnostics),
            Request::Update {
                host_command_identifier,
                diagnostics,
                ..
            } => {
                let (deployment, i) = self.find_command(&host_command_identifier)?;
                let command = &mut deployment.commands[i];
                command.updates.push(diagnostics);
                Ok(json!({"CommandStatus": status_word(&command.state)}))
            }
            Request::Complete {
                host_command_identifier,
                command_status,
                diagnostics,
            } => self.complete(&host_command_identifier, &command_status, diagnostics),
        }
    }

    fn poll(&mut self, host: &str) -> Result<Value, ServiceError> {
        self.check_host(host)?;
        let host = self.host_identifier.clone();
        let Some(deployment) = self.current() else {
            return Ok(json!({}));
        };
        let Some(command) = deployment
            .commands
            .iter_mut()
            .find(|c| c.state != CommandState::Succeeded)
        else {
            return Ok(json!({}));
        };
        if command.state != CommandState::Pending {
            // The previous command is still out.
            return Ok(json!({}));
        }
        command.state = CommandState::Issued;
        command.times_issued += 1;
        let answer = json!({"HostCommand": {
            "HostCommandIdentifier": command.host_command_identifier,
            "HostIdentifier": host,
            "DeploymentExecutionId": command.deployment_execution_id,
            "CommandName": command.command_name,
            "Nonce": command.nonce,
        }});
        deployment.status = DeploymentStatus::InProgress;
        Ok(answer)
    }

    /// The answer carrying `id` never reached the host: hand it out again.
    pub fn reissue(&mut self, id: &str) {
        if let Ok((deployment, i)) = self.find_command(id) {
            let command = &mut deployment.commands[i];
            if command.state == CommandState::Issued {
                command.state = CommandState::Pending;
            }
        }
        self.generation += 1;
    }

    fn get_spec(&mut self, execution_id: &str, host: &str) -> Result<Value, ServiceError> {
        debug_assert!(is_valid_execution_id(execution_id));
        self.check_host(host)?;
        let deployment = self
            .deployments
            .iter()
            .find(|d| {
                d.commands
                    .iter()
                    .any(|c| c.deployment_execution_id == execution_id)
            })
            .ok_or_else(|| {
                ServiceError::client(
                    "ClientException",
                    format!("DeploymentExecutionId '{execution_id}' does not name a deployment of this host"),
                )
            })?;
        let spec_json = deployment.deployment.spec_json().to_string();
        let envelope = spec::envelope(&deployment.deployment.spec_format, &spec_json, &self.pki);
        let mut specification = json!({"GenericEnvelope": envelope.to_json()});
        if deployment.deployment.with_variant {
            specification["VariantId"] = json!("generic");
            specification["VariantEnvelope"] = envelope.to_json();
        }
        Ok(json!({
            "DeploymentSystem": "CodeDeploy",
            "DeploymentSpecification": specification,
        }))
    }

    fn acknowledge(
        &mut self,
        id: &str,
        diagnostics: Option<Envelope>,
    ) -> Result<Value, ServiceError> {
        let (deployment, i) = self.find_command(id)?;
        let answer = deployment.deployment.ack_status.clone();
        let command = &mut deployment.commands[i];
        command.acknowledgements.push(diagnostics);
        if command.state == CommandState::Issued {
            command.state = CommandState::Acknowledged;
            // An answer of Succeeded/Failed means the service has settled the
            // command: the host does not run it.
            match answer.as_str() {
                "Succeeded" => {
                    command.state = CommandState::Succeeded;
                    advance(deployment);
                }
                "Failed" => {
                    command.state = CommandState::Failed;
                    deployment.status =
                        DeploymentStatus::Failed(deployment.commands[i].command_name.clone());
                }
                _ => {}
            }
        }
        Ok(json!({ "CommandStatus": answer }))
    }

    fn complete(
        &mut self,
        id: &str,
        status: &str,
        diagnostics: Option<Envelope>,
    ) -> Result<Value, ServiceError> {
        let (deployment, i) = self.find_command(id)?;
        let parsed = match &diagnostics {
            Some(envelope) => Diagnostics::parse(envelope),
            None => Err("no Diagnostics".to_string()),
        };
        let command = &mut deployment.commands[i];
        command.completions.push(Completion {
            status: status.to_string(),
            envelope: diagnostics,
            diagnostics: parsed,
            at: SystemTime::now(),
        });
        // Only the first completion counts, as with the service.
        if matches!(
            command.state,
            CommandState::Issued | CommandState::Acknowledged
        ) {
            if status == "Succeeded" {
                command.state = CommandState::Succeeded;
                advance(deployment);
            } else {
                command.state = CommandState::Failed;
                deployment.status = DeploymentStatus::Failed(command.command_name.clone());
            }
        }
        Ok(json!({}))
    }
}

fn advance(deployment: &mut DeploymentRecord) {
    if deployment
        .commands
        .iter()
        .all(|c| c.state == CommandState::Succeeded)
    {
        deployment.status = DeploymentStatus::Succeeded;
    }
}

fn status_word(state: &CommandState) -> &'static str {
    match state {
        CommandState::Pending | CommandState::Issued => "Pending",
        CommandState::Acknowledged => "InProgress",
        CommandState::Succeeded => "Succeeded",
        CommandState::Failed => "Failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::BundleType;
    use crate::emulator::deployment::S3Location;

    const HOST: &str = "arn:aws:iam::123456789012:user/host";

    fn state_with(events: &[&str]) -> (State, String) {
        let mut state = State::new("us-east-1", HOST, TestPki::generate().unwrap());
        let d = Deployment::new(
            "App",
            "Group",
            S3Location {
                bucket: "b".into(),
                key: "k".into(),
                bundle_type: BundleType::Tar,
                version: None,
                etag: None,
            },
        )
        .events(events);
        let id = d.deployment_id.clone();
        state.add_deployment(d);
        (state, id)
    }

    fn poll(state: &mut State) -> Value {
        state
            .apply(Request::Poll {
                host_identifier: HOST.into(),
            })
            .unwrap()
    }

    fn complete(state: &mut State, id: &str, status: &str) {
        state
            .apply(Request::Complete {
                host_command_identifier: id.into(),
                command_status: status.into(),
                diagnostics: Some(Envelope {
                    format: "JSON".into(),
                    payload:
                        r#"{"error_code":0,"script_name":"","message":"Succeeded: ","log":""}"#
                            .into(),
                }),
            })
            .unwrap();
    }

    #[test]
    fn hands_out_one_command_at_a_time_in_order() {
        let (mut state, id) = state_with(&["DownloadBundle", "Install"]);
        let first = poll(&mut state);
        let cmd = &first["HostCommand"];
        assert_eq!(cmd["CommandName"], "DownloadBundle");
        assert_eq!(cmd["HostIdentifier"], HOST);
        assert!(is_valid_execution_id(
            cmd["DeploymentExecutionId"].as_str().unwrap()
        ));
        assert!(cmd["Nonce"].is_i64());
        assert_eq!(
            poll(&mut state),
            json!({}),
            "nothing while the first is out"
        );
        let cmd_id = cmd["HostCommandIdentifier"].as_str().unwrap().to_string();
        complete(&mut state, &cmd_id, "Succeeded");
        let second = poll(&mut state);
        assert_eq!(second["HostCommand"]["CommandName"], "Install");
        let second_id = second["HostCommand"]["HostCommandIdentifier"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(second_id, cmd_id);
        complete(&mut state, &second_id, "Succeeded");
        assert_eq!(state.deployments[0].status, DeploymentStatus::Succeeded);
        assert_eq!(state.deployments[0].deployment.deployment_id, id);
        assert_eq!(poll(&mut state), json!({}));
    }

    #[test]
    fn a_failed_completion_ends_the_deployment() {
        let (mut state, _) = state_with(&["DownloadBundle", "Install"]);
        let first = poll(&mut state);
        let cmd_id = first["HostCommand"]["HostCommandIdentifier"]
            .as_str()
            .unwrap()
            .to_string();
        complete(&mut state, &cmd_id, "Failed");
        assert_eq!(
            state.deployments[0].status,
            DeploymentStatus::Failed("DownloadBundle".into())
        );
        assert_eq!(poll(&mut state), json!({}));
        assert_eq!(state.deployments[0].issued(), vec!["DownloadBundle"]);
    }

    #[test]
    fn wrong_host_is_refused_and_spec_is_served() {
        let (mut state, _) = state_with(&["DownloadBundle"]);
        let err = state
            .apply(Request::Poll {
                host_identifier: "someone".into(),
            })
            .unwrap_err();
        assert_eq!(err.error_type, "ClientException");
        let first = poll(&mut state);
        let exec = first["HostCommand"]["DeploymentExecutionId"]
            .as_str()
            .unwrap();
        let spec = state
            .apply(Request::GetSpec {
                deployment_execution_id: exec.into(),
                host_identifier: HOST.into(),
            })
            .unwrap();
        assert_eq!(spec["DeploymentSystem"], "CodeDeploy");
        assert_eq!(
            spec["DeploymentSpecification"]["GenericEnvelope"]["Format"],
            "PKCS7/JSON"
        );
        assert_eq!(spec["DeploymentSpecification"]["VariantId"], "generic");
        assert!(spec["DeploymentSpecification"]["VariantEnvelope"].is_object());
    }

    #[test]
    fn acknowledgement_answer_and_reissue() {
        let (mut state, _) = state_with(&["DownloadBundle"]);
        let first = poll(&mut state);
        let cmd_id = first["HostCommand"]["HostCommandIdentifier"]
            .as_str()
            .unwrap()
            .to_string();
        state.reissue(&cmd_id);
        let again = poll(&mut state);
        assert_eq!(
            again["HostCommand"]["HostCommandIdentifier"],
            cmd_id.as_str()
        );
        let ack = state
            .apply(Request::Acknowledge {
                host_command_identifier: cmd_id.clone(),
                diagnostics: Some(Envelope {
                    format: "JSON".into(),
                    payload: r#"{"IsCommandNoop":false}"#.into(),
                }),
                max_duration_seconds: None,
            })
            .unwrap();
        assert_eq!(ack, json!({"CommandStatus": "InProgress"}));
        let record = &state.deployments[0].commands[0];
        assert_eq!(record.times_issued, 2);
        assert_eq!(record.acknowledged_noop(), Some(false));
        // Re-issue after acknowledgement does not hand it out again.
        state.reissue(&cmd_id);
        assert_eq!(poll(&mut state), json!({}));
    }

    #[test]
    fn diagnostics_payload_is_parsed() {
        let d = Diagnostics::parse(&Envelope {
            format: "JSON".into(),
            payload: r#"{"error_code":4,"script_name":"s.sh","message":"m","log":"[stdout]x"}"#
                .into(),
        })
        .unwrap();
        assert_eq!(d.error_code, 4);
        assert_eq!(d.log, "[stdout]x");
        assert!(Diagnostics::parse(&Envelope {
            format: "JSON".into(),
            payload: r#"{"error_code":"Unknown"}"#.into(),
        })
        .is_err());
    }
}
