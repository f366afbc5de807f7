//! A fake GitHub on a free 127.0.0.1 port, for GitHub revisions: the API's
//! archive routes (`/repos/<account>/<repository>/<tarball|zipball>/<commit>`)
//! answer 302 to a codeload-like route on the same server, which serves the
//! archive a test published. Unknown archives are 404, and a test can make
//! the API answer a few error statuses first. Every request is recorded with
//! its `Authorization` header, so tests can assert on the token the agent
//! sent (or did not). Also builds the deployments that name such a revision.
//! Dropping it stops it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;
use tiny_http::{Header, Response, Server};

use crate::bundle::BundleType;
use crate::emulator::{Deployment, S3Location};

/// Which archive of a commit the API is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArchiveFormat {
    Tarball,
    Zipball,
}

impl ArchiveFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::Tarball => "tarball",
            ArchiveFormat::Zipball => "zipball",
        }
    }

    /// The name codeload gives the archive in its path.
    fn codeload_name(self) -> &'static str {
        match self {
            ArchiveFormat::Tarball => "legacy.tar.gz",
            ArchiveFormat::Zipball => "legacy.zip",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            ArchiveFormat::Tarball => "application/x-gzip",
            ArchiveFormat::Zipball => "application/zip",
        }
    }
}

/// One request the fake received, and what it answered.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub path: String,
    /// The `Authorization` header as sent, if any.
    pub authorization: Option<String>,
    pub status: u16,
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    /// Archives by API path.
    archives: Mutex<HashMap<String, (ArchiveFormat, Vec<u8>)>>,
    /// Statuses the API routes answer first, one per request.
    failures: Mutex<VecDeque<u16>>,
    requests: Mutex<Vec<SeenRequest>>,
    stop: AtomicBool,
}

pub struct FakeGitHub {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeGitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGitHub")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl FakeGitHub {
    /// Starts the server on a free loopback port.
    pub fn start() -> FakeGitHub {
        let server = Server::http("127.0.0.1:0").expect("a loopback port is free");
        let port = server
            .server_addr()
            .to_ip()
            .expect("bound to an IP address")
            .port();
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("fake-github-{port}"))
                .spawn(move || {
                    while !shared.stop.load(Ordering::Relaxed) {
                        if let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(100)) {
                            handle(&shared, port, request);
                        }
                    }
                })
                .expect("a thread can be started")
        };
        FakeGitHub {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:<port>`: what `:github_endpoint_override:` is.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The API path of a commit's archive.
    pub fn api_path(
        account: &str,
        repository: &str,
        format: ArchiveFormat,
        commit: &str,
    ) -> String {
        format!("/repos/{account}/{repository}/{}/{commit}", format.as_str())
    }

    /// Makes `bytes` the `format` archive of `commit`.
    pub fn publish(
        &self,
        account: &str,
        repository: &str,
        commit: &str,
        format: ArchiveFormat,
        bytes: Vec<u8>,
    ) {
        self.shared.archives.lock().expect("archives lock").insert(
            FakeGitHub::api_path(account, repository, format, commit),
            (format, bytes),
        );
    }

    /// The next API requests answer these statuses, one each, in order.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.shared
            .failures
            .lock()
            .expect("failures lock")
            .extend(statuses);
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// The requests of one path, in order.
    pub fn requests_to(&self, path: &str) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// One line per request, for assertion messages.
    pub fn report(&self) -> String {
        let requests = self.requests();
        let start = requests.first().map(|r| r.at);
        let mut text = String::from("=== fake GitHub requests ===\n");
        for r in &requests {
            let offset = start.map(|s| r.at - s).unwrap_or_default();
            text.push_str(&format!(
                "+{:.1}s {} -> {} (authorization: {})\n",
                offset.as_secs_f64(),
                r.path,
                r.status,
                if r.authorization.is_some() {
                    "present"
                } else {
                    "none"
                }
            ));
        }
        text
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn handle(shared: &Shared, port: u16, request: tiny_http::Request) {
    let path = request.url().to_string();
    let authorization = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (status, response) = match parts.as_slice() {
        ["repos", account, repository, "tarball" | "zipball", commit] => {
            let failure = shared.failures.lock().expect("failures lock").pop_front();
            let published = shared
                .archives
                .lock()
                .expect("archives lock")
                .get(&path)
                .map(|(format, _)| *format);
            match (failure, published) {
                (Some(status), _) => (status, json_answer(status, "Server Error")),
                (None, Some(format)) => {
                    let location = format!(
                        "http://127.0.0.1:{port}/codeload/{account}/{repository}/{}/{commit}",
                        format.codeload_name()
                    );
                    let response = Response::from_data(Vec::new())
                        .with_status_code(302)
                        .with_header(header("Location", &location));
                    (302, response)
                }
                (None, None) => (404, json_answer(404, "Not Found")),
            }
        }
        ["codeload", account, repository, name, commit] => {
            let archive = [ArchiveFormat::Tarball, ArchiveFormat::Zipball]
                .into_iter()
                .filter(|f| f.codeload_name() == *name)
                .find_map(|f| {
                    shared
                        .archives
                        .lock()
                        .expect("archives lock")
                        .get(&FakeGitHub::api_path(account, repository, f, commit))
                        .cloned()
                });
            match archive {
                Some((format, bytes)) => (
                    200,
                    Response::from_data(bytes)
                        .with_header(header("Content-Type", format.content_type())),
                ),
                None => (404, json_answer(404, "Not Found")),
            }
        }
        _ => (404, json_answer(404, "Not Found")),
    };
    shared
        .requests
        .lock()
        .expect("requests lock")
        .push(SeenRequest {
            path,
            authorization,
            status,
            at: Instant::now(),
        });
    let _ = request.respond(response);
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name, value).expect("a valid header")
}

fn json_answer(status: u16, message: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(json!({ "message": message }).to_string().into_bytes())
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
}

/// A GitHub revision as a deployment specification names it.
#[derive(Clone, Debug)]
pub struct GitHubSource {
    pub account: String,
    pub repository: String,
    pub commit: String,
    /// `tar` or `zip` (`None`: left out, the service's default `tar`).
    pub bundle_type: Option<BundleType>,
    /// `GitHubAccessToken`; `None` makes the revision anonymous.
    pub token: Option<String>,
}

impl GitHubSource {
    /// The archive the agent asks GitHub for: a zipball for `zip`, else a tarball.
    pub fn format(&self) -> ArchiveFormat {
        match self.bundle_type {
            Some(BundleType::Zip) => ArchiveFormat::Zipball,
            _ => ArchiveFormat::Tarball,
        }
    }

    /// The API path the agent requests.
    pub fn api_path(&self) -> String {
        FakeGitHub::api_path(&self.account, &self.repository, self.format(), &self.commit)
    }
}

/// A deployment of `source` (in-place events, fresh ids). The emulator's
/// deployment model only knows S3 revisions, so the specification is given
/// whole; the S3 location it carries (`github/<account>/<repository>`,
/// version = the commit) is never sent and only names the revision in the
/// emulator's report.
pub fn github_deployment(application: &str, group: &str, source: &GitHubSource) -> Deployment {
    let placeholder = S3Location {
        bucket: "github".to_string(),
        key: format!("{}/{}", source.account, source.repository),
        bundle_type: source.bundle_type.unwrap_or(BundleType::Tar),
        version: Some(source.commit.clone()),
        etag: None,
    };
    let deployment = Deployment::new(application, group, placeholder);
    let mut spec = deployment.spec_json();
    let mut revision = json!({
        "Account": source.account,
        "Repository": source.repository,
        "CommitId": source.commit,
        "Anonymous": source.token.is_none(),
    });
    if let Some(bundle_type) = source.bundle_type {
        revision["BundleType"] = json!(bundle_type.as_str());
    }
    spec["Revision"] = json!({"RevisionType": "GitHub", "GitHubRevision": revision});
    if let Some(token) = &source.token {
        spec["GitHubAccessToken"] = json!(token);
    }
    deployment.spec_override(spec)
}
