//! The demo: deploys the bundled example revision (`tests/example-revision/`)
//! with a real agent binary, against the Commands emulator and a real S3
//! server, then shows what happened: each command's result, the installed
//! files and the deployment's scripts.log.
//!
//! `cargo run -p codedeploy-e2e --bin demo -- --agent <path to codedeploy-agent>`
//! Exits 0 when the deployment succeeded, 1 when it failed, 2 on bad usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use codedeploy_e2e::emulator::{CommandState, DeploymentStatus};
use codedeploy_e2e::{BundleType, Deployment, Outcome, Revision, TestBed};

const USAGE: &str =
    "usage: demo --agent <path to the codedeploy-agent binary> [--timeout <seconds>]";

struct Args {
    agent: PathBuf,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut agent = None;
    let mut timeout = Duration::from_secs(180);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--agent" => agent = args.next().map(PathBuf::from),
            "--timeout" => {
                let secs = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--timeout needs a number of seconds")?;
                timeout = Duration::from_secs(secs);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let agent = agent.ok_or("--agent is required")?;
    if !agent.is_file() {
        return Err(format!("{} is not a file", agent.display()));
    }
    Ok(Args { agent, timeout })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("demo: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    let mut bed = TestBed::start("demo");
    bed.keep_files();
    println!("demo files: {}", bed.path().display());
    println!("S3 (moto):  {}", bed.s3.endpoint());
    println!("emulator:   {}", bed.emulator.endpoint());

    let install_root = bed.path().join("install");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("example-revision");
    let revision = match Revision::from_dir(&example) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo: cannot read {}: {e}", example.display());
            return ExitCode::from(1);
        }
    };
    let revision = revision
        .without("README.md")
        .map_text(|text| text.replace("@INSTALL_ROOT@", &install_root.to_string_lossy()));
    let location = bed.upload(
        "hello-web-revisions",
        "hello-web/hello-web-1.0.0.tgz",
        &revision,
        BundleType::Tgz,
    );
    println!(
        "revision:   s3://{}/{} (version {}, etag {})",
        location.bucket,
        location.key,
        location.version.as_deref().unwrap_or("-"),
        location.etag.as_deref().unwrap_or("-")
    );
    let deployment = Deployment::new("HelloWeb", "HelloWeb-Demo", location);
    println!(
        "deployment: {} of group {} ({})\n",
        deployment.deployment_id, deployment.group_name, deployment.group_id
    );
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&args.agent.to_string_lossy());

    let outcome = follow(&bed, &deployment, args.timeout);
    println!();
    show_installed_files(&install_root);
    let scripts_log = bed
        .root_dir()
        .join(&deployment.group_id)
        .join(&deployment.deployment_id)
        .join("logs/scripts.log");
    println!("--- {} ---", scripts_log.display());
    match std::fs::read_to_string(&scripts_log) {
        Ok(text) => print!("{text}"),
        Err(e) => println!("(not readable: {e})"),
    }
    println!();
    bed.stop_agent(Duration::from_secs(5));
    let succeeded = outcome.is_succeeded();
    println!("result: {outcome}");
    if !succeeded {
        println!("{}", bed.report());
    }
    println!("demo files kept in {}", bed.path().display());
    if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints each command as it completes; returns how the deployment ended.
fn follow(bed: &TestBed, deployment: &Deployment, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut shown = 0;
    println!(
        "{:<17} {:<10} {:<6} {:<5} message",
        "command", "status", "noop", "code"
    );
    loop {
        let record = bed
            .emulator
            .deployment(&deployment.deployment_id)
            .expect("the deployment was added");
        for command in record.commands.iter().skip(shown) {
            if !matches!(
                command.state,
                CommandState::Succeeded | CommandState::Failed
            ) {
                break;
            }
            let (code, message) = command
                .diagnostics()
                .map(|d| (d.error_code.to_string(), d.message.clone()))
                .unwrap_or_else(|| ("-".to_string(), String::new()));
            println!(
                "{:<17} {:<10} {:<6} {:<5} {}",
                command.command_name,
                format!("{:?}", command.state),
                command
                    .acknowledged_noop()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".to_string()),
                code,
                message
            );
            shown += 1;
        }
        let ended = matches!(
            record.status,
            DeploymentStatus::Succeeded | DeploymentStatus::Failed(_)
        );
        if ended || Instant::now() >= deadline || !bed.agent_running() {
            return bed.wait_for_deployment_end(&deployment.deployment_id, Duration::ZERO);
        }
        bed.emulator.wait_until(Duration::from_millis(500), |e| {
            e.deployment(&deployment.deployment_id)
                .is_some_and(|d| d.commands != record.commands || d.status != record.status)
        });
    }
}

fn show_installed_files(root: &Path) {
    println!("--- installed under {} ---", root.display());
    let mut files = Vec::new();
    collect(root, &mut files);
    if files.is_empty() {
        println!("(nothing)");
    }
    for (path, len) in files {
        println!(
            "{:>8}  {}",
            len,
            path.strip_prefix(root).unwrap_or(&path).display()
        );
    }
    println!();
}

fn collect(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => collect(&path, out),
            Ok(meta) => out.push((path, meta.len())),
            Err(_) => {}
        }
    }
}
