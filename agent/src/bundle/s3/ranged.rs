//! The ranged DownloadBundle: a large S3 bundle fetched as byte ranges over
//! several connections at once (as S3 limits what one connection carries),
//! handed as it arrives, each chunk with its place in the object, to the same
//! streaming unpack and `bundle.tar` tee as a single stream (`stream.rs`),
//! as a [`Body`]. The tee writes every chunk to the bundle file at its place
//! and the unpack follows the bytes written without a gap, so parts can be
//! as large as S3 serves well whatever the memory budget.
//!
//! Owns the choice (a HEAD: the object's size against
//! `:bundle_ranged_download_threshold:`), the split into parts, the pinning of
//! every range to the object the HEAD saw (its version and, with `If-Match`,
//! its ETag: an object replaced midway fails the download, never mixes two
//! objects), and the retry of a range that breaks off from the byte where it
//! stopped. Memory is bounded: at most `:bundle_download_connections:` parts
//! are in flight, each holding at most [`PART_CHUNKS`] chunks not yet handed
//! over. Never decides how the bytes are unpacked.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{etags_match, expect_etag, BodyError};
use crate::bundle::error::{BrokenOff, BundleError, S3Object};
use crate::bundle::stream::{Body, Fetch, Placed};
use crate::config::BundleDownload;
use crate::deployment_spec::S3Revision;

/// The largest part: the AWS CLI's default part size, where a request's
/// overhead is small next to its bytes.
const MAX_PART: u64 = 8 * 1024 * 1024;
/// The smallest part: below it a request's overhead outweighs its bytes.
const MIN_PART: u64 = 1024 * 1024;
/// Chunks a part's task may hold that were not handed over yet: a part ahead
/// of a slow unpack waits with these, not with its whole body.
const PART_CHUNKS: usize = 2;

/// How many times a range is requested in all when its body keeps breaking
/// off; after that the whole download breaks off (and `s3.rs` starts it over).
const RANGE_ATTEMPTS: u32 = 3;

/// The size of each part of an object of `size` bytes fetched over
/// `connections`: one part per connection when that keeps parts within
/// [`MIN_PART`] and [`MAX_PART`], else the nearest bound (pure).
pub(super) fn part_size(size: u64, connections: u32) -> u64 {
    size.div_ceil(u64::from(connections.max(1)))
        .clamp(MIN_PART, MAX_PART)
}

/// `size` bytes cut into parts of `part` bytes, the last one shorter (pure).
pub(super) fn parts(size: u64, part: u64) -> impl Iterator<Item = Range<u64>> {
    let part = part.max(1);
    (0..size.div_ceil(part)).map(move |i| i * part..((i + 1) * part).min(size))
}

/// The object every range is pinned to, as the HEAD saw it.
#[derive(Debug)]
struct Pinned {
    bucket: String,
    key: String,
    /// The version the HEAD saw (`None` for an unversioned bucket).
    version: Option<String>,
    /// Quoted, as S3 sends it and `If-Match` takes it.
    etag: String,
    /// For messages: the object as the deployment names it.
    object: S3Object,
}

/// A ranged download about to start: what the HEAD found, and how to cut it.
#[derive(Debug)]
pub(super) struct Plan {
    pinned: Arc<Pinned>,
    size: u64,
    part: u64,
    connections: usize,
}

/// Whether `revision` is fetched as ranges under `download`, and how: `None`
/// for one stream (one connection configured, an object below the
/// threshold, of one part, or empty).
///
/// A HEAD learns the size, ETag and version, as the AWS CLI does before a
/// download: it carries no body, so it costs one round trip, where a GET of
/// the first byte makes some S3 servers read the whole object. A HEAD that
/// fails says no more than its status (a HEAD answer has no body): the
/// single stream's GET then fails with S3's own code and message. An ETag
/// that is not the deployment's fails here, before anything is written.
pub(super) async fn plan(
    client: &aws_sdk_s3::Client,
    revision: &S3Revision,
    download: BundleDownload,
) -> Result<Option<Plan>, Fetch> {
    if download.connections <= 1 {
        return Ok(None);
    }
    let object = S3Object::of(revision);
    let head = match client
        .head_object()
        .bucket(&revision.bucket)
        .key(&revision.key)
        .set_version_id(revision.version.clone())
        .send()
        .await
    {
        Ok(head) => head,
        // Refused or unanswered: the single stream's GET meets the same
        // answer and reports it as it always has, in S3's own words.
        Err(error) => {
            tracing::debug!("HEAD of {object}: {}", DisplayErrorContext(&error));
            return Ok(None);
        }
    };
    let etag = head.e_tag().unwrap_or_default().to_string();
    expect_etag(revision, &etag)?;
    let size = head
        .content_length()
        .and_then(|length| u64::try_from(length).ok())
        .unwrap_or(0);
    let part = part_size(size, download.connections);
    // Without an ETag no range can be pinned to the object the HEAD saw.
    if size < download.ranged_threshold || size <= part || etag.is_empty() {
        return Ok(None);
    }
    let count = size.div_ceil(part);
    tracing::info!(
        "downloading {object} ({size} bytes) as {count} ranges of {part} bytes, {} at once",
        download.connections
    );
    Ok(Some(Plan {
        pinned: Arc::new(Pinned {
            bucket: revision.bucket.clone(),
            key: revision.key.clone(),
            version: head.version_id().map(str::to_string),
            etag,
            object,
        }),
        size,
        part,
        connections: download.connections as usize,
    }))
}

/// What a part's task hands over: its bytes in order, each with its place,
/// or why it stopped.
type PartChunks = mpsc::Receiver<Result<Placed, Fetch>>;

/// A part being fetched: its chunks, and how many of its bytes are still to
/// come (a task that ends short of them is a download that broke off). Its
/// task ends when it is dropped.
struct InFlight {
    chunks: PartChunks,
    range: Range<u64>,
    left: u64,
    task: JoinHandle<()>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The object's bytes as they arrive, fetched as ranges by tasks of their
/// own (one per part in flight). The tasks end when it is dropped.
pub(super) struct RangedBody {
    client: aws_sdk_s3::Client,
    plan: Plan,
    /// The parts not started yet, in the object's order.
    pending: VecDeque<Range<u64>>,
    /// The parts started and not finished.
    in_flight: Vec<InFlight>,
    /// The part looked at first next time, so that every part is heard.
    turn: usize,
}

impl RangedBody {
    pub(super) fn start(client: &aws_sdk_s3::Client, plan: Plan) -> RangedBody {
        let mut body = RangedBody {
            client: client.clone(),
            pending: parts(plan.size, plan.part).collect(),
            plan,
            in_flight: Vec::new(),
            turn: 0,
        };
        body.fill();
        body
    }

    /// Starts parts until as many are in flight as connections allow.
    fn fill(&mut self) {
        while self.in_flight.len() < self.plan.connections {
            let Some(range) = self.pending.pop_front() else {
                return;
            };
            let (sender, chunks) = mpsc::channel(PART_CHUNKS);
            let (client, pinned) = (self.client.clone(), self.plan.pinned.clone());
            let task_range = range.clone();
            let task = tokio::spawn(async move {
                if let Err(error) = fetch_part(&client, &pinned, task_range, &sender).await {
                    let _ = sender.send(Err(error)).await;
                }
            });
            self.in_flight.push(InFlight {
                chunks,
                left: range.end - range.start,
                range,
                task,
            });
        }
    }

    /// The next message of any part in flight, with the part's index.
    fn poll_parts(&mut self, cx: &mut Context<'_>) -> Poll<(usize, Option<Result<Placed, Fetch>>)> {
        let count = self.in_flight.len();
        for k in 0..count {
            let index = (self.turn + k) % count;
            if let Poll::Ready(message) = self.in_flight[index].chunks.poll_recv(cx) {
                self.turn = index + 1;
                return Poll::Ready((index, message));
            }
        }
        Poll::Pending
    }

    async fn next_arrived(&mut self) -> Result<Option<Placed>, Fetch> {
        loop {
            if self.in_flight.is_empty() {
                return Ok(None);
            }
            let (index, message) = std::future::poll_fn(|cx| self.poll_parts(cx)).await;
            let part = &mut self.in_flight[index];
            match message {
                Some(Ok(chunk)) => {
                    part.left = part.left.saturating_sub(chunk.bytes.len() as u64);
                    return Ok(Some(chunk));
                }
                Some(Err(error)) => return Err(error),
                None if part.left == 0 => {
                    self.in_flight.remove(index);
                    self.fill();
                }
                None => {
                    return Err(Fetch::BrokenOff(BrokenOff::new(PartEnded {
                        range: part.range.clone(),
                        missing: part.left,
                    })));
                }
            }
        }
    }
}

impl Body for RangedBody {
    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<Placed>, Fetch>> {
        Box::pin(self.next_arrived())
    }
}

/// A part's task ended before all its bytes were handed over (it was
/// cancelled, or panicked).
#[derive(Debug, thiserror::Error)]
#[error("the range {}-{} ended {missing} bytes short", .range.start, .range.end - 1)]
struct PartEnded {
    range: Range<u64>,
    missing: u64,
}

/// A range's body that broke off on its last attempt.
#[derive(Debug, thiserror::Error)]
#[error("the range {first}-{last} broke off at byte {at}: {cause}")]
struct RangeBrokeOff {
    first: u64,
    last: u64,
    at: u64,
    #[source]
    cause: BrokenOff,
}

/// Fetches `range` of the pinned object into `chunks`. A body that breaks
/// off is asked again from the first byte not received, up to
/// [`RANGE_ATTEMPTS`] requests in all; what arrived is never fetched again.
async fn fetch_part(
    client: &aws_sdk_s3::Client,
    pinned: &Pinned,
    range: Range<u64>,
    chunks: &mpsc::Sender<Result<Placed, Fetch>>,
) -> Result<(), Fetch> {
    let mut at = range.start;
    let mut attempt = 1;
    while at < range.end {
        let mut body = request_range(client, pinned, at..range.end).await?;
        let cause = loop {
            match body.try_next().await {
                Ok(Some(chunk)) => {
                    let len = chunk.len() as u64;
                    if len > range.end - at {
                        return Err(range_refused(
                            pinned,
                            &(at..range.end),
                            "more bytes than the range holds".to_string(),
                        ));
                    }
                    let placed = Placed { at, bytes: chunk };
                    at += len;
                    if chunks.send(Ok(placed)).await.is_err() {
                        // The download was given up; nobody wants the rest.
                        return Ok(());
                    }
                }
                Ok(None) if at == range.end => return Ok(()),
                Ok(None) => {
                    break BrokenOff::new(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the answer ended early",
                    ))
                }
                Err(error) => break BrokenOff::new(BodyError(error)),
            }
        };
        let error = RangeBrokeOff {
            first: range.start,
            last: range.end - 1,
            at,
            cause,
        };
        if attempt >= RANGE_ATTEMPTS {
            return Err(Fetch::BrokenOff(BrokenOff::new(error)));
        }
        attempt += 1;
        tracing::warn!(
            "the download of {} broke off: {error}; fetching bytes {at}-{} again (attempt {attempt} of {RANGE_ATTEMPTS})",
            pinned.object,
            range.end - 1
        );
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
    }
    Ok(())
}

/// GetObject of `range` (end exclusive), pinned to the version the HEAD saw and
/// ETag; the answer must be exactly those bytes of that object.
async fn request_range(
    client: &aws_sdk_s3::Client,
    pinned: &Pinned,
    range: Range<u64>,
) -> Result<aws_sdk_s3::primitives::ByteStream, Fetch> {
    let output = client
        .get_object()
        .bucket(&pinned.bucket)
        .key(&pinned.key)
        .set_version_id(pinned.version.clone())
        .if_match(&pinned.etag)
        .range(format!("bytes={}-{}", range.start, range.end - 1))
        .send()
        .await
        .map_err(|error| match &error {
            SdkError::ServiceError(service) if service.raw().status().as_u16() == 412 => {
                changed(pinned)
            }
            _ => BundleError::S3Request {
                object: pinned.object.clone(),
                source: Box::new(error),
            },
        })?;
    // A server that ignores If-Match (or a version) must still not mix objects.
    if !etags_match(&pinned.etag, output.e_tag().unwrap_or_default()) {
        return Err(changed(pinned).into());
    }
    let expected = range.end - range.start;
    match output.content_length().and_then(|n| u64::try_from(n).ok()) {
        Some(length) if length == expected => Ok(output.body),
        other => Err(range_refused(
            pinned,
            &range,
            format!(
                "{} bytes in the answer instead of {expected}",
                other.map_or("no length".to_string(), |n| n.to_string())
            ),
        )),
    }
}

fn changed(pinned: &Pinned) -> BundleError {
    BundleError::S3Changed {
        object: pinned.object.clone(),
        etag: pinned.etag.replace('"', ""),
    }
}

fn range_refused(pinned: &Pinned, range: &Range<u64>, detail: String) -> Fetch {
    Fetch::Final(BundleError::S3RangeRefused {
        object: pinned.object.clone(),
        detail: format!("bytes={}-{} as asked: {detail}", range.start, range.end - 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_per_connection_within_1_and_8_mib() {
        const MIB: u64 = 1 << 20;
        // (object size, connections, part size)
        let cases: &[(u64, u32, u64)] = &[
            (1024 * MIB, 8, 8 * MIB),
            (64 * MIB, 8, 8 * MIB),
            (32 * MIB, 8, 4 * MIB),
            (9 * MIB, 2, 9 * MIB / 2),
            (9 * MIB + 1, 2, 9 * MIB / 2 + 1),
            (3 * MIB, 8, MIB),
            (0, 8, MIB),
            (100 * MIB, 0, 8 * MIB),
            (u64::MAX, 32, 8 * MIB),
        ];
        for (size, connections, part) in cases {
            assert_eq!(
                part_size(*size, *connections),
                *part,
                "{size} over {connections}"
            );
        }
    }

    #[test]
    fn parts_cover_the_object_in_order_without_overlap() {
        // (size, part size, the parts as (first byte, end))
        type Case = (u64, u64, &'static [(u64, u64)]);
        let cases: &[Case] = &[
            (0, 4, &[]),
            (1, 4, &[(0, 1)]),
            (4, 4, &[(0, 4)]),
            (10, 4, &[(0, 4), (4, 8), (8, 10)]),
            (12, 4, &[(0, 4), (4, 8), (8, 12)]),
        ];
        for (size, part, expected) in cases {
            let got: Vec<_> = parts(*size, *part).map(|r| (r.start, r.end)).collect();
            assert_eq!(got, *expected, "{size} in parts of {part}");
        }
    }
}
