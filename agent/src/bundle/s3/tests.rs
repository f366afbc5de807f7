//! Downloads against a real S3 implementation: a loopback moto server, started
//! per test when `moto_server` is installed (skipped otherwise).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;

use super::*;
use crate::config::{BundleDownload, BundlePolicy};
use crate::deployment_spec::BundleType;
use crate::shutdown;

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

/// A download of one stream whatever the size.
const ONE_STREAM: BundleDownload = BundleDownload {
    ranged_threshold: u64::MAX,
    connections: 1,
};

/// Ranges of 256 KiB, 32 at once, for anything of a byte or more.
const RANGED: BundleDownload = BundleDownload {
    ranged_threshold: 1,
    connections: 32,
};

async fn fetch(
    client: &aws_sdk_s3::Client,
    revision: &S3Revision,
    bundle_file: &std::path::Path,
    archive_dir: &std::path::Path,
    download: BundleDownload,
) -> Result<(), BundleError> {
    let policy = BundlePolicy::default();
    fetch_s3(
        client,
        revision,
        bundle_file,
        archive_dir,
        &policy,
        download,
        &shutdown::never(),
    )
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn downloads_by_key_version_and_etag_and_names_the_object_on_failure() {
    let Some(moto) = start_moto() else { return };
    let credentials = Credentials::new("testing", "testing", None, None, "test");
    let client = s3_client("us-east-1", Some(&moto.endpoint), credentials, None).unwrap();
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
    let tar_of = |name: &str, content: &[u8]| {
        crate::bundle::unpack::tests::tar_bytes(&[crate::bundle::unpack::tests::file(
            name, 0o644, content,
        )])
    };
    let old_bundle = tar_of("old.txt", &[1u8; 300_000]);
    let new_bundle = tar_of("new.txt", b"second");
    let first = client
        .put_object()
        .bucket("bundles")
        .key("app/bundle.tar")
        .body(ByteStream::from(old_bundle.clone()))
        .send()
        .await
        .unwrap();
    client
        .put_object()
        .bucket("bundles")
        .key("app/bundle.tar")
        .body(ByteStream::from(new_bundle.clone()))
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("bundle.tar");
    let archive = dir.path().join("deployment-archive");
    let names = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };

    // Latest version.
    fetch(
        &client,
        &revision("bundles", "app/bundle.tar"),
        &dest,
        &archive,
        ONE_STREAM,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), new_bundle);
    assert_eq!(names(&archive), ["new.txt"]);

    // A given version, with its ETag as the spec carries it (without quotes).
    let mut old = revision("bundles", "app/bundle.tar");
    old.version = first.version_id().map(str::to_string);
    old.etag = first.e_tag().map(|e| e.trim_matches('"').to_string());
    fetch(&client, &old, &dest, &archive, ONE_STREAM)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), old_bundle);
    assert_eq!(names(&archive), ["old.txt"]);
    assert_eq!(
        std::fs::read(archive.join("old.txt")).unwrap(),
        vec![1u8; 300_000]
    );

    // The same version as two ranges of 256 KiB: the same bundle, pinned to
    // the old version although a newer one is the latest.
    std::fs::remove_dir_all(&archive).unwrap();
    fetch(&client, &old, &dest, &archive, RANGED).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), old_bundle);
    assert_eq!(names(&archive), ["old.txt"]);

    // Whether the ETag comes from GetObject or from the HEAD of a ranged
    // download, and whether the key is missing at the HEAD or the GET, the
    // operator reads the same.
    for download in [ONE_STREAM, RANGED] {
        // ETag mismatch: known from the headers, so nothing is written or unpacked.
        let mut wrong = revision("bundles", "app/bundle.tar");
        wrong.etag = Some("0123abcd".into());
        let other_archive = dir.path().join("other-archive");
        let err = fetch(
            &client,
            &wrong,
            &dir.path().join("other.tar"),
            &other_archive,
            download,
        )
        .await
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message
                .starts_with("Expected deployment artifact bundle etag 0123abcd but was actually "),
            "{message}"
        );
        assert!(message.contains("s3://bundles/app/bundle.tar"), "{message}");
        assert!(!dir.path().join("other.tar").exists());
        assert!(
            !other_archive.exists(),
            "nothing unpacked on an ETag mismatch"
        );

        // Missing key: the service's code, and the object.
        let err = fetch(
            &client,
            &revision("bundles", "nope.tar"),
            &dest,
            &archive,
            download,
        )
        .await
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("s3://bundles/nope.tar") && message.contains("NoSuchKey"),
            "{message}"
        );
    }

    // Only the final bundle and archive are left behind: no temporary files.
    assert_eq!(names(dir.path()), ["bundle.tar", "deployment-archive"]);
}
