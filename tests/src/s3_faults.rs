//! A fault-injecting HTTP proxy in front of the real S3 server (moto): the
//! agent's `s3_endpoint_override` points here, every request is forwarded to
//! moto unchanged, and object downloads (GET) can be answered instead with an
//! S3 error status, a body cut short, or a different ETag. It counts the
//! downloads it saw, so a test can tell a retried request from a single one.
//! The agent's probe of an object's first byte (`Range: bytes=0-0`, which
//! tells it whether to download in ranges) is forwarded unchanged and not
//! counted: the faults are those of the bundle's GET.
//! Plain `std` sockets on 127.0.0.1, one thread per connection; one request
//! per connection (`Connection: close`), which every HTTP client accepts.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What a download (GET of an object) gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Fault {
    /// Forwarded unchanged.
    None,
    /// An S3 XML error with this status and code (e.g. 403 AccessDenied),
    /// for every download.
    Status(u16, &'static str),
    /// This S3 error for the first `n` downloads, then forwarded unchanged.
    StatusThenRecover(u16, &'static str, usize),
    /// The real headers (with the full Content-Length), then only this many
    /// bytes of the body before the connection is closed.
    Truncate(usize),
    /// The real answer with its ETag header replaced.
    WrongEtag,
    /// The real headers and this many bytes of the body, then nothing more
    /// until the fault is changed (or a minute has passed): a download that
    /// hangs midway, for killing the agent while it is in DownloadBundle.
    Stall(usize),
}

#[derive(Debug)]
pub struct S3FaultProxy {
    port: u16,
    fault: Arc<Mutex<S3Fault>>,
    downloads: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl S3FaultProxy {
    /// Forwards to the S3 server on `127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16, fault: S3Fault) -> S3FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
        let port = listener.local_addr().expect("a bound address").port();
        let fault = Arc::new(Mutex::new(fault));
        let downloads = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (fault, downloads, stop) = (fault.clone(), downloads.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (fault, downloads) = (fault.clone(), downloads.clone());
                    std::thread::spawn(move || {
                        let _ = serve(stream, upstream_port, &fault, &downloads);
                    });
                }
            })
        };
        S3FaultProxy {
            port,
            fault,
            downloads,
            stop,
            accept: Some(accept),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many object downloads reached the proxy.
    pub fn downloads(&self) -> usize {
        self.downloads.load(Ordering::SeqCst)
    }

    pub fn set_fault(&self, fault: S3Fault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }
}

impl Drop for S3FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// One request: its head (request line and headers, as received) and body.
pub(crate) struct Request {
    pub method: String,
    pub head: Vec<String>,
    pub body: Vec<u8>,
}

pub(crate) fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let method = head
        .first()
        .and_then(|l| l.split(' ').next())
        .unwrap_or_default()
        .to_string();
    let length = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(Request { method, head, body }))
}

pub(crate) fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

fn serve(
    client: TcpStream,
    upstream_port: u16,
    current: &Mutex<S3Fault>,
    downloads: &AtomicUsize,
) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(request) = read_request(&mut reader)? else {
        return Ok(());
    };
    let mut client = client;
    // Bucket operations (creating, listing) are never faulted; a GET with a
    // key (`/bucket/key`) is a download.
    let path = request.head[0].split(' ').nth(1).unwrap_or("/");
    let is_probe = header(&request.head, "range") == Some("bytes=0-0");
    let is_download = request.method == "GET"
        && !is_probe
        && path
            .trim_start_matches('/')
            .split('?')
            .next()
            .is_some_and(|p| p.contains('/'));
    let fault = if is_download {
        let seen = downloads.fetch_add(1, Ordering::SeqCst);
        match current.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            S3Fault::StatusThenRecover(status, code, n) if seen < n => {
                S3Fault::Status(status, code)
            }
            S3Fault::StatusThenRecover(..) => S3Fault::None,
            other => other,
        }
    } else {
        S3Fault::None
    };
    if let S3Fault::Status(status, code) = fault {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>injected by the test</Message><RequestId>fault</RequestId></Error>"
        );
        write!(
            client,
            "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\n\
             Content-Length: {}\r\nx-amz-request-id: fault\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return client.shutdown(Shutdown::Both);
    }

    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    for line in &request.head {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("connection:") {
            continue;
        }
        write!(upstream, "{line}\r\n")?;
    }
    write!(upstream, "Connection: close\r\n\r\n")?;
    upstream.write_all(&request.body)?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer)?;

    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(answer.len());
    let (head, body) = answer.split_at(split);
    let mut head = String::from_utf8_lossy(head).into_owned();
    if fault == S3Fault::WrongEtag {
        head = head
            .split("\r\n")
            .map(|line| {
                if line.to_ascii_lowercase().starts_with("etag:") {
                    "ETag: \"00000000000000000000000000000000\"".to_string()
                } else {
                    line.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n");
    }
    client.write_all(head.as_bytes())?;
    match fault {
        S3Fault::Truncate(keep) => client.write_all(&body[..keep.min(body.len())])?,
        S3Fault::Stall(keep) => {
            client.write_all(&body[..keep.min(body.len())])?;
            client.flush()?;
            let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < until
                && matches!(
                    *current.lock().unwrap_or_else(|e| e.into_inner()),
                    S3Fault::Stall(_)
                )
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        _ => client.write_all(body)?,
    }
    client.flush()?;
    client.shutdown(Shutdown::Both)
}
