//! The CodeDeploy Commands control-plane emulator: an HTTP/1.1 server on a
//! free 127.0.0.1 port answering the five operations of
//! `CodeDeployCommandService_v20141006` (AWS JSON 1.1, SigV4-verified) from
//! deployments a test scripts into it, recording every call, and offering
//! bounded waits on what the host did.
//!
//! Layout: `wire` (operations, request parsing, errors), `sigv4`
//! (signature verification), `deployment` (what tests script, the spec
//! JSON), `spec` (envelopes and PKCS#7 signing), `state` (the service's
//! rules and records); this file owns the server threads and the public API.

mod deployment;
mod sigv4;
mod spec;
mod state;
mod wire;

#[cfg(test)]
mod http_tests;

pub use deployment::{
    new_deployment_id, new_group_id, Deployment, S3Location, SpecFormat, IN_PLACE_EVENTS,
};
pub use sigv4::{Credential, RequestParts, Verifier, INVALID_TOKEN, SIGNATURE_MISMATCH};
pub use spec::sign_pkcs7_pem;
pub use state::{
    Call, CommandRecord, CommandState, Completion, DeploymentRecord, DeploymentStatus, Diagnostics,
    Storm,
};
pub use wire::{Envelope, Operation, ServiceError, CONTENT_TYPE, TARGET_PREFIX};

use std::fmt::{self, Write as _};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::ca::TestPki;
use state::{Injection, State};

/// The SigV4 signing name of the Commands service.
pub const SIGNING_NAME: &str = "codedeploy-commands";

/// How the emulator is set up.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub region: String,
    /// The only host identifier PollHostCommand accepts.
    pub host_identifier: String,
    /// Credentials whose signatures are accepted.
    pub credentials: Vec<Credential>,
    /// Signs deployment specifications.
    pub pki: TestPki,
    /// How long an empty PollHostCommand is held waiting for a command.
    pub poll_hold: Duration,
}

impl EmulatorConfig {
    pub fn new(host_identifier: &str, credentials: Vec<Credential>, pki: TestPki) -> Self {
        EmulatorConfig {
            region: "us-east-1".to_string(),
            host_identifier: host_identifier.to_string(),
            credentials,
            pki,
            poll_hold: Duration::from_millis(500),
        }
    }
}

/// A control plane in trouble, for every request until it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// HTTP 500 InternalFailure.
    ServerErrors,
    /// Each answer held this long before it is given.
    Slow(Duration),
    /// The connection is closed without an answer.
    DroppedConnections,
    /// HTTP 200 with a body that is not JSON.
    MalformedJson,
    /// HTTP 200 with a body of 64 MiB.
    HugeAnswers,
}

struct Shared {
    /// The current outage and when it ends.
    outage: Mutex<Option<(Outage, Instant)>>,
    state: Mutex<State>,
    changed: Condvar,
    /// Behind a lock so that tests can rotate the accepted credentials.
    verifier: RwLock<Verifier>,
    started: Instant,
    poll_hold: Duration,
    stop: AtomicBool,
    /// Requests handed to a handler that has not answered yet.
    in_flight: AtomicUsize,
    /// When the last request was handed to a handler.
    last_arrival: Mutex<Instant>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking handler thread must not hide the records from the test.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    shared: Arc<Shared>,
    port: u16,
    region: String,
    host_identifier: String,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("port", &self.port)
            .field("region", &self.region)
            .field("host_identifier", &self.host_identifier)
            .finish_non_exhaustive()
    }
}

/// A PutHostCommandComplete the service accepted, with its command.
#[derive(Clone, Debug)]
pub struct CompletedCommand {
    pub deployment_id: String,
    pub command_name: String,
    pub host_command_identifier: String,
    pub completion: Completion,
}

/// How a deployment ended (or did not, by the deadline).
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Every command completed Succeeded.
    Succeeded(DeploymentRecord),
    /// A command failed; no further command was handed out.
    Failed {
        record: DeploymentRecord,
        command: CommandRecord,
    },
    /// Still running at the deadline (`None`: no such deployment).
    TimedOut(Option<DeploymentRecord>),
}

impl Outcome {
    pub fn is_succeeded(&self) -> bool {
        matches!(self, Outcome::Succeeded(_))
    }

    /// The command that failed.
    pub fn failed_command(&self) -> Option<&CommandRecord> {
        match self {
            Outcome::Failed { command, .. } => Some(command),
            _ => None,
        }
    }

    pub fn record(&self) -> Option<&DeploymentRecord> {
        match self {
            Outcome::Succeeded(record) | Outcome::Failed { record, .. } => Some(record),
            Outcome::TimedOut(record) => record.as_ref(),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Succeeded(r) => write!(f, "{} succeeded", r.deployment.deployment_id),
            Outcome::Failed { record, command } => write!(
                f,
                "{} failed at {}: {}",
                record.deployment.deployment_id,
                command.command_name,
                command
                    .diagnostics()
                    .map(|d| format!("error_code {} {}", d.error_code, d.message))
                    .unwrap_or_else(|| "no diagnostics".to_string())
            ),
            Outcome::TimedOut(Some(r)) => write!(
                f,
                "{} did not end in time (status {:?}, commands handed out: {:?})",
                r.deployment.deployment_id,
                r.status,
                r.issued()
            ),
            Outcome::TimedOut(None) => f.write_str("no such deployment"),
        }
    }
}

impl Emulator {
    /// Starts the server on a free loopback port.
    pub fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        let server = tiny_http::Server::http("127.0.0.1:0").map_err(std::io::Error::other)?;
        let port = server
            .server_addr()
            .to_ip()
            .expect("bound to an IP address")
            .port();
        let shared = Arc::new(Shared {
            outage: Mutex::new(None),
            state: Mutex::new(State::new(
                &config.region,
                &config.host_identifier,
                config.pki.clone(),
            )),
            changed: Condvar::new(),
            verifier: RwLock::new(Verifier::new(
                &config.region,
                SIGNING_NAME,
                config.credentials.clone(),
            )),
            started: Instant::now(),
            poll_hold: config.poll_hold,
            stop: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_arrival: Mutex::new(Instant::now()),
        });
        let accept_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("emulator-{port}"))
            .spawn(move || {
                while !accept_shared.stop.load(Ordering::Relaxed) {
                    match server.recv_timeout(Duration::from_millis(100)) {
                        Ok(Some(request)) => {
                            *accept_shared
                                .last_arrival
                                .lock()
                                .unwrap_or_else(|e| e.into_inner()) = Instant::now();
                            accept_shared.in_flight.fetch_add(1, Ordering::SeqCst);
                            let shared = Arc::clone(&accept_shared);
                            // One thread per request: a held poll must not
                            // block a completion arriving meanwhile.
                            let spawned = std::thread::Builder::new()
                                .name("emulator-request".into())
                                .spawn(move || {
                                    handle(&shared, request);
                                    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                                });
                            if spawned.is_err() {
                                accept_shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                            }
                        }
                        Ok(None) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })?;
        Ok(Emulator {
            shared,
            port,
            region: config.region,
            host_identifier: config.host_identifier,
            acceptor: Some(acceptor),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until every request received has been answered and none has
    /// arrived for `quiet`, or `limit` has passed; returns whether it got
    /// quiet. After a client is killed, a request it had sent (a Complete in
    /// the socket's buffer) is still read and recorded: what the emulator
    /// heard is only final once it is quiet.
    pub fn wait_quiet(&self, quiet: Duration, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let last = *self
                .shared
                .last_arrival
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if self.shared.in_flight.load(Ordering::SeqCst) == 0 && last.elapsed() >= quiet {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `http://127.0.0.1:<port>`: the agent's `deploy_control_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn host_identifier(&self) -> &str {
        &self.host_identifier
    }

    /// From now on, only signatures made with `credentials` are accepted (as
    /// when the service learns of rotated keys and old ones expire).
    pub fn set_credentials(&self, credentials: Vec<Credential>) {
        self.shared
            .verifier
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .credentials = credentials;
    }

    /// Queues a deployment; its commands are handed out after those of the
    /// deployments queued before it have ended.
    pub fn add_deployment(&self, deployment: Deployment) {
        self.shared.lock().add_deployment(deployment);
        self.shared.changed.notify_all();
    }

    /// Hands the command out again if it was issued but not acknowledged,
    /// as the service does when the answer carrying it was lost.
    pub fn reissue_command(&self, host_command_identifier: &str) {
        self.shared.lock().reissue(host_command_identifier);
        self.shared.changed.notify_all();
    }

    /// From now on, the deployments of different deployment groups are
    /// handed out at the same time (one command of each at once), as the
    /// service does; deployments of one group still wait for each other.
    pub fn set_parallel_groups(&self, parallel: bool) {
        self.shared.lock().parallel_groups = parallel;
        self.shared.changed.notify_all();
    }

    /// Each command the host is running (handed out, not completed) is
    /// handed out again by up to `times` polls that have nothing new to give,
    /// as the service may do while the host still runs it.
    pub fn redeliver_in_progress(&self, times: usize) {
        self.shared.lock().redeliveries = times;
        self.shared.changed.notify_all();
    }

    /// Every request (every operation, once authenticated and well-formed)
    /// is answered with ThrottlingException while `storm` lasts.
    pub fn throttle_storm(&self, storm: Storm) {
        self.shared.lock().start_storm(storm);
    }

    /// The next `times` requests for `operation` (after authentication)
    /// are answered with `error`.
    pub fn inject_error(&self, operation: Operation, error: ServiceError, times: usize) {
        self.shared.lock().injections.push(Injection {
            operation,
            error,
            remaining: times,
        });
    }

    /// The next `times` requests for `operation` get no answer: their
    /// connection is closed, as a network fault would.
    pub fn drop_connections(&self, operation: Operation, times: usize) {
        self.shared
            .lock()
            .dropped_connections
            .push((operation, times));
    }

    /// Every request answered as `outage` says until `until` (after which
    /// the service is healthy again).
    pub fn outage(&self, outage: Outage, until: Instant) {
        *self.shared.outage.lock().unwrap_or_else(|e| e.into_inner()) = Some((outage, until));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    pub fn calls_of(&self, operation: Operation) -> Vec<Call> {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.operation == Some(operation))
            .cloned()
            .collect()
    }

    /// How many requests for `operation` arrived (answered or not).
    pub fn count(&self, operation: Operation) -> usize {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.operation == Some(operation))
            .count()
    }

    /// Every accepted completion, in arrival order.
    pub fn completes(&self) -> Vec<CompletedCommand> {
        let state = self.shared.lock();
        let mut all: Vec<CompletedCommand> = state
            .deployments
            .iter()
            .flat_map(|d| {
                d.commands.iter().flat_map(move |c| {
                    c.completions
                        .iter()
                        .map(move |completion| CompletedCommand {
                            deployment_id: d.deployment.deployment_id.clone(),
                            command_name: c.command_name.clone(),
                            host_command_identifier: c.host_command_identifier.clone(),
                            completion: completion.clone(),
                        })
                })
            })
            .collect();
        all.sort_by_key(|c| c.completion.at);
        all
    }

    pub fn deployment(&self, deployment_id: &str) -> Option<DeploymentRecord> {
        self.shared
            .lock()
            .deployments
            .iter()
            .find(|d| d.deployment.deployment_id == deployment_id)
            .cloned()
    }

    pub fn deployments(&self) -> Vec<DeploymentRecord> {
        self.shared.lock().deployments.clone()
    }

    /// Waits until `condition` holds or `timeout` passes; returns whether it
    /// held. The condition is re-checked on every change of the emulator's
    /// state and at least every 200 ms.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Emulator) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let generation = self.shared.lock().generation;
            if condition(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(Duration::from_millis(200));
            let guard = self.shared.lock();
            if guard.generation == generation {
                let _ = self
                    .shared
                    .changed
                    .wait_timeout(guard, wait)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Waits until the deployment has ended (all commands Succeeded, or one
    /// Failed), at most `timeout`.
    pub fn wait_for_deployment_end(&self, deployment_id: &str, timeout: Duration) -> Outcome {
        let ended = |e: &Emulator| {
            e.deployment(deployment_id).is_some_and(|d| {
                matches!(
                    d.status,
                    DeploymentStatus::Succeeded | DeploymentStatus::Failed(_)
                )
            })
        };
        self.wait_until(timeout, ended);
        match self.deployment(deployment_id) {
            Some(record) => match &record.status {
                DeploymentStatus::Succeeded => Outcome::Succeeded(record),
                DeploymentStatus::Failed(name) => {
                    let command = record
                        .command(name)
                        .cloned()
                        .expect("a failed deployment names one of its commands");
                    Outcome::Failed { record, command }
                }
                _ => Outcome::TimedOut(Some(record)),
            },
            None => Outcome::TimedOut(None),
        }
    }

    /// A readable account of every call and every deployment, for assertion
    /// messages.
    pub fn report(&self) -> String {
        let state = self.shared.lock();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "=== emulator at {} (host {}) ===",
            self.endpoint(),
            self.host_identifier
        );
        let _ = writeln!(out, "--- calls ({}) ---", state.calls.len());
        let mut i = 0;
        while i < state.calls.len() {
            let call = &state.calls[i];
            let mut repeat = 1;
            while i + repeat < state.calls.len() && same_summary(call, &state.calls[i + repeat]) {
                repeat += 1;
            }
            let _ = write!(
                out,
                "#{} +{:.3}s {} {} -> {}",
                call.seq,
                call.elapsed.as_secs_f64(),
                call.method,
                call.operation.map(|o| o.name()).unwrap_or("?"),
                call.status
            );
            if let Some(t) = &call.error_type {
                let _ = write!(out, " {t}");
            }
            let _ = write!(
                out,
                " req={} resp={}",
                abbreviate(&call.request),
                abbreviate(&call.response)
            );
            if repeat > 1 {
                let last = &state.calls[i + repeat - 1];
                let _ = write!(
                    out,
                    "  (x{repeat}, until +{:.3}s)",
                    last.elapsed.as_secs_f64()
                );
            }
            out.push('\n');
            i += repeat;
        }
        let _ = writeln!(out, "--- deployments ({}) ---", state.deployments.len());
        for d in &state.deployments {
            let _ = writeln!(
                out,
                "{} group {} ({}) app {} revision s3://{}/{} [{}] version {:?} etag {:?}: {:?}",
                d.deployment.deployment_id,
                d.deployment.group_name,
                d.deployment.group_id,
                d.deployment.application_name,
                d.deployment.revision.bucket,
                d.deployment.revision.key,
                d.deployment.revision.bundle_type,
                d.deployment.revision.version,
                d.deployment.revision.etag,
                d.status
            );
            for c in &d.commands {
                let _ = write!(
                    out,
                    "  {:<16} {:?} issued x{} (again while in progress x{}) acks {} noop {:?}",
                    c.command_name,
                    c.state,
                    c.times_issued,
                    c.times_redelivered,
                    c.acknowledgements.len(),
                    c.acknowledged_noop()
                );
                for completion in &c.completions {
                    match &completion.diagnostics {
                        Ok(diag) => {
                            let _ = write!(
                                out,
                                "\n      complete {} code {} script {:?} message {:?} log {:?}",
                                completion.status,
                                diag.error_code,
                                diag.script_name,
                                diag.message,
                                diag.log
                            );
                        }
                        Err(e) => {
                            let _ = write!(out, "\n      complete {} ({e})", completion.status);
                        }
                    }
                }
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn same_summary(a: &Call, b: &Call) -> bool {
    a.operation == b.operation
        && a.status == b.status
        && a.error_type == b.error_type
        && a.request == b.request
        && a.response == b.response
}

/// JSON with long strings shortened (PKCS#7 payloads, logs).
fn abbreviate(value: &Value) -> String {
    fn shorten(value: &Value) -> Value {
        match value {
            Value::String(s) if s.chars().count() > 300 => {
                let head: String = s.chars().take(120).collect();
                Value::String(format!("{head}...({} chars)", s.chars().count()))
            }
            Value::Array(items) => Value::Array(items.iter().map(shorten).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), shorten(v))).collect())
            }
            other => other.clone(),
        }
    }
    shorten(value).to_string()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Authenticates, routes and applies one request.
fn process(
    shared: &Shared,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (Option<Operation>, Result<Value, ServiceError>) {
    if method == "GET" {
        // Liveness / TLS check of the endpoint.
        return (None, Ok(Value::String("healthy".into())));
    }
    if method != "POST" {
        return (
            None,
            Err(ServiceError {
                status: 405,
                error_type: "MethodNotAllowedException".into(),
                message: format!("{method} is not supported; the Commands API is POST /"),
            }),
        );
    }
    let parts = RequestParts {
        method,
        target,
        headers,
        body,
    };
    let verified = shared
        .verifier
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .verify(&parts, SystemTime::now())
        .map(|_| ());
    if let Err(e) = verified {
        let op = Operation::from_target(header(headers, "x-amz-target")).ok();
        return (op, Err(e));
    }
    let op = match Operation::from_target(header(headers, "x-amz-target")) {
        Ok(op) => op,
        Err(e) => return (None, Err(e)),
    };
    let content_type = header(headers, "content-type").unwrap_or("");
    if !content_type.starts_with(CONTENT_TYPE) {
        return (
            Some(op),
            Err(ServiceError::client(
                "SerializationException",
                format!("Content-Type must be {CONTENT_TYPE}, got '{content_type}'"),
            )),
        );
    }
    let request = match wire::parse_request(op, body) {
        Ok(r) => r,
        Err(e) => return (Some(op), Err(e)),
    };
    let mut state = shared.lock();
    if let Some(error) = state.storm_answer(op, Instant::now()) {
        return (Some(op), Err(error));
    }
    if let Some(error) = state.injected_error(op) {
        return (Some(op), Err(error));
    }
    if let wire::Request::Poll { host_identifier } = &request {
        // Hold an empty poll briefly, as the service does, so a command
        // queued meanwhile goes out at once.
        if host_identifier == &state.host_identifier {
            let deadline = Instant::now() + shared.poll_hold;
            while !state.has_command_to_issue() {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                state = shared
                    .changed
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
    (Some(op), state.apply(request))
}

fn handle(shared: &Shared, mut request: tiny_http::Request) {
    let at = SystemTime::now();
    let method = request.method().as_str().to_string();
    let target = request.url().to_string();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let read = request.as_reader().take(4 << 20).read_to_end(&mut body);
    let outage = shared
        .outage
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .filter(|(_, until)| Instant::now() < *until)
        .map(|(outage, _)| outage)
        .or_else(|| {
            let op = Operation::from_target(header(&headers, "x-amz-target")).ok()?;
            let dropped = shared.lock().take_dropped_connection(op);
            dropped.then_some(Outage::DroppedConnections)
        });
    match outage {
        Some(Outage::Slow(hold)) => std::thread::sleep(hold),
        Some(broken) => {
            answer_broken(shared, request, broken, at, &method, &headers, &body);
            return;
        }
        None => {}
    }
    let (operation, result) = match read {
        Ok(_) => process(shared, &method, &target, &headers, &body),
        Err(e) => (
            None,
            Err(ServiceError::client(
                "SerializationException",
                format!("could not read the request body: {e}"),
            )),
        ),
    };
    let (status, response, error_type) = match result {
        Ok(value) => (200, value, None),
        Err(e) => (e.status, e.body(), Some(e.error_type.clone())),
    };
    let issued = response
        .pointer("/HostCommand/HostCommandIdentifier")
        .and_then(Value::as_str)
        .map(str::to_string);
    {
        let mut state = shared.lock();
        let seq = state.calls.len() + 1;
        state.calls.push(Call {
            seq,
            at,
            elapsed: shared.started.elapsed(),
            method: method.clone(),
            operation,
            request: serde_json::from_slice(&body).unwrap_or(Value::Null),
            headers,
            status,
            response: response.clone(),
            error_type: error_type.clone(),
        });
        state.generation += 1;
    }
    shared.changed.notify_all();

    let body = match &response {
        Value::String(text) if status == 200 => text.clone(),
        other => other.to_string(),
    };
    let mut reply = tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(
            tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE).expect("valid header"),
        )
        .with_header(
            tiny_http::Header::from_bytes("x-amzn-RequestId", new_group_id())
                .expect("valid header"),
        );
    if let Some(t) = &error_type {
        reply = reply.with_header(
            tiny_http::Header::from_bytes("x-amzn-ErrorType", format!("{t}:"))
                .expect("valid header"),
        );
    }
    if request.respond(reply).is_err() {
        if let Some(id) = issued {
            // The host never got the command: hand it out again, as the
            // service does when a held poll dies.
            shared.lock().reissue(&id);
            shared.changed.notify_all();
        }
    }
}

/// Answers a request the way an outage does, and records it (status 0 for a
/// connection closed without an answer).
fn answer_broken(
    shared: &Shared,
    request: tiny_http::Request,
    outage: Outage,
    at: SystemTime,
    method: &str,
    headers: &[(String, String)],
    body: &[u8],
) {
    let operation = Operation::from_target(header(headers, "x-amz-target")).ok();
    let (status, text) = match outage {
        Outage::ServerErrors => (
            500,
            r#"{"__type":"InternalFailure","message":"injected outage"}"#.to_string(),
        ),
        Outage::MalformedJson => (200, r#"{"HostCommand": {"CommandName": "#.to_string()),
        Outage::HugeAnswers => (200, format!("{{\"pad\": \"{}\"}}", "x".repeat(64 << 20))),
        Outage::DroppedConnections | Outage::Slow(_) => (0, String::new()),
    };
    {
        let mut state = shared.lock();
        let seq = state.calls.len() + 1;
        state.calls.push(Call {
            seq,
            at,
            elapsed: shared.started.elapsed(),
            method: method.to_string(),
            operation,
            request: serde_json::from_slice(body).unwrap_or(Value::Null),
            headers: headers.to_vec(),
            status,
            response: Value::String(text.chars().take(200).collect()),
            error_type: (status == 500).then(|| "InternalFailure".to_string()),
        });
        state.generation += 1;
    }
    shared.changed.notify_all();
    if status == 0 {
        // A connection that breaks: a few bytes that are no HTTP answer, on
        // the raw socket. The client gives the connection up at once.
        let mut raw = request.into_writer();
        let _ = raw.write_all(b"\x00\r\n\r\n");
        let _ = raw.flush();
        return;
    }
    let reply = tiny_http::Response::from_string(text)
        .with_status_code(status)
        .with_header(
            tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE).expect("valid header"),
        );
    let _ = request.respond(reply);
}
