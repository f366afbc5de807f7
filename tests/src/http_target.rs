//! A scripted HTTP service on 127.0.0.1 for health-check tests: healthy after
//! a number of requests, never healthy, or hanging without ever answering.
//! Plain `std` sockets, one thread per connection, so that a hanging request
//! does not stop the next one from being accepted. Dropping it stops it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How the service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// `503` with body `status: starting` for the first `n` requests, then
    /// `200` with body `status: ok`.
    HealthyAfter(usize),
    /// Always `503` with body `status: down`.
    Unhealthy,
    /// Reads the request and never answers (until the target is dropped).
    Hang,
}

#[derive(Debug)]
pub struct HttpTarget {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl HttpTarget {
    pub fn start(behavior: Behavior) -> HttpTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
        let port = listener.local_addr().expect("a bound address").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, stop) = (requests.clone(), stop.clone());
                    std::thread::spawn(move || serve(stream, behavior, &requests, &stop));
                }
            })
        };
        HttpTarget {
            port,
            requests,
            stop,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests received so far (whole request heads).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HttpTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve(mut stream: TcpStream, behavior: Behavior, requests: &AtomicUsize, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let seen = requests.fetch_add(1, Ordering::SeqCst) + 1;
    let (status, body) = match behavior {
        Behavior::HealthyAfter(n) if seen > n => ("200 OK", "status: ok\n"),
        Behavior::HealthyAfter(_) => ("503 Service Unavailable", "status: starting\n"),
        Behavior::Unhealthy => ("503 Service Unavailable", "status: down\n"),
        Behavior::Hang => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(port: u16) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn turns_healthy_after_the_given_requests() {
        let target = HttpTarget::start(Behavior::HealthyAfter(2));
        assert!(get(target.port()).starts_with("HTTP/1.1 503"));
        assert!(get(target.port()).starts_with("HTTP/1.1 503"));
        let third = get(target.port());
        assert!(third.starts_with("HTTP/1.1 200") && third.ends_with("status: ok\n"));
        assert_eq!(target.requests(), 3);
    }
}
