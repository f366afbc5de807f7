//! Issue 19 part 2's figures: a 1 GiB bundle fetched through a proxy that
//! caps each connection at [`RATE`] (as S3 limits one connection), once over
//! one connection and once as ranges over the default connections, in the
//! same run: the speed-up (floor 3×) and the agent's peak RSS during the
//! ranged download (floor 32 MiB); then once more with one connection cut in
//! the middle of a range, and the bytes served beyond the object's size
//! (floor: one range).
//!
//! The proxy answers for the bundle itself, from the cached file, with S3's
//! headers and its `Range`, `If-Match` and `versionId` rules: moto reads a
//! whole object into memory for every ranged GET, which for 1 GiB in 8 MiB
//! ranges would measure moto, not the agent.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codedeploy_e2e::throttle::{LocalObject, Served, ThrottleProxy};
use codedeploy_e2e::{BundleType, Deployment, S3Location};

use crate::bed::{seconds_between, BenchBed, Recorded};
use crate::figures::{mib, Figure, Verdict};
use crate::{large, procfs, Args};

/// Bytes per second per connection.
const RATE: u64 = 16 * 1024 * 1024;
/// The bundle: a few files of incompressible bytes, 1 GiB in all.
const FILES: usize = 4;
const FILE_SIZE: usize = 256 * 1024 * 1024;
/// The part size of a 1 GiB object (the largest part).
const PART: u64 = 8 * 1024 * 1024;
const BUCKET: &str = "bench-ranged";
const KEY: &str = "ranged.tar";

/// The cached 1 GiB tar bundle (installing to `destination`) and its ETag
/// (the MD5 of its bytes, as S3 gives a single-part upload), generated into
/// `cache` when missing.
fn ensure_bundle(cache: &Path, destination: &Path) -> Result<(PathBuf, String), String> {
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    std::fs::create_dir_all(cache).map_err(|e| io(cache, e))?;
    let bundle = cache.join("ranged-1GiB.tar");
    let etag_file = cache.join("ranged-1GiB.etag");
    if let (true, Ok(etag)) = (bundle.is_file(), std::fs::read_to_string(&etag_file)) {
        return Ok((bundle, etag.trim().to_string()));
    }
    let partial = cache.join("ranged-1GiB.tar.partial");
    let file = std::fs::File::create(&partial).map_err(|e| io(&partial, e))?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    let mut append = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes)
    };
    append("appspec.yml", large::appspec(destination).as_bytes()).map_err(|e| io(&partial, e))?;
    let mut rng = fastrand::Rng::with_seed(19);
    let mut payload = vec![0u8; FILE_SIZE];
    for i in 0..FILES {
        rng.fill(&mut payload);
        append(&format!("payload-{i}.bin"), &payload).map_err(|e| io(&partial, e))?;
    }
    drop(payload);
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| io(&partial, e))?;
    let etag = md5_hex(&partial)?;
    std::fs::rename(&partial, &bundle)
        .and_then(|_| std::fs::write(&etag_file, &etag))
        .map_err(|e| io(&bundle, e))?;
    Ok((bundle, etag))
}

fn md5_hex(path: &Path) -> Result<String, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = openssl::hash::Hasher::new(openssl::hash::MessageDigest::md5())
        .map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]).map_err(|e| e.to_string())?;
    }
    let digest = hasher.finish().map_err(|e| e.to_string())?;
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// One deployment of the bundle by a new agent: DownloadBundle's time (as
/// the service saw it), the agent's peak RSS, and the object GETs served.
struct Run {
    download_secs: f64,
    peak_kib: u64,
    gets: Vec<Served>,
    /// The most GETs the proxy was answering at the same time.
    most_at_once: usize,
}

fn run(
    args: &Args,
    bed: &mut BenchBed,
    proxy: &ThrottleProxy,
    location: &S3Location,
    name: &str,
    keys: &[&str],
) -> Result<Run, String> {
    proxy.clear();
    let mut config = bed.agent_config(name, 1);
    config.s3_endpoint_override = proxy.endpoint();
    for key in keys {
        config = config.extra_line(key);
    }
    let (pid, _) = bed.start_agent(&args.agent, &config)?;
    let deployment = Deployment::new("BenchRanged", "BenchRanged-Fleet", location.clone());
    bed.deploy(&deployment, Duration::from_secs(900))?;
    let peak_kib = procfs::hwm_kib(pid);
    let step = Recorded::of(bed, &deployment)?.timeline("DownloadBundle")?;
    let download_secs = seconds_between(step.acknowledged, step.completed)
        .ok_or("the emulator has no DownloadBundle acknowledgement and completion")?;
    bed.stop_agent();
    // 3 GiB per run (bundle.tar, the archive, the installed copy): free it.
    let _ = std::fs::remove_dir_all(&config.dir);
    let gets = proxy.served().into_iter().filter(Served::is_get).collect();
    println!(
        "ranged: {name}: DownloadBundle {download_secs:.2} s, peak RSS {:.2} MiB",
        mib(peak_kib)
    );
    Ok(Run {
        download_secs,
        peak_kib,
        gets,
        most_at_once: proxy.most_concurrent_gets(),
    })
}

pub fn ranged(args: &Args, figures: &mut Vec<Figure>) -> Result<(), String> {
    let cache = args.work_dir.join("ranged");
    let destination = cache.join("install");
    let generating = Instant::now();
    let (bundle, etag) = ensure_bundle(&cache, &destination)?;
    let size = std::fs::metadata(&bundle)
        .map_err(|e| format!("{}: {e}", bundle.display()))?
        .len();
    println!(
        "ranged: {} ({:.1} MiB, ETag {etag}) ready in {:.1} s",
        bundle.display(),
        size as f64 / 1048576.0,
        generating.elapsed().as_secs_f64()
    );
    let mut bed = BenchBed::start(&args.work_dir, Duration::from_millis(500))?;
    let proxy = ThrottleProxy::start(bed.s3.port(), Some(RATE));
    let version = "bench-ranged-1".to_string();
    proxy.serve_locally(LocalObject {
        path: format!("/{BUCKET}/{KEY}"),
        file: bundle.clone(),
        etag: etag.clone(),
        version: version.clone(),
    });
    let location = S3Location {
        bucket: BUCKET.to_string(),
        key: KEY.to_string(),
        bundle_type: BundleType::Tar,
        version: Some(version),
        etag: Some(etag),
    };
    let installed = || -> u64 {
        (0..FILES)
            .filter_map(|i| std::fs::metadata(destination.join(format!("payload-{i}.bin"))).ok())
            .map(|m| m.len())
            .sum()
    };
    let check_installed = |what: &str| -> Result<(), String> {
        let bytes = installed();
        let _ = std::fs::remove_dir_all(&destination);
        if bytes != (FILES * FILE_SIZE) as u64 {
            return Err(format!(
                "{what}: {bytes} bytes installed, expected {}",
                FILES * FILE_SIZE
            ));
        }
        Ok(())
    };

    let single = run(
        args,
        &mut bed,
        &proxy,
        &location,
        "agent-one-connection",
        &[":bundle_download_connections: 1"],
    )?;
    check_installed("one connection")?;
    let ranged = run(args, &mut bed, &proxy, &location, "agent-ranged", &[])?;
    check_installed("ranged")?;
    proxy.cut_next_range_after(PART / 2);
    let cut = run(args, &mut bed, &proxy, &location, "agent-ranged-cut", &[])?;
    check_installed("ranged with a cut")?;

    let speedup = single.download_secs / ranged.download_secs.max(0.001);
    let served = |gets: &[Served]| gets.iter().map(|g| g.body_bytes).sum::<u64>();
    let refetched = served(&cut.gets).saturating_sub(size);
    let cuts = cut.gets.iter().filter(|g| g.cut).count();
    let label = |what: &str| {
        format!(
            "1 GiB tar bundle, {} MiB/s per connection: {what}",
            RATE >> 20
        )
    };
    figures.push(Figure::new(
        label("DownloadBundle over one connection"),
        format!("{:.2} s ({} GET)", single.download_secs, single.gets.len()),
    ));
    figures.push(Figure::new(
        label("DownloadBundle as ranges over 8 connections (defaults)"),
        format!(
            "{:.2} s ({} ranged GETs after a HEAD, {} at most at once)",
            ranged.download_secs,
            ranged.gets.len(),
            ranged.most_at_once
        ),
    ));
    figures.push(
        Figure::new("ranged speed-up, same run", format!("{speedup:.2}×"))
            .target("≥ 3× (issue 19)", Verdict::holds(speedup >= 3.0)),
    );
    figures.push(
        Figure::new(
            "peak RSS (VmHWM) of the agent during the ranged download",
            format!(
                "{:.2} MiB (one connection: {:.2} MiB)",
                mib(ranged.peak_kib),
                mib(single.peak_kib)
            ),
        )
        .target(
            "≤ 32 MiB (floor 1)",
            Verdict::at_most(mib(ranged.peak_kib), 32.0),
        ),
    );
    figures.push(
        Figure::new(
            "one connection cut in a range after 4 MiB: bytes served beyond the object",
            format!(
                "{refetched} bytes ({cuts} cut, {} GETs, DownloadBundle {:.2} s)",
                cut.gets.len(),
                cut.download_secs
            ),
        )
        .target(
            "≤ one range (8 MiB)",
            Verdict::holds(cuts == 1 && refetched <= PART),
        ),
    );
    Ok(())
}
