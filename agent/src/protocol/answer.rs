//! Reading the Commands service's answers (pure): a success is the operation's
//! JSON (an empty body reads as `{}`), a failure the service's error shape
//! `{"__type": "...#Name", "message": "..."}`, classified for retries. The
//! client hands every answer here once it has it whole; fuzzing reaches the
//! same code through [`decode_poll_answer`] and [`decode_spec_answer`].

// These return the client's own error, as its requests do (where clippy
// does not look: they are async); boxing it here alone would buy nothing.
#![allow(clippy::result_large_err)]

use serde::de::DeserializeOwned;

use super::client::CommandsError;
use super::types::{GetSpecResponse, HostCommand, Operation, PollResponse};

/// An answer with HTTP `status` and `body` to `operation`.
pub(crate) fn decode<T: DeserializeOwned>(
    operation: &'static str,
    status: u16,
    body: &[u8],
) -> Result<T, CommandsError> {
    if !(200..300).contains(&status) {
        return Err(service_error(operation, status, body));
    }
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| CommandsError::Decode {
        operation,
        detail: e.to_string(),
    })
}

/// What a PollHostCommand answer says: a command, or none.
pub fn decode_poll_answer(status: u16, body: &[u8]) -> Result<Option<HostCommand>, CommandsError> {
    decode::<PollResponse>(Operation::PollHostCommand.name(), status, body).map(|r| r.host_command)
}

/// What a GetDeploymentSpecification answer says.
pub fn decode_spec_answer(status: u16, body: &[u8]) -> Result<GetSpecResponse, CommandsError> {
    decode(Operation::GetDeploymentSpecification.name(), status, body)
}

/// The service's error shape: `{"__type": "...#Name", "message": "..."}`.
pub(crate) fn service_error(operation: &'static str, status: u16, body: &[u8]) -> CommandsError {
    let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let error_type = parsed
        .get("__type")
        .and_then(|v| v.as_str())
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
        .unwrap_or_else(|| {
            if status >= 500 {
                "ServerException"
            } else {
                "ClientException"
            }
            .to_string()
        });
    let message = parsed
        .get("message")
        .or_else(|| parsed.get("Message"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    CommandsError::Service {
        operation,
        status,
        error_type,
        message,
    }
}
