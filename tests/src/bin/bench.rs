//! The footprint benchmark: runs a real agent binary against the Commands
//! emulator and moto, and reads its resident memory and CPU time from /proc
//! at fixed points: after start-up, across an idle window, after the first
//! deployment and after N deployments of the bundled example revision.
//! Figures go to stdout as a Markdown table (BENCHMARKS.md records them).
//!
//! `bench --agent <path> [--deployments N] [--idle-seconds S] [--wait-between-runs W]`

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

struct Args {
    agent: PathBuf,
    deployments: usize,
    idle: Duration,
    wait_between_runs: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        agent: PathBuf::new(),
        deployments: 50,
        idle: Duration::from_secs(60),
        wait_between_runs: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--agent" => args.agent = PathBuf::from(value()?),
            "--deployments" => {
                args.deployments = value()?
                    .parse()
                    .map_err(|_| "--deployments needs a number")?
            }
            "--idle-seconds" => {
                args.idle = Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|_| "--idle-seconds needs a number")?,
                )
            }
            "--wait-between-runs" => {
                args.wait_between_runs = value()?
                    .parse()
                    .map_err(|_| "--wait-between-runs needs a number")?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !args.agent.is_file() {
        return Err("--agent <path to codedeploy-agent> is required".to_string());
    }
    Ok(args)
}

/// Resident set size in KiB, from /proc/<pid>/status.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of the process (not its children), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let hz = nix_free_clock_ticks();
    ticks as f64 / hz
}

fn nix_free_clock_ticks() -> f64 {
    // getconf is on every Linux host; 100 is the kernel's USER_HZ almost everywhere.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn example_revision(install_root: &Path) -> Result<Revision, String> {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("example-revision");
    Ok(Revision::from_dir(&example)
        .map_err(|e| format!("cannot read {}: {e}", example.display()))?
        .without("README.md")
        .map_text(|text| text.replace("@INSTALL_ROOT@", &install_root.to_string_lossy())))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    let bed = TestBed::start("bench");
    let revision = match example_revision(&bed.path().join("install")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    let location = bed.upload(
        "bench-revisions",
        "hello-web.tgz",
        &revision,
        BundleType::Tgz,
    );
    let mut config = bed.agent_config();
    config.wait_between_runs = args.wait_between_runs;
    config.verbose = false;
    bed.start_agent_with(&args.agent.to_string_lossy(), &config);
    let Some(pid) = bed.agent_pid() else {
        eprintln!("bench: the agent did not start");
        return ExitCode::from(1);
    };
    std::thread::sleep(Duration::from_secs(3));
    let rss_start = rss_kib(pid);

    let cpu_before = cpu_seconds(pid);
    let idle_started = Instant::now();
    std::thread::sleep(args.idle);
    let idle_cpu = cpu_seconds(pid) - cpu_before;
    let idle_elapsed = idle_started.elapsed().as_secs_f64();
    let rss_idle = rss_kib(pid);
    let polls = bed
        .emulator
        .count(codedeploy_e2e::Operation::PollHostCommand);

    let mut previous: Option<Deployment> = None;
    let mut rss_after_first = 0;
    let started = Instant::now();
    for n in 1..=args.deployments {
        let deployment = match &previous {
            None => Deployment::new("HelloWeb", "HelloWeb-Bench", location.clone()),
            Some(prev) => Deployment::next_in_group(prev, location.clone()),
        };
        bed.emulator.add_deployment(deployment.clone());
        let outcome =
            bed.wait_for_deployment_end(&deployment.deployment_id, Duration::from_secs(120));
        if !outcome.is_succeeded() {
            eprintln!(
                "bench: deployment {n} did not succeed: {outcome}\n{}",
                bed.report()
            );
            return ExitCode::from(1);
        }
        if n == 1 {
            rss_after_first = rss_kib(pid);
        }
        previous = Some(deployment);
    }
    let per_deployment = started.elapsed().as_secs_f64() / args.deployments.max(1) as f64;
    let rss_after_all = rss_kib(pid);
    bed.stop_agent(Duration::from_secs(10));

    let binary_size = std::fs::metadata(&args.agent).map(|m| m.len()).unwrap_or(0);
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| binary size ({}) | {:.2} MiB ({} bytes) |",
        args.agent.display(),
        binary_size as f64 / 1048576.0,
        binary_size
    );
    println!(
        "| RSS 3 s after start | {:.2} MiB |",
        rss_start as f64 / 1024.0
    );
    println!(
        "| RSS after {:.0} s idle (wait_between_runs {} s, {} polls) | {:.2} MiB |",
        idle_elapsed,
        args.wait_between_runs,
        polls,
        rss_idle as f64 / 1024.0
    );
    println!(
        "| CPU while idle | {:.3} s over {:.0} s = {:.1} CPU-s per hour |",
        idle_cpu,
        idle_elapsed,
        idle_cpu * 3600.0 / idle_elapsed
    );
    println!(
        "| RSS after the 1st deployment | {:.2} MiB |",
        rss_after_first as f64 / 1024.0
    );
    println!(
        "| RSS after {} deployments | {:.2} MiB (growth {:+.2} MiB since the 1st) |",
        args.deployments,
        rss_after_all as f64 / 1024.0,
        (rss_after_all as f64 - rss_after_first as f64) / 1024.0
    );
    println!(
        "| wall time per deployment (7 commands) | {:.2} s |",
        per_deployment
    );
    ExitCode::SUCCESS
}
