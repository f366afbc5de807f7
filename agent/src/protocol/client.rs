//! The Commands API client: JSON 1.1 over one reused HTTPS connection (reqwest
//! with rustls), every request SigV4-signed. No hidden retries: the poller decides
//! when to try again, so that backoff stays in one place. Goes through
//! `:proxy_uri:` when set, else through the standard `HTTPS_PROXY`/`HTTP_PROXY`/
//! `NO_PROXY` variables, like the S3 client.
//!
//! One [`ThrottleGate`] is shared by every request the client makes (polls,
//! spec fetches, acknowledgements, updates, completes, whichever command they
//! belong to): after a throttling answer, no request goes out until the gate
//! opens again, so concurrent commands cannot keep hammering a service that
//! asked the host to slow down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::endpoint::CommandsService;
use super::signing::{sign_request, SignError};
use super::types::*;
use crate::config::ProxyUri;
use crate::http::{error_chain, stale_connection, ClientSettings, Proxying, Redirects};
use crate::identity::CredentialSource;

/// The largest answer the agent reads from the Commands service. A signed
/// deployment spec, the largest answer there is, takes a few kilobytes.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// The header carrying the agent version, as the official agent sends it.
const AGENT_VERSION_HEADER: &str = "x-amz-codedeploy-agent-version";

#[derive(Debug, thiserror::Error)]
pub enum CommandsError {
    /// The service's own answer; `error_type` and `message` are what it said.
    #[error("{operation} failed: {error_type} (HTTP {status}): {message}")]
    Service {
        operation: &'static str,
        status: u16,
        error_type: String,
        message: String,
    },
    /// Nothing usable came back: refused, reset, timed out, a certificate
    /// problem. The text carries reqwest's whole cause chain.
    #[error("{operation} could not reach {endpoint}: {}", error_chain(source))]
    Connection {
        operation: &'static str,
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer the agent cannot read; `detail` is the sentence a person reads
    /// (serde_json's message with its line and column, or the size cap).
    #[error("{operation} returned a response the agent cannot read: {detail}")]
    Decode {
        operation: &'static str,
        detail: String,
    },
    /// No credentials to sign with.
    #[error("{operation}: {source}")]
    Credentials {
        operation: &'static str,
        #[source]
        source: crate::identity::IdentityError,
    },
    /// The request could not be signed with the credentials at hand.
    #[error("{operation}: {source}")]
    Signing {
        operation: &'static str,
        #[source]
        source: SignError,
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
            CommandsError::Credentials { .. } | CommandsError::Signing { .. } => {
                ErrorClass::Credentials
            }
            _ => ErrorClass::Other,
        }
    }
}

/// The gate's first closing lasts this long; each throttling answer doubles it.
const GATE_FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest the gate stays closed after one throttling answer (before jitter).
const GATE_MAX_DELAY: Duration = Duration::from_secs(30);
/// Up to this share of the delay is added at random, so that hosts throttled
/// together do not come back together.
const GATE_JITTER: f64 = 0.25;

/// When requests may go out again after the service throttled the host (pure:
/// the caller passes the time and the random draw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateState {
    /// How long the next closing lasts (before jitter).
    delay: Duration,
    /// Closed until then.
    open_at: Option<Instant>,
    /// Bumped at each closing: answers to requests sent before it do not
    /// close the gate again (they were throttled by the same storm).
    generation: u64,
}

impl Default for GateState {
    fn default() -> Self {
        GateState {
            delay: GATE_FIRST_DELAY,
            open_at: None,
            generation: 0,
        }
    }
}

impl GateState {
    /// How long a request must wait before it goes out at `now`, and the
    /// generation it goes out under.
    pub fn wait(&self, now: Instant) -> (Duration, u64) {
        let wait = self
            .open_at
            .map(|open| open.saturating_duration_since(now))
            .unwrap_or_default();
        (wait, self.generation)
    }

    /// A request sent under `generation` was throttled at `now`; `draw` is a
    /// uniform number in `[0, 1)`. Returns how long the gate is now closed
    /// (`None` when an earlier answer already closed it for this storm).
    pub fn throttled(&mut self, generation: u64, now: Instant, draw: f64) -> Option<Duration> {
        if generation != self.generation {
            return None;
        }
        let closed_for = self.delay.mul_f64(1.0 + GATE_JITTER * draw.clamp(0.0, 1.0));
        self.open_at = Some(crate::deadline::after(now, closed_for));
        self.delay = (self.delay * 2).min(GATE_MAX_DELAY);
        self.generation += 1;
        Some(closed_for)
    }

    /// A request was answered without throttling: the next closing starts
    /// from the first delay again.
    pub fn answered(&mut self) {
        self.delay = GATE_FIRST_DELAY;
    }
}

/// The throttle gate shared by every request of one client.
#[derive(Debug, Default)]
pub struct ThrottleGate {
    state: Mutex<GateState>,
}

impl ThrottleGate {
    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        // The state is a few numbers updated without panicking code between
        // lock and unlock: a poisoned lock still holds a usable state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the gate is open; the generation the request goes out under.
    async fn pass(&self, operation: &str) -> u64 {
        loop {
            let (wait, generation) = self.state().wait(Instant::now());
            if wait.is_zero() {
                return generation;
            }
            tracing::debug!(
                "{operation} waits {} ms: the service is throttling this host",
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
        }
    }

    fn throttled(&self, operation: &str, generation: u64) {
        let closed_for = self
            .state()
            .throttled(generation, Instant::now(), fastrand::f64());
        if let Some(closed_for) = closed_for {
            tracing::warn!(
                "{operation} was throttled: no request goes to the service for {} ms",
                closed_for.as_millis()
            );
        }
    }

    fn answered(&self) {
        self.state().answered();
    }
}

/// Everything the client needs to talk to the service.
#[derive(Debug)]
pub struct CommandsClient {
    http: reqwest::Client,
    service: CommandsService,
    url: String,
    region: String,
    credentials: Arc<CredentialSource>,
    agent_version: String,
    gate: ThrottleGate,
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
    ) -> Result<CommandsClient, crate::http::ClientError> {
        let http = ClientSettings {
            user_agent: Some(transport.user_agent.clone()),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Some(transport.read_timeout),
            total_timeout: Some(transport.read_timeout + Duration::from_secs(10)),
            proxy: Proxying::configured(transport.proxy_uri.as_ref()),
            redirects: Redirects::Follow(10),
            max_idle_per_host: Some(1),
            keepalive: Some(Duration::from_secs(60)),
        }
        .build("the CodeDeploy Commands service")?;
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
            gate: ThrottleGate::default(),
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
        let generation = self.gate.pass(name).await;
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let credentials = self.credentials.current().await;
            let credentials = credentials.map_err(|source| CommandsError::Credentials {
                operation: name,
                source,
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
            .map_err(|source| CommandsError::Signing {
                operation: name,
                source,
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
                Err(source) => {
                    return Err(CommandsError::Connection {
                        operation: name,
                        endpoint: self.service.endpoint.clone(),
                        source,
                    })
                }
            }
        };
        let status = response.status();
        let mut response = response;
        let mut bytes: Vec<u8> = Vec::new();
        // Read chunk by chunk so that an answer of many megabytes (a broken
        // proxy, a hostile endpoint) is cut off instead of held in memory.
        while let Some(chunk) =
            response
                .chunk()
                .await
                .map_err(|source| CommandsError::Connection {
                    operation: name,
                    endpoint: self.service.endpoint.clone(),
                    source,
                })?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(CommandsError::Decode {
                    operation: name,
                    detail: format!(
                        "the answer is larger than {} MiB, far more than any Commands answer; refused",
                        MAX_ANSWER_BYTES >> 20
                    ),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let decoded = super::answer::decode(name, status.as_u16(), &bytes);
        match &decoded {
            Err(error) if !status.is_success() => match error.class() {
                ErrorClass::Throttling => self.gate.throttled(name, generation),
                // Whatever the cache believes, these keys were refused: look again.
                ErrorClass::Credentials => self.credentials.invalidate().await,
                _ => self.gate.answered(),
            },
            _ => self.gate.answered(),
        }
        decoded
    }
}

#[cfg(test)]
mod tests {
    use super::super::answer::service_error;
    use super::*;

    #[test]
    fn the_throttle_gate_doubles_with_jitter_up_to_its_cap_and_resets_on_an_answer() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut gate = GateState::default();
        assert_eq!(gate.wait(t0), (Duration::ZERO, 0), "open at first");
        // (draw, how long the gate closes)
        let closings = [
            (0.0, ms(1000)),
            (0.5, ms(2250)),
            (0.999_999, ms(5000)),
            (0.0, ms(8000)),
            (0.0, ms(16000)),
            (0.0, ms(30000)),
            (1.0, ms(37500)),
            (0.0, ms(30000)),
        ];
        let mut now = t0;
        for (i, (draw, expected)) in closings.into_iter().enumerate() {
            let (_, generation) = gate.wait(now);
            let closed = gate.throttled(generation, now, draw).unwrap();
            assert!(
                closed.abs_diff(expected) < ms(1),
                "closing {i}: {closed:?} != {expected:?}"
            );
            assert_eq!(gate.wait(now).0, closed, "closing {i}: requests wait");
            assert_eq!(gate.wait(now + closed).0, Duration::ZERO, "then it opens");
            // Another request of the same storm, answered late, changes nothing.
            assert_eq!(gate.throttled(generation, now, 0.0), None);
            now += closed;
        }
        gate.answered();
        let (_, generation) = gate.wait(now);
        assert_eq!(gate.throttled(generation, now, 0.0), Some(ms(1000)));
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
