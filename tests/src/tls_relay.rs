//! A TLS-terminating relay on loopback: it accepts HTTPS on a free 127.0.0.1
//! port with a certificate the test CA issued (`TestPki::loopback_server`)
//! and passes the decrypted bytes to a plain HTTP service of the harness
//! (the emulator, moto) on another loopback port, so that the agent reaches
//! them over real TLS. It counts the handshakes it completed and knows
//! nothing of HTTP. Stopped when dropped.

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::ca::CertifiedKey;

/// A running relay. Dropping it stops accepting and ends its connections.
#[derive(Debug)]
pub struct TlsRelay {
    port: u16,
    handshakes: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsRelay {
    /// Serves TLS as `identity` and relays each connection to
    /// `127.0.0.1:<backend_port>`.
    pub fn start(identity: &CertifiedKey, backend_port: u16) -> io::Result<TlsRelay> {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(identity)?));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&handshakes);
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("tls-relay-{port}"))
            .spawn(move || {
                // Leaving block_on drops the runtime, which ends every relayed
                // connection with it.
                runtime.block_on(serve(listener, acceptor, backend_port, counted, stopped));
            })?;
        Ok(TlsRelay {
            port,
            handshakes,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// How many TLS handshakes clients completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn server_config(identity: &CertifiedKey) -> io::Result<ServerConfig> {
    let cert = identity.cert.to_der().map_err(io::Error::other)?;
    let key = identity
        .key
        .private_key_to_pkcs8()
        .map_err(io::Error::other)?;
    ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .map_err(io::Error::other)
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    backend_port: u16,
    handshakes: Arc<AtomicUsize>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("tls relay: cannot listen: {e}");
            return;
        }
    };
    loop {
        let client = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(e) => {
                    // Out of descriptors, say: do not spin on it.
                    eprintln!("tls relay: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, handshakes) = (acceptor.clone(), Arc::clone(&handshakes));
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(client).await else {
                return;
            };
            handshakes.fetch_add(1, Ordering::SeqCst);
            let Ok(mut plain) =
                tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, backend_port)).await
            else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        });
    }
}
