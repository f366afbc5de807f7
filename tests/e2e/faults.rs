//! Faults on the way to the bundle: S3 answering 403, 404 or 500, or cutting
//! the body short, through a fault-injecting proxy in front of the real S3
//! server. Each asserts what the service is told (DownloadBundle Failed,
//! code 5, a message naming bucket, key and version), how many downloads the
//! agent attempted (errors that cannot heal are not retried, transient ones
//! are), and that no partial bundle is left behind; the agent then deploys
//! the next revision.

use std::path::Path;

use codedeploy_e2e::s3_faults::{S3Fault, S3FaultProxy};
use codedeploy_e2e::{BundleType, Deployment, Revision, S3Location, TestBed};

use crate::support::*;

const BUCKET: &str = "faulty-revisions";

fn revision(install: &Path) -> Revision {
    Revision::new()
        .file("appspec.yml", appspec("app", install, &[]))
        .file("app/index.html", "<p>v1</p>\n")
}

/// A test bed whose agent reaches S3 through a fault proxy.
fn bed_behind(name: &str, fault: S3Fault) -> (TestBed, S3FaultProxy) {
    let bed = TestBed::start(name);
    let proxy = S3FaultProxy::start(bed.s3.port(), fault);
    (bed, proxy)
}

fn start_agent(bed: &TestBed, proxy: &S3FaultProxy) {
    let mut config = bed.agent_config();
    config.s3_endpoint_override = proxy.endpoint();
    bed.start_agent_with(&agent_binary(), &config);
}

/// Files whose name says they are a download in progress, anywhere under
/// the deployment root.
fn partial_downloads(bed: &TestBed) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![bed.root_dir()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".bundle-download-") {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// The deployment fails at DownloadBundle with code 5 and a message naming
/// the object; returns the message.
fn expect_download_failure(
    bed: &TestBed,
    deployment: &Deployment,
    location: &S3Location,
) -> String {
    let failed = expect_failure_at(bed, deployment, "DownloadBundle");
    let diagnostics = failed
        .diagnostics()
        .cloned()
        .unwrap_or_else(|| panic!("the completion carries diagnostics\n{}", bed.report()));
    ensure_eq!(
        bed,
        diagnostics.error_code,
        5,
        "a download failure is code 5"
    );
    let version = location.version.clone().unwrap_or_default();
    for part in [
        location.bucket.as_str(),
        location.key.as_str(),
        version.as_str(),
    ] {
        ensure!(
            bed,
            !part.is_empty() && diagnostics.message.contains(part),
            "the message names {part:?}: {:?}",
            diagnostics.message
        );
    }
    diagnostics.message
}

/// After a failed download the agent is still running and deploys the next
/// revision once S3 is healthy again.
fn next_deployment_succeeds(bed: &TestBed, proxy: &S3FaultProxy, install: &Path) {
    proxy.set_fault(S3Fault::None);
    let location = bed.upload(
        BUCKET,
        "app/after-fault.tgz",
        &revision(install),
        BundleType::Tgz,
    );
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    expect_success(bed, &deployment);
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<p>v1</p>\n",
        "the next revision is installed"
    );
}

#[test]
fn s3_access_denied_fails_download_bundle_at_once_without_retrying() {
    let (bed, proxy) = bed_behind("s3-403", S3Fault::Status(403, "AccessDenied"));
    let install = bed.path().join("srv/app");
    let location = bed.upload(
        BUCKET,
        "app/denied.tgz",
        &revision(&install),
        BundleType::Tgz,
    );
    let deployment = Deployment::new("App", "App-Group", location.clone());
    bed.emulator.add_deployment(deployment.clone());
    start_agent(&bed, &proxy);

    let message = expect_download_failure(&bed, &deployment, &location);
    ensure!(
        bed,
        message.contains("AccessDenied"),
        "the message carries S3's error code: {message:?}"
    );
    ensure_eq!(bed, proxy.downloads(), 1, "a 403 is not retried");
    ensure_eq!(
        bed,
        partial_downloads(&bed),
        Vec::<String>::new(),
        "no partial bundle left"
    );
    ensure!(bed, !install.exists(), "nothing installed");
    next_deployment_succeeds(&bed, &proxy, &install);
}

#[test]
fn s3_missing_object_fails_download_bundle_at_once_without_retrying() {
    let (bed, proxy) = bed_behind("s3-404", S3Fault::Status(404, "NoSuchKey"));
    let install = bed.path().join("srv/app");
    let location = bed.upload(BUCKET, "app/gone.tgz", &revision(&install), BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location.clone());
    bed.emulator.add_deployment(deployment.clone());
    start_agent(&bed, &proxy);

    let message = expect_download_failure(&bed, &deployment, &location);
    ensure!(
        bed,
        message.contains("NoSuchKey"),
        "the message carries S3's error code: {message:?}"
    );
    ensure_eq!(bed, proxy.downloads(), 1, "a 404 is not retried");
    next_deployment_succeeds(&bed, &proxy, &install);
}

#[test]
fn s3_internal_errors_are_retried_and_a_lasting_one_fails_download_bundle() {
    let (bed, proxy) = bed_behind("s3-500", S3Fault::Status(500, "InternalError"));
    let install = bed.path().join("srv/app");
    let location = bed.upload(
        BUCKET,
        "app/broken.tgz",
        &revision(&install),
        BundleType::Tgz,
    );
    let deployment = Deployment::new("App", "App-Group", location.clone());
    bed.emulator.add_deployment(deployment.clone());
    start_agent(&bed, &proxy);

    let message = expect_download_failure(&bed, &deployment, &location);
    ensure!(
        bed,
        message.contains("InternalError"),
        "the message carries S3's error code: {message:?}"
    );
    let attempts = proxy.downloads();
    ensure!(
        bed,
        (2..=5).contains(&attempts),
        "a 500 is retried a bounded number of times: {attempts} attempts"
    );
    next_deployment_succeeds(&bed, &proxy, &install);
}

#[test]
fn one_s3_internal_error_is_ridden_out_by_a_retry() {
    let (bed, proxy) = bed_behind(
        "s3-500-once",
        S3Fault::StatusThenRecover(500, "InternalError", 1),
    );
    let install = bed.path().join("srv/app");
    let location = bed.upload(
        BUCKET,
        "app/flaky.tgz",
        &revision(&install),
        BundleType::Tgz,
    );
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    start_agent(&bed, &proxy);

    expect_success(&bed, &deployment);
    ensure_eq!(bed, proxy.downloads(), 2, "one failed download, one retry");
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<p>v1</p>\n",
        "the revision is installed"
    );
}

#[test]
fn a_body_cut_short_fails_download_bundle_and_leaves_no_partial_bundle() {
    let (bed, proxy) = bed_behind("s3-truncated", S3Fault::Truncate(100));
    let install = bed.path().join("srv/app");
    // Big enough that 100 bytes is clearly a fraction of it.
    let mut big = revision(&install);
    let noise: String = (0..50_000).map(|i| format!("{i:x}")).collect();
    big = big.file("app/noise.txt", noise);
    let location = bed.upload(BUCKET, "app/truncated.tgz", &big, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location.clone());
    bed.emulator.add_deployment(deployment.clone());
    start_agent(&bed, &proxy);

    let message = expect_download_failure(&bed, &deployment, &location);
    ensure!(
        bed,
        message.contains("broke off"),
        "the message says the download broke off: {message:?}"
    );
    let attempts = proxy.downloads();
    ensure!(
        bed,
        (2..=5).contains(&attempts),
        "a broken-off body is retried a bounded number of times: {attempts} attempts"
    );
    ensure_eq!(
        bed,
        partial_downloads(&bed),
        Vec::<String>::new(),
        "no partial bundle left"
    );
    ensure!(bed, !install.exists(), "nothing installed");
    next_deployment_succeeds(&bed, &proxy, &install);
}
