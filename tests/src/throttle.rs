//! A bandwidth-capping HTTP proxy in front of the real S3 server (moto): the
//! agent's `s3_endpoint_override` points here, and every answer's body is
//! written at most `rate` bytes per second per connection, as S3 limits what
//! one connection carries. It records each object request (method, `Range`,
//! status, body bytes written, how many were answering at once), and can cut
//! one ranged download midway, hold ranged downloads from the n-th on until
//! released (so a test can replace the object in between), and answer for one
//! large object from a local file (the bench's 1 GiB bundle: moto reads a
//! whole object for every ranged GET) with S3's `Range`, `If-Match` and
//! `versionId` rules. Plain `std` sockets on 127.0.0.1, a thread per
//! connection, one request per connection (`Connection: close`).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::s3_faults::{header, read_request, Request};

/// Bytes written at a time, between the pauses that keep to the rate.
const SLICE: usize = 16 * 1024;

/// One object request (a HEAD or GET of `/bucket/key`) as the proxy answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub method: String,
    /// The path and query, as requested.
    pub target: String,
    /// The `Range` header, when there was one.
    pub range: Option<String>,
    pub status: u16,
    /// Body bytes written to the agent.
    pub body_bytes: u64,
    /// The proxy cut this answer short on purpose.
    pub cut: bool,
}

impl Served {
    /// The first byte of the range asked for (`bytes=first-last`).
    pub fn range_start(&self) -> Option<u64> {
        let spec = self.range.as_deref()?.strip_prefix("bytes=")?;
        spec.split('-').next()?.trim().parse().ok()
    }

    /// The first and last byte of the range asked for (`bytes=first-last`).
    pub fn range_bounds(&self) -> Option<(u64, u64)> {
        let spec = self.range.as_deref()?.strip_prefix("bytes=")?;
        let (first, last) = spec.split_once('-')?;
        Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
    }

    pub fn is_get(&self) -> bool {
        self.method == "GET"
    }

    /// The agent's HEAD of the object (its size, ETag and version), before
    /// it chooses how to download it.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// An object the proxy answers for itself, from a file.
#[derive(Debug, Clone)]
pub struct LocalObject {
    /// `/bucket/key`, as requested with path-style addressing.
    pub path: String,
    pub file: PathBuf,
    /// Without quotes.
    pub etag: String,
    pub version: String,
}

#[derive(Debug, Default)]
struct Controls {
    /// Cut the next ranged GET after this many body bytes (once).
    cut_after: Option<u64>,
    /// Ranged GETs from this one (1-based) on wait until released.
    hold_from: Option<usize>,
    local: Option<LocalObject>,
}

#[derive(Debug)]
struct Shared {
    upstream_port: u16,
    /// Bytes per second per connection; `None`: as fast as it goes.
    rate: Option<u64>,
    controls: Mutex<Controls>,
    released: Condvar,
    served: Mutex<Vec<Served>>,
    ranged_seen: AtomicUsize,
    answering: AtomicUsize,
    most_answering: AtomicUsize,
}

#[derive(Debug)]
pub struct ThrottleProxy {
    port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ThrottleProxy {
    /// Forwards to the S3 server on `127.0.0.1:upstream_port`, each
    /// connection's answer at most `rate` bytes per second.
    pub fn start(upstream_port: u16, rate: Option<u64>) -> ThrottleProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
        let port = listener.local_addr().expect("a bound address").port();
        let shared = Arc::new(Shared {
            upstream_port,
            rate,
            controls: Mutex::new(Controls::default()),
            released: Condvar::new(),
            served: Mutex::new(Vec::new()),
            ranged_seen: AtomicUsize::new(0),
            answering: AtomicUsize::new(0),
            most_answering: AtomicUsize::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, &shared);
                    });
                }
            })
        };
        ThrottleProxy {
            port,
            shared,
            stop,
            accept: Some(accept),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The object requests answered so far, in the order they ended.
    pub fn served(&self) -> Vec<Served> {
        lock(&self.shared.served).clone()
    }

    /// Forgets what was served (between two runs of a bench).
    pub fn clear(&self) {
        lock(&self.shared.served).clear();
        self.shared.ranged_seen.store(0, Ordering::SeqCst);
        self.shared.most_answering.store(0, Ordering::SeqCst);
    }

    /// The most object GETs that were being
    /// answered at the same time. Counted from the request's arrival to its
    /// last byte written: a part that ends and the next one the agent starts
    /// may overlap here by the proxy thread's scheduling, so this can exceed
    /// the agent's connections by one.
    pub fn most_concurrent_gets(&self) -> usize {
        self.shared.most_answering.load(Ordering::SeqCst)
    }

    /// Ranged GETs that reached the proxy, held ones included.
    pub fn ranged_gets_seen(&self) -> usize {
        self.shared.ranged_seen.load(Ordering::SeqCst)
    }

    /// The next ranged GET of more than `bytes` is cut (the connection
    /// closed) after `bytes` of its body; once.
    pub fn cut_next_range_after(&self, bytes: u64) {
        lock(&self.shared.controls).cut_after = Some(bytes);
    }

    /// Ranged GETs from the `n`-th (1-based) on wait, before reaching S3,
    /// until [`release`](Self::release) (or a minute has passed).
    pub fn hold_ranges_from(&self, n: usize) {
        lock(&self.shared.controls).hold_from = Some(n);
    }

    pub fn release(&self) {
        lock(&self.shared.controls).hold_from = None;
        self.shared.released.notify_all();
    }

    /// Answers HEAD and GET of `object.path` from its file.
    pub fn serve_locally(&self, object: LocalObject) {
        lock(&self.shared.controls).local = Some(object);
    }
}

impl Drop for ThrottleProxy {
    fn drop(&mut self) {
        self.release();
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// How many bytes `bytes=first-last` asks for.
fn range_length(range: &str) -> Option<u64> {
    let (first, last) = range.strip_prefix("bytes=")?.split_once('-')?;
    let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    last.checked_sub(first).map(|n| n + 1)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one answer is doing to the connection: its pace and its cut.
struct Pacer<'a> {
    client: &'a mut TcpStream,
    rate: Option<u64>,
    started: Instant,
    written: u64,
    cut_after: Option<u64>,
}

impl Pacer<'_> {
    /// Writes body bytes at the rate; `Ok(false)` once the cut is reached
    /// (the connection is then closed).
    fn body(&mut self, mut bytes: &[u8]) -> io::Result<bool> {
        while !bytes.is_empty() {
            let mut n = bytes.len().min(SLICE);
            if let Some(cut) = self.cut_after {
                n = n.min((cut - self.written) as usize);
                if n == 0 {
                    self.client.flush()?;
                    self.client.shutdown(Shutdown::Both)?;
                    return Ok(false);
                }
            }
            if let Some(rate) = self.rate {
                let due = self.started + Duration::from_secs_f64(self.written as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            self.client.write_all(&bytes[..n])?;
            self.written += n as u64;
            bytes = &bytes[n..];
        }
        Ok(true)
    }
}

/// Counts the object GETs being answered while it lives.
struct Answering<'a>(&'a Shared);

impl<'a> Answering<'a> {
    fn new(shared: &'a Shared) -> Answering<'a> {
        let now = shared.answering.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_answering.fetch_max(now, Ordering::SeqCst);
        Answering(shared)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve(mut client: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(request) = read_request(&mut reader)? else {
        return Ok(());
    };
    let target = request.head[0].split(' ').nth(1).unwrap_or("/").to_string();
    let path = target.split('?').next().unwrap_or("/").to_string();
    // `/bucket/key`: an object; `/bucket` or `/`: the bucket, not recorded.
    let is_object = path.trim_start_matches('/').contains('/');
    let range = header(&request.head, "range").map(str::to_string);
    let is_get = request.method == "GET" && is_object;
    let mut cut_after = None;
    if is_get && range.is_some() {
        let number = shared.ranged_seen.fetch_add(1, Ordering::SeqCst) + 1;
        let mut controls = lock(&shared.controls);
        let deadline = Instant::now() + Duration::from_secs(60);
        while controls.hold_from.is_some_and(|from| number >= from) && Instant::now() < deadline {
            controls = shared
                .released
                .wait_timeout(controls, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        // Only a range long enough to be cut where asked.
        let length = range.as_deref().and_then(range_length);
        if controls
            .cut_after
            .is_some_and(|cut| length.is_some_and(|length| length > cut))
        {
            cut_after = controls.cut_after.take();
        }
    }
    let answering = is_get.then(|| Answering::new(shared));
    let mut pacer = Pacer {
        client: &mut client,
        rate: shared.rate,
        started: Instant::now(),
        written: 0,
        cut_after,
    };
    let local = lock(&shared.controls)
        .local
        .clone()
        .filter(|local| local.path == path);
    let status = match local {
        Some(local) if matches!(request.method.as_str(), "GET" | "HEAD") => {
            answer_locally(&request, &target, &local, &mut pacer)?
        }
        _ => forward(&request, shared.upstream_port, &mut pacer)?,
    };
    // Done as soon as the last byte is written, before the bookkeeping.
    drop(answering);
    if is_object {
        lock(&shared.served).push(Served {
            method: request.method.clone(),
            target,
            range,
            status,
            body_bytes: pacer.written,
            cut: pacer.cut_after.is_some_and(|cut| pacer.written == cut),
        });
    }
    let _ = client.flush();
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// Sends the request to S3 and its answer back, the body paced; the status.
fn forward(request: &Request, upstream_port: u16, pacer: &mut Pacer<'_>) -> io::Result<u16> {
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    for line in &request.head {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            write!(upstream, "{line}\r\n")?;
        }
    }
    write!(upstream, "Connection: close\r\n\r\n")?;
    upstream.write_all(&request.body)?;

    let mut buffer = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let body_start = loop {
        let n = upstream.read(&mut buffer)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "S3 closed before its answer's head",
            ));
        }
        head.extend_from_slice(&buffer[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let status = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pacer.client.write_all(&head[..body_start])?;
    if !pacer.body(&head[body_start..])? {
        return Ok(status);
    }
    loop {
        let n = upstream.read(&mut buffer)?;
        if n == 0 || !pacer.body(&buffer[..n])? {
            return Ok(status);
        }
    }
}

/// Answers a HEAD or GET of the local object as S3 would: 412 when
/// `If-Match` or `versionId` names another object, 206 for a range.
fn answer_locally(
    request: &Request,
    target: &str,
    local: &LocalObject,
    pacer: &mut Pacer<'_>,
) -> io::Result<u16> {
    let mut file = File::open(&local.file)?;
    let size = file.metadata()?.len();
    let quoted = format!("\"{}\"", local.etag);
    let version_asked = target
        .split_once('?')
        .map(|(_, query)| query)
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| pair.strip_prefix("versionId="));
    let if_match = header(&request.head, "if-match");
    let precondition_failed = if_match.is_some_and(|etag| etag.trim_matches('"') != local.etag)
        || version_asked.is_some_and(|version| version != local.version);
    if precondition_failed {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PreconditionFailed</Code>\
                    <Message>At least one of the pre-conditions you specified did not hold</Message></Error>";
        write!(
            pacer.client,
            "HTTP/1.1 412 Precondition Failed\r\nContent-Type: application/xml\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(412);
    }
    let range = header(&request.head, "range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|spec| {
            let (first, last) = spec.split_once('-')?;
            let first: u64 = first.trim().parse().ok()?;
            let last: u64 = last.trim().parse().ok().unwrap_or(size - 1).min(size - 1);
            (first <= last).then_some((first, last))
        });
    let (status, first, length) = match range {
        Some((first, last)) => (206, first, last - first + 1),
        None => (200, 0, size),
    };
    write!(
        pacer.client,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {length}\r\nETag: {quoted}\r\nx-amz-version-id: {}\r\n\
         Accept-Ranges: bytes\r\nLast-Modified: Mon, 07 Dec 2026 12:00:00 GMT\r\n",
        if status == 206 {
            "Partial Content"
        } else {
            "OK"
        },
        local.version
    )?;
    if status == 206 {
        write!(
            pacer.client,
            "Content-Range: bytes {first}-{}/{size}\r\n",
            first + length - 1
        )?;
    }
    write!(pacer.client, "Connection: close\r\n\r\n")?;
    if request.method == "HEAD" {
        return Ok(status);
    }
    file.seek(SeekFrom::Start(first))?;
    let mut file = file.take(length);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 || !pacer.body(&buffer[..n])? {
            return Ok(status);
        }
    }
}
