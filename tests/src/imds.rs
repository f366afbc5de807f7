//! An EC2 instance-metadata emulator on a free 127.0.0.1 port: the IMDSv2
//! token flow (`PUT /latest/api/token`), IMDSv1 when allowed, the instance
//! identity document, partition and domain, and instance-profile credentials
//! that tests can rotate. It records every request so tests can assert on the
//! token flow the agent used.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Method, Response, Server};

/// What the emulated instance is and how its metadata service behaves.
#[derive(Clone, Debug)]
pub struct ImdsConfig {
    pub region: String,
    pub account_id: String,
    pub instance_id: String,
    pub partition: String,
    pub domain: String,
    /// Answer token requests (IMDSv2). `false` emulates a service that refuses them.
    pub tokens: bool,
    /// Answer requests that carry no token (IMDSv1).
    pub v1: bool,
    /// The instance profile's role name.
    pub role: String,
}

impl ImdsConfig {
    pub fn new(partition: &str, region: &str, domain: &str) -> ImdsConfig {
        ImdsConfig {
            region: region.to_string(),
            account_id: "123456789012".to_string(),
            instance_id: "i-0123456789abcdef0".to_string(),
            partition: partition.to_string(),
            domain: domain.to_string(),
            tokens: true,
            v1: true,
            role: "codedeploy-host".to_string(),
        }
    }

    pub fn host_identifier(&self) -> String {
        format!(
            "arn:{}:ec2:{}:{}:instance/{}",
            self.partition, self.region, self.account_id, self.instance_id
        )
    }
}

/// Instance-profile credentials as the metadata service hands them out.
#[derive(Clone, Debug)]
pub struct RoleCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: String,
    /// RFC 3339, e.g. `2026-11-23T12:00:00Z`.
    pub expiration: String,
}

impl RoleCredentials {
    /// Credentials that expire `expires_in` from now.
    pub fn expiring_in(
        access_key_id: &str,
        secret_access_key: &str,
        token: &str,
        expires_in: Duration,
    ) -> RoleCredentials {
        let expiration = chrono::Utc::now()
            + chrono::Duration::from_std(expires_in).expect("a test expiry fits chrono");
        RoleCredentials {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            token: token.to_string(),
            expiration: expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }
    }
}

/// One request the emulator saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImdsRequest {
    pub method: String,
    pub path: String,
    /// Whether it carried `X-aws-ec2-metadata-token` with a token we issued.
    pub with_valid_token: bool,
    pub status: u16,
}

struct Shared {
    config: Mutex<ImdsConfig>,
    credentials: Mutex<Option<RoleCredentials>>,
    tokens_issued: Mutex<Vec<String>>,
    requests: Mutex<Vec<ImdsRequest>>,
    stop: AtomicBool,
}

pub struct ImdsEmulator {
    shared: Arc<Shared>,
    server: Arc<Server>,
    port: u16,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ImdsEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImdsEmulator")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl ImdsEmulator {
    pub fn start(config: ImdsConfig) -> ImdsEmulator {
        let server = Arc::new(
            Server::http("127.0.0.1:0").expect("bind a loopback port for the IMDS emulator"),
        );
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            credentials: Mutex::new(None),
            tokens_issued: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let (server, shared) = (server.clone(), shared.clone());
            std::thread::spawn(move || serve(&server, &shared))
        };
        ImdsEmulator {
            shared,
            server,
            port,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`, for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_credentials(&self, credentials: RoleCredentials) {
        *self.shared.credentials.lock().unwrap() = Some(credentials);
    }

    pub fn requests(&self) -> Vec<ImdsRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// What the emulated instance is.
    pub fn config(&self) -> ImdsConfig {
        self.shared.config.lock().unwrap().clone()
    }

    /// How many times the role's credentials were handed out.
    pub fn credential_fetches(&self) -> usize {
        let role = self.config().role;
        let path = format!("/latest/meta-data/iam/security-credentials/{role}");
        self.requests()
            .iter()
            .filter(|r| r.path == path && r.status == 200)
            .count()
    }
}

impl Drop for ImdsEmulator {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &Server, shared: &Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        let request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(_) => break,
        };
        let method = request.method().to_string();
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let token = header(&request, "x-aws-ec2-metadata-token");
        let ttl = header(&request, "x-aws-ec2-metadata-token-ttl-seconds");
        let with_valid_token = token
            .as_ref()
            .map(|t| shared.tokens_issued.lock().unwrap().contains(t))
            .unwrap_or(false);
        let (status, body) = answer(
            shared,
            &request.method().clone(),
            &path,
            token.is_some(),
            with_valid_token,
            ttl,
        );
        shared.requests.lock().unwrap().push(ImdsRequest {
            method,
            path,
            with_valid_token,
            status,
        });
        let response = Response::from_string(body)
            .with_status_code(status)
            .with_header(Header::from_bytes("Content-Type", "text/plain").expect("a valid header"));
        let _ = request.respond(response);
    }
}

fn answer(
    shared: &Shared,
    method: &Method,
    path: &str,
    has_token: bool,
    valid_token: bool,
    ttl: Option<String>,
) -> (u16, String) {
    let config = shared.config.lock().unwrap().clone();
    if *method == Method::Put && path == "/latest/api/token" {
        if !config.tokens {
            return (403, "Forbidden".to_string());
        }
        let ttl_ok = ttl
            .and_then(|t| t.parse::<u32>().ok())
            .map(|t| (1..=21600).contains(&t))
            .unwrap_or(false);
        if !ttl_ok {
            return (
                400,
                "Missing or invalid X-aws-ec2-metadata-token-ttl-seconds".to_string(),
            );
        }
        let token = format!("token-{}", shared.tokens_issued.lock().unwrap().len() + 1);
        shared.tokens_issued.lock().unwrap().push(token.clone());
        return (200, token);
    }
    if *method != Method::Get {
        return (405, "Method Not Allowed".to_string());
    }
    if has_token && !valid_token {
        return (401, "Unauthorized".to_string());
    }
    if !has_token && !config.v1 {
        return (401, "Unauthorized".to_string());
    }
    let role_path = "/latest/meta-data/iam/security-credentials/";
    match path {
        "/latest/dynamic/instance-identity/document" => (
            200,
            serde_json::json!({
                "accountId": config.account_id,
                "architecture": "x86_64",
                "availabilityZone": format!("{}a", config.region),
                "instanceId": config.instance_id,
                "instanceType": "t3.micro",
                "region": config.region,
                "version": "2017-09-30",
            })
            .to_string(),
        ),
        "/latest/meta-data/services/partition" => (200, config.partition),
        "/latest/meta-data/services/domain" => (200, config.domain),
        p if p == role_path || p == role_path.trim_end_matches('/') => (200, config.role),
        p if p.strip_prefix(role_path) == Some(config.role.as_str()) => {
            match shared.credentials.lock().unwrap().clone() {
                Some(c) => (
                    200,
                    serde_json::json!({
                        "Code": "Success",
                        "LastUpdated": "2026-01-01T00:00:00Z",
                        "Type": "AWS-HMAC",
                        "AccessKeyId": c.access_key_id,
                        "SecretAccessKey": c.secret_access_key,
                        "Token": c.token,
                        "Expiration": c.expiration,
                    })
                    .to_string(),
                ),
                None => (404, "Not Found".to_string()),
            }
        }
        _ => (404, "Not Found".to_string()),
    }
}

fn header(request: &tiny_http::Request, name: &str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_string())
}
