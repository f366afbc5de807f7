//! The S3 client's HTTP connection: the agent's one HTTP stack (reqwest over
//! rustls with the system's root certificates), plugged into the AWS SDK as
//! its HTTP client. The SDK still builds, signs and retries the requests and
//! reads S3's errors; this adaptor only carries them. It replaces the SDK's
//! own hyper client, so the agent holds one TLS and one HTTP implementation,
//! and no HTTP/2 code it never uses.

use std::time::Duration;

use aws_sdk_s3::config::http::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::HttpError;
use aws_smithy_types::body::SdkBody;

use crate::config::{ProxyUri, MAX_DOWNLOAD_CONNECTIONS};
use crate::http::{ClientSettings, Proxying, Redirects};

/// Time to set up the TCP and TLS connection to S3.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the next bytes of an answer, its body included: a
/// download that stalls this long breaks off and is started over.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The SDK's HTTP client for one S3 client: every request goes through the
/// same reqwest client, so connections are reused across retries.
#[derive(Debug, Clone)]
pub struct S3Http {
    connector: SharedHttpConnector,
}

impl S3Http {
    /// With `proxy` (`:proxy_uri:`) every request goes through it, whatever
    /// `NO_PROXY` says; without it the environment's proxy variables apply.
    pub fn new(proxy: Option<&ProxyUri>) -> Result<S3Http, crate::http::ClientError> {
        let http = ClientSettings {
            // None here: the SDK sets its own on each request.
            user_agent: None,
            connect_timeout: CONNECT_TIMEOUT,
            read_timeout: Some(READ_TIMEOUT),
            total_timeout: None,
            proxy: Proxying::configured(proxy),
            // The SDK decides redirects (S3 answers 301 for a wrong region).
            redirects: Redirects::Return,
            // A ranged download's connections carry one range after another:
            // kept open, each next range skips a TCP and TLS handshake. The
            // client lives for one download, so none stays open after it.
            max_idle_per_host: Some(MAX_DOWNLOAD_CONNECTIONS as usize),
            keepalive: None,
        }
        .build("S3")?;
        Ok(S3Http {
            connector: SharedHttpConnector::new(Connector { http }),
        })
    }
}

impl HttpClient for S3Http {
    /// The SDK's own timeout settings are not used: the client above has the
    /// agent's.
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.connector.clone()
    }
}

#[derive(Debug)]
struct Connector {
    http: reqwest::Client,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = self.http.clone();
        HttpConnectorFuture::new(async move {
            let request = to_reqwest(request)?;
            let response = http.execute(request).await.map_err(classify)?;
            from_reqwest(response)
        })
    }
}

/// The SDK's request as reqwest's. Bundle downloads send no body; a request
/// body that is a stream (uploads) is refused rather than buffered.
fn to_reqwest(request: HttpRequest) -> Result<reqwest::Request, ConnectorError> {
    let request = request
        .try_into_http1x()
        .map_err(|e| ConnectorError::user(e.into()))?;
    let (parts, body) = request.into_parts();
    let bytes = body
        .bytes()
        .map(bytes::Bytes::copy_from_slice)
        .ok_or_else(|| {
            ConnectorError::user(
                "a streamed request body is not supported by the S3 download client".into(),
            )
        })?;
    reqwest::Request::try_from(http::Request::from_parts(parts, bytes))
        .map_err(|e| ConnectorError::user(e.into()))
}

/// reqwest's answer as the SDK's, the body still streaming.
fn from_reqwest(response: reqwest::Response) -> Result<HttpResponse, ConnectorError> {
    let response: http::Response<reqwest::Body> = response.into();
    let response = response.map(SdkBody::from_body_1_x);
    HttpResponse::try_from(response).map_err(|e: HttpError| ConnectorError::other(e.into(), None))
}

/// Timeouts and broken connections are what the SDK's retries are for; the
/// rest (a bad URL, a TLS certificate refused) is not worth repeating.
fn classify(error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::timeout(error.into())
    } else if error.is_connect() || error.is_request() || error.is_body() {
        ConnectorError::io(error.into())
    } else {
        ConnectorError::other(error.into(), None)
    }
}
