//! The emulated service's memory and rules: the scripted deployments, their
//! commands and where each stands, every call received, and the effect of
//! each (already authenticated and parsed) request. One command of a
//! deployment is out at a time: the next one is handed out only after the
//! previous one completed Succeeded; a Failed completion ends its deployment.
//! Deployments run one after the other, or, once a test asks for it, one per
//! deployment group at the same time (as the service does). A test may also
//! have commands in progress handed out again, or every request throttled
//! for a while (a storm). A command handed out but not acknowledged within
//! [`REISSUE_UNACKNOWLEDGED_AFTER`] is handed out again, as the service does
//! when the answer carrying it never reached a host (a host killed while the
//! service held its poll).
//!
//! No I/O here: the server in `mod.rs` feeds requests in and writes answers.

use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde_json::{json, Value};

use super::deployment::Deployment;
use super::spec;
use super::wire::{is_valid_execution_id, Envelope, Operation, Request, ServiceError};
use crate::ca::TestPki;

/// How long a handed-out command may go unacknowledged before the next poll
/// gets it again.
pub const REISSUE_UNACKNOWLEDGED_AFTER: Duration = Duration::from_secs(5);

/// Whether the answer that carried `command` looks lost: handed out, never
/// acknowledged, for too long.
fn lost(command: &CommandRecord) -> bool {
    command.state == CommandState::Issued
        && command
            .last_issued_at
            .is_some_and(|at| at.elapsed() >= REISSUE_UNACKNOWLEDGED_AFTER)
}

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
    /// How many of those were while it was already in progress on the host
    /// (see [`State::redeliveries`]).
    pub times_redelivered: usize,
    /// When PollHostCommand last returned it.
    pub last_issued_at: Option<Instant>,
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

/// Every request answered with ThrottlingException, for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storm {
    /// The next this-many requests.
    Requests(usize),
    /// Every request until then.
    Until(Instant),
    /// Until then, each operation's requests are throttled and let through
    /// in turn, the first one throttled: every operation the host uses meets
    /// throttling, and every retry gets through.
    Alternating(Instant),
}

pub(crate) struct State {
    pub region: String,
    pub host_identifier: String,
    pub pki: TestPki,
    pub deployments: Vec<DeploymentRecord>,
    pub calls: Vec<Call>,
    pub injections: Vec<Injection>,
    /// Requests per operation whose connection is closed without an answer.
    pub dropped_connections: Vec<(Operation, usize)>,
    /// Deployments of different groups are handed out at the same time.
    pub parallel_groups: bool,
    /// How many times each command in progress is handed out again.
    pub redeliveries: usize,
    pub storm: Option<Storm>,
    /// Requests per operation since an alternating storm began.
    storm_counts: Vec<(Operation, usize)>,
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
            dropped_connections: Vec::new(),
            parallel_groups: false,
            redeliveries: 0,
            storm: None,
            storm_counts: Vec::new(),
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
                    times_redelivered: 0,
                    last_issued_at: None,
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

    /// The deployments whose commands may go out now, in queue order: the
    /// first one not yet ended, or with parallel groups the first one not
    /// yet ended of each deployment group.
    fn active(&self) -> Vec<usize> {
        let mut groups_seen: Vec<&str> = Vec::new();
        let mut active = Vec::new();
        for (i, d) in self.deployments.iter().enumerate() {
            if !matches!(
                d.status,
                DeploymentStatus::Queued | DeploymentStatus::InProgress
            ) {
                continue;
            }
            if !self.parallel_groups {
                return vec![i];
            }
            if !groups_seen.contains(&d.deployment.group_id.as_str()) {
                groups_seen.push(&d.deployment.group_id);
                active.push(i);
            }
        }
        active
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

    /// Starts a storm (replacing one still going on).
    /// Whether this request for `op` is one whose connection is dropped.
    pub fn take_dropped_connection(&mut self, op: Operation) -> bool {
        match self
            .dropped_connections
            .iter_mut()
            .find(|(o, remaining)| *o == op && *remaining > 0)
        {
            Some((_, remaining)) => {
                *remaining -= 1;
                true
            }
            None => false,
        }
    }

    pub fn start_storm(&mut self, storm: Storm) {
        self.storm = Some(storm);
        self.storm_counts.clear();
    }

    /// The throttling answer to a request for `op` while a storm lasts.
    pub fn storm_answer(&mut self, op: Operation, now: Instant) -> Option<ServiceError> {
        let throttled = match self.storm? {
            Storm::Requests(0) => None,
            Storm::Requests(n) => {
                self.storm = Some(Storm::Requests(n - 1));
                Some(true)
            }
            Storm::Until(end) => (now < end).then_some(true),
            Storm::Alternating(end) if now < end => {
                let seen = match self.storm_counts.iter_mut().find(|(o, _)| *o == op) {
                    Some((_, count)) => count,
                    None => {
                        self.storm_counts.push((op, 0));
                        &mut self.storm_counts.last_mut().expect("just pushed").1
                    }
                };
                *seen += 1;
                Some(*seen % 2 == 1)
            }
            Storm::Alternating(_) => None,
        };
        if throttled.is_none() {
            self.storm = None;
        }
        throttled.unwrap_or(false).then(ServiceError::throttling)
    }

    /// What the next poll hands out: the deployment and command index.
    fn next_to_issue(&self) -> Option<(usize, usize)> {
        let active = self.active();
        // New commands first: the next pending command of each active deployment
        // whose previous command is not out (or was lost on its way).
        for &d in &active {
            let deployment = &self.deployments[d];
            if let Some(c) = deployment
                .commands
                .iter()
                .position(|c| c.state != CommandState::Succeeded)
            {
                let command = &deployment.commands[c];
                if command.state == CommandState::Pending || lost(command) {
                    return Some((d, c));
                }
            }
        }
        // Then a command in progress, handed out again while the budget lasts.
        for &d in &active {
            if let Some(c) = self.deployments[d].commands.iter().position(|c| {
                matches!(c.state, CommandState::Issued | CommandState::Acknowledged)
                    && c.times_redelivered < self.redeliveries
            }) {
                return Some((d, c));
            }
        }
        None
    }

    /// Is a command waiting to be handed out?
    pub fn has_command_to_issue(&self) -> bool {
        self.next_to_issue().is_some()
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
        let Some((d, c)) = self.next_to_issue() else {
            return Ok(json!({}));
        };
        let deployment = &mut self.deployments[d];
        let command = &mut deployment.commands[c];
        if command.state == CommandState::Pending {
            command.state = CommandState::Issued;
        } else if !lost(command) {
            // Out and not lost: the host is running it.
            command.times_redelivered += 1;
        }
        command.times_issued += 1;
        command.last_issued_at = Some(Instant::now());
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
        // A settled command answers its settled state, as the service does.
        let answer = match deployment.commands[i].state {
            CommandState::Succeeded => "Succeeded".to_string(),
            CommandState::Failed => "Failed".to_string(),
            _ => deployment.deployment.ack_status.clone(),
        };
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

    fn issued_id(answer: &Value) -> String {
        answer["HostCommand"]["HostCommandIdentifier"]
            .as_str()
            .unwrap_or_else(|| panic!("a command in {answer}"))
            .to_string()
    }

    fn add(state: &mut State, group_id: &str, events: &[&str]) -> String {
        let d = Deployment::new(
            "App",
            group_id,
            S3Location {
                bucket: "b".into(),
                key: "k".into(),
                bundle_type: BundleType::Tar,
                version: None,
                etag: None,
            },
        )
        .group_id(group_id)
        .events(events);
        let id = d.deployment_id.clone();
        state.add_deployment(d);
        id
    }

    #[test]
    fn parallel_groups_hand_out_one_command_of_each_group_at_once() {
        let mut state = State::new("us-east-1", HOST, TestPki::generate().unwrap());
        let a = add(&mut state, "g-a", &["DownloadBundle", "Install"]);
        let a2 = add(&mut state, "g-a", &["DownloadBundle"]);
        let b = add(&mut state, "g-b", &["DownloadBundle"]);
        // Sequential by default: b waits for a (and a2).
        let first = poll(&mut state);
        assert!(issued_id(&first).contains(&a));
        assert_eq!(poll(&mut state), json!({}));
        state.parallel_groups = true;
        let second = poll(&mut state);
        assert!(issued_id(&second).contains(&b), "{second}");
        assert_eq!(poll(&mut state), json!({}), "a2 waits for a: same group");
        complete(&mut state, &issued_id(&first), "Succeeded");
        let third = poll(&mut state);
        assert!(issued_id(&third).contains(&a), "a's next command: {third}");
        complete(&mut state, &issued_id(&third), "Succeeded");
        let fourth = poll(&mut state);
        assert!(issued_id(&fourth).contains(&a2), "{fourth}");
    }

    #[test]
    fn commands_in_progress_are_handed_out_again_within_the_budget() {
        let (mut state, _) = state_with(&["DownloadBundle", "Install"]);
        state.redeliveries = 2;
        let first = issued_id(&poll(&mut state));
        assert_eq!(issued_id(&poll(&mut state)), first);
        assert_eq!(issued_id(&poll(&mut state)), first);
        assert_eq!(poll(&mut state), json!({}), "budget spent");
        let record = &state.deployments[0].commands[0];
        assert_eq!((record.times_issued, record.times_redelivered), (3, 2));
        complete(&mut state, &first, "Succeeded");
        let second = issued_id(&poll(&mut state));
        assert_ne!(second, first, "a new command comes before any redelivery");
        assert_eq!(issued_id(&poll(&mut state)), second);
    }

    #[test]
    fn a_command_never_acknowledged_is_handed_out_again() {
        let (mut state, _) = state_with(&["DownloadBundle"]);
        let first = issued_id(&poll(&mut state));
        assert_eq!(poll(&mut state), json!({}), "out, not acknowledged yet");
        // As if the answer carrying it was lost long enough ago.
        state.deployments[0].commands[0].last_issued_at =
            Instant::now().checked_sub(REISSUE_UNACKNOWLEDGED_AFTER);
        assert_eq!(issued_id(&poll(&mut state)), first);
        let record = &state.deployments[0].commands[0];
        assert_eq!(
            (record.times_issued, record.times_redelivered),
            (2, 0),
            "a lost answer is not a redelivery of a running command"
        );
    }

    #[test]
    fn a_storm_throttles_for_a_number_of_requests_or_a_while() {
        let (mut state, _) = state_with(&["DownloadBundle"]);
        let now = Instant::now();
        let poll = Operation::PollHostCommand;
        state.start_storm(Storm::Requests(2));
        for _ in 0..2 {
            let error = state.storm_answer(poll, now).unwrap();
            assert_eq!(error.error_type, "ThrottlingException");
        }
        assert_eq!(state.storm_answer(poll, now), None);
        assert_eq!(state.storm, None, "the storm is over");
        state.start_storm(Storm::Until(now + Duration::from_secs(5)));
        assert!(state
            .storm_answer(poll, now + Duration::from_secs(4))
            .is_some());
        assert_eq!(state.storm_answer(poll, now + Duration::from_secs(5)), None);
        // Alternating: per operation, throttled first, then let through.
        state.start_storm(Storm::Alternating(now + Duration::from_secs(5)));
        let complete = Operation::PutHostCommandComplete;
        let answers: Vec<bool> = [poll, poll, complete, poll, complete, complete]
            .into_iter()
            .map(|op| state.storm_answer(op, now).is_some())
            .collect();
        assert_eq!(answers, [true, false, true, true, false, true]);
        assert_eq!(state.storm_answer(poll, now + Duration::from_secs(6)), None);
        assert_eq!(state.storm, None);
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
