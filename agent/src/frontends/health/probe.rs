//! One attempt of a health check: an HTTP GET, a TCP connect or a shell
//! command, each bounded by the attempt's timeout. A command that outlives
//! its timeout is killed with its whole process group, so an attempt never
//! leaves anything running.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::check::{human, AttemptReport, BodyMatch, Probe, StatusMatch};
use crate::http::{error_chain, ClientError, ClientSettings, Proxying, Redirects};

/// The most of a response body read for `--expect-body`; a health endpoint
/// that sends more is not one.
const MAX_BODY: usize = 1024 * 1024;

/// Clients and such built once for all attempts.
pub struct Prober {
    http: Option<reqwest::Client>,
}

impl Prober {
    pub fn new(probe: &Probe, timeout: Duration) -> Result<Prober, ClientError> {
        let http = match probe {
            Probe::Http { .. } => Some(
                ClientSettings {
                    user_agent: Some(format!("codedeploy-agent-health/{}", crate::VERSION)),
                    connect_timeout: timeout,
                    read_timeout: None,
                    total_timeout: Some(timeout),
                    proxy: Proxying::FromEnvironment,
                    redirects: Redirects::Follow(10),
                    max_idle_per_host: None,
                    keepalive: None,
                }
                .build("the health probe")?,
            ),
            _ => None,
        };
        Ok(Prober { http })
    }

    pub async fn attempt(&self, probe: &Probe, timeout: Duration) -> AttemptReport {
        let started = Instant::now();
        let (success, detail) = match probe {
            Probe::Http {
                url,
                expect_status,
                expect_body,
            } => match &self.http {
                Some(client) => {
                    let outcome = tokio::time::timeout(
                        timeout,
                        http_attempt(client, url, expect_status, expect_body.as_ref()),
                    )
                    .await;
                    outcome.unwrap_or_else(|_| (false, timed_out(timeout)))
                }
                None => (false, "no HTTP client".to_string()),
            },
            Probe::Tcp { address } => {
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
                    Ok(Ok(_)) => (true, format!("connected to {address}")),
                    Ok(Err(e)) => (false, format!("cannot connect to {address}: {e}")),
                    Err(_) => (false, timed_out(timeout)),
                }
            }
            Probe::Exec { command } => exec_attempt(command, timeout).await,
        };
        AttemptReport {
            success,
            detail,
            elapsed: started.elapsed(),
        }
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("timed out after {}", human(timeout))
}

async fn http_attempt(
    client: &reqwest::Client,
    url: &str,
    expect_status: &StatusMatch,
    expect_body: Option<&BodyMatch>,
) -> (bool, String) {
    let mut response = match client.get(url).send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return (false, "timed out".to_string()),
        Err(e) => return (false, format!("GET {url} failed: {}", error_chain(&e))),
    };
    let status = response.status().as_u16();
    if !expect_status.matches(status) {
        return (false, format!("HTTP {status}, expected {expect_status}"));
    }
    let Some(expected) = expect_body else {
        return (true, format!("HTTP {status}"));
    };
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() >= MAX_BODY {
                    body.truncate(MAX_BODY);
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return (false, format!("HTTP {status}, body cut short: {e}")),
        }
    }
    if expected.matches(&String::from_utf8_lossy(&body)) {
        (true, format!("HTTP {status}, body matches /{expected}/"))
    } else {
        (
            false,
            format!("HTTP {status}, body does not match /{expected}/"),
        )
    }
}

async fn exec_attempt(command: &str, timeout: Duration) -> (bool, String) {
    let mut child = match tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return (false, format!("cannot run /bin/sh: {e}")),
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => match status.code() {
            Some(0) => (true, "exit status 0".to_string()),
            Some(code) => (false, format!("exit status {code}")),
            None => (false, format!("ended by {status}")),
        },
        Ok(Err(e)) => (false, format!("cannot wait for the command: {e}")),
        Err(_) => {
            // Everything the command started goes too, not only the shell.
            if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.wait().await;
            (false, timed_out(timeout))
        }
    }
}
