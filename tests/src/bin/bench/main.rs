//! The benchmark: runs the real (release) agent against the Commands
//! emulator and moto on loopback, samples /proc, and prints every figure of
//! issue 11's table (and issue 5's footprint list, issue 8's long run and
//! large revision) with its target and PASS/FAIL. Figures are benchmark
//! output, not test assertions; BENCHMARKS.md and RELIABILITY.md record them.
//!
//! ```text
//! bench --agent <path> [--only footprint|large|long-run|many-files|ranged]... [--idle-seconds S]
//!       [--idle-wait-between-runs W] [--deployments N] [--long-run N]
//!       [--work-dir DIR] [--scale-down F] [--perf-record FILE]
//! ```
//!
//! Phases (default: footprint and large; `--long-run N` alone: the long run):
//! - footprint: start-up to first poll, idle RSS of the process tree, an
//!   idle window at `W` s between polls (empty polls answered at once) for
//!   CPU, wake-ups and requests, then N happy deployments of a revision with
//!   7 commands and trivial hooks (wait_between_runs 1 via SIGHUP), RSS after
//!   the 1st, 10th and Nth, and idle RSS again afterwards;
//! - large: the 20,000-file revision, agent DownloadBundle+Install time
//!   against `tar -xzf` + `cp -a` of the same bundle, peak RSS;
//! - long-run: N consecutive deployments, RSS, open descriptors and revision
//!   folders every 20;
//! - many-files (only when asked): revisions of 20,000, 200,000 and
//!   1,000,000 entries of empty files (the last one at the default
//!   `:archive_max_entries:`), deployed, with the time per file and peak RSS
//!   of each, the 200,000 against `tar -xzf` + `cp -a`; and a bundle one
//!   past the cap, which the agent must refuse in bounded time and memory;
//! - ranged (only when asked): a 1 GiB bundle through a proxy capping each
//!   connection, over one connection and as ranges over the default
//!   connections: speed-up, peak RSS, and the bytes fetched again after one
//!   connection is cut in a range (issue 19 part 2);
//! - chaos (`--chaos N` alone): N random SIGKILLs of the agent, each
//!   followed by a restart and the invariants of `codedeploy_e2e::chaos`.

mod bed;
mod figures;
mod large;
mod many;
mod procfs;
mod ranged;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime};

use codedeploy_e2e::emulator::Call;
use codedeploy_e2e::{BundleType, Deployment, Operation, Revision};

use bed::{deployment_seconds, seconds_between, BenchBed, Recorded};
use figures::{mib, per_hour, Figure, Verdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Footprint,
    Large,
    LongRun,
    ManyFiles,
    Ranged,
    Chaos,
}

struct Args {
    agent: PathBuf,
    phases: Vec<Phase>,
    idle: Duration,
    idle_wait: u32,
    deployments: usize,
    long_run: usize,
    work_dir: PathBuf,
    scale_down: usize,
    perf_record: Option<PathBuf>,
    /// `--chaos N`: random kills of the agent (issue 21).
    chaos: usize,
    /// `--seed S`: the chaos run's kill times, to repeat a run.
    seed: Option<u64>,
}

const USAGE: &str =
    "bench --agent <path> [--only footprint|large|long-run|many-files|ranged]... [--idle-seconds S] \
     [--idle-wait-between-runs W] [--deployments N] [--long-run N] [--work-dir DIR] \
     [--scale-down F] [--perf-record FILE] [--chaos N [--seed S]]";

fn parse_args(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut parsed = Args {
        agent: PathBuf::new(),
        phases: Vec::new(),
        idle: Duration::from_secs(600),
        idle_wait: 46,
        deployments: 50,
        long_run: 0,
        work_dir: workspace.join("target/bench-cache"),
        scale_down: 1,
        perf_record: None,
        chaos: 0,
        seed: None,
    };
    let mut it = args;
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        fn number<T: std::str::FromStr>(arg: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{arg} needs a number, got {v:?}"))
        }
        match arg.as_str() {
            "--agent" => parsed.agent = PathBuf::from(value()?),
            "--only" => parsed.phases.push(match value()?.as_str() {
                "footprint" => Phase::Footprint,
                "large" => Phase::Large,
                "long-run" => Phase::LongRun,
                "many-files" => Phase::ManyFiles,
                "ranged" => Phase::Ranged,
                other => {
                    return Err(format!(
                        "--only {other:?}: footprint, large, long-run, many-files or ranged"
                    ))
                }
            }),
            "--idle-seconds" => parsed.idle = Duration::from_secs(number(&arg, value()?)?),
            "--idle-wait-between-runs" => parsed.idle_wait = number(&arg, value()?)?,
            "--deployments" => parsed.deployments = number(&arg, value()?)?,
            "--long-run" => parsed.long_run = number(&arg, value()?)?,
            "--work-dir" => parsed.work_dir = PathBuf::from(value()?),
            "--scale-down" => parsed.scale_down = number(&arg, value()?)?,
            "--perf-record" => parsed.perf_record = Some(PathBuf::from(value()?)),
            "--chaos" => parsed.chaos = number(&arg, value()?)?,
            "--seed" => parsed.seed = Some(number(&arg, value()?)?),
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\nusage: {USAGE}")),
        }
    }
    if !parsed.agent.is_file() {
        return Err(format!(
            "--agent <path to codedeploy-agent> is required\nusage: {USAGE}"
        ));
    }
    if parsed.phases.is_empty() {
        parsed.phases = if parsed.chaos > 0 {
            vec![Phase::Chaos]
        } else if parsed.long_run > 0 {
            vec![Phase::LongRun]
        } else {
            vec![Phase::Footprint, Phase::Large]
        };
    }
    if parsed.phases.contains(&Phase::LongRun) && parsed.long_run == 0 {
        parsed.long_run = 200;
    }
    if parsed.deployments < 10 {
        return Err("--deployments must be at least 10 (RSS after the 10th is a figure)".into());
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    println!("date: {}", chrono::Local::now().format("%Y-%m-%d %H:%M %Z"));
    let mut figures = Vec::new();
    for phase in args.phases.clone() {
        let result = match phase {
            Phase::Footprint => footprint(&args, &mut figures),
            Phase::Large => large_revision(&args, &mut figures),
            Phase::LongRun => long_run(&args, &mut figures),
            Phase::ManyFiles => many::run(&args, &mut figures),
            Phase::Ranged => ranged::ranged(&args, &mut figures),
            Phase::Chaos => chaos(&args, &mut figures),
        };
        if let Err(e) = result {
            eprintln!("bench: {phase:?} phase: {e}");
            return ExitCode::from(1);
        }
    }
    println!("\n{}", figures::render(&figures));
    let failed = figures::failures(&figures);
    println!(
        "{failed} of {} figures with a target missed it.",
        figures
            .iter()
            .filter(|f| f.verdict != Verdict::Info)
            .count()
    );
    ExitCode::SUCCESS
}

/// A revision with a few files and one trivial hook (`exit 0`) for each of
/// the five hook events of an in-place deployment.
fn trivial_revision(install_dir: &Path) -> Revision {
    let hooks: String = [
        "ApplicationStop",
        "BeforeInstall",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ]
    .iter()
    .map(|event| format!("  {event}:\n    - location: hooks/ok.sh\n      timeout: 30\n"))
    .collect();
    Revision::new()
        .file(
            "appspec.yml",
            format!(
                "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {}\nhooks:\n{hooks}",
                install_dir.display()
            ),
        )
        .file("app/index.html", "<h1>bench</h1>\n")
        .file("app/config/app.env", "MODE=bench\n")
        .script("app/bin/run", "#!/bin/sh\necho running\n")
        .script("hooks/ok.sh", "#!/bin/sh\nexit 0\n")
}

fn poll_calls_between(calls: &[Call], from: SystemTime, to: SystemTime) -> (usize, usize) {
    let in_window: Vec<&Call> = calls
        .iter()
        .filter(|c| c.at >= from && c.at <= to)
        .collect();
    let polls = in_window
        .iter()
        .filter(|c| c.operation == Some(Operation::PollHostCommand))
        .count();
    (in_window.len(), polls)
}

/// Seconds from the agent's spawn to the arrival of its first poll.
pub(crate) fn startup_to_first_poll(bed: &BenchBed, spawned_at: SystemTime) -> Result<f64, String> {
    if !bed.emulator.wait_until(Duration::from_secs(30), |e| {
        e.count(Operation::PollHostCommand) > 0
    }) {
        return Err("the agent did not poll within 30 s of starting".into());
    }
    let first = bed.emulator.calls_of(Operation::PollHostCommand)[0].at;
    seconds_between(Some(spawned_at), Some(first))
        .ok_or_else(|| "the first poll is dated before the agent started".to_string())
}

fn footprint(args: &Args, figures: &mut Vec<Figure>) -> Result<(), String> {
    let size = std::fs::metadata(&args.agent)
        .map_err(|e| format!("{}: {e}", args.agent.display()))?
        .len();
    figures.push(
        Figure::new(
            "stripped release binary",
            format!("{:.2} MB ({size} bytes)", size as f64 / 1e6),
        )
        .target("≤ 12 MB", Verdict::at_most(size as f64, 12e6)),
    );

    let mut bed = BenchBed::start(&args.work_dir, Duration::ZERO)?;
    let revision = trivial_revision(&bed.path().join("install"));
    let bytes = revision
        .build(BundleType::Tgz)
        .map_err(|e| format!("cannot build the revision: {e}"))?;
    let location = bed.upload("bench-revisions", "trivial.tgz", bytes, BundleType::Tgz)?;
    let mut config = bed.agent_config("agent", args.idle_wait);
    let (pid, spawned_at) = bed.start_agent(&args.agent, &config)?;
    let startup = startup_to_first_poll(&bed, spawned_at)?;
    figures.push(Figure::new(
        "start-up to first poll",
        format!("{:.0} ms", startup * 1000.0),
    ));

    std::thread::sleep(Duration::from_secs(3));
    let start_rss = procfs::tree_rss(pid);
    figures.push(
        Figure::new(
            "idle RSS, whole process tree, 3 s after start",
            format!(
                "{:.2} MiB ({} process{})",
                mib(start_rss.kib),
                start_rss.processes,
                if start_rss.processes == 1 { "" } else { "es" }
            ),
        )
        .target("≤ 10 MiB", Verdict::at_most(mib(start_rss.kib), 10.0)),
    );

    println!(
        "footprint: idle window of {} s, wait_between_runs {} s, empty polls answered at once",
        args.idle.as_secs(),
        args.idle_wait
    );
    let before = procfs::sample_threads(pid);
    let window_from = SystemTime::now();
    let window_started = Instant::now();
    std::thread::sleep(args.idle);
    let after = procfs::sample_threads(pid);
    let window_to = SystemTime::now();
    let window = window_started.elapsed().as_secs_f64();
    let idle = procfs::delta(&before, &after);
    let (requests, polls) = poll_calls_between(&bed.emulator.calls(), window_from, window_to);
    let hz = procfs::clock_ticks_per_second() as f64;
    let cpu_s = idle.cpu_ns as f64 / 1e9;
    let cpu_per_hour = per_hour(cpu_s, window);
    let tick_cpu_per_hour = per_hour(idle.cpu_ticks as f64 / hz, window);
    let threads_note = if idle.threads_gone > 0 {
        format!(
            "; {} thread(s) ended in the window, the tick count ({tick_cpu_per_hour:.3} CPU-s/h) includes them",
            idle.threads_gone
        )
    } else {
        String::new()
    };
    let polls_per_hour = per_hour(polls as f64, window);
    figures.push(
        Figure::new(
            format!(
                "idle CPU at {polls_per_hour:.0} polls per hour (wait_between_runs {} s)",
                args.idle_wait
            ),
            format!(
                "{cpu_per_hour:.3} CPU-s per hour ({cpu_s:.4} s over a {window:.0} s window, {polls} polls, from schedstat{threads_note})"
            ),
        )
        .target(
            "≤ 0.25 CPU-s per hour",
            Verdict::at_most(cpu_per_hour.max(if idle.threads_gone > 0 { tick_cpu_per_hour } else { 0.0 }), 0.25),
        ),
    );
    figures.push(Figure::new(
        "wake-ups per idle minute",
        format!(
            "{:.1} (context switches of all threads: {} over {window:.0} s)",
            idle.switches as f64 * 60.0 / window,
            idle.switches
        ),
    ));
    figures.push(Figure::new(
        "requests per idle hour",
        format!(
            "{:.0} ({requests} requests, {polls} of them polls, in {window:.0} s)",
            per_hour(requests as f64, window)
        ),
    ));

    // Deployments, one second between polls (the agent asks again at once
    // after a command, so only the first command waits for a poll).
    config.wait_between_runs = 1;
    bed.reload_agent(&config)?;
    let mut previous: Option<Deployment> = None;
    let mut seconds = Vec::new();
    let mut rss = Vec::new();
    for n in 1..=args.deployments {
        let deployment = match &previous {
            None => Deployment::new("BenchApp", "BenchApp-Fleet", location.clone()),
            Some(prev) => Deployment::next_in_group(prev, location.clone()),
        };
        let queued_at = SystemTime::now();
        bed.deploy(&deployment, Duration::from_secs(120))
            .map_err(|e| format!("deployment {n}: {e}"))?;
        let record = bed
            .emulator
            .deployment(&deployment.deployment_id)
            .ok_or("the emulator lost a deployment")?;
        if let Some(s) = deployment_seconds(&bed.emulator.calls(), &record, queued_at) {
            seconds.push(s);
        }
        // The service has the last Complete; the agent turns idle (and hands
        // back what the deployment used) just after its answer arrives.
        std::thread::sleep(Duration::from_millis(300));
        rss.push(procfs::tree_rss(pid).kib);
        previous = Some(deployment);
    }
    let median = figures::median(&seconds).unwrap_or(f64::NAN);
    figures.push(
        Figure::new(
            "happy in-place deployment, 7 commands, trivial hooks",
            format!(
                "{median:.3} s median of {} (p90 {:.3} s, min {:.3} s; first command handed out → last completed, emulator clock)",
                seconds.len(),
                figures::percentile(&seconds, 90.0).unwrap_or(f64::NAN),
                seconds.iter().copied().fold(f64::INFINITY, f64::min)
            ),
        )
        .target("≤ 0.5 s", Verdict::at_most(median, 0.5)),
    );
    let (first, tenth, last) = (rss[0], rss[9], rss[rss.len() - 1]);
    figures.push(Figure::new(
        "RSS after the 1st deployment (process tree)",
        format!("{:.2} MiB", mib(first)),
    ));
    figures.push(
        Figure::new(
            "RSS after 10 happy deployments",
            format!(
                "{:.2} MiB ({:+.2} MiB since the 1st)",
                mib(tenth),
                mib(tenth) - mib(first)
            ),
        )
        .target(
            "within 1 MiB of the 1st",
            Verdict::at_most((mib(tenth) - mib(first)).abs(), 1.0),
        ),
    );
    figures.push(
        Figure::new(
            format!("RSS after {} deployments", args.deployments),
            format!(
                "{:.2} MiB ({:+.2} MiB since the 1st)",
                mib(last),
                mib(last) - mib(first)
            ),
        )
        .target(
            "within 2 MiB of the 1st (issue 5)",
            Verdict::at_most((mib(last) - mib(first)).abs(), 2.0),
        ),
    );

    config.wait_between_runs = args.idle_wait;
    bed.reload_agent(&config)?;
    // Longer than the blocking pool's 10 s keep-alive: idle again.
    std::thread::sleep(Duration::from_secs(15));
    let idle_after = procfs::tree_rss(pid);
    figures.push(
        Figure::new(
            format!(
                "idle RSS, whole process tree, after {} deployments",
                args.deployments
            ),
            format!(
                "{:.2} MiB ({} process{}, 15 s after the last deployment; peak of the agent {:.2} MiB)",
                mib(idle_after.kib),
                idle_after.processes,
                if idle_after.processes == 1 { "" } else { "es" },
                mib(procfs::hwm_kib(pid))
            ),
        )
        .target("≤ 10 MiB", Verdict::at_most(mib(idle_after.kib), 10.0)),
    );
    bed.stop_agent();
    Ok(())
}

/// Starts `perf record` on `pid`; stopped with SIGINT by [`stop_perf`].
fn start_perf(pid: u32, out: &Path) -> Result<std::process::Child, String> {
    Command::new("perf")
        .args(["record", "-g", "-F", "499", "-p", &pid.to_string(), "-o"])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start perf record (is perf installed?): {e}"))
}

fn stop_perf(mut perf: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status();
    let _ = perf.wait();
}

fn large_revision(args: &Args, figures: &mut Vec<Figure>) -> Result<(), String> {
    let shape = large::ISSUE_11.scaled_down(args.scale_down);
    let cache = args.work_dir.join("large");
    // Each timed step on a new file system when the machine allows it (the
    // destination, the agent's deployment root and the baseline's trees all
    // live there), else in the cache folder with a settle after deletes.
    let steps = large::StepFs::new(&cache, None);
    let (fresh_fs, work) = (steps.fresh, steps.work.clone());
    let fresh = || steps.mount();
    println!(
        "large revision: {}",
        if fresh_fs {
            "each timed step on a new ext4 file system (loop image on the same disk)"
        } else {
            "not root or no mkfs.ext4: timed steps share the cache's file system, 40 s settle after deletes"
        }
    );
    let destination = work.join("install");
    let generating = Instant::now();
    let (bundle, generated) = large::ensure_bundle(&cache, &shape, &destination)?;
    let bundle_size = std::fs::metadata(&bundle)
        .map_err(|e| format!("{}: {e}", bundle.display()))?
        .len();
    println!(
        "large revision: {} ({} files, {:.1} MiB unpacked, {:.1} MiB tgz){}",
        bundle.display(),
        shape.files(),
        shape.total_bytes() as f64 / 1048576.0,
        bundle_size as f64 / 1048576.0,
        if generated {
            format!(", generated in {:.1} s", generating.elapsed().as_secs_f64())
        } else {
            ", from the cache".to_string()
        }
    );
    // The bed lives next to the cache: the agent's deployment root, the
    // destination and the baseline's directories are on the same disk.
    let mut bed = BenchBed::start(&args.work_dir, Duration::from_millis(500))?;
    let baseline_dir = if fresh_fs {
        work.clone()
    } else {
        bed.path().to_path_buf()
    };
    let timed_baseline = || -> Result<large::Baseline, String> {
        let _fs = fresh()?;
        large::baseline(&bundle, &baseline_dir, !fresh_fs)
    };
    let first_baseline = timed_baseline()?;
    let bytes = std::fs::read(&bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    let uploading = Instant::now();
    let location = bed.upload("bench-large", "large.tgz", bytes, BundleType::Tgz)?;
    println!(
        "large revision: uploaded to moto in {:.1} s",
        uploading.elapsed().as_secs_f64()
    );

    let download_floor = curl_get_seconds(&bed, &location);
    let agent_fs = fresh()?;
    let mut config = bed.agent_config("agent-large", 1);
    if fresh_fs {
        config.root_dir = work.join("deployment-root");
    }
    let (pid, spawned_at) = bed.start_agent(&args.agent, &config)?;
    startup_to_first_poll(&bed, spawned_at)?;
    if !fresh_fs {
        let _ = std::fs::remove_dir_all(&destination);
        large::sync();
        large::settle_after_delete();
    }
    let perf = match &args.perf_record {
        Some(out) => Some(start_perf(pid, out)?),
        None => None,
    };
    let deployment = Deployment::new("BenchLarge", "BenchLarge-Fleet", location.clone());
    let deployed = bed.deploy(&deployment, Duration::from_secs(900));
    if let Some(perf) = perf {
        stop_perf(perf);
    }
    deployed?;
    let peak = procfs::hwm_kib(pid);
    let recorded = Recorded::of(&bed, &deployment)?;
    let (download, install) = (
        recorded.timeline("DownloadBundle")?,
        recorded.timeline("Install")?,
    );
    let agent_secs = seconds_between(download.acknowledged, install.completed).ok_or(
        "the emulator has no DownloadBundle acknowledgement before the Install completion",
    )?;
    let download_secs = seconds_between(download.acknowledged, download.completed).unwrap_or(0.0);
    let install_secs = seconds_between(install.acknowledged, install.completed).unwrap_or(0.0);
    let (files, installed_bytes) = large::count_files(&destination);
    // The agent's own account of its Install (cleanup, plan, apply).
    if let Ok(log) = std::fs::read_to_string(config.log_dir.join("codedeploy-agent.log")) {
        for line in log.lines().filter(|l| l.contains("planned in")) {
            println!("large revision: agent log: {line}");
        }
    }
    // 2.1's RESTART mode against a redeploy of the same revision that
    // downloads it: DownloadBundle's time, acknowledged to completed.
    let mut download_bundle_secs = |redeploy: &Deployment| -> Result<f64, String> {
        bed.deploy(redeploy, Duration::from_secs(900))?;
        let step = Recorded::of(&bed, redeploy)?.timeline("DownloadBundle")?;
        Ok(seconds_between(step.acknowledged, step.completed).unwrap_or(0.0))
    };
    let downloaded = download_bundle_secs(&Deployment::next_in_group(&deployment, location))?;
    let reused = download_bundle_secs(&Deployment::restart_of(&deployment))?;
    bed.stop_agent();
    let _ = std::fs::remove_dir_all(&destination);
    drop(agent_fs);
    let second_baseline = timed_baseline()?;
    let baseline = (first_baseline.total() + second_baseline.total()) / 2.0;
    let ratio = agent_secs / baseline;
    println!(
        "large revision: installed {files} files ({:.1} MiB); baseline tar -xzf {:.2} s + cp -a {:.2} s before the agent, {:.2} s + {:.2} s after",
        installed_bytes as f64 / 1048576.0,
        first_baseline.tar_secs,
        first_baseline.cp_secs,
        second_baseline.tar_secs,
        second_baseline.cp_secs
    );
    if files != shape.files() + 1 {
        return Err(format!(
            "the agent installed {files} files, expected {} (the revision and its appspec)",
            shape.files() + 1
        ));
    }
    let label = format!(
        "{}-file revision ({:.1} MiB tgz), DownloadBundle acknowledged → Install completed",
        shape.files(),
        bundle_size as f64 / 1048576.0
    );
    let value = format!(
        "{agent_secs:.2} s = {ratio:.2}× tar -xzf + cp -a ({baseline:.2} s, mean of 2); DownloadBundle {download_secs:.2} s, Install {install_secs:.2} s"
    );
    figures.push(
        Figure::new(label.clone(), value).target("≤ 0.8× (issue 11)", Verdict::at_most(ratio, 0.8)),
    );
    if let Some(floor) = download_floor {
        figures.push(Figure::new(
            "the same bundle fetched from moto by curl (download floor)",
            format!("{floor:.2} s (DownloadBundle took {download_secs:.2} s)"),
        ));
    }
    figures.push(Figure::new(
        "redeploying that revision: DownloadBundle with archive reuse (2.1's RESTART mode) vs with a download",
        format!(
            "{reused:.2} s vs {downloaded:.2} s ({:.1}× faster)",
            downloaded / reused.max(0.001)
        ),
    ));
    figures.push(
        Figure::new("same, against issue 8", format!("{ratio:.2}×"))
            .target("≤ 1.5× (issue 8)", Verdict::at_most(ratio, 1.5)),
    );
    figures.push(
        Figure::new(
            "peak RSS (VmHWM) of the agent on that revision",
            format!("{:.2} MiB", mib(peak)),
        )
        .target("≤ 32 MiB (issue 11)", Verdict::at_most(mib(peak), 32.0)),
    );
    figures.push(
        Figure::new("same, against issue 8", format!("{:.2} MiB", mib(peak)))
            .target("≤ 48 MiB (issue 8)", Verdict::at_most(mib(peak), 48.0)),
    );
    Ok(())
}

/// Files in each of the chaos run's two revisions ("a few thousand").
const CHAOS_FILES: usize = 3000;

/// Issue 21's random kills: `--chaos N` kill-and-restart rounds of the agent,
/// each followed by an undisturbed deployment, every invariant checked.
fn chaos(args: &Args, figures: &mut Vec<Figure>) -> Result<(), String> {
    let bed = codedeploy_e2e::TestBed::start("bench-chaos");
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    println!(
        "chaos: {} random kills, revisions of {CHAOS_FILES} files and 5 hooks, seed {seed} (--seed {seed} repeats the kill times)",
        args.chaos
    );
    let agent = args.agent.to_string_lossy().into_owned();
    let report = codedeploy_e2e::chaos::soak(&bed, &agent, args.chaos, CHAOS_FILES, seed, |line| {
        println!("{line}")
    });
    println!(
        "chaos: an undisturbed deployment took {:.2} s; the run took {:.0} s\n\n{}",
        report.deployment.as_secs_f64(),
        report.elapsed.as_secs_f64(),
        report.table()
    );
    for violation in &report.violations {
        println!("chaos: violation: {violation}");
    }
    let broken = report.violations.len();
    figures.push(
        Figure::new(
            format!("invariants broken over {} random kills", report.kills),
            broken.to_string(),
        )
        .target("0 (issue 21)", Verdict::at_most(broken as f64, 0.0)),
    );
    let (first, last) = report.fds;
    figures.push(
        Figure::new(
            "open descriptors of the idle agent, after the first and the last restart",
            format!("{first} → {last}"),
        )
        .target(
            "no growth (± an idle connection)",
            Verdict::at_most(last as f64, first as f64 + 2.0),
        ),
    );
    let (first, last) = report.rss_kib;
    figures.push(
        Figure::new(
            "RSS of the idle agent, after the first and the last restart",
            format!(
                "{:.2} → {:.2} MiB",
                first as f64 / 1024.0,
                last as f64 / 1024.0
            ),
        )
        .target(
            "within 1 MiB",
            Verdict::at_most((last as f64 - first as f64) / 1024.0, 1.0),
        ),
    );
    Ok(())
}

/// How long a plain `curl` GET of the bundle from moto takes: what no
/// agent can beat, since moto serves the body at its own pace.
fn curl_get_seconds(bed: &BenchBed, location: &codedeploy_e2e::S3Location) -> Option<f64> {
    let mut url = format!("{}/{}/{}", bed.s3.endpoint(), location.bucket, location.key);
    if let Some(version) = &location.version {
        url.push_str(&format!("?versionId={version}"));
    }
    let output = Command::new("curl")
        .args([
            "-fsS",
            "--noproxy",
            "*",
            "-o",
            "/dev/null",
            "-w",
            "%{time_total}",
        ])
        .arg("--aws-sigv4")
        .arg(format!("aws:amz:{}:s3", codedeploy_e2e::s3::S3_REGION))
        .arg("--user")
        .arg(format!(
            "{}:{}",
            codedeploy_e2e::s3::S3_ACCESS_KEY_ID,
            codedeploy_e2e::s3::S3_SECRET_ACCESS_KEY
        ))
        .arg(&url)
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "bench: curl {url} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        return None;
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// Deployment folders of one group in the deployment root.
fn revision_folders(root: &Path, group_id: &str) -> usize {
    std::fs::read_dir(root.join(group_id))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .count()
        })
        .unwrap_or(0)
}

fn long_run(args: &Args, figures: &mut Vec<Figure>) -> Result<(), String> {
    const MAX_REVISIONS: usize = 5;
    let mut bed = BenchBed::start(&args.work_dir, Duration::from_millis(500))?;
    let revision = trivial_revision(&bed.path().join("install"));
    let bytes = revision
        .build(BundleType::Tgz)
        .map_err(|e| format!("cannot build the revision: {e}"))?;
    let location = bed.upload("bench-revisions", "trivial.tgz", bytes, BundleType::Tgz)?;
    let config = bed
        .agent_config("agent-long", 1)
        .extra_line(&format!(":max_revisions: {MAX_REVISIONS}"));
    let (pid, _) = bed.start_agent(&args.agent, &config)?;
    println!(
        "long run: {} deployments, one agent (pid {pid}), :max_revisions: {MAX_REVISIONS}",
        args.long_run
    );
    println!("| after | RSS (agent) | open fds | revision folders | median s per deployment since last row |");
    println!("|---|---|---|---|---|");
    let started = Instant::now();
    let mut previous: Option<Deployment> = None;
    let (mut rss, mut fds, mut folders) = (Vec::new(), Vec::new(), Vec::new());
    let mut seconds = Vec::new();
    let mut all_seconds = Vec::new();
    for n in 1..=args.long_run {
        let deployment = match &previous {
            None => Deployment::new("BenchLong", "BenchLong-Fleet", location.clone()),
            Some(prev) => Deployment::next_in_group(prev, location.clone()),
        };
        let queued_at = SystemTime::now();
        bed.deploy(&deployment, Duration::from_secs(120))
            .map_err(|e| format!("deployment {n} of {}: {e}", args.long_run))?;
        if let Some(record) = bed.emulator.deployment(&deployment.deployment_id) {
            if let Some(s) = deployment_seconds(&bed.emulator.calls(), &record, queued_at) {
                seconds.push(s);
                all_seconds.push(s);
            }
        }
        if n % 20 == 0 || n == args.long_run {
            let (r, f, d) = (
                procfs::rss_kib(pid),
                procfs::fd_count(pid),
                revision_folders(&config.root_dir, &deployment.group_id),
            );
            println!(
                "| {n} | {:.2} MiB | {f} | {d} | {:.3} |",
                mib(r),
                figures::median(&seconds).unwrap_or(f64::NAN)
            );
            seconds.clear();
            rss.push(r);
            fds.push(f);
            folders.push(d);
        }
        previous = Some(deployment);
    }
    let elapsed = started.elapsed().as_secs_f64();
    bed.stop_agent();
    figures.push(
        Figure::new(
            format!("long run: {} consecutive deployments", args.long_run),
            format!(
                "{} succeeded in {elapsed:.0} s (median {:.3} s each)",
                args.long_run,
                figures::median(&all_seconds).unwrap_or(f64::NAN)
            ),
        )
        .target("all succeed", Verdict::Pass),
    );
    let spread = figures::spread(&rss);
    figures.push(
        Figure::new(
            "long run: RSS every 20 deployments",
            format!(
                "{:.2} … {:.2} MiB (spread {:.2} MiB)",
                mib(*rss.iter().min().unwrap_or(&0)),
                mib(*rss.iter().max().unwrap_or(&0)),
                mib(spread)
            ),
        )
        .target("flat within 2 MiB", Verdict::at_most(mib(spread), 2.0)),
    );
    let (fd_first, fd_last) = (fds[0], fds[fds.len() - 1]);
    figures.push(
        Figure::new(
            "long run: open file descriptors",
            format!(
                "{fd_first} after 20, {fd_last} after {}, max {}",
                args.long_run,
                fds.iter().max().unwrap_or(&0)
            ),
        )
        .target(
            "no growth",
            Verdict::holds(fds.iter().all(|f| *f <= fd_first)),
        ),
    );
    let max_folders = folders.iter().copied().max().unwrap_or(0);
    figures.push(
        Figure::new(
            "long run: revision folders of the group",
            format!(
                "at most {max_folders} (after the last: {})",
                folders[folders.len() - 1]
            ),
        )
        .target(
            format!("≤ max_revisions ({MAX_REVISIONS})"),
            Verdict::at_most(max_folders as f64, MAX_REVISIONS as f64),
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, String> {
        let agent = std::env::current_exe().unwrap();
        let mut args = vec!["--agent".to_string(), agent.display().to_string()];
        args.extend(line.split_whitespace().map(str::to_string));
        parse_args(args.into_iter())
    }

    #[test]
    fn phases_default_to_issue_11_and_long_run_alone_runs_only_the_long_run() {
        let cases: &[(&str, &[Phase], usize)] = &[
            ("", &[Phase::Footprint, Phase::Large], 0),
            ("--long-run 200", &[Phase::LongRun], 200),
            ("--only long-run", &[Phase::LongRun], 200),
            ("--only ranged", &[Phase::Ranged], 0),
            (
                "--only large --only footprint",
                &[Phase::Large, Phase::Footprint],
                0,
            ),
        ];
        for (line, phases, long_run) in cases {
            let args = parse(line).unwrap();
            assert_eq!(&args.phases, phases, "{line:?}");
            assert_eq!(args.long_run, *long_run, "{line:?}");
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        let cases: &[(&str, &str)] = &[
            (
                "--only everything",
                "footprint, large, long-run, many-files or ranged",
            ),
            ("--idle-seconds soon", "--idle-seconds needs a number"),
            ("--deployments 5", "at least 10"),
            ("--frobnicate", "unknown argument"),
            ("--deployments", "needs a value"),
        ];
        for (line, message) in cases {
            let error = parse(line).err().unwrap_or_default();
            assert!(error.contains(message), "{line:?}: {error}");
        }
    }
}
