//! Downloads against a real S3 implementation: a loopback moto server, started
//! per test when `moto_server` is installed (skipped otherwise).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;

use super::*;
use crate::spec::BundleType;

struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        eprintln!("moto_server is not installed: skipping the S3 download test");
        return None;
    };
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

fn revision(bucket: &str, key: &str) -> S3Revision {
    S3Revision {
        bucket: bucket.into(),
        key: key.into(),
        bundle_type: BundleType::Tar,
        version: None,
        etag: None,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn downloads_by_key_version_and_etag_and_names_the_object_on_failure() {
    let Some(moto) = start_moto() else { return };
    let credentials = Credentials::new("testing", "testing", None, None, "test");
    let client = s3_client("us-east-1", Some(&moto.endpoint), credentials, None);
    client
        .create_bucket()
        .bucket("bundles")
        .send()
        .await
        .unwrap();
    client
        .put_bucket_versioning()
        .bucket("bundles")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let first = client
        .put_object()
        .bucket("bundles")
        .key("app/bundle.tar")
        .body(ByteStream::from(vec![1u8; 300_000]))
        .send()
        .await
        .unwrap();
    client
        .put_object()
        .bucket("bundles")
        .key("app/bundle.tar")
        .body(ByteStream::from_static(b"second"))
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("bundle.tar");

    // Latest version.
    download_s3(&client, &revision("bundles", "app/bundle.tar"), &dest)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"second");

    // A given version, with its ETag as the spec carries it (without quotes).
    let mut old = revision("bundles", "app/bundle.tar");
    old.version = first.version_id().map(str::to_string);
    old.etag = first.e_tag().map(|e| e.trim_matches('"').to_string());
    download_s3(&client, &old, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), vec![1u8; 300_000]);

    // ETag mismatch.
    let mut wrong = revision("bundles", "app/bundle.tar");
    wrong.etag = Some("0123abcd".into());
    let err = download_s3(&client, &wrong, &dir.path().join("other.tar"))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("Expected deployment artifact bundle etag 0123abcd but was actually "),
        "{message}"
    );
    assert!(message.contains("s3://bundles/app/bundle.tar"), "{message}");
    assert!(!dir.path().join("other.tar").exists());

    // Missing key: the service's code, and the object.
    let err = download_s3(&client, &revision("bundles", "nope.tar"), &dest)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("s3://bundles/nope.tar") && message.contains("NoSuchKey"),
        "{message}"
    );

    // Only the final file is left behind: no temporary files.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("bundle.tar")]);
}
