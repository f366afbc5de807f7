//! Fetching a GitHub revision: the archive of one commit from the GitHub API
//! (`/repos/<account>/<repository>/<tarball|zipball>/<commit>`, redirects to
//! the archive host followed), written to `bundle.tar` through a temporary
//! file that is renamed only once the whole body is there. Unpacking is left
//! to the caller (`unpack/`, with the type [`fetch_github`] returns).
//!
//! Owns the retry policy of the official agent (HTTP errors tried again after
//! 10 s, 30 s and 90 s, then `Could not download bundle at '<url>' after 3
//! retries. Server returned codes: ...`). The access token goes in the
//! `Authorization` header only, marked sensitive: it must never reach a log
//! line or an error message, and nothing here formats it. Requests go through
//! `:proxy_uri:` when set, else through the proxy environment variables, like
//! the Commands and S3 clients.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderValue, InvalidHeaderValue, AUTHORIZATION};
use tokio::io::AsyncWriteExt;

use super::error::BundleError;
use super::sniff::sniff_archive;
use super::stream::PARTIAL_PREFIX;
use crate::config::ProxyUri;
use crate::deployment_spec::{BundleType, GitHubRevision};
use crate::http::{error_chain, ClientSettings, Proxying, Redirects};

/// Where GitHub revisions come from unless `:github_endpoint_override:` says
/// otherwise.
pub const DEFAULT_GITHUB_ENDPOINT: &str = "https://api.github.com";

/// The waits before each retry of a failed download, as the official agent
/// (10 s, then three times longer each time).
pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(90),
];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest wait for the next piece of the answer (headers or a chunk of
/// the body). There is no bound on the whole download: a large revision on a
/// slow link takes as long as it takes, as long as bytes keep coming.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes kept from the start of the body to tell what kind of archive it is.
const HEAD_LEN: usize = 512;

/// Why a GitHub revision could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// The official agent's message, listing what each attempt came to.
    #[error("{}", download_failure_message(.url, .attempts))]
    Download {
        url: String,
        /// In order; the last one decided that no retry follows.
        attempts: Vec<AttemptFailure>,
    },

    /// The HTTPS client could not be built (the reason names the proxy,
    /// never its password).
    #[error("cannot set up the HTTPS client for GitHub: {0}")]
    Client(#[source] crate::http::ClientError),

    /// The deployment's token cannot be sent as a header (it holds a
    /// character no header may). Neither message shows the token.
    #[error("cannot set up the HTTPS client for GitHub: the deployment's GitHub access token is not a valid header value")]
    AccessToken(#[source] InvalidHeaderValue),

    /// The body arrived but could not be written to `bundle.tar`.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// What one download attempt came to, when it did not succeed. Read in the
/// official message as one of the "codes" the server returned; a transport
/// error reads with its causes (reqwest's own text hides them). No text
/// holds the token: it is only in a header, which no error shows.
#[derive(Debug, thiserror::Error)]
pub enum AttemptFailure {
    /// The server answered with this (non-success) HTTP status.
    #[error("{0}")]
    Status(u16),
    /// No usable answer: connection, TLS, timeout, redirect loop.
    #[error("{}", error_chain(.0))]
    Transport(#[source] reqwest::Error),
    /// The answer began, then its body broke off.
    #[error("the download broke off: {}", error_chain(.0))]
    BrokenOff(#[source] reqwest::Error),
}

/// The API URL of the archive of `revision`'s commit under `endpoint`:
/// `zipball` for a zip revision, `tarball` for anything else (pure). Path
/// segments are percent-encoded, so no name can change the route.
pub fn archive_url(endpoint: &str, revision: &GitHubRevision) -> String {
    let format = match revision.bundle_type {
        BundleType::Zip => "zipball",
        _ => "tarball",
    };
    format!(
        "{}/repos/{}/{}/{format}/{}",
        endpoint.trim_end_matches('/'),
        encode_segment(&revision.account),
        encode_segment(&revision.repository),
        encode_segment(&revision.commit_id),
    )
}

/// Everything but the URL-unreserved characters as `%XX` (pure).
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether an answer is final at once, without the retries.
///
/// A 4xx other than 429 (too many requests) fails the download at once: a
/// wrong token (401), a token without access (403) or a wrong account,
/// repository or commit (404) will not get better within two minutes, and an
/// operator expects such a mistake to fail fast instead of after 130 s of
/// waiting. The official agent retries every HTTP error; the message has the
/// same form either way. Everything else (5xx, 429, transport failures) is
/// retried.
fn fails_at_once(failure: &AttemptFailure) -> bool {
    matches!(failure, AttemptFailure::Status(code) if (400..500).contains(code) && *code != 429)
}

/// How long to wait before the next attempt after `attempts` (the latest
/// last); `None` when there is no next attempt (pure).
pub fn next_retry(attempts: &[AttemptFailure]) -> Option<Duration> {
    let last = attempts.last()?;
    if fails_at_once(last) {
        return None;
    }
    RETRY_DELAYS.get(attempts.len() - 1).copied()
}

/// `Could not download bundle at '<url>' after <n> retries. Server returned
/// codes: <each attempt>` (pure), plus a hint when a client error ended it
/// before the retries ran out.
pub fn download_failure_message(url: &str, attempts: &[AttemptFailure]) -> String {
    let retries = attempts.len().saturating_sub(1);
    let codes: Vec<String> = attempts.iter().map(ToString::to_string).collect();
    let mut message = format!(
        "Could not download bundle at '{url}' after {retries} retries. Server returned codes: {}",
        codes.join(", ")
    );
    if let Some(AttemptFailure::Status(code)) = attempts.last().filter(|f| fails_at_once(f)) {
        message.push_str(&format!(
            ". HTTP {code} is not retried: check the account, repository and commit of the \
             revision, and that its token (if any) may read the repository"
        ));
    }
    message
}

/// An HTTP client for GitHub archives.
#[derive(Debug)]
pub struct GitHubClient {
    http: reqwest::Client,
    endpoint: String,
}

impl GitHubClient {
    /// A client for `endpoint_override` (`:github_endpoint_override:`), else
    /// [`DEFAULT_GITHUB_ENDPOINT`]. With `proxy` (`:proxy_uri:`) every request
    /// goes through that proxy; without it, `HTTPS_PROXY`/`HTTP_PROXY`/
    /// `NO_PROXY` decide.
    pub fn new(
        endpoint_override: Option<&str>,
        proxy: Option<&ProxyUri>,
    ) -> Result<GitHubClient, GitHubError> {
        let http = ClientSettings {
            // GitHub refuses API requests without a User-Agent.
            user_agent: Some(format!("codedeploy-agent-rs/{}", crate::VERSION)),
            connect_timeout: CONNECT_TIMEOUT,
            read_timeout: Some(READ_TIMEOUT),
            total_timeout: None,
            proxy: Proxying::configured(proxy),
            // The API answers 302 to the archive host (codeload). reqwest
            // drops the Authorization header when a redirect changes host.
            redirects: Redirects::Follow(10),
            max_idle_per_host: None,
            keepalive: None,
        }
        .build("GitHub")
        .map_err(GitHubError::Client)?;
        Ok(GitHubClient {
            http,
            endpoint: endpoint_override
                .unwrap_or(DEFAULT_GITHUB_ENDPOINT)
                .to_string(),
        })
    }
}

/// DownloadBundle for a GitHub revision: the archive of its commit into
/// `bundle_file` (complete, or not there at all), with the retries of
/// [`next_retry`]. Returns the type to unpack it as: what its first bytes
/// show (GitHub tarballs are gzip-compressed whatever the revision's
/// BundleType says), else the revision's own type.
pub async fn fetch_github(
    client: &GitHubClient,
    revision: &GitHubRevision,
    bundle_file: &Path,
) -> Result<BundleType, GitHubError> {
    let url = archive_url(&client.endpoint, revision);
    let authorization = match &revision.access_token {
        Some(token) => {
            let mut value = HeaderValue::from_str(&format!("token {token}"))
                .map_err(GitHubError::AccessToken)?;
            // Kept out of any Debug output of the request.
            value.set_sensitive(true);
            Some(value)
        }
        None => None,
    };
    tracing::info!(
        "downloading {}/{} at {} from {url} ({})",
        revision.account,
        revision.repository,
        revision.commit_id,
        if authorization.is_some() {
            "with the deployment's access token"
        } else {
            "anonymously"
        }
    );
    let mut attempts = Vec::new();
    loop {
        let failure = match attempt(client, &url, authorization.as_ref(), bundle_file).await {
            Ok(head) => {
                return Ok(sniff_archive(&head).unwrap_or(revision.bundle_type));
            }
            Err(Attempt::Final(error)) => return Err(error),
            Err(Attempt::Failed(failure)) => failure,
        };
        attempts.push(failure);
        let Some(delay) = next_retry(&attempts) else {
            return Err(GitHubError::Download { url, attempts });
        };
        tracing::warn!(
            "downloading {url} failed ({}); trying again in {} s (retry {} of {})",
            attempts.last().map(ToString::to_string).unwrap_or_default(),
            delay.as_secs(),
            attempts.len(),
            RETRY_DELAYS.len()
        );
        tokio::time::sleep(delay).await;
    }
}

/// Why one attempt did not succeed: worth retrying or not.
enum Attempt {
    Failed(AttemptFailure),
    Final(GitHubError),
}

/// One GET of `url`, its body written to a temporary file beside
/// `bundle_file` and renamed to it when complete. Returns the first bytes of
/// the body. Whatever fails, the temporary file goes.
async fn attempt(
    client: &GitHubClient,
    url: &str,
    authorization: Option<&HeaderValue>,
    bundle_file: &Path,
) -> Result<Vec<u8>, Attempt> {
    let mut request = client.http.get(url);
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value.clone());
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| Attempt::Failed(AttemptFailure::Transport(e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(Attempt::Failed(AttemptFailure::Status(status.as_u16())));
    }

    let write_error = |source| {
        Attempt::Final(
            BundleError::Write {
                path: bundle_file.to_path_buf(),
                source,
            }
            .into(),
        )
    };
    let dir = bundle_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let partial = tempfile::Builder::new()
        .prefix(PARTIAL_PREFIX)
        .tempfile_in(dir)
        .map_err(write_error)?;
    let mut file = tokio::fs::File::from_std(partial.as_file().try_clone().map_err(write_error)?);
    let mut head = Vec::with_capacity(HEAD_LEN);
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err(Attempt::Failed(AttemptFailure::BrokenOff(e))),
        };
        if head.len() < HEAD_LEN {
            let take = (HEAD_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        file.write_all(&chunk).await.map_err(write_error)?;
    }
    // Waits for the last write to land before the rename.
    file.flush().await.map_err(write_error)?;
    drop(file);
    // No fsync, as for S3 bundles: a crash fails the command, which the next
    // deployment redoes.
    partial
        .persist(bundle_file)
        .map_err(|e| write_error(e.error))?;
    Ok(head)
}

#[cfg(test)]
mod tests;
