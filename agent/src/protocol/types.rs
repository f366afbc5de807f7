//! The Commands API shapes on the wire (JSON 1.1, PascalCase keys).

use serde::{Deserialize, Serialize};

/// The five operations of the Commands API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    PollHostCommand,
    GetDeploymentSpecification,
    PutHostCommandAcknowledgement,
    PostHostCommandUpdate,
    PutHostCommandComplete,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::PollHostCommand => "PollHostCommand",
            Operation::GetDeploymentSpecification => "GetDeploymentSpecification",
            Operation::PutHostCommandAcknowledgement => "PutHostCommandAcknowledgement",
            Operation::PostHostCommandUpdate => "PostHostCommandUpdate",
            Operation::PutHostCommandComplete => "PutHostCommandComplete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "Format")]
    pub format: String,
    #[serde(rename = "Payload")]
    pub payload: String,
}

impl Envelope {
    pub fn json(payload: String) -> Envelope {
        Envelope {
            format: "JSON".to_string(),
            payload,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HostCommand {
    #[serde(rename = "HostCommandIdentifier")]
    pub host_command_identifier: String,
    #[serde(rename = "HostIdentifier", default)]
    pub host_identifier: String,
    #[serde(rename = "DeploymentExecutionId")]
    pub deployment_execution_id: String,
    #[serde(rename = "CommandName", default)]
    pub command_name: String,
    #[serde(rename = "Nonce", default)]
    pub nonce: Option<i64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PollRequest<'a> {
    #[serde(rename = "HostIdentifier")]
    pub host_identifier: &'a str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PollResponse {
    #[serde(rename = "HostCommand", default)]
    pub host_command: Option<HostCommand>,
}

#[derive(Debug, Serialize)]
pub(crate) struct GetSpecRequest<'a> {
    #[serde(rename = "DeploymentExecutionId")]
    pub deployment_execution_id: &'a str,
    #[serde(rename = "HostIdentifier")]
    pub host_identifier: &'a str,
}

#[derive(Debug, Deserialize)]
pub struct GetSpecResponse {
    #[serde(rename = "DeploymentSystem", default)]
    pub deployment_system: Option<String>,
    #[serde(rename = "DeploymentSpecification", default)]
    pub deployment_specification: Option<DeploymentSpecification>,
}

#[derive(Debug, Deserialize)]
pub struct DeploymentSpecification {
    #[serde(rename = "GenericEnvelope", default)]
    pub generic_envelope: Option<Envelope>,
    #[serde(rename = "VariantId", default)]
    pub variant_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct AcknowledgeRequest<'a> {
    #[serde(rename = "HostCommandIdentifier")]
    pub host_command_identifier: &'a str,
    #[serde(rename = "Diagnostics")]
    pub diagnostics: Envelope,
}

#[derive(Debug, Serialize)]
pub(crate) struct UpdateRequest<'a> {
    #[serde(rename = "HostCommandIdentifier")]
    pub host_command_identifier: &'a str,
    #[serde(rename = "EstimatedCompletionTime")]
    pub estimated_completion_time: i64,
    #[serde(rename = "Diagnostics")]
    pub diagnostics: Envelope,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StatusResponse {
    #[serde(rename = "CommandStatus", default)]
    pub command_status: Option<CommandStatus>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CompleteRequest<'a> {
    #[serde(rename = "HostCommandIdentifier")]
    pub host_command_identifier: &'a str,
    #[serde(rename = "CommandStatus")]
    pub command_status: CommandStatus,
    #[serde(rename = "Diagnostics")]
    pub diagnostics: Envelope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandStatus {
    Pending,
    InProgress,
    Succeeded,
    Failed,
}

impl CommandStatus {
    pub fn name(self) -> &'static str {
        match self {
            CommandStatus::Pending => "Pending",
            CommandStatus::InProgress => "InProgress",
            CommandStatus::Succeeded => "Succeeded",
            CommandStatus::Failed => "Failed",
        }
    }
}
