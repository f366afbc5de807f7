//! The agent's one HTTP stack, below every client that uses it (the Commands
//! service, S3, GitHub, instance metadata, `health`): how a reqwest client is
//! built (timeouts, proxy, redirects, idle connections), how an explicit
//! proxy is set, and how a transport error reads. It knows no service.

use std::time::Duration;

use crate::config::ProxyUri;

/// Why a client could not be built; the proxy error names `:proxy_uri:`
/// without its password.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot set up the HTTP client for {purpose}: {source}")]
    Build {
        purpose: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("proxy_uri {redacted} is not a usable proxy URL: {source}")]
    Proxy {
        redacted: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Which proxy a client goes through.
#[derive(Debug, Clone, Copy)]
pub enum Proxying<'a> {
    /// `:proxy_uri:`: every request, whatever `NO_PROXY` says (as in the
    /// official agent, it is for all AWS traffic).
    Explicit(&'a ProxyUri),
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` decide (reqwest reads them).
    FromEnvironment,
    /// Never (instance metadata is link-local).
    Direct,
}

impl<'a> Proxying<'a> {
    /// `Explicit` when `:proxy_uri:` is set, else the environment.
    pub fn configured(proxy: Option<&'a ProxyUri>) -> Proxying<'a> {
        proxy.map_or(Proxying::FromEnvironment, Proxying::Explicit)
    }
}

/// Whether a client follows redirects itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// Up to this many.
    Follow(usize),
    /// Returned to the caller (the S3 SDK decides them).
    Return,
}

/// What differs from one client to another; everything else is set here.
#[derive(Debug, Clone)]
pub struct ClientSettings<'a> {
    /// `None`: the caller's library sets its own on each request.
    pub user_agent: Option<String>,
    pub connect_timeout: Duration,
    /// Between two reads of a response.
    pub read_timeout: Option<Duration>,
    /// For a whole request.
    pub total_timeout: Option<Duration>,
    pub proxy: Proxying<'a>,
    pub redirects: Redirects,
    /// Connections kept open per host between requests; `None` for reqwest's
    /// default. The agent talks to each host now and then: one is plenty.
    pub max_idle_per_host: Option<usize>,
    /// TCP keep-alive probes on open connections.
    pub keepalive: Option<Duration>,
}

impl ClientSettings<'_> {
    /// A client for `purpose` (named in the error when it cannot be built).
    pub fn build(&self, purpose: &str) -> Result<reqwest::Client, ClientError> {
        let mut builder = reqwest::Client::builder().connect_timeout(self.connect_timeout);
        if let Some(agent) = &self.user_agent {
            builder = builder.user_agent(agent.clone());
        }
        if let Some(timeout) = self.read_timeout {
            builder = builder.read_timeout(timeout);
        }
        if let Some(timeout) = self.total_timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(idle) = self.max_idle_per_host {
            builder = builder.pool_max_idle_per_host(idle);
        }
        if let Some(keepalive) = self.keepalive {
            builder = builder.tcp_keepalive(keepalive);
        }
        builder = builder.redirect(match self.redirects {
            Redirects::Follow(limit) => reqwest::redirect::Policy::limited(limit),
            Redirects::Return => reqwest::redirect::Policy::none(),
        });
        builder = match self.proxy {
            Proxying::Explicit(proxy) => builder.proxy(explicit_proxy(proxy)?),
            Proxying::FromEnvironment => builder,
            Proxying::Direct => builder.no_proxy(),
        };
        builder.build().map_err(|source| ClientError::Build {
            purpose: purpose.to_string(),
            source,
        })
    }
}

/// `:proxy_uri:` as a reqwest proxy; the error names it without its password.
pub fn explicit_proxy(proxy: &ProxyUri) -> Result<reqwest::Proxy, ClientError> {
    reqwest::Proxy::all(proxy.as_str()).map_err(|source| ClientError::Proxy {
        redacted: proxy.redacted(),
        source,
    })
}

/// The error with its causes (reqwest's own message hides them: refused,
/// reset, certificate, ...).
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

/// Whether a transport error means the connection was closed under a request
/// it carried (the server or a proxy dropped a kept-alive connection), as
/// opposed to a refused connection or a timeout. Pure: reads the error chain.
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
    fn an_error_reads_with_its_causes() {
        let error = Wrapped(
            "error sending request",
            Some(std::io::Error::other("connection refused")),
        );
        assert_eq!(
            error_chain(&error),
            "error sending request: connection refused"
        );
    }
}
