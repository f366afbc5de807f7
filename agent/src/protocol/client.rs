//! The Commands API client: JSON 1.1 over one reused HTTPS connection (reqwest
//! with rustls), every request SigV4-signed. No hidden retries: the poller decides
//! when to try again, so that backoff stays in one place. Goes through
//! `:proxy_uri:` when set, else through the standard `HTTPS_PROXY`/`HTTP_PROXY`/
//! `NO_PROXY` variables, like the S3 client.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::endpoint::CommandsService;
use super::signing::sign_request;
use super::types::*;
use crate::config::ProxyUri;
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
    /// The service refused the signature or the keys: rotated or expired
    /// credentials, which the next attempt may have replaced.
    Credentials,
    Other,
}

/// Error types with which the service refuses the caller's credentials.
const CREDENTIAL_ERRORS: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "MissingAuthenticationTokenException",
];

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
            CommandsError::Service { error_type, .. }
                if CREDENTIAL_ERRORS.contains(&error_type.as_str()) =>
            {
                ErrorClass::Credentials
            }
            CommandsError::Credentials { .. } => ErrorClass::Credentials,
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
    /// `None`: the proxy environment variables decide (reqwest reads them).
    pub proxy_uri: Option<ProxyUri>,
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
            // An explicit proxy replaces the environment's, NO_PROXY included:
            // `:proxy_uri:` is for all AWS traffic, as in the official agent.
            let proxy = reqwest::Proxy::all(proxy.as_str()).map_err(|e| {
                format!(
                    "proxy_uri {} is not a usable proxy URL: {e}",
                    proxy.redacted()
                )
            })?;
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
        let base_headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
            (AGENT_VERSION_HEADER, self.agent_version.as_str()),
        ];
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let credentials =
                self.credentials
                    .current()
                    .await
                    .map_err(|e| CommandsError::Credentials {
                        operation: name,
                        detail: e.to_string(),
                    })?;
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
            match builder.body(body.clone()).send().await {
                Ok(response) => break response,
                // A kept-alive connection closed by the server or a proxy as the
                // request went out: nothing was answered, so it goes once more
                // on a fresh connection. Anything else is the poller's to retry.
                Err(e) if attempt == 1 && !e.is_connect() && stale_connection(&e) => {
                    tracing::debug!(
                        "{name}: kept-alive connection was closed, sending again: {}",
                        error_chain(&e)
                    );
                }
                Err(e) => {
                    return Err(CommandsError::Connection {
                        operation: name,
                        endpoint: self.service.endpoint.clone(),
                        detail: error_chain(&e),
                    })
                }
            }
        };
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
            let error = service_error(name, status.as_u16(), &bytes);
            if error.class() == ErrorClass::Credentials {
                // Whatever the cache believes, these keys were refused: look again.
                self.credentials.invalidate().await;
            }
            return Err(error);
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

/// Whether a transport error means the connection was closed under a request
/// it carried (the server or a proxy dropped a kept-alive connection), as
/// opposed to a refused connection or a timeout (pure: reads the error chain).
pub fn stale_connection(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return true;
            }
        }
        // hyper's "incomplete message" has no io::Error of its own.
        if e.to_string()
            .contains("connection closed before message completed")
        {
            return true;
        }
        current = e.source();
    }
    false
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

    #[derive(Debug)]
    struct Wrapped(&'static str, Option<std::io::Error>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_ref().map(|e| e as _)
        }
    }

    #[test]
    fn only_connections_closed_under_a_request_are_stale() {
        use std::io::{Error, ErrorKind};
        let cases = [
            (
                Wrapped(
                    "client error (SendRequest)",
                    Some(Error::from(ErrorKind::ConnectionReset)),
                ),
                true,
            ),
            (
                Wrapped("connection closed before message completed", None),
                true,
            ),
            (
                Wrapped(
                    "client error (SendRequest)",
                    Some(Error::from(ErrorKind::BrokenPipe)),
                ),
                true,
            ),
            (
                Wrapped(
                    "client error (Connect)",
                    Some(Error::from(ErrorKind::ConnectionRefused)),
                ),
                false,
            ),
            (
                Wrapped(
                    "operation timed out",
                    Some(Error::from(ErrorKind::TimedOut)),
                ),
                false,
            ),
            (Wrapped("dns error", None), false),
        ];
        for (error, expected) in cases {
            assert_eq!(
                stale_connection(&error),
                expected,
                "{error} / {:?}",
                error.1
            );
        }
    }

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
        assert_eq!(auth.class(), ErrorClass::Credentials);
        let expired = service_error(
            "PutHostCommandComplete",
            400,
            br#"{"__type":"com.amazon.coral#ExpiredTokenException","message":"expired"}"#,
        );
        assert_eq!(expired.class(), ErrorClass::Credentials);
        let client = service_error(
            "PutHostCommandComplete",
            400,
            br#"{"__type":"ClientException","message":"no such command"}"#,
        );
        assert_eq!(client.class(), ErrorClass::Other);
        let server = service_error("PollHostCommand", 503, b"<html>oops</html>");
        assert!(
            server.to_string().contains("ServerException") && server.to_string().contains("oops")
        );
    }
}
