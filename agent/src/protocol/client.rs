//! The Commands API client: JSON 1.1 over one reused HTTPS connection (reqwest
//! with rustls), every request SigV4-signed. No hidden retries: the poller decides
//! when to try again, so that backoff stays in one place.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::endpoint::CommandsService;
use super::signing::sign_request;
use super::types::*;
use crate::identity::CredentialSource;

/// The header carrying the agent version, as the official agent sends it.
const AGENT_VERSION_HEADER: &str = "x-amz-codedeploy-agent-version";

#[derive(Debug, thiserror::Error)]
pub enum CommandsError {
    #[error("{operation} failed: {error_type} (HTTP {status}): {message}")]
    Service {
        operation: &'static str,
        status: u16,
        error_type: String,
        message: String,
    },
    #[error("{operation} could not reach {endpoint}: {detail}")]
    Connection {
        operation: &'static str,
        endpoint: String,
        detail: String,
    },
    #[error("{operation} returned a response the agent cannot read: {detail}")]
    Decode {
        operation: &'static str,
        detail: String,
    },
    #[error("{operation}: {detail}")]
    Credentials {
        operation: &'static str,
        detail: String,
    },
}

/// How the poller should react to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Throttling,
    Connection,
    Other,
}

impl CommandsError {
    pub fn class(&self) -> ErrorClass {
        match self {
            CommandsError::Service {
                status, error_type, ..
            } if *status == 429
                || error_type.contains("Throttl")
                || error_type.contains("TooManyRequests") =>
            {
                ErrorClass::Throttling
            }
            CommandsError::Connection { .. } => ErrorClass::Connection,
            _ => ErrorClass::Other,
        }
    }
}

/// Everything the client needs to talk to the service.
pub struct CommandsClient {
    http: reqwest::Client,
    service: CommandsService,
    url: String,
    region: String,
    credentials: Arc<CredentialSource>,
    agent_version: String,
}

/// Transport settings for the HTTP client.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    pub read_timeout: Duration,
    pub proxy_uri: Option<String>,
    pub user_agent: String,
}

impl CommandsClient {
    pub fn new(
        service: CommandsService,
        region: String,
        credentials: Arc<CredentialSource>,
        transport: &TransportSettings,
        agent_version: String,
    ) -> Result<CommandsClient, String> {
        let mut builder = reqwest::Client::builder()
            .user_agent(transport.user_agent.clone())
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(transport.read_timeout)
            .timeout(transport.read_timeout + Duration::from_secs(10))
            .pool_max_idle_per_host(1)
            .tcp_keepalive(Duration::from_secs(60))
            .https_only(false);
        if let Some(proxy) = &transport.proxy_uri {
            let proxy = reqwest::Proxy::all(proxy)
                .map_err(|e| format!("proxy_uri is not a usable proxy URL: {e}"))?;
            builder = builder.proxy(proxy);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot set up the HTTPS client: {e}"))?;
        let url = if service.endpoint.ends_with('/') {
            service.endpoint.clone()
        } else {
            format!("{}/", service.endpoint)
        };
        Ok(CommandsClient {
            http,
            service,
            url,
            region,
            credentials,
            agent_version,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.service.endpoint
    }

    pub async fn poll_host_command(
        &self,
        host_identifier: &str,
    ) -> Result<Option<HostCommand>, CommandsError> {
        let response: PollResponse = self
            .call(Operation::PollHostCommand, &PollRequest { host_identifier })
            .await?;
        Ok(response.host_command)
    }

    pub async fn get_deployment_specification(
        &self,
        deployment_execution_id: &str,
        host_identifier: &str,
    ) -> Result<GetSpecResponse, CommandsError> {
        self.call(
            Operation::GetDeploymentSpecification,
            &GetSpecRequest {
                deployment_execution_id,
                host_identifier,
            },
        )
        .await
    }

    pub async fn acknowledge(
        &self,
        host_command_identifier: &str,
        is_noop: bool,
    ) -> Result<Option<CommandStatus>, CommandsError> {
        let payload = serde_json::json!({ "IsCommandNoop": is_noop }).to_string();
        let response: StatusResponse = self
            .call(
                Operation::PutHostCommandAcknowledgement,
                &AcknowledgeRequest {
                    host_command_identifier,
                    diagnostics: Envelope::json(payload),
                },
            )
            .await?;
        Ok(response.command_status)
    }

    /// A progress heartbeat for long commands (the service does not require it).
    pub async fn update(
        &self,
        host_command_identifier: &str,
        estimated_completion: SystemTime,
        diagnostics_payload: String,
    ) -> Result<Option<CommandStatus>, CommandsError> {
        let estimated_completion_time = estimated_completion
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let response: StatusResponse = self
            .call(
                Operation::PostHostCommandUpdate,
                &UpdateRequest {
                    host_command_identifier,
                    estimated_completion_time,
                    diagnostics: Envelope::json(diagnostics_payload),
                },
            )
            .await?;
        Ok(response.command_status)
    }

    pub async fn complete(
        &self,
        host_command_identifier: &str,
        status: CommandStatus,
        diagnostics_payload: String,
    ) -> Result<(), CommandsError> {
        let _: serde_json::Value = self
            .call(
                Operation::PutHostCommandComplete,
                &CompleteRequest {
                    host_command_identifier,
                    command_status: status,
                    diagnostics: Envelope::json(diagnostics_payload),
                },
            )
            .await?;
        Ok(())
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        operation: Operation,
        request: &Req,
    ) -> Result<Resp, CommandsError> {
        let name = operation.name();
        let body = serde_json::to_vec(request).map_err(|e| CommandsError::Decode {
            operation: name,
            detail: format!("cannot encode the request: {e}"),
        })?;
        let target = format!("{}.{name}", self.service.target_prefix);
        let credentials =
            self.credentials
                .current()
                .await
                .map_err(|e| CommandsError::Credentials {
                    operation: name,
                    detail: e.to_string(),
                })?;
        let base_headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
            (AGENT_VERSION_HEADER, self.agent_version.as_str()),
        ];
        let signed = sign_request(
            &self.url,
            &base_headers,
            &body,
            &credentials,
            &self.region,
            self.service.signing_name,
            SystemTime::now(),
        )
        .map_err(|detail| CommandsError::Credentials {
            operation: name,
            detail,
        })?;

        let mut builder = self.http.post(&self.url);
        for (header, value) in base_headers.iter() {
            builder = builder.header(*header, *value);
        }
        for (header, value) in signed.iter() {
            builder = builder.header(header.as_str(), value.as_str());
        }
        let response = builder
            .body(body)
            .send()
            .await
            .map_err(|e| CommandsError::Connection {
                operation: name,
                endpoint: self.service.endpoint.clone(),
                detail: error_chain(&e),
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CommandsError::Connection {
                operation: name,
                endpoint: self.service.endpoint.clone(),
                detail: error_chain(&e),
            })?;
        if !status.is_success() {
            return Err(service_error(name, status.as_u16(), &bytes));
        }
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes).map_err(|e| CommandsError::Decode {
            operation: name,
            detail: e.to_string(),
        })
    }
}

/// The service's error shape: `{"__type": "...#Name", "message": "..."}`.
fn service_error(operation: &'static str, status: u16, body: &[u8]) -> CommandsError {
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

/// The error with its causes, which reqwest keeps in the source chain.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_are_classified() {
        let throttled = service_error(
            "PollHostCommand",
            400,
            br#"{"__type":"com.amazon#ThrottlingException","message":"Rate exceeded"}"#,
        );
        assert_eq!(throttled.class(), ErrorClass::Throttling);
        assert!(throttled.to_string().contains("ThrottlingException"));
        let auth = service_error(
            "PollHostCommand",
            403,
            br#"{"__type":"InvalidSignatureException","message":"bad"}"#,
        );
        assert_eq!(auth.class(), ErrorClass::Other);
        let server = service_error("PollHostCommand", 503, b"<html>oops</html>");
        assert!(
            server.to_string().contains("ServerException") && server.to_string().contains("oops")
        );
    }
}
