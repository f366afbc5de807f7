//! A real S3-compatible server for the tests: `moto_server` started on a free
//! loopback port and killed when dropped, plus the few S3 calls the tests
//! need (a versioned bucket, an upload that returns the real VersionId and
//! ETag), made with aws-sdk-s3 over plain HTTP.
//!
//! The server executable is found through `MOTO_SERVER` (a path), else
//! `<workspace>/.venv/bin/moto_server`, else `moto_server` on `PATH`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// The static credential the tests give the S3 server (moto accepts any).
pub const S3_ACCESS_KEY_ID: &str = "AKIAMOTOTESTKEY00000";
pub const S3_SECRET_ACCESS_KEY: &str = "moto-test-secret";
pub const S3_REGION: &str = "us-east-1";

const INSTALL_HINT: &str =
    "install it with `python3 -m venv .venv && .venv/bin/pip install 'moto[server]'` \
     in the workspace root, or set MOTO_SERVER to the path of a moto_server executable";

/// An object as stored: what a deployment specification names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedObject {
    pub bucket: String,
    pub key: String,
    /// The object's VersionId (the bucket is versioned).
    pub version_id: Option<String>,
    /// The ETag without its surrounding quotes.
    pub etag: String,
}

/// A running `moto_server`. Dropping it kills the server.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    port: u16,
    log_path: PathBuf,
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

/// Finds the moto_server executable, or explains how to install it.
pub fn moto_server_path() -> Result<PathBuf, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    find_moto_server(
        std::env::var_os("MOTO_SERVER"),
        &workspace,
        std::env::var_os("PATH"),
    )
}

fn find_moto_server(
    explicit: Option<std::ffi::OsString>,
    workspace: &Path,
    path_var: Option<std::ffi::OsString>,
) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!(
                "MOTO_SERVER={} is not an executable file; {INSTALL_HINT}",
                path.display()
            ))
        };
    }
    let venv = workspace.join(".venv/bin/moto_server");
    if is_executable(&venv) {
        return Ok(venv);
    }
    for dir in path_var.iter().flat_map(std::env::split_paths) {
        let candidate = dir.join("moto_server");
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(format!(
        "moto_server (the S3 server the end-to-end tests use) was not found: \
         MOTO_SERVER is not set, {} does not exist and it is not on PATH; {INSTALL_HINT}",
        venv.display()
    ))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the loopback interface can bind an ephemeral port")
}

impl S3Server {
    /// Starts moto_server, its output going to `<log_dir>/moto_server.log`,
    /// and waits (up to 60 s) until it answers HTTP.
    pub fn start(log_dir: &Path) -> Result<S3Server, String> {
        let exe = moto_server_path()?;
        let log_path = log_dir.join("moto_server.log");
        let mut last_error = String::new();
        // A port picked free can be taken before moto binds it: retry.
        for _ in 0..3 {
            let port = free_port();
            let log =
                File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
            let log_err = log.try_clone().map_err(|e| e.to_string())?;
            let mut child = Command::new(&exe)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env_remove("HTTP_PROXY")
                .env_remove("HTTPS_PROXY")
                .env_remove("http_proxy")
                .env_remove("https_proxy")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}; {INSTALL_HINT}", exe.display()))?;
            match wait_until_answering(&mut child, port, Duration::from_secs(60)) {
                Ok(()) => return S3Server::connect(child, port, log_path),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = format!(
                        "{e}; moto_server output:\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
            }
        }
        Err(format!("moto_server did not start: {last_error}"))
    }

    fn connect(child: Child, port: u16, log_path: PathBuf) -> Result<S3Server, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(S3_REGION))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                S3_ACCESS_KEY_ID,
                S3_SECRET_ACCESS_KEY,
                None,
                None,
                "codedeploy-e2e",
            ))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .http_client(http_client)
            .build();
        Ok(S3Server {
            child,
            port,
            log_path,
            runtime,
            client: aws_sdk_s3::Client::from_conf(config),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`: what the agent's `s3_endpoint_override` is.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Creates `bucket`, unversioned: an upload replaces the object.
    pub fn create_bucket(&self, bucket: &str) -> Result<(), String> {
        self.runtime.block_on(async {
            self.client
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| format!("CreateBucket {bucket}: {}", error_text(&e)))?;
            Ok(())
        })
    }

    /// Creates `bucket` with versioning enabled.
    pub fn create_versioned_bucket(&self, bucket: &str) -> Result<(), String> {
        self.create_bucket(bucket)?;
        self.runtime.block_on(async {
            self.client
                .put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| format!("PutBucketVersioning {bucket}: {}", error_text(&e)))?;
            Ok(())
        })
    }

    /// Uploads `body` to `bucket/key`, returning the stored version and ETag.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<UploadedObject, String> {
        self.runtime.block_on(async {
            let out = self
                .client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| format!("PutObject {bucket}/{key}: {}", error_text(&e)))?;
            let etag = out
                .e_tag()
                .ok_or_else(|| format!("PutObject {bucket}/{key}: no ETag in the answer"))?
                .trim_matches('"')
                .to_string();
            Ok(UploadedObject {
                bucket: bucket.to_string(),
                key: key.to_string(),
                version_id: out.version_id().map(str::to_string),
                etag,
            })
        })
    }

    /// Reads an object back (a specific version when given).
    pub fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Vec<u8>, String> {
        self.runtime.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .set_version_id(version.map(str::to_string))
                .send()
                .await
                .map_err(|e| format!("GetObject {bucket}/{key}: {}", error_text(&e)))?;
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| format!("GetObject {bucket}/{key} body: {e}"))?;
            Ok(bytes.into_bytes().to_vec())
        })
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn error_text<E: std::error::Error + 'static>(e: &E) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn wait_until_answering(child: &mut Child, port: u16, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("moto_server exited with {status}"));
        }
        // Another harness's moto may have taken the port between
        // free_port() and this one's bind: an answer counts only from a
        // socket this child listens on.
        if answers_http(port) && listens_on(child.id(), port) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "moto_server did not answer on port {port} within {limit:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`:
/// the socket's inode from /proc/net/tcp, found among the process's files.
pub(crate) fn listens_on(pid: u32, port: u16) -> bool {
    const LISTEN: &str = "0A";
    let local = format!("0100007F:{port:04X}");
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.len() > 9 && fields[1] == local && fields[3] == LISTEN)
        .map(|fields| format!("socket:[{}]", fields[9]))
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
    })
}

fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_counts_as_this_process_s_only_when_it_holds_the_listening_socket() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listens_on(std::process::id(), port));
        // PID 1 never holds a test's socket.
        assert!(!listens_on(1, port));
        drop(listener);
        assert!(!listens_on(std::process::id(), port));
    }

    #[test]
    fn versioned_upload_returns_version_and_etag_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let s3 = S3Server::start(dir.path()).unwrap();
        s3.create_versioned_bucket("revisions").unwrap();
        let first = s3
            .put_object("revisions", "app/r.tgz", b"one".to_vec())
            .unwrap();
        let second = s3
            .put_object("revisions", "app/r.tgz", b"two".to_vec())
            .unwrap();
        assert!(first.version_id.is_some(), "{first:?}");
        assert_ne!(first.version_id, second.version_id);
        // A single-part upload's ETag is the MD5 of the body.
        let md5 = openssl::hash::hash(openssl::hash::MessageDigest::md5(), b"one").unwrap();
        let md5_hex: String = md5.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(first.etag, md5_hex);
        let old = s3
            .get_object("revisions", "app/r.tgz", first.version_id.as_deref())
            .unwrap();
        assert_eq!(old, b"one");
        assert_eq!(
            s3.get_object("revisions", "app/r.tgz", None).unwrap(),
            b"two"
        );
    }

    #[test]
    fn missing_moto_server_explains_how_to_install_it() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_moto_server(None, empty.path(), Some(empty.path().into())).unwrap_err();
        assert!(err.contains("pip install 'moto[server]'"), "{err}");
        assert!(err.contains("MOTO_SERVER"), "{err}");
        let err = find_moto_server(Some(empty.path().join("nope").into()), empty.path(), None)
            .unwrap_err();
        assert!(
            err.contains("MOTO_SERVER=") && err.contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn moto_server_is_found_in_the_workspace_venv_then_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let ws = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let on_path = bin.path().join("moto_server");
        std::fs::write(&on_path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&on_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = find_moto_server(None, ws.path(), Some(bin.path().into())).unwrap();
        assert_eq!(found, on_path);
        std::fs::create_dir_all(ws.path().join(".venv/bin")).unwrap();
        let in_venv = ws.path().join(".venv/bin/moto_server");
        std::fs::copy(&on_path, &in_venv).unwrap();
        let found = find_moto_server(None, ws.path(), Some(bin.path().into())).unwrap();
        assert_eq!(found, in_venv);
    }
}
