//! Random kills: deployments back to back, the agent SIGKILLed at a moment
//! drawn uniformly over each deployment (the poll, the spec fetch, any
//! command, the gaps between them), restarted, and after every restart the
//! invariants an operator relies on checked:
//!
//! - the command cut short is reported Failed with code 7, once, and no
//!   command of any deployment is ever reported twice;
//! - every destination file is the whole content of one of the revisions;
//! - nothing is left under the deployment root beyond what retention keeps
//!   (no tracking file, no temporary file, at most `:max_revisions:`
//!   folders), and the next Install leaves no partial file behind;
//! - the next deployment succeeds and leaves exactly its revision installed;
//! - the agent's open files and memory do not grow from restart to restart.
//!
//! Used by `scripts/bench --chaos N` (the release agent, a table of where the
//! kills landed) and by the test suite (a short run of the debug agent).
//! Loopback only, like the rest of the harness.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::emulator::{DeploymentRecord, DeploymentStatus};
use crate::{BundleType, Deployment, Operation, Revision, S3Location, TestBed};

/// The events whose hooks each revision has (a short sleep each).
const HOOKED_EVENTS: [&str; 5] = [
    "ApplicationStop",
    "BeforeInstall",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
];
/// `:max_revisions:` of the soak, so retention is exercised often.
const MAX_REVISIONS: usize = 3;
/// How long the emulator must hear nothing after a kill before the soak
/// reads where the kill landed.
const QUIET: Duration = Duration::from_millis(300);
/// How long a tracking file may outlive its deployment's last Complete
/// (the agent removes it once the answer to that Complete is in).
const TRACKING_GRACE: Duration = Duration::from_secs(5);
/// How long one deployment may take before the soak calls it stuck.
const DEPLOYMENT_DEADLINE: Duration = Duration::from_secs(120);

/// What a soak found.
#[derive(Debug, Default)]
pub struct ChaosReport {
    pub kills: usize,
    /// Where each kill landed: `poll`, `spec fetch`, a command's name,
    /// `between commands`, `after the end`.
    pub by_phase: BTreeMap<String, usize>,
    /// Every broken invariant, with the kill it followed.
    pub violations: Vec<String>,
    /// Open descriptors of the idle agent after the first and the last restart.
    pub fds: (usize, usize),
    /// Resident memory (KiB) of the idle agent after the first and the last restart.
    pub rss_kib: (u64, u64),
    /// Wall time of an undisturbed deployment, which the kill times are drawn over.
    pub deployment: Duration,
    pub elapsed: Duration,
}

/// One revision of the soak: `files` files whose content names the revision.
struct SoakRevision {
    tag: &'static str,
    location: S3Location,
    files: BTreeMap<String, String>,
}

fn soak_revision(
    bed: &TestBed,
    tag: &'static str,
    files: usize,
    destination: &Path,
) -> SoakRevision {
    let mut hooks = String::from("hooks:\n");
    for event in HOOKED_EVENTS {
        hooks.push_str(&format!(
            "  {event}:\n    - location: hooks/pause.sh\n      timeout: 60\n"
        ));
    }
    let appspec = format!(
        "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: {}\n{hooks}",
        destination.display()
    );
    let mut revision = Revision::new()
        .file("appspec.yml", appspec)
        .script("hooks/pause.sh", "#!/bin/sh\nsleep 0.2\n");
    let mut contents = BTreeMap::new();
    for n in 0..files {
        let path = format!("d{:02}/f{n:05}.txt", n % 40);
        // Different lengths per revision: a file cut short cannot pass for
        // the other revision's.
        let body = format!("{tag} {path}\n").repeat(if tag == "A" { 3 } else { 5 });
        revision = revision.file(&format!("site/{path}"), body.clone());
        contents.insert(path, body);
    }
    let location = bed.upload(
        "chaos",
        &format!("app/{tag}.tgz"),
        &revision,
        BundleType::Tgz,
    );
    SoakRevision {
        tag,
        location,
        files: contents,
    }
}

/// Runs `kills` kill-and-restart rounds against `binary` (each followed by an
/// undisturbed deployment); `seed` makes the kill times repeatable.
pub fn soak(
    bed: &TestBed,
    binary: &str,
    kills: usize,
    files: usize,
    seed: u64,
    mut progress: impl FnMut(&str),
) -> ChaosReport {
    let started = Instant::now();
    let destination = bed.path().join("srv/app");
    let revisions = [
        soak_revision(bed, "A", files, &destination),
        soak_revision(bed, "B", files, &destination),
    ];
    let config = bed
        .agent_config()
        .extra_line(&format!(":max_revisions: {MAX_REVISIONS}"));
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut report = ChaosReport::default();
    bed.start_agent_with(binary, &config);

    // An undisturbed deployment: how long one takes, to draw kills over.
    let begun = Instant::now();
    let mut last = Deployment::new("Chaos", "Chaos-Fleet", revisions[0].location.clone());
    if let Err(e) = deploy(bed, &last, &destination, &revisions[0]) {
        report.violations.push(format!("the first deployment: {e}"));
        return report;
    }
    report.deployment = begun.elapsed();

    for round in 1..=kills {
        let revision = &revisions[round % 2];
        let cut = Deployment::next_in_group(&last, revision.location.clone());
        bed.emulator.add_deployment(cut.clone());
        // Uniform over the whole deployment, the wait for its first poll included.
        let delay = report.deployment.mul_f64(1.2).mul_f64(rng.f64());
        std::thread::sleep(delay);
        bed.kill_agent();
        let _ = bed.wait_for_agent_exit(Duration::from_secs(10));
        // A Complete the agent sent just before the kill is still on its way
        // into the emulator: the kill landed after that command, not in it.
        if !bed.emulator.wait_quiet(QUIET, Duration::from_secs(5)) {
            progress(&format!(
                "chaos: kill {round}: the emulator was still busy 5 s after the kill"
            ));
        }
        let phase = phase_of(bed.emulator.deployment(&cut.deployment_id));
        *report.by_phase.entry(phase.clone()).or_default() += 1;
        report.kills += 1;
        let restarted = SystemTime::now();
        bed.start_agent_with(binary, &config);
        let ended = bed
            .emulator
            .wait_for_deployment_end(&cut.deployment_id, DEPLOYMENT_DEADLINE);
        // A kill after the deployment's end leaves nothing to wait for above;
        // the restarted agent has dealt with what its predecessor left on
        // disk once it polls (it takes the tracking files first).
        let polled = polled_since(bed, restarted, DEPLOYMENT_DEADLINE);
        let mut violated = |what: String| {
            report
                .violations
                .push(format!("kill {round} ({phase}, {delay:.2?} in): {what}"))
        };
        if ended.record().is_none() {
            violated(format!("the cut deployment never ended: {ended}"));
        }
        if !polled {
            violated("the restarted agent never polled".to_string());
        }
        let record = bed.emulator.deployment(&cut.deployment_id);
        for problem in reported_once(record.as_ref(), &phase) {
            violated(problem);
        }
        for problem in files_whole(&destination, &revisions) {
            violated(problem);
        }
        for problem in root_tidy(bed, &cut) {
            violated(problem);
        }
        // The next deployment, undisturbed, must succeed and leave exactly its revision.
        let next_revision = &revisions[(round + 1) % 2];
        let next = Deployment::next_in_group(&cut, next_revision.location.clone());
        if let Err(e) = deploy(bed, &next, &destination, next_revision) {
            violated(format!("the next deployment: {e}"));
        }
        let (fds, rss) = idle_footprint(bed);
        if round == 1 {
            report.fds.0 = fds;
            report.rss_kib.0 = rss;
        }
        report.fds.1 = fds;
        report.rss_kib.1 = rss;
        last = next;
        if round % 10 == 0 || round == kills {
            progress(&format!(
                "chaos: {round} of {kills} kills, {} violations, {:.0} s",
                report.violations.len(),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    bed.stop_agent(Duration::from_secs(10));
    report.elapsed = started.elapsed();
    report
}

/// Whether the agent polled at or after `since`, waiting up to `limit`.
fn polled_since(bed: &TestBed, since: SystemTime, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let polled = bed
            .emulator
            .calls_of(Operation::PollHostCommand)
            .iter()
            .any(|call| call.at >= since);
        if polled || Instant::now() >= deadline {
            return polled;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `deployment` undisturbed: it must succeed and leave exactly `revision`.
fn deploy(
    bed: &TestBed,
    deployment: &Deployment,
    destination: &Path,
    revision: &SoakRevision,
) -> Result<(), String> {
    bed.emulator.add_deployment(deployment.clone());
    let outcome = bed
        .emulator
        .wait_for_deployment_end(&deployment.deployment_id, DEPLOYMENT_DEADLINE);
    if !outcome.is_succeeded() {
        return Err(format!(
            "{} did not succeed: {outcome}",
            deployment.deployment_id
        ));
    }
    let installed = relative_files(destination);
    let expected: BTreeSet<String> = revision.files.keys().cloned().collect();
    if installed != expected {
        let extra: Vec<_> = installed.difference(&expected).take(3).collect();
        let missing: Vec<_> = expected.difference(&installed).take(3).collect();
        return Err(format!(
            "revision {} is not exactly installed: extra {extra:?}, missing {missing:?}",
            revision.tag
        ));
    }
    for (path, body) in &revision.files {
        if std::fs::read_to_string(destination.join(path))
            .ok()
            .as_ref()
            != Some(body)
        {
            return Err(format!("{path} is not revision {}'s", revision.tag));
        }
    }
    Ok(())
}

/// Where the kill landed, read from what the emulator heard before it.
fn phase_of(record: Option<DeploymentRecord>) -> String {
    let Some(record) = record else {
        return "poll".into();
    };
    if matches!(
        record.status,
        DeploymentStatus::Succeeded | DeploymentStatus::Failed(_)
    ) {
        return "after the end".into();
    }
    if let Some(running) = record
        .commands
        .iter()
        .find(|c| !c.acknowledgements.is_empty() && c.completions.is_empty())
    {
        return running.command_name.clone();
    }
    if record
        .commands
        .iter()
        .any(|c| c.times_issued > 0 && c.acknowledgements.is_empty())
    {
        return "spec fetch".into();
    }
    if record.commands.iter().any(|c| !c.completions.is_empty()) {
        "between commands".into()
    } else {
        "poll".into()
    }
}

/// The cut command reported Failed with code 7 exactly once, and no command
/// of the deployment reported twice.
fn reported_once(record: Option<&DeploymentRecord>, phase: &str) -> Vec<String> {
    let Some(record) = record else {
        return vec!["the emulator has no record of the deployment".into()];
    };
    let mut problems = Vec::new();
    for command in &record.commands {
        if command.completions.len() > 1 {
            problems.push(format!(
                "{} was reported {} times",
                command.command_name,
                command.completions.len()
            ));
        }
    }
    if let Some(cut) = record.commands.iter().find(|c| c.command_name == phase) {
        let code = cut.diagnostics().map(|d| d.error_code);
        let status = cut.completion().map(|c| c.status.as_str());
        if status != Some("Failed") || code != Some(7) {
            problems.push(format!(
                "the cut {} was reported {status:?} with code {code:?}, not Failed with code 7",
                cut.command_name
            ));
        }
    }
    problems
}

/// Every file under the destination is one revision's whole content.
fn files_whole(destination: &Path, revisions: &[SoakRevision; 2]) -> Vec<String> {
    relative_files(destination)
        .into_iter()
        // A copy cut short stays a hidden partial file, never under the
        // destination's name; the next Install removes it (checked there).
        .filter(|path| !path.ends_with(".codedeploy-partial"))
        .filter_map(|path| {
            let content = std::fs::read_to_string(destination.join(&path)).ok();
            let whole = revisions
                .iter()
                .any(|r| r.files.get(&path) == content.as_ref());
            (!whole).then(|| format!("{path} is no revision's whole content"))
        })
        .take(5)
        .collect()
}

/// No tracking file, no temporary file, and at most
/// `:max_revisions:` deployment folders once the deployment ended.
fn root_tidy(bed: &TestBed, deployment: &Deployment) -> Vec<String> {
    let root = bed.root_dir();
    let mut problems = Vec::new();
    // The agent removes a command's tracking file once the service has
    // answered its Complete, which is also what ends the deployment here: a
    // file that is going away goes within moments, one left stays.
    let tracking_dir = root.join("ongoing-deployment");
    let deadline = Instant::now() + TRACKING_GRACE;
    while !list(&tracking_dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let tracking: Vec<PathBuf> = list(&tracking_dir);
    if !tracking.is_empty() {
        problems.push(format!("tracking files left: {tracking:?}"));
    }
    let folders = list(&root.join(&deployment.group_id));
    // Retention runs at the next DownloadBundle: the cut deployment's own
    // folder may be the one above the limit.
    if folders.len() > MAX_REVISIONS + 1 {
        problems.push(format!("{} deployment folders kept", folders.len()));
    }
    let stray: Vec<PathBuf> = walk(&root)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
        })
        .take(5)
        .collect();
    if !stray.is_empty() {
        problems.push(format!("temporary or partial files left: {stray:?}"));
    }
    problems
}

/// The idle agent's open descriptors and resident KiB.
fn idle_footprint(bed: &TestBed) -> (usize, u64) {
    let Some(pid) = bed.agent_pid() else {
        return (0, 0);
    };
    std::thread::sleep(Duration::from_millis(300));
    let fds = list(Path::new(&format!("/proc/{pid}/fd"))).len();
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    (fds, rss)
}

fn list(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for path in list(&dir) {
            if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

/// Files under `dir`, relative, `/`-separated.
fn relative_files(dir: &Path) -> BTreeSet<String> {
    walk(dir)
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok_and(|m| m.is_file()))
        .filter_map(|p| {
            p.strip_prefix(dir)
                .ok()
                .map(|r| r.to_string_lossy().into_owned())
        })
        .collect()
}

impl ChaosReport {
    /// The table RELIABILITY.md records: kills per phase.
    pub fn table(&self) -> String {
        let mut table = String::from("| where the kill landed | kills |\n|---|---|\n");
        for (phase, n) in &self.by_phase {
            table.push_str(&format!("| {phase} | {n} |\n"));
        }
        table.push_str(&format!("| **all** | **{}** |\n", self.kills));
        table
    }
}
