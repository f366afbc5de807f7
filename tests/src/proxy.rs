//! A real forward HTTP proxy on loopback for the end-to-end tests: Debian's
//! `tinyproxy`, started in the foreground (`tinyproxy -d -c <conf>`) on a free
//! 127.0.0.1 port with a generated configuration that allows 127.0.0.1 only
//! and logs every request it forwards. Tests read that log to prove which
//! traffic went through the proxy. Killed (by its pid) when dropped.
//!
//! The executable is found through `TINYPROXY` (a path), else `tinyproxy` on
//! `PATH` (`scripts/setup` installs it).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::s3::free_port;

const INSTALL_HINT: &str =
    "install it with `apt-get install tinyproxy` (scripts/setup does), or set TINYPROXY \
     to the path of a tinyproxy executable";

/// A request the proxy forwarded, as its log names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxiedRequest {
    pub method: String,
    /// The absolute URL the client asked for (`http://127.0.0.1:<port>/...`).
    pub url: String,
}

/// A running tinyproxy. Dropping it kills the process.
#[derive(Debug)]
pub struct ForwardProxy {
    child: Child,
    port: u16,
    log_path: PathBuf,
}

/// Basic credentials the proxy demands (`BasicAuth`).
#[derive(Clone, Debug)]
pub struct ProxyCredentials {
    pub user: String,
    pub password: String,
}

impl ForwardProxy {
    /// Starts an open proxy (for 127.0.0.1) with its files in `dir`.
    pub fn start(dir: &Path) -> Result<ForwardProxy, String> {
        ForwardProxy::start_with(dir, None)
    }

    /// Starts a proxy that requires `credentials` (`BasicAuth`) when given.
    pub fn start_with(
        dir: &Path,
        credentials: Option<&ProxyCredentials>,
    ) -> Result<ForwardProxy, String> {
        let exe = std::env::var_os("TINYPROXY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("tinyproxy"));
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let conf_path = dir.join("tinyproxy.conf");
        let log_path = dir.join("tinyproxy.log");
        let output_path = dir.join("tinyproxy.out");
        let mut last_error = String::new();
        // A port picked free can be taken before tinyproxy binds it: retry.
        for _ in 0..3 {
            let port = free_port();
            std::fs::write(&conf_path, config_text(port, &log_path, credentials))
                .map_err(|e| format!("{}: {e}", conf_path.display()))?;
            let _ = std::fs::remove_file(&log_path);
            let output = std::fs::File::create(&output_path)
                .map_err(|e| format!("{}: {e}", output_path.display()))?;
            let output_err = output.try_clone().map_err(|e| e.to_string())?;
            let mut child = Command::new(&exe)
                .arg("-d")
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(output)
                .stderr(output_err)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}; {INSTALL_HINT}", exe.display()))?;
            match wait_until_listening(&mut child, port, Duration::from_secs(10)) {
                Ok(()) => {
                    return Ok(ForwardProxy {
                        child,
                        port,
                        log_path,
                    })
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = format!(
                        "{e}; tinyproxy output:\n{}\nlog:\n{}",
                        std::fs::read_to_string(&output_path).unwrap_or_default(),
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
            }
        }
        Err(format!("tinyproxy did not start: {last_error}"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The proxy's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Every request the proxy forwarded (or refused), in order.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        parse_requests(&self.log())
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(port: u16, log: &Path, credentials: Option<&ProxyCredentials>) -> String {
    let mut text = format!(
        "Port {port}\n\
         Listen 127.0.0.1\n\
         Timeout 120\n\
         Allow 127.0.0.1\n\
         LogFile \"{}\"\n\
         LogLevel Connect\n\
         MaxClients 50\n\
         DisableViaHeader Yes\n",
        log.display()
    );
    if let Some(c) = credentials {
        text.push_str(&format!("BasicAuth {} {}\n", c.user, c.password));
    }
    text
}

/// `Request (file descriptor N): METHOD URL HTTP/1.1` lines of the log (pure).
pub fn parse_requests(log: &str) -> Vec<ProxiedRequest> {
    log.lines()
        .filter_map(|line| {
            let (_, request) = line.split_once("]: Request (file descriptor ")?;
            let (_, request) = request.split_once("): ")?;
            let mut parts = request.split_whitespace();
            Some(ProxiedRequest {
                method: parts.next()?.to_string(),
                url: parts.next()?.to_string(),
            })
        })
        .collect()
}

fn wait_until_listening(child: &mut Child, port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("tinyproxy exited with {status}"));
        }
        // Only this child's socket counts: another process may have taken
        // the port since it was found free.
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
            && crate::s3::listens_on(child.id(), port)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "nothing listens on 127.0.0.1:{port} after {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_of_the_log_are_parsed() {
        let log = "CONNECT   Nov 23 12:49:34.780 [9943]: Connect (file descriptor 5): 127.0.0.1\n\
                   CONNECT   Nov 23 12:49:34.784 [9943]: Request (file descriptor 5): GET http://127.0.0.1:38124/b/k HTTP/1.1\n\
                   INFO      Nov 23 12:49:34.788 [9943]: No upstream proxy for 127.0.0.1\n\
                   CONNECT   Nov 23 12:49:34.816 [9943]: Request (file descriptor 7): POST http://127.0.0.1:1/ HTTP/1.1\n";
        assert_eq!(
            parse_requests(log),
            vec![
                ProxiedRequest {
                    method: "GET".into(),
                    url: "http://127.0.0.1:38124/b/k".into()
                },
                ProxiedRequest {
                    method: "POST".into(),
                    url: "http://127.0.0.1:1/".into()
                },
            ]
        );
    }
}
