//! Ranged downloads (issue 19 part 2): a bundle above
//! `:bundle_ranged_download_threshold:` (set to 1 MiB here, with bundles of a
//! few MiB) arrives as byte ranges over `:bundle_download_connections:`
//! connections, through a proxy that caps each connection's bandwidth as S3
//! does and counts the bytes it served. Each test asserts what an operator
//! sees: the deployment's outcome and message, the installed files,
//! `bundle.tar` byte for byte, and what S3 was asked for.

use std::path::Path;
use std::time::Duration;

use codedeploy_e2e::throttle::{Served, ThrottleProxy};
use codedeploy_e2e::{BundleType, Deployment, Revision, S3Location, TestBed};

use crate::support::*;

const BUCKET: &str = "ranged-revisions";
const MIB: usize = 1024 * 1024;
/// Per connection: a part of a few MiB takes a good fraction of a second, so
/// the parts in flight overlap.
const RATE: u64 = 8 * MIB as u64;

/// `size` bytes nothing compresses; `seed` makes two versions differ.
fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut payload = vec![0u8; size];
    fastrand::Rng::with_seed(seed).fill(&mut payload);
    payload
}

/// A revision whose payload is `size` bytes nothing compresses, so the tgz
/// is about that size.
fn large_revision(install: &Path, size: usize, seed: u64) -> Revision {
    Revision::new()
        .file("appspec.yml", appspec("app", install, &[]))
        .file("app/payload.bin", payload(size, seed))
        .file("app/version.txt", format!("version {seed}\n"))
}

/// A test bed whose agent will reach S3 through a capping proxy.
fn bed_behind_throttle(name: &str) -> (TestBed, ThrottleProxy) {
    let bed = TestBed::start(name);
    let proxy = ThrottleProxy::start(bed.s3.port(), Some(RATE));
    (bed, proxy)
}

fn start_agent(bed: &TestBed, proxy: &ThrottleProxy, keys: &[&str]) {
    let mut config = bed.agent_config();
    config.s3_endpoint_override = proxy.endpoint();
    for key in keys {
        config = config.extra_line(key);
    }
    bed.start_agent_with(&agent_binary(), &config);
}

fn object_bytes(bed: &TestBed, location: &S3Location) -> Vec<u8> {
    bed.s3
        .get_object(&location.bucket, &location.key, location.version.as_deref())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The deployment's `bundle.tar` is the object (the version `location`
/// names), byte for byte; the object's bytes.
fn ensure_bundle_is_the_object(
    bed: &TestBed,
    deployment: &Deployment,
    location: &S3Location,
    what: &str,
) -> Vec<u8> {
    let object = object_bytes(bed, location);
    let bundle = std::fs::read(deployment_dir(bed, deployment).join("bundle.tar")).unwrap();
    ensure!(bed, bundle == object, "{what}");
    object
}

fn gets(proxy: &ThrottleProxy) -> Vec<Served> {
    proxy.served().into_iter().filter(Served::is_get).collect()
}

/// The GETs of the object's parts, after one HEAD of the object.
fn part_gets(proxy: &ThrottleProxy) -> Vec<Served> {
    let heads = proxy.served().into_iter().filter(Served::is_head).count();
    assert_eq!(heads, 1, "one HEAD of the object: {:#?}", proxy.served());
    gets(proxy)
}

fn body_bytes(served: &[Served]) -> u64 {
    served.iter().map(|s| s.body_bytes).sum()
}

const RANGED_4: &[&str] = &[
    ":bundle_ranged_download_threshold: 1048576",
    ":bundle_download_connections: 4",
];

#[test]
fn a_bundle_above_the_threshold_arrives_as_ranges_over_several_connections() {
    let (bed, proxy) = bed_behind_throttle("ranged-connections");
    let install = bed.path().join("srv/app");
    let revision = large_revision(&install, 9 * MIB, 1);
    let location = bed.upload(BUCKET, "app/large.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location.clone());
    bed.emulator.add_deployment(deployment.clone());
    start_agent(&bed, &proxy, RANGED_4);
    expect_success(&bed, &deployment);

    let object = ensure_bundle_is_the_object(
        &bed,
        &deployment,
        &location,
        "bundle.tar is the object, byte for byte",
    );
    ensure!(
        bed,
        std::fs::read(install.join("payload.bin")).unwrap() == payload(9 * MIB, 1),
        "the payload is installed whole"
    );
    ensure_eq!(bed, read(&install.join("version.txt")), "version 1\n", "");

    // 4 connections, an object of 9 MiB: a part of about 2.3 MiB each,
    // every one a ranged GET.
    let gets = part_gets(&proxy);
    ensure_eq!(bed, gets.len(), 4, "one GET per connection: {gets:#?}");
    ensure!(
        bed,
        gets.iter().all(|g| g.range.is_some() && g.status == 206),
        "every GET asks for a range: {gets:#?}"
    );
    let mut ranges: Vec<(u64, u64)> = gets.iter().filter_map(Served::range_bounds).collect();
    ranges.sort();
    let tiled = ranges.first().is_some_and(|r| r.0 == 0)
        && ranges.windows(2).all(|w| w[1].0 == w[0].1 + 1)
        && ranges
            .last()
            .is_some_and(|r| r.1 + 1 == object.len() as u64);
    ensure!(bed, tiled, "the parts tile the object: {ranges:?}");
    ensure_eq!(
        bed,
        body_bytes(&gets),
        object.len() as u64,
        "each byte is served once"
    );
    // Never more than 4 in flight; the proxy may count the next part before
    // its thread for the previous one has finished (see the method).
    let at_once = proxy.most_concurrent_gets();
    ensure!(
        bed,
        (4..=5).contains(&at_once),
        "4 ranges were downloading at once: the proxy counted {at_once}"
    );
}

#[test]
fn a_connection_cut_in_a_range_is_ridden_out_fetching_only_the_rest() {
    let (bed, proxy) = bed_behind_throttle("ranged-cut");
    let install = bed.path().join("srv/app");
    let revision = large_revision(&install, 5 * MIB, 2);
    let location = bed.upload(BUCKET, "app/cut.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location.clone());
    bed.emulator.add_deployment(deployment.clone());
    let cut_after = 300 * 1024;
    proxy.cut_next_range_after(cut_after);
    start_agent(&bed, &proxy, RANGED_4);
    expect_success(&bed, &deployment);

    let object = ensure_bundle_is_the_object(
        &bed,
        &deployment,
        &location,
        "bundle.tar is the object, byte for byte",
    );
    ensure_eq!(bed, read(&install.join("version.txt")), "version 2\n", "");

    let gets = part_gets(&proxy);
    let cut: Vec<&Served> = gets.iter().filter(|g| g.cut).collect();
    ensure_eq!(bed, cut.len(), 1, "one range was cut: {gets:#?}");
    let cut = cut[0];
    ensure_eq!(
        bed,
        cut.body_bytes,
        cut_after,
        "cut after {cut_after} bytes"
    );
    let resumed_at = cut.range_start().unwrap() + cut_after;
    ensure!(
        bed,
        gets.iter().any(|g| g.range_start() == Some(resumed_at)),
        "the cut range was asked again from byte {resumed_at}, where it stopped: {gets:#?}"
    );
    let served = body_bytes(&gets);
    let part = 2 * MIB as u64;
    ensure!(
        bed,
        served <= object.len() as u64 + part,
        "at most one range more than the object was served: {served} bytes for {}",
        object.len()
    );
    ensure_eq!(
        bed,
        served,
        object.len() as u64,
        "nothing that arrived was fetched again"
    );
    let log = read(&bed.agent_dir().join("log/codedeploy-agent.log"));
    ensure!(
        bed,
        log.contains(&format!("fetching bytes {resumed_at}-")),
        "the agent logged where it resumed: {log}"
    );
}

/// Uploads the revision (version 3) to `bucket`, deploys it with the parts
/// from the 2nd on held at the proxy until the object has been overwritten
/// (version 4); returns the deployment and the first version's location.
fn deploy_while_overwritten(
    bed: &TestBed,
    proxy: &ThrottleProxy,
    install: &Path,
    versioned: bool,
) -> (Deployment, S3Location) {
    let bucket = if versioned {
        BUCKET
    } else {
        "replaced-revisions"
    };
    if !versioned {
        bed.s3.create_bucket(bucket).unwrap();
    }
    let upload = |seed| {
        let bytes = large_revision(install, 9 * MIB, seed)
            .build(BundleType::Tgz)
            .unwrap();
        let object = bed
            .s3
            .put_object(bucket, "app/overwritten.tgz", bytes)
            .unwrap();
        S3Location::of(&object, BundleType::Tgz)
    };
    let location = upload(3);
    let deployment = Deployment::new("App", "App-Group", location.clone());
    bed.emulator.add_deployment(deployment.clone());
    // 2 connections, 2 parts: the 2nd waits at the proxy, before S3, until
    // the object has been overwritten.
    proxy.hold_ranges_from(2);
    start_agent(
        bed,
        proxy,
        &[
            ":bundle_ranged_download_threshold: 1048576",
            ":bundle_download_connections: 2",
        ],
    );
    ensure!(
        bed,
        wait_until(Duration::from_secs(60), || proxy.ranged_gets_seen() >= 2),
        "the agent asked for a 2nd part: {:#?}",
        proxy.served()
    );
    upload(4);
    proxy.release();
    (deployment, location)
}

#[test]
fn an_object_replaced_during_a_ranged_download_fails_the_command_naming_it() {
    let (bed, proxy) = bed_behind_throttle("ranged-replaced");
    let install = bed.path().join("srv/app");
    // Unversioned: the upload replaces the object, only its ETag tells.
    let (deployment, location) = deploy_while_overwritten(&bed, &proxy, &install, false);
    ensure_eq!(bed, location.version, None, "an unversioned bucket");

    let failed = expect_failure_at(&bed, &deployment, "DownloadBundle");
    let diagnostics = failed.diagnostics().cloned().unwrap();
    ensure_eq!(
        bed,
        diagnostics.error_code,
        5,
        "a download failure is code 5"
    );
    for part in [
        "s3://replaced-revisions/app/overwritten.tgz",
        "changed during the download",
    ] {
        ensure!(
            bed,
            diagnostics.message.contains(part),
            "the message says {part:?}: {:?}",
            diagnostics.message
        );
    }
    // The proxy records an answer once written: give its thread a moment.
    let refused = || gets(&proxy).iter().any(|g| g.status == 412);
    ensure!(
        bed,
        wait_until(Duration::from_secs(5), refused),
        "S3 refused a range pinned to the old ETag (If-Match): {:#?}",
        proxy.served()
    );
    ensure!(
        bed,
        !install.exists(),
        "nothing of either version was installed"
    );
    ensure!(
        bed,
        !deployment_dir(&bed, &deployment)
            .join("bundle.tar")
            .exists(),
        "no bundle.tar mixing two objects is left"
    );
}

#[test]
fn an_object_overwritten_in_a_versioned_bucket_deploys_the_version_the_download_started_with() {
    let (bed, proxy) = bed_behind_throttle("ranged-versioned");
    let install = bed.path().join("srv/app");
    bed.s3.create_versioned_bucket(BUCKET).unwrap();
    let (deployment, location) = deploy_while_overwritten(&bed, &proxy, &install, true);
    expect_success(&bed, &deployment);

    ensure_bundle_is_the_object(
        &bed,
        &deployment,
        &location,
        "bundle.tar is the first version, byte for byte",
    );
    ensure_eq!(bed, read(&install.join("version.txt")), "version 3\n", "");
    ensure!(
        bed,
        gets(&proxy)
            .iter()
            .all(|g| g.status == 206 && g.target.contains(location.version.as_deref().unwrap())),
        "every range asked for the first version: {:#?}",
        proxy.served()
    );
}

#[test]
fn a_bundle_below_the_threshold_or_with_one_connection_comes_in_one_get() {
    let cases: &[(&str, &[&str], usize, bool)] = &[
        // The default threshold: a HEAD learns the size, then one GET
        // without a range carries the bundle.
        ("ranged-below", &[], 2 * MIB, true),
        // One connection: no HEAD at all, whatever the size.
        (
            "ranged-one-connection",
            &[
                ":bundle_ranged_download_threshold: 1048576",
                ":bundle_download_connections: 1",
            ],
            3 * MIB,
            false,
        ),
    ];
    for (name, keys, size, head) in cases {
        let (bed, proxy) = bed_behind_throttle(name);
        let install = bed.path().join("srv/app");
        let revision = large_revision(&install, *size, 5);
        let location = bed.upload(BUCKET, "app/small.tgz", &revision, BundleType::Tgz);
        let deployment = Deployment::new("App", "App-Group", location.clone());
        bed.emulator.add_deployment(deployment.clone());
        start_agent(&bed, &proxy, keys);
        expect_success(&bed, &deployment);

        let object = object_bytes(&bed, &location);
        let whole = gets(&proxy);
        ensure_eq!(
            bed,
            whole.len(),
            1,
            "{name}: one GET of the bundle: {whole:#?}"
        );
        ensure_eq!(bed, whole[0].range, None, "{name}: without a Range header");
        ensure_eq!(bed, whole[0].body_bytes, object.len() as u64, "{name}");
        let heads: Vec<Served> = proxy.served().into_iter().filter(Served::is_head).collect();
        ensure_eq!(
            bed,
            heads.len(),
            usize::from(*head),
            "{name}: HEADs: {heads:#?}"
        );
        ensure!(
            bed,
            heads.iter().all(|h| h.body_bytes == 0),
            "{name}: a HEAD carries no body: {heads:#?}"
        );
        ensure_eq!(
            bed,
            read(&install.join("version.txt")),
            "version 5\n",
            "{name}"
        );
    }
}
