//! `:proxy_uri:` as a typed value: an `http://` or `https://` URL with a host,
//! optionally carrying `user:password@`. Checked once when the file is parsed, so
//! the Commands and S3 clients can take it as it is. Pure; the password never
//! reaches a log line (`Debug` and [`ProxyUri::redacted`] mask it).

use std::fmt;

/// Why a `:proxy_uri:` value is refused. The texts never quote the value: it
/// may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum ProxyUriError {
    #[error("not a URL ({0}); expected e.g. http://proxy.example:3128")]
    NotAUrl(#[source] http::uri::InvalidUri),
    #[error("scheme {0}:// is not supported; use http:// or https://")]
    UnsupportedScheme(String),
    #[error("the URL needs a scheme, e.g. http://proxy.example:3128")]
    NoScheme,
    #[error("the URL needs a host, e.g. http://proxy.example:3128")]
    NoHost,
}

/// A forward proxy for all AWS traffic (never for instance metadata).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUri {
    text: String,
    uri: http::Uri,
}

impl ProxyUri {
    /// Accepts what both HTTP stacks of the agent accept: scheme `http` or
    /// `https`, a host, an optional port and `user:password@`.
    pub fn parse(text: &str) -> Result<ProxyUri, ProxyUriError> {
        let text = text.trim();
        let uri: http::Uri = text.parse().map_err(ProxyUriError::NotAUrl)?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(other) => return Err(ProxyUriError::UnsupportedScheme(other.to_string())),
            None => return Err(ProxyUriError::NoScheme),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(ProxyUriError::NoHost);
        }
        Ok(ProxyUri {
            text: text.to_string(),
            uri,
        })
    }

    /// The URL as the operator wrote it, credentials included: for HTTP clients only.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn uri(&self) -> &http::Uri {
        &self.uri
    }

    /// The URL with any password replaced by `***`, for log lines.
    pub fn redacted(&self) -> String {
        let Some(authority) = self.uri.authority() else {
            return self.text.clone();
        };
        match authority.as_str().rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                let scheme = self.uri.scheme_str().unwrap_or("http");
                format!("{scheme}://{user}:***@{host}")
            }
            None => self.text.clone(),
        }
    }
}

impl fmt::Debug for ProxyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUri({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_and_refused_urls() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("http://127.0.0.1:3128", Ok("http://127.0.0.1:3128")),
            ("https://proxy.corp:8443/", Ok("https://proxy.corp:8443/")),
            (
                "http://deploy:pa%40ss@proxy:3128",
                Ok("http://deploy:***@proxy:3128"),
            ),
            ("  http://proxy  ", Ok("http://proxy")),
            ("socks5://proxy:1080", Err("socks5:// is not supported")),
            ("proxy:3128", Err("scheme")),
            ("/just/a/path", Err("needs a scheme")),
            ("http://", Err("not a URL")),
        ];
        for (text, expected) in cases {
            match (ProxyUri::parse(text), expected) {
                (Ok(proxy), Ok(redacted)) => assert_eq!(&proxy.redacted(), redacted, "{text}"),
                (Err(error), Err(part)) => {
                    let message = error.to_string();
                    assert!(message.contains(part), "{text}: {message}")
                }
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let proxy = ProxyUri::parse("http://user:hunter2@proxy:3128").unwrap();
        assert_eq!(proxy.as_str(), "http://user:hunter2@proxy:3128");
        assert!(!format!("{proxy:?}").contains("hunter2"));
    }
}
