//! Fetching a bundle from S3: the client, the ETag check, and the retry of a
//! body that breaks off. The body itself is handed to `stream.rs`, which
//! unpacks it as it arrives and keeps `bundle.tar`: one GetObject's body, or,
//! for a large bundle, the ranges `s3/ranged.rs` fetches over several
//! connections. Requests are retried by the SDK's standard retries only. The
//! client goes through the same proxy as the Commands client.

use std::path::Path;

use super::error::{BrokenOff, BundleError, S3Object};
use super::stream::{receive, Body, Destination, Fetch, InOrder, Placed};
use crate::config::{BundleDownload, BundlePolicy, ProxyUri};
use crate::deployment_spec::S3Revision;
use crate::shutdown::Shutdown;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStreamError;
use bytes::Bytes;
use futures_util::future::BoxFuture;

mod ranged;
mod transport;
use ranged::RangedBody;
use transport::S3Http;

/// An S3 client for bundle downloads. With `endpoint_override` (the agent's
/// `s3_endpoint_override`) requests go to that URL with path-style addressing,
/// which is what S3-compatible servers and plain-http test servers need.
/// With `proxy` (`:proxy_uri:`) every request goes through that proxy; without
/// it, `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` decide, as for the Commands client.
/// Built for each download and dropped after it: an idle agent holds no S3
/// connection.
pub fn s3_client(
    region: &str,
    endpoint_override: Option<&str>,
    credentials: Credentials,
    proxy: Option<&ProxyUri>,
) -> Result<aws_sdk_s3::Client, crate::http::ClientError> {
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(credentials)
        .http_client(S3Http::new(proxy)?);
    if let Some(endpoint) = endpoint_override {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    Ok(aws_sdk_s3::Client::from_conf(config.build()))
}

/// How many times a download whose body broke off is started in all. The SDK
/// retries failed requests (5xx, throttling, connection errors) on its own,
/// but not a body that stops midway once the answer has begun.
const BODY_ATTEMPTS: u32 = 3;

/// DownloadBundle for an S3 revision: GetObject (with the revision's version
/// when given) into `bundle_file`, unpacked into `archive_dir` under `policy`
/// as the body arrives (see `stream.rs`); a bundle of `download`'s threshold
/// or more comes as byte ranges over its connections (see `s3/ranged.rs`).
/// When the deployment names an ETag, the object's must match (quotes aside)
/// before anything is written or unpacked. A body that breaks off is fetched
/// again from the start (nothing of it is kept, the archive directory starts
/// over empty), up to [`BODY_ATTEMPTS`] times; a range that breaks off is
/// first asked again from where it stopped.
pub async fn fetch_s3(
    client: &aws_sdk_s3::Client,
    revision: &S3Revision,
    bundle_file: &Path,
    archive_dir: &Path,
    policy: &BundlePolicy,
    download: BundleDownload,
    stop: &Shutdown,
) -> Result<(), BundleError> {
    let destination = Destination {
        bundle_file: bundle_file.to_path_buf(),
        archive_dir: archive_dir.to_path_buf(),
        policy: *policy,
        stop: stop.clone(),
    };
    with_retries(S3Object::of(revision), || {
        fetch_once(client, revision, download, &destination)
    })
    .await
}

/// Runs `attempt` until it succeeds, fails for good, or its body broke off
/// [`BODY_ATTEMPTS`] times.
pub(super) async fn with_retries<F, Fut>(
    object: S3Object,
    mut attempt: F,
) -> Result<(), BundleError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Fetch>>,
{
    let mut number = 1;
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(Fetch::Final(error)) => return Err(error),
            Err(Fetch::BrokenOff(cause)) => {
                let error = BundleError::S3BrokenOff {
                    object: object.clone(),
                    source: cause,
                };
                if number >= BODY_ATTEMPTS {
                    return Err(error);
                }
                tracing::warn!(
                    "{error}; downloading again (attempt {} of {BODY_ATTEMPTS})",
                    number + 1
                );
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(number))).await;
                number += 1;
            }
        }
    }
}

/// One GetObject's body, chunk by chunk, in the object's order.
struct WholeBody {
    stream: aws_sdk_s3::primitives::ByteStream,
    order: InOrder,
}

impl Body for WholeBody {
    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<Placed>, Fetch>> {
        Box::pin(async move {
            let chunk: Option<Bytes> = self
                .stream
                .try_next()
                .await
                .map_err(|e| Fetch::BrokenOff(BrokenOff::new(BodyError(e))))?;
            Ok(chunk.map(|bytes| self.order.place(bytes)))
        })
    }
}

/// The SDK's error for a body that broke off, read as operators have seen
/// it: its causes and the SDK's own details.
#[derive(Debug, thiserror::Error)]
#[error("{}", DisplayErrorContext(.0))]
struct BodyError(#[source] ByteStreamError);

async fn fetch_once(
    client: &aws_sdk_s3::Client,
    revision: &S3Revision,
    download: BundleDownload,
    destination: &Destination,
) -> Result<(), Fetch> {
    // Boxed: the ranged path's futures would otherwise nest every command's
    // future past what the compiler lays out.
    if let Some(plan) = Box::pin(ranged::plan(client, revision, download)).await? {
        let mut body = RangedBody::start(client, plan);
        return Box::pin(receive(&mut body, revision.bundle_type, destination)).await;
    }
    let object = S3Object::of(revision);
    let output = client
        .get_object()
        .bucket(&revision.bucket)
        .key(&revision.key)
        .set_version_id(revision.version.clone())
        .send()
        .await
        .map_err(|e| BundleError::S3Request {
            object: object.clone(),
            source: Box::new(e),
        })?;

    // Known from the headers, before the body: a mismatch unpacks nothing.
    expect_etag(revision, output.e_tag().unwrap_or_default())?;
    let mut body = WholeBody {
        stream: output.body,
        order: InOrder::default(),
    };
    receive(&mut body, revision.bundle_type, destination).await
}

/// The object's ETag must be the one the deployment names, if it names one.
fn expect_etag(revision: &S3Revision, actual: &str) -> Result<(), BundleError> {
    match &revision.etag {
        Some(expected) if !etags_match(expected, actual) => Err(BundleError::EtagMismatch {
            expected: expected.clone(),
            actual: actual.to_string(),
            object: S3Object::of(revision),
        }),
        _ => Ok(()),
    }
}

/// S3 ETags come quoted (`"abc"`); specs may carry them either way.
fn etags_match(expected: &str, actual: &str) -> bool {
    expected.replace('"', "") == actual.replace('"', "")
}

#[cfg(test)]
mod tests;
