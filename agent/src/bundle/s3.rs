//! Fetching a bundle from S3: the client, and one GetObject streamed to disk.
//! Memory stays flat whatever the bundle size (chunk by chunk to a temporary file
//! beside the destination, renamed into place only when complete). Never
//! unpacks, never retries on its own (the SDK's standard retries apply). The
//! client goes through the same proxy as the Commands client.

use std::path::Path;

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls;
use tokio::io::AsyncWriteExt;

use super::error::{BundleError, S3Object};
use crate::config::ProxyUri;
use crate::spec::S3Revision;

/// An S3 client for bundle downloads. With `endpoint_override` (the agent's
/// `s3_endpoint_override`) requests go to that URL with path-style addressing,
/// which is what S3-compatible servers and plain-http test servers need.
/// With `proxy` (`:proxy_uri:`) every request goes through that proxy; without
/// it, `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` decide, as for the Commands client.
pub fn s3_client(
    region: &str,
    endpoint_override: Option<&str>,
    credentials: Credentials,
    proxy: Option<&ProxyUri>,
) -> aws_sdk_s3::Client {
    let proxy = match proxy {
        // An explicit proxy ignores NO_PROXY: `:proxy_uri:` is for all AWS traffic.
        Some(uri) => ProxyConfig::all(uri.uri().clone())
            .expect("ProxyUri guarantees an http(s) scheme and a host, all ProxyConfig checks"),
        None => ProxyConfig::from_env(),
    };
    // The plain `Builder` has no proxy setting; a connector function builds each
    // connector with the SDK's timeouts and sleep, plus the proxy.
    let http_client = aws_smithy_http_client::Builder::new().build_with_connector_fn(
        move |settings, components| {
            let mut connector = aws_smithy_http_client::Connector::builder();
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector
                .proxy_config(proxy.clone())
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::Ring,
                ))
                .build()
        },
    );
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(credentials)
        .http_client(http_client);
    if let Some(endpoint) = endpoint_override {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// How many times a download whose body broke off is started in all. The SDK
/// retries failed requests (5xx, throttling, connection errors) on its own,
/// but not a body that stops midway once the answer has begun.
const BODY_ATTEMPTS: u32 = 3;

/// GetObject (with the revision's version when given) streamed into `dest`.
/// When the deployment names an ETag, the object's must match (quotes aside)
/// before anything is written. A body that breaks off is fetched again from
/// the start (nothing of it is kept), up to [`BODY_ATTEMPTS`] times.
pub async fn download_s3(
    client: &aws_sdk_s3::Client,
    revision: &S3Revision,
    dest: &Path,
) -> Result<(), BundleError> {
    let mut attempt = 1;
    loop {
        match download_once(client, revision, dest).await {
            Err(Fetch::BrokenOff(error)) if attempt < BODY_ATTEMPTS => {
                tracing::warn!(
                    "{error}; downloading again (attempt {} of {BODY_ATTEMPTS})",
                    attempt + 1
                );
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
                attempt += 1;
            }
            Err(Fetch::BrokenOff(error) | Fetch::Final(error)) => return Err(error),
            Ok(()) => return Ok(()),
        }
    }
}

/// One download's failure: whether starting again may help.
enum Fetch {
    BrokenOff(BundleError),
    Final(BundleError),
}

impl From<BundleError> for Fetch {
    fn from(error: BundleError) -> Fetch {
        Fetch::Final(error)
    }
}

async fn download_once(
    client: &aws_sdk_s3::Client,
    revision: &S3Revision,
    dest: &Path,
) -> Result<(), Fetch> {
    let object = S3Object::of(revision);
    let mut output = client
        .get_object()
        .bucket(&revision.bucket)
        .key(&revision.key)
        .set_version_id(revision.version.clone())
        .send()
        .await
        .map_err(|e| BundleError::S3 {
            object: object.clone(),
            detail: describe_get_object_error(&e),
        })?;

    if let Some(expected) = &revision.etag {
        let actual = output.e_tag().unwrap_or_default();
        if !etags_match(expected, actual) {
            return Err(BundleError::EtagMismatch {
                expected: expected.clone(),
                actual: actual.to_string(),
                object,
            }
            .into());
        }
    }

    let write_error = |source| BundleError::Write {
        path: dest.to_path_buf(),
        source,
    };
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Dropping `partial` on any error removes the temporary file.
    let partial = tempfile::Builder::new()
        .prefix(".bundle-download-")
        .tempfile_in(dir)
        .map_err(write_error)?;
    let mut file = tokio::fs::File::from_std(partial.as_file().try_clone().map_err(write_error)?);
    while let Some(chunk) = output.body.try_next().await.map_err(|e| {
        Fetch::BrokenOff(BundleError::S3 {
            object: object.clone(),
            detail: format!("the download broke off: {}", DisplayErrorContext(&e)),
        })
    })? {
        file.write_all(&chunk).await.map_err(write_error)?;
    }
    file.flush().await.map_err(write_error)?;
    file.sync_all().await.map_err(write_error)?;
    drop(file);
    partial.persist(dest).map_err(|e| write_error(e.error))?;
    Ok(())
}

/// S3 ETags come quoted (`"abc"`); specs may carry them either way.
fn etags_match(expected: &str, actual: &str) -> bool {
    expected.replace('"', "") == actual.replace('"', "")
}

/// The service's own code and message when it answered; the whole error chain
/// otherwise, with the official agent's hint for connection failures.
fn describe_get_object_error<R>(error: &SdkError<GetObjectError, R>) -> String
where
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or("UnknownError");
            match err.message() {
                Some(message) => format!("{code}: {message}"),
                None => code.to_string(),
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => format!(
            "{}. Try using s3 endpoint override.",
            DisplayErrorContext(error)
        ),
        _ => DisplayErrorContext(error).to_string(),
    }
}

#[cfg(test)]
mod tests;
