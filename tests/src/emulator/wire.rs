//! The Commands API on the wire, as the emulator reads and writes it: the
//! operation names behind `X-Amz-Target`, typed requests parsed (and
//! validated against the API model's constraints) from AWS JSON 1.1 bodies,
//! and service errors as `{"__type", "message"}` bodies.
//!
//! Pure: bytes in, typed values or a `ServiceError` out.

use std::fmt;

use serde_json::{json, Map, Value};

pub const TARGET_PREFIX: &str = "CodeDeployCommandService_v20141006.";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// An error answer of the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    pub status: u16,
    pub error_type: String,
    pub message: String,
}

impl ServiceError {
    /// A client fault (HTTP 400).
    pub fn client(error_type: &str, message: impl Into<String>) -> Self {
        ServiceError {
            status: 400,
            error_type: error_type.to_string(),
            message: message.into(),
        }
    }

    /// A server fault (HTTP 500).
    pub fn server(error_type: &str, message: impl Into<String>) -> Self {
        ServiceError {
            status: 500,
            error_type: error_type.to_string(),
            message: message.into(),
        }
    }

    /// `ThrottlingException` as the service sends it.
    pub fn throttling() -> Self {
        ServiceError::client("ThrottlingException", "Rate exceeded")
    }

    fn validation(message: impl Into<String>) -> Self {
        ServiceError::client("ValidationException", message)
    }

    fn serialization(message: impl Into<String>) -> Self {
        ServiceError::client("SerializationException", message)
    }

    pub fn body(&self) -> Value {
        json!({"__type": self.error_type, "message": self.message})
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.error_type, self.message)
    }
}

/// The five operations of the Commands API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    PollHostCommand,
    GetDeploymentSpecification,
    PutHostCommandAcknowledgement,
    PostHostCommandUpdate,
    PutHostCommandComplete,
}

impl Operation {
    pub const ALL: [Operation; 5] = [
        Operation::PollHostCommand,
        Operation::GetDeploymentSpecification,
        Operation::PutHostCommandAcknowledgement,
        Operation::PostHostCommandUpdate,
        Operation::PutHostCommandComplete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::PollHostCommand => "PollHostCommand",
            Operation::GetDeploymentSpecification => "GetDeploymentSpecification",
            Operation::PutHostCommandAcknowledgement => "PutHostCommandAcknowledgement",
            Operation::PostHostCommandUpdate => "PostHostCommandUpdate",
            Operation::PutHostCommandComplete => "PutHostCommandComplete",
        }
    }

    /// The operation named by an `X-Amz-Target` header value.
    pub fn from_target(target: Option<&str>) -> Result<Operation, ServiceError> {
        let Some(target) = target else {
            return Err(ServiceError::client(
                "UnknownOperationException",
                "Missing X-Amz-Target header",
            ));
        };
        let name = target.strip_prefix(TARGET_PREFIX).unwrap_or("");
        Operation::ALL
            .into_iter()
            .find(|op| op.name() == name)
            .ok_or_else(|| {
                ServiceError::client(
                    "UnknownOperationException",
                    format!("Unknown operation: X-Amz-Target '{target}' is not {TARGET_PREFIX}<one of PollHostCommand, GetDeploymentSpecification, PutHostCommandAcknowledgement, PostHostCommandUpdate, PutHostCommandComplete>"),
                )
            })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `{"Format", "Payload"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub format: String,
    pub payload: String,
}

impl Envelope {
    pub fn to_json(&self) -> Value {
        json!({"Format": self.format, "Payload": self.payload})
    }
}

/// A request, parsed and validated.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Poll {
        host_identifier: String,
    },
    GetSpec {
        deployment_execution_id: String,
        host_identifier: String,
    },
    Acknowledge {
        host_command_identifier: String,
        diagnostics: Option<Envelope>,
        max_duration_seconds: Option<i64>,
    },
    Update {
        host_command_identifier: String,
        estimated_completion_time: Option<f64>,
        diagnostics: Option<Envelope>,
    },
    Complete {
        host_command_identifier: String,
        command_status: String,
        diagnostics: Option<Envelope>,
    },
}

struct Fields<'a> {
    object: &'a Map<String, Value>,
    /// The shape name, for messages.
    shape: &'a str,
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) => c.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl<'a> Fields<'a> {
    fn present(&self, name: &str) -> Option<&'a Value> {
        self.object.get(name).filter(|v| !v.is_null())
    }

    fn required(&self, name: &str, errors: &mut Vec<String>) -> Option<&'a Value> {
        let value = self.present(name);
        if value.is_none() {
            errors.push(format!(
                "Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_first(name)
            ));
        }
        value
    }

    fn string(&self, name: &str, value: Option<&'a Value>) -> Result<Option<String>, ServiceError> {
        match value {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ServiceError::serialization(format!(
                "{}.{name} must be a string, got {}: {other}",
                self.shape,
                kind(other)
            ))),
        }
    }

    fn required_string(
        &self,
        name: &str,
        errors: &mut Vec<String>,
    ) -> Result<String, ServiceError> {
        let value = self.required(name, errors);
        Ok(self.string(name, value)?.unwrap_or_default())
    }

    fn optional_string(&self, name: &str) -> Result<Option<String>, ServiceError> {
        self.string(name, self.present(name))
    }

    fn envelope(
        &self,
        name: &str,
        errors: &mut Vec<String>,
    ) -> Result<Option<Envelope>, ServiceError> {
        let Some(value) = self.present(name) else {
            return Ok(None);
        };
        let Value::Object(object) = value else {
            return Err(ServiceError::serialization(format!(
                "{}.{name} must be an Envelope object {{\"Format\": string, \"Payload\": string}}, got {}: {value}",
                self.shape,
                kind(value)
            )));
        };
        let inner = Fields {
            object,
            shape: "Envelope",
        };
        let format = inner.optional_string("Format")?;
        let payload = inner.optional_string("Payload")?;
        let path = lower_first(name);
        if let Some(format) = &format {
            let len = format.chars().count();
            if !(1..=64).contains(&len) {
                errors.push(format!(
                    "Value '{format}' at '{path}.format' failed to satisfy constraint: Member must have length between 1 and 64 (has {len})"
                ));
            }
        }
        if let Some(payload) = &payload {
            let len = payload.chars().count();
            if len > 8192 {
                errors.push(format!(
                    "Value at '{path}.payload' failed to satisfy constraint: Member must have length less than or equal to 8192 (has {len})"
                ));
            }
        }
        Ok(Some(Envelope {
            format: format.unwrap_or_default(),
            payload: payload.unwrap_or_default(),
        }))
    }
}

/// Does `id` match `^[^/]+/[^/]+/[^/]+/.+$`?
pub fn is_valid_execution_id(id: &str) -> bool {
    let mut parts = id.splitn(4, '/');
    let ok = (0..3).all(|_| parts.next().is_some_and(|p| !p.is_empty()));
    ok && parts.next().is_some_and(|rest| !rest.is_empty())
}

fn finish(errors: Vec<String>) -> Result<(), ServiceError> {
    match errors.len() {
        0 => Ok(()),
        n => Err(ServiceError::validation(format!(
            "{n} validation error{} detected: {}",
            if n == 1 { "" } else { "s" },
            errors.join("; ")
        ))),
    }
}

/// Parses the body of `op`'s request.
pub fn parse_request(op: Operation, body: &[u8]) -> Result<Request, ServiceError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ServiceError::serialization(format!(
            "Request body of {op} is not valid JSON: {e}; body: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })?;
    let Value::Object(object) = &value else {
        return Err(ServiceError::serialization(format!(
            "Request body of {op} must be a JSON object, got {}",
            kind(&value)
        )));
    };
    let shape = format!("{op}Input");
    let fields = Fields {
        object,
        shape: &shape,
    };
    let mut errors = Vec::new();
    let request = match op {
        Operation::PollHostCommand => Request::Poll {
            host_identifier: fields.required_string("HostIdentifier", &mut errors)?,
        },
        Operation::GetDeploymentSpecification => {
            let id = fields.required_string("DeploymentExecutionId", &mut errors)?;
            let host = fields.required_string("HostIdentifier", &mut errors)?;
            if fields.present("DeploymentExecutionId").is_some() {
                let len = id.chars().count();
                if !(1..=129).contains(&len) {
                    errors.push(format!("Value '{id}' at 'deploymentExecutionId' failed to satisfy constraint: Member must have length between 1 and 129 (has {len})"));
                }
                if !is_valid_execution_id(&id) {
                    errors.push(format!("Value '{id}' at 'deploymentExecutionId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[^/]+/[^/]+/[^/]+/.+$"));
                }
            }
            Request::GetSpec {
                deployment_execution_id: id,
                host_identifier: host,
            }
        }
        Operation::PutHostCommandAcknowledgement => {
            let id = fields.required_string("HostCommandIdentifier", &mut errors)?;
            let diagnostics = fields.envelope("Diagnostics", &mut errors)?;
            let max = match fields.present("HostCommandMaxDurationInSeconds") {
                None => None,
                Some(v) => Some(v.as_i64().ok_or_else(|| {
                    ServiceError::serialization(format!(
                        "{shape}.HostCommandMaxDurationInSeconds must be an integer, got {}: {v}",
                        kind(v)
                    ))
                })?),
            };
            Request::Acknowledge {
                host_command_identifier: id,
                diagnostics,
                max_duration_seconds: max,
            }
        }
        Operation::PostHostCommandUpdate => {
            let id = fields.required_string("HostCommandIdentifier", &mut errors)?;
            let time = match fields.present("EstimatedCompletionTime") {
                None => None,
                Some(v) => Some(v.as_f64().ok_or_else(|| {
                    ServiceError::serialization(format!(
                        "{shape}.EstimatedCompletionTime must be a timestamp in epoch seconds (a JSON number), got {}: {v}",
                        kind(v)
                    ))
                })?),
            };
            let diagnostics = fields.envelope("Diagnostics", &mut errors)?;
            Request::Update {
                host_command_identifier: id,
                estimated_completion_time: time,
                diagnostics,
            }
        }
        Operation::PutHostCommandComplete => {
            let id = fields.required_string("HostCommandIdentifier", &mut errors)?;
            let status = fields.required_string("CommandStatus", &mut errors)?;
            if fields.present("CommandStatus").is_some()
                && !["Succeeded", "Failed"].contains(&status.as_str())
            {
                errors.push(format!("Value '{status}' at 'commandStatus' failed to satisfy constraint: Member must satisfy enum value set: [Succeeded, Failed]"));
            }
            let diagnostics = fields.envelope("Diagnostics", &mut errors)?;
            Request::Complete {
                host_command_identifier: id,
                command_status: status,
                diagnostics,
            }
        }
    };
    finish(errors)?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(op: Operation, body: &str) -> ServiceError {
        parse_request(op, body.as_bytes()).expect_err("must be rejected")
    }

    #[test]
    fn targets_map_to_operations() {
        assert_eq!(
            Operation::from_target(Some("CodeDeployCommandService_v20141006.PollHostCommand")),
            Ok(Operation::PollHostCommand)
        );
        let e =
            Operation::from_target(Some("CodeDeployCommandService_v20141006.Nope")).unwrap_err();
        assert_eq!(e.error_type, "UnknownOperationException");
        let e = Operation::from_target(None).unwrap_err();
        assert_eq!(e.error_type, "UnknownOperationException");
    }

    #[test]
    fn parses_each_operation() {
        assert_eq!(
            parse_request(Operation::PollHostCommand, br#"{"HostIdentifier":"h"}"#),
            Ok(Request::Poll {
                host_identifier: "h".into()
            })
        );
        let r = parse_request(
            Operation::PutHostCommandComplete,
            br#"{"HostCommandIdentifier":"c","CommandStatus":"Failed","Diagnostics":{"Format":"JSON","Payload":"{}"}}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::Complete {
                host_command_identifier: "c".into(),
                command_status: "Failed".into(),
                diagnostics: Some(Envelope {
                    format: "JSON".into(),
                    payload: "{}".into()
                })
            }
        );
        let r = parse_request(
            Operation::PostHostCommandUpdate,
            br#"{"HostCommandIdentifier":"c","EstimatedCompletionTime":1700000000.5}"#,
        )
        .unwrap();
        assert!(
            matches!(r, Request::Update { estimated_completion_time: Some(t), .. } if t == 1700000000.5)
        );
    }

    #[test]
    fn malformed_json_and_wrong_types_are_serialization_errors() {
        let e = err(Operation::PollHostCommand, "{not json");
        assert_eq!(e.error_type, "SerializationException");
        let e = err(Operation::PollHostCommand, "[]");
        assert_eq!(e.error_type, "SerializationException");
        let e = err(Operation::PollHostCommand, r#"{"HostIdentifier":12}"#);
        assert_eq!(e.error_type, "SerializationException");
        assert!(
            e.message.contains("HostIdentifier must be a string"),
            "{}",
            e.message
        );
        let e = err(
            Operation::PostHostCommandUpdate,
            r#"{"HostCommandIdentifier":"c","EstimatedCompletionTime":"soon"}"#,
        );
        assert_eq!(e.error_type, "SerializationException");
    }

    #[test]
    fn missing_fields_and_constraints_are_validation_errors() {
        let e = err(Operation::PollHostCommand, "{}");
        assert_eq!(e.error_type, "ValidationException");
        assert!(e.message.contains("'hostIdentifier'"), "{}", e.message);

        let e = err(
            Operation::GetDeploymentSpecification,
            r#"{"DeploymentExecutionId":"d-1/us-east-1","HostIdentifier":"h"}"#,
        );
        assert_eq!(e.error_type, "ValidationException");
        assert!(e.message.contains("regular expression"), "{}", e.message);

        let e = err(
            Operation::PutHostCommandComplete,
            r#"{"HostCommandIdentifier":"c","CommandStatus":"Done"}"#,
        );
        assert!(e.message.contains("enum value set"), "{}", e.message);

        let long = "x".repeat(8193);
        let e = err(
            Operation::PutHostCommandAcknowledgement,
            &format!(
                r#"{{"HostCommandIdentifier":"c","Diagnostics":{{"Format":"","Payload":"{long}"}}}}"#
            ),
        );
        assert_eq!(e.error_type, "ValidationException");
        assert!(
            e.message.starts_with("2 validation errors"),
            "{}",
            e.message
        );
    }

    #[test]
    fn execution_id_pattern() {
        assert!(is_valid_execution_id("d-1/us-east-1/x/1"));
        assert!(is_valid_execution_id("d-1/us-east-1/x/1/2"));
        assert!(!is_valid_execution_id("d-1/us-east-1/x/"));
        assert!(!is_valid_execution_id("d-1//x/1"));
        assert!(!is_valid_execution_id("d-1/us-east-1"));
    }
}
