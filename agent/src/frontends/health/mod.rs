//! `codedeploy-agent health`: waits until a service answers as healthy, for hook
//! scripts that gate a cut-over (ValidateService, AfterAllowTraffic, ...). The
//! check and its verdict are pure (`check.rs`); one attempt's I/O is
//! `probe.rs`; this file is the loop that prints one line per attempt and the
//! verdict.
//!
//! Exit status: 0 healthy, 1 unhealthy once the attempts are used up (or too
//! few are left to reach the successes asked for), 2 usage error.

mod check;
mod probe;

use std::io::Write;

pub use check::{
    attempt_line, parse_duration, verdict_line, AttemptReport, HealthCheck, Probe, RawHealthCheck,
    StatusMatch, Tally, UsageError, Verdict,
};

/// The exit statuses of `codedeploy-agent health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthExit {
    Healthy = 0,
    Unhealthy = 1,
    Usage = 2,
}

/// The command-line arguments of `health`.
#[derive(Debug, Clone, clap::Args)]
#[command(group = clap::ArgGroup::new("probe").required(true).multiple(false).args(["http", "tcp", "exec"]))]
pub struct HealthArgs {
    /// GET this URL; healthy when the status (and body) match
    #[arg(long, value_name = "URL")]
    pub http: Option<String>,
    /// Open a TCP connection to HOST:PORT
    #[arg(long, value_name = "HOST:PORT")]
    pub tcp: Option<String>,
    /// Run CMD with /bin/sh -c; healthy when it exits 0
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// Healthy statuses for --http: codes and classes, e.g. 200 or 200,204 or 2xx [default: 2xx]
    #[arg(long, value_name = "STATUS")]
    pub expect_status: Option<String>,
    /// A regular expression the --http response body must match
    #[arg(long, value_name = "REGEX")]
    pub expect_body: Option<String>,
    /// Time limit of one attempt (500ms, 5s, 2m, 1h)
    #[arg(long, default_value = "5s")]
    pub timeout: String,
    /// Pause between attempts
    #[arg(long, default_value = "2s")]
    pub interval: String,
    /// At most this many attempts in all
    #[arg(long, default_value_t = 30)]
    pub retries: u32,
    /// Healthy after this many successful attempts in a row
    #[arg(long, default_value_t = 1)]
    pub successes: u32,
}

impl HealthArgs {
    pub fn raw(&self) -> RawHealthCheck {
        RawHealthCheck {
            http: self.http.clone(),
            tcp: self.tcp.clone(),
            exec: self.exec.clone(),
            expect_status: self.expect_status.clone(),
            expect_body: self.expect_body.clone(),
            timeout: self.timeout.clone(),
            interval: self.interval.clone(),
            retries: self.retries,
            successes: self.successes,
        }
    }
}

/// Checks the arguments, runs the check and prints its progress to `out`.
pub fn run_cli(args: &HealthArgs, out: &mut dyn Write, err: &mut dyn Write) -> HealthExit {
    let check = match HealthCheck::parse(&args.raw()) {
        Ok(check) => check,
        Err(e) => {
            let _ = writeln!(err, "codedeploy-agent health: {e}");
            return HealthExit::Usage;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(
                err,
                "codedeploy-agent health: cannot start the async runtime: {e}"
            );
            return HealthExit::Usage;
        }
    };
    runtime.block_on(run(&check, out, err))
}

/// Attempts until a verdict, printing a line per attempt and the verdict.
pub async fn run(check: &HealthCheck, out: &mut dyn Write, err: &mut dyn Write) -> HealthExit {
    let prober = match probe::Prober::new(&check.probe, check.timeout) {
        Ok(prober) => prober,
        Err(e) => {
            let _ = writeln!(err, "codedeploy-agent health: {e}");
            return HealthExit::Usage;
        }
    };
    let started = tokio::time::Instant::now();
    let mut tally = Tally::new(check.successes_needed, check.max_attempts);
    loop {
        let report = prober.attempt(&check.probe, check.timeout).await;
        let verdict = tally.record(report.success);
        let _ = writeln!(out, "{}", attempt_line(&tally, check.max_attempts, &report));
        let _ = out.flush();
        match verdict {
            Verdict::Pending => tokio::time::sleep(check.interval).await,
            verdict => {
                let _ = writeln!(out, "{}", verdict_line(verdict, &tally, started.elapsed()));
                return match verdict {
                    Verdict::Healthy => HealthExit::Healthy,
                    _ => HealthExit::Unhealthy,
                };
            }
        }
    }
}
