//! Faults on the way to the bundle: S3 answering 403, 404 or 500, or cutting
//! the body short, through a fault-injecting proxy in front of the real S3
//! server. Each asserts what the service is told (DownloadBundle Failed,
//! code 5, a message naming bucket, key and version), how many downloads the
//! agent attempted (errors that cannot heal are not retried, transient ones
//! are), and that no partial bundle is left behind; the agent then deploys
//! the next revision. On the control plane's side: outages ridden out, a
//! deployment specification fetched again after a dropped connection or a
//! server fault, and refused for good (the command fails, naming why).

use std::path::Path;

use codedeploy_e2e::emulator::Operation;
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

/// Uploads `revision` under `key`, queues its deployment and starts the agent
/// behind `proxy`.
fn deploy_behind(
    bed: &TestBed,
    proxy: &S3FaultProxy,
    key: &str,
    revision: &Revision,
) -> (Deployment, S3Location) {
    let location = bed.upload(BUCKET, key, revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location.clone());
    bed.emulator.add_deployment(deployment.clone());
    start_agent(bed, proxy);
    (deployment, location)
}

/// A deployment of the small revision behind an S3 answering `fault`: it must
/// fail at DownloadBundle naming the object and S3's `code`.
fn failed_download(
    name: &str,
    fault: S3Fault,
    code: &str,
) -> (TestBed, S3FaultProxy, std::path::PathBuf) {
    let (bed, proxy) = bed_behind(name, fault);
    let install = bed.path().join("srv/app");
    let (deployment, location) = deploy_behind(
        &bed,
        &proxy,
        &format!("app/{name}.tgz"),
        &revision(&install),
    );
    let message = expect_download_failure(&bed, &deployment, &location);
    ensure!(
        bed,
        message.contains(code),
        "the message carries S3's error code: {message:?}"
    );
    (bed, proxy, install)
}

#[test]
fn s3_access_denied_fails_download_bundle_at_once_without_retrying() {
    let (bed, proxy, install) = failed_download(
        "s3-403",
        S3Fault::Status(403, "AccessDenied"),
        "AccessDenied",
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
    let (bed, proxy, install) =
        failed_download("s3-404", S3Fault::Status(404, "NoSuchKey"), "NoSuchKey");
    ensure_eq!(bed, proxy.downloads(), 1, "a 404 is not retried");
    next_deployment_succeeds(&bed, &proxy, &install);
}

#[test]
fn s3_internal_errors_are_retried_and_a_lasting_one_fails_download_bundle() {
    let (bed, proxy, install) = failed_download(
        "s3-500",
        S3Fault::Status(500, "InternalError"),
        "InternalError",
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
    let (deployment, _) = deploy_behind(&bed, &proxy, "app/flaky.tgz", &revision(&install));

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
    let (deployment, location) = deploy_behind(&bed, &proxy, "app/truncated.tgz", &big);

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

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `megabytes` at `path`; `None` (after saying why)
    /// where the test cannot mount (not root, no CAP_SYS_ADMIN).
    fn mount(path: &Path, megabytes: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(path)
            .status();
        match status {
            Ok(status) if status.success() => Some(SmallDisk {
                path: path.to_path_buf(),
            }),
            other => {
                eprintln!(
                    "SKIPPED: mounting a tmpfs at {} failed ({other:?}); the disk-full tests \
                     need root with CAP_SYS_ADMIN",
                    path.display()
                );
                None
            }
        }
    }

    /// Bytes in use on the tmpfs.
    fn used(&self) -> u64 {
        let stat = nix::sys::statvfs::statvfs(&self.path).expect("statvfs of the tmpfs");
        (stat.blocks() - stat.blocks_free()) as u64 * stat.fragment_size() as u64
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Bytes that gzip cannot shrink, so that a bundle's size is what it holds.
fn incompressible(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The disk under the deployment root fills during DownloadBundle (`big`
/// names what is too big: the bundle itself, or what it unpacks to): the
/// service is told, what was written is removed, and the agent deploys a
/// small revision next.
fn disk_full_during_download_bundle(name: &str, big: Revision, what: &str) {
    let bed = TestBed::start(name);
    let Some(disk) = SmallDisk::mount(&bed.path().join("small-disk"), 8) else {
        return;
    };
    let install = bed.path().join("srv/app");
    let location = bed.upload(BUCKET, "app/too-big.tgz", &big, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location.clone());
    bed.emulator.add_deployment(deployment.clone());
    let mut config = bed.agent_config();
    config.root_dir = disk.path.join("deployment-root");
    bed.start_agent_with(&agent_binary(), &config);

    let failed = expect_failure_at(&bed, &deployment, "DownloadBundle");
    let message = failed
        .diagnostics()
        .map(|d| d.message.clone())
        .unwrap_or_default();
    ensure!(
        bed,
        message.to_lowercase().contains("space") || message.to_lowercase().contains("full"),
        "{what}: the message says the disk is full: {message:?}"
    );
    let used = disk.used();
    ensure!(
        bed,
        used < 1024 * 1024,
        "{what}: what the failed download wrote is removed ({used} bytes still in use)"
    );
    ensure!(bed, bed.agent_running(), "{what}: the agent keeps running");

    let location = bed.upload(
        BUCKET,
        "app/small.tgz",
        &revision(&install),
        BundleType::Tgz,
    );
    let next = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(next.clone());
    expect_success(&bed, &next);
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<p>v1</p>\n",
        "{what}: the next revision is installed"
    );
}

#[test]
fn disk_filling_while_the_bundle_downloads_fails_cleanly() {
    let install = Path::new("/nonexistent-install-target");
    // 12 MiB of noise: the bundle alone does not fit on the 8 MiB disk.
    let big = revision(install).file("app/noise.bin", incompressible(12 << 20));
    disk_full_during_download_bundle("disk-full-download", big, "download");
}

#[test]
fn disk_filling_while_the_bundle_unpacks_fails_cleanly() {
    let install = Path::new("/nonexistent-install-target");
    // A small bundle (zeros compress well) that unpacks to 16 MiB.
    let big = revision(install).file("app/zeros.bin", vec![0; 16 << 20]);
    disk_full_during_download_bundle("disk-full-unpack", big, "unpack");
}

const FAILED_AFTER_RESTART: &str =
    "Failed: Failing in-progress lifecycle event after an agent restart.";

/// Waits until `deployment`'s `name` command has been acknowledged.
fn wait_for_ack(bed: &TestBed, deployment: &Deployment, name: &str) -> bool {
    bed.emulator
        .wait_until(std::time::Duration::from_secs(60), |_| {
            bed.emulator
                .deployment(&deployment.deployment_id)
                .and_then(|d| d.command(name).map(|c| !c.acknowledgements.is_empty()))
                .unwrap_or(false)
        })
}

/// After a SIGKILL during `name`, the restarted agent reports `name` Failed
/// with the restart diagnostic, and nothing else of that deployment.
fn expect_reported_after_restart(bed: &TestBed, deployment: &Deployment, name: &str) {
    let reported = bed
        .emulator
        .wait_until(std::time::Duration::from_secs(30), |_| {
            bed.emulator
                .deployment(&deployment.deployment_id)
                .and_then(|d| d.command(name).map(|c| !c.completions.is_empty()))
                .unwrap_or(false)
        });
    ensure!(
        bed,
        reported,
        "the restarted agent reports the interrupted {name}"
    );
    let record = bed
        .emulator
        .deployment(&deployment.deployment_id)
        .and_then(|d| d.command(name).cloned())
        .expect("reported above");
    let completion = record.completion().cloned().expect("reported above");
    ensure_eq!(
        bed,
        completion.status.as_str(),
        "Failed",
        "{name} is reported Failed"
    );
    let diagnostics = record.diagnostics().cloned();
    ensure_eq!(
        bed,
        diagnostics.map(|d| (d.error_code, d.message)),
        Some((7, FAILED_AFTER_RESTART.to_string())),
        "{name}'s restart diagnostic"
    );
}

#[test]
fn agent_killed_during_download_bundle_reports_it_after_restart_and_deploys_again() {
    let (bed, proxy) = bed_behind("kill-in-download", S3Fault::Stall(64 * 1024));
    let install = bed.path().join("srv/app");
    let big = revision(&install).file("app/noise.bin", incompressible(1 << 20));
    let location = bed.upload(BUCKET, "app/stalling.tgz", &big, BundleType::Tgz);
    let first = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(first.clone());
    start_agent(&bed, &proxy);

    ensure!(
        bed,
        wait_for_ack(&bed, &first, "DownloadBundle"),
        "DownloadBundle started"
    );
    let downloading = bed
        .emulator
        .wait_until(std::time::Duration::from_secs(30), |_| {
            proxy.downloads() > 0
        });
    ensure!(bed, downloading, "the agent is downloading the bundle");
    std::thread::sleep(std::time::Duration::from_millis(300));
    bed.kill_agent();
    proxy.set_fault(S3Fault::None);

    start_agent(&bed, &proxy);
    expect_reported_after_restart(&bed, &first, "DownloadBundle");
    // No bundle file was ever named as complete.
    let deployment_dir = deployment_dir(&bed, &first);
    let bundles: Vec<String> = std::fs::read_dir(&deployment_dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("bundle"))
                .collect()
        })
        .unwrap_or_default();
    ensure_eq!(
        bed,
        bundles,
        Vec::<String>::new(),
        "no half-downloaded bundle carries the bundle's name"
    );
    ensure!(bed, !install.exists(), "nothing installed");
    next_deployment_succeeds(&bed, &proxy, &install);
}

#[test]
fn agent_killed_during_install_leaves_only_whole_files_and_the_next_deployment_succeeds() {
    let bed = TestBed::start("kill-in-install");
    let install = bed.path().join("srv/app");
    // Enough files that Install takes a while: the kill lands in the middle.
    // (Install copies on several threads; 3,000 files took 0.2 s on CI.)
    const FILES: usize = 6000;
    let mut big = revision(&install);
    let content = |i: usize| format!("file {i}\n").repeat(4096);
    for i in 0..FILES {
        big = big.file(&format!("app/data/{:02}/f{i}.txt", i % 30), content(i));
    }
    let location = bed.upload(BUCKET, "app/many-files.tgz", &big, BundleType::Tgz);
    let first = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(first.clone());
    bed.start_agent(&agent_binary());

    ensure!(
        bed,
        wait_for_ack(&bed, &first, "Install"),
        "Install started"
    );
    // Killed as soon as the first file has landed: in the middle of the
    // copies. Folders are made before any copy, so a file is what tells;
    // looked for every millisecond, since the copies are quick.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let first_landed = || {
        std::fs::read_dir(install.join("data/00"))
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false)
    };
    while !first_landed() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    ensure!(bed, first_landed(), "Install started copying");
    bed.kill_agent();
    let landed: Vec<std::path::PathBuf> = (0..FILES)
        .map(|i| install.join(format!("data/{:02}/f{i}.txt", i % 30)))
        .filter(|path| path.exists())
        .collect();
    eprintln!(
        "{} of {FILES} files had landed when the agent was killed",
        landed.len()
    );
    for path in &landed {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let i: usize = name.trim_start_matches('f').parse().unwrap();
        ensure!(
            bed,
            std::fs::read_to_string(path).ok() == Some(content(i)),
            "{} is whole or absent, never half-written",
            path.display()
        );
    }

    bed.start_agent(&agent_binary());
    expect_reported_after_restart(&bed, &first, "Install");

    // The next deployment of the group removes what the interrupted Install
    // recorded and installs its own revision (DISALLOW finds no stranger).
    let location = bed.upload(
        BUCKET,
        "app/after-kill.tgz",
        &revision(&install),
        BundleType::Tgz,
    );
    let second = Deployment::next_in_group(&first, location);
    bed.emulator.add_deployment(second.clone());
    expect_success(&bed, &second);
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<p>v1</p>\n",
        "the next revision is installed"
    );
    let left: Vec<std::path::PathBuf> = landed.iter().filter(|p| p.exists()).cloned().collect();
    ensure_eq!(
        bed,
        left,
        Vec::<std::path::PathBuf>::new(),
        "the interrupted Install's files are removed by the next one"
    );
    // Nothing else either: no partial file of the copy the kill cut short,
    // no directory kept alive by one.
    let mut on_disk: Vec<String> = std::fs::read_dir(&install)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    ensure_eq!(
        bed,
        on_disk,
        vec!["index.html".to_string()],
        "the destination holds the next revision only"
    );
}

/// A kill while a state file was being replaced (install.json, a pointer,
/// a tracking file) leaves its temporary file, named after the killed
/// process. The next start removes those, and keeps one that a live process
/// is writing.
#[test]
fn half_written_state_files_of_a_killed_agent_are_removed_at_the_next_start() {
    let bed = TestBed::start("leftover-temporaries");
    let root = bed.root_dir();
    let gone = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    };
    let leftover = format!(".tmp-{gone}-Xq3kP0");
    let live = format!(".tmp-{}-Xq3kP0", std::process::id());
    let deployment = root.join("group-1/d-KILLED123");
    let planted = [
        root.join("deployment-instructions").join(&leftover),
        root.join("ongoing-deployment").join(&leftover),
        deployment.join(&leftover),
    ];
    for path in &planted {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "{\"half").unwrap();
    }
    let being_written = root.join("deployment-instructions").join(&live);
    std::fs::write(&being_written, "{\"half").unwrap();
    // A revision's own file of that name is the revision's: it stays.
    let in_revision = deployment.join("deployment-archive").join(&leftover);
    std::fs::create_dir_all(in_revision.parent().unwrap()).unwrap();
    std::fs::write(&in_revision, "shipped").unwrap();

    let started = std::time::SystemTime::now();
    bed.start_agent(&agent_binary());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let polled = || {
        bed.emulator
            .calls_of(Operation::PollHostCommand)
            .iter()
            .any(|call| call.at >= started)
    };
    while !polled() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ensure!(bed, polled(), "the agent polled after its start");
    let left: Vec<&std::path::PathBuf> = planted.iter().filter(|p| p.exists()).collect();
    ensure_eq!(
        bed,
        left,
        Vec::<&std::path::PathBuf>::new(),
        "the killed writer's temporary files are gone before the first poll"
    );
    ensure!(bed, being_written.exists(), "a live writer's file stays");
    ensure!(bed, in_revision.exists(), "a revision's file stays");
    let log = bed.agent_output();
    ensure!(
        bed,
        log.contains(&format!("removed {}", planted[0].display())),
        "the removal is logged: {log}"
    );
}

#[test]
fn control_plane_outages_are_ridden_out_and_the_held_complete_is_delivered() {
    use codedeploy_e2e::emulator::{Operation, Outage};
    use std::time::{Duration, Instant, SystemTime};

    let bed = TestBed::start("control-plane-outage");
    let install = bed.path().join("srv/app");
    let marker = bed.path().join("hook-started");
    let revision = Revision::new()
        .file(
            "appspec.yml",
            appspec("app", &install, &[hook("BeforeInstall", "scripts/slow.sh")]),
        )
        .file("app/index.html", "<p>v1</p>\n")
        .script(
            "scripts/slow.sh",
            format!("#!/bin/sh\ntouch '{}'\nsleep 2\n", marker.display()),
        );
    let location = bed.upload(BUCKET, "app/outage.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    let started = bed
        .emulator
        .wait_until(Duration::from_secs(60), |_| marker.exists());
    ensure!(bed, started, "BeforeInstall's hook started");

    // The hook ends inside the first outage: its Complete cannot be delivered
    // until the service is back.
    let phases = [
        (Outage::ServerErrors, Duration::from_secs(15)),
        (Outage::MalformedJson, Duration::from_secs(8)),
        (Outage::Slow(Duration::from_secs(3)), Duration::from_secs(8)),
        (Outage::DroppedConnections, Duration::from_secs(8)),
    ];
    let outage_began = SystemTime::now();
    for (outage, length) in phases {
        bed.emulator.outage(outage, Instant::now() + length);
        std::thread::sleep(length);
    }
    let recovered = SystemTime::now();
    let outage_seconds = recovered
        .duration_since(outage_began)
        .unwrap_or_default()
        .as_secs_f64();

    expect_success(&bed, &deployment);
    let calls = bed.emulator.calls();
    let during: Vec<_> = calls
        .iter()
        .filter(|c| c.at >= outage_began && c.at < recovered)
        .collect();
    eprintln!(
        "{} requests during {outage_seconds:.0} s of outage",
        during.len()
    );
    ensure!(
        bed,
        (during.len() as f64) <= outage_seconds,
        "the agent backs off during the outage instead of spinning: {} requests in {outage_seconds:.0} s",
        during.len()
    );
    let refused_completes = during
        .iter()
        .filter(|c| c.operation == Some(Operation::PutHostCommandComplete) && c.status != 200)
        .count();
    ensure!(
        bed,
        refused_completes >= 1,
        "BeforeInstall's Complete met the outage"
    );
    let before_install = bed
        .emulator
        .deployment(&deployment.deployment_id)
        .and_then(|d| d.command("BeforeInstall").cloned())
        .expect("BeforeInstall was handed out");
    ensure_eq!(
        bed,
        before_install
            .completions
            .iter()
            .map(|c| c.status.clone())
            .collect::<Vec<_>>(),
        vec!["Succeeded".to_string()],
        "the held Complete is delivered once, not lost"
    );
    let first_accepted = calls
        .iter()
        .find(|c| c.at >= recovered && c.status == 200)
        .map(|c| c.at.duration_since(recovered).unwrap_or_default());
    eprintln!("first accepted request {first_accepted:?} after the recovery");
    ensure!(
        bed,
        first_accepted.is_some_and(|gap| gap <= Duration::from_secs(35)),
        "the agent resumes within one backoff interval of the recovery: {first_accepted:?}"
    );
    ensure_v1_installed(&bed, &install);
}

#[test]
fn answers_of_many_megabytes_are_refused_without_holding_them() {
    use codedeploy_e2e::emulator::Outage;
    use std::time::{Duration, Instant};

    let bed = TestBed::start("huge-answers");
    bed.emulator
        .outage(Outage::HugeAnswers, Instant::now() + Duration::from_secs(8));
    bed.start_agent(&agent_binary());
    std::thread::sleep(Duration::from_secs(8));
    let output = bed.agent_output();
    ensure!(
        bed,
        output.contains("the answer is larger than 4 MiB"),
        "the agent says why it refused the answer"
    );
    let pid = bed.agent_pid().expect("the agent runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    eprintln!("agent peak RSS after 64 MiB answers: {peak_kib} KiB");
    ensure!(
        bed,
        peak_kib < 48 * 1024,
        "64 MiB answers are not held in memory: peak RSS {peak_kib} KiB"
    );

    // The service is healthy again: the next deployment goes through.
    let install = bed.path().join("srv/app");
    let location = bed.upload(
        BUCKET,
        "app/after-huge.tgz",
        &revision(&install),
        BundleType::Tgz,
    );
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    expect_success(&bed, &deployment);
}

fn ensure_v1_installed(bed: &TestBed, install: &Path) {
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<p>v1</p>\n",
        "the deployment went on to the end"
    );
}

/// A test bed with a deployment of [`revision`] for the emulator to hand
/// out, once the test has set up the faults it meets.
fn spec_fetch_bed(name: &str) -> (TestBed, std::path::PathBuf, Deployment) {
    let bed = TestBed::start(name);
    let install = bed.path().join("srv/app");
    let location = bed.upload(BUCKET, "app/spec.tgz", &revision(&install), BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location);
    (bed, install, deployment)
}

/// The statuses the emulator gave to the deployment's specification
/// fetches, in order (0 for a connection closed without an answer), and
/// the gaps between them.
fn spec_fetches(bed: &TestBed) -> (Vec<u16>, Vec<std::time::Duration>) {
    use codedeploy_e2e::emulator::Operation;
    let calls = bed.emulator.calls_of(Operation::GetDeploymentSpecification);
    let statuses = calls.iter().map(|c| c.status).collect();
    let gaps = calls
        .windows(2)
        .map(|pair| pair[1].elapsed.saturating_sub(pair[0].elapsed))
        .collect();
    (statuses, gaps)
}

#[test]
fn spec_fetch_network_errors_and_server_faults_are_retried_and_the_deployment_succeeds() {
    use codedeploy_e2e::emulator::{Operation, ServiceError};
    use std::time::Duration;

    let (bed, install, deployment) = spec_fetch_bed("spec-fetch-transient");
    bed.emulator
        .drop_connections(Operation::GetDeploymentSpecification, 1);
    bed.emulator.inject_error(
        Operation::GetDeploymentSpecification,
        ServiceError::server("InternalFailure", "injected server fault"),
        2,
    );
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);
    ensure_command_cycle(&bed, &deployment);

    let (statuses, gaps) = spec_fetches(&bed);
    ensure_eq!(
        bed,
        statuses[..4],
        [0, 500, 500, 200],
        "the first command's specification is fetched again after a dropped connection \
         and two server faults"
    );
    ensure!(
        bed,
        gaps[..3]
            .iter()
            .all(|gap| *gap >= Duration::from_millis(900)),
        "each retry waits the shared backoff (at least a second): {gaps:?}"
    );
    ensure_v1_installed(&bed, &install);
}

#[test]
fn a_refused_spec_fetch_fails_the_command_at_once_with_the_reason() {
    use codedeploy_e2e::emulator::{Operation, ServiceError};

    let (bed, install, deployment) = spec_fetch_bed("spec-fetch-refused");
    let refusal =
        "User is not authorized to perform: codedeploy-commands:GetDeploymentSpecification";
    bed.emulator.inject_error(
        Operation::GetDeploymentSpecification,
        ServiceError::client("AccessDeniedException", refusal),
        1,
    );
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    let first = deployment.events[0].as_str();
    let failed = expect_failure_at(&bed, &deployment, first);
    let diagnostics = failed.diagnostics().expect("the failure has diagnostics");
    ensure_eq!(bed, diagnostics.error_code, 5, "an unknown error (code 5)");
    for part in [
        "GetDeploymentSpecification",
        "AccessDeniedException",
        refusal,
    ] {
        ensure!(
            bed,
            diagnostics.message.contains(part),
            "the diagnostic names the refusal ({part}): {}",
            diagnostics.message
        );
    }
    ensure_eq!(
        bed,
        spec_fetches(&bed).0,
        vec![400],
        "a refusal is final: the specification is not asked for again"
    );
    ensure_eq!(
        bed,
        bed.emulator.count(Operation::PutHostCommandAcknowledgement),
        0,
        "a command without a specification is never acknowledged"
    );
    ensure!(bed, !install.exists(), "nothing was installed");
}
