//! The health check as typed values, parsed from the command line, and the
//! counting that turns attempts into a verdict. Pure: no network, no clock,
//! no processes; `probe.rs` does the I/O and `mod.rs` the loop.

use std::fmt;
use std::time::Duration;

/// What one attempt probes.
#[derive(Debug, Clone)]
pub enum Probe {
    /// A GET; healthy when the status (and the body, when asked) matches.
    Http {
        url: String,
        expect_status: StatusMatch,
        expect_body: Option<BodyMatch>,
    },
    /// A TCP connection that can be opened.
    Tcp { address: String },
    /// A shell command (`sh -c`) that exits 0.
    Exec { command: String },
}

/// A whole health check.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub probe: Probe,
    /// The time limit of one attempt.
    pub timeout: Duration,
    /// The pause between two attempts.
    pub interval: Duration,
    /// At most this many attempts in all.
    pub max_attempts: u32,
    /// Healthy after this many successful attempts in a row.
    pub successes_needed: u32,
}

/// The command-line values before they are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawHealthCheck {
    pub http: Option<String>,
    pub tcp: Option<String>,
    pub exec: Option<String>,
    pub expect_status: Option<String>,
    pub expect_body: Option<String>,
    pub timeout: String,
    pub interval: String,
    pub retries: u32,
    pub successes: u32,
}

/// A usage error: the check cannot run as written. The text is the sentence
/// printed to the person who typed the command; nothing is behind it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

impl HealthCheck {
    pub fn parse(raw: &RawHealthCheck) -> Result<HealthCheck, UsageError> {
        let probe = match (&raw.http, &raw.tcp, &raw.exec) {
            (Some(url), None, None) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(usage(format!(
                        "--http {url}: the URL must start with http:// or https://"
                    )));
                }
                Probe::Http {
                    url: url.clone(),
                    expect_status: raw
                        .expect_status
                        .as_deref()
                        .map(StatusMatch::parse)
                        .transpose()?
                        .unwrap_or_default(),
                    expect_body: raw
                        .expect_body
                        .as_deref()
                        .map(BodyMatch::parse)
                        .transpose()?,
                }
            }
            (None, Some(address), None) => {
                let valid = address
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !valid {
                    return Err(usage(format!("--tcp {address}: give HOST:PORT")));
                }
                Probe::Tcp {
                    address: address.clone(),
                }
            }
            (None, None, Some(command)) if !command.trim().is_empty() => Probe::Exec {
                command: command.clone(),
            },
            (None, None, Some(_)) => return Err(usage("--exec needs a command")),
            (None, None, None) => {
                return Err(usage(
                    "give one of --http URL, --tcp HOST:PORT or --exec CMD",
                ))
            }
            _ => return Err(usage("give only one of --http, --tcp and --exec")),
        };
        if !matches!(probe, Probe::Http { .. })
            && (raw.expect_status.is_some() || raw.expect_body.is_some())
        {
            return Err(usage(
                "--expect-status and --expect-body apply to --http only",
            ));
        }
        let timeout = parse_duration(&raw.timeout).map_err(|e| usage(format!("--timeout: {e}")))?;
        if timeout.is_zero() {
            return Err(usage("--timeout must be more than 0"));
        }
        let interval =
            parse_duration(&raw.interval).map_err(|e| usage(format!("--interval: {e}")))?;
        if raw.successes == 0 {
            return Err(usage("--successes must be at least 1"));
        }
        if raw.retries < raw.successes {
            return Err(usage(format!(
                "--retries {} allows fewer attempts than the {} successes asked for",
                raw.retries, raw.successes
            )));
        }
        Ok(HealthCheck {
            probe,
            timeout,
            interval,
            max_attempts: raw.retries,
            successes_needed: raw.successes,
        })
    }
}

/// A duration option that does not read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDuration {
    #[error("'{0}' is not a duration such as 500ms, 5s, 2m or 1h")]
    NotANumber(String),
    #[error("'{written}': unknown unit '{unit}'; use ms, s, m or h")]
    UnknownUnit { written: String, unit: String },
    #[error("'{0}' is out of range")]
    OutOfRange(String),
}

/// `500ms`, `5s`, `1.5s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(written: &str) -> Result<Duration, BadDuration> {
    let written = written.trim();
    let split = written
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(written.len());
    let (number, unit) = written.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| BadDuration::NotANumber(written.to_string()))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(BadDuration::UnknownUnit {
                written: written.to_string(),
                unit: other.to_string(),
            })
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| BadDuration::OutOfRange(written.to_string()))
}

/// Which HTTP statuses count as healthy: codes and classes (`2xx`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMatch(Vec<StatusPattern>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusPattern {
    Code(u16),
    /// `2xx`: the hundreds digit.
    Class(u16),
}

impl Default for StatusMatch {
    /// Any 2xx.
    fn default() -> StatusMatch {
        StatusMatch(vec![StatusPattern::Class(2)])
    }
}

impl StatusMatch {
    /// `200`, `200,204`, `2xx`, `2xx,301`.
    pub fn parse(written: &str) -> Result<StatusMatch, UsageError> {
        let patterns = written
            .split(',')
            .map(str::trim)
            .map(|part| {
                let class = part
                    .strip_suffix("xx")
                    .and_then(|d| d.parse::<u16>().ok())
                    .filter(|d| (1..=5).contains(d));
                match (class, part.parse::<u16>()) {
                    (Some(class), _) => Ok(StatusPattern::Class(class)),
                    (None, Ok(code)) if (100..=599).contains(&code) => Ok(StatusPattern::Code(code)),
                    _ => Err(usage(format!(
                        "--expect-status {written}: '{part}' is not an HTTP status (such as 200) or class (such as 2xx)"
                    ))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StatusMatch(patterns))
    }

    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|p| match p {
            StatusPattern::Code(code) => *code == status,
            StatusPattern::Class(class) => status / 100 == *class,
        })
    }
}

impl fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|p| match p {
                StatusPattern::Code(code) => code.to_string(),
                StatusPattern::Class(class) => format!("{class}xx"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// A regular expression the response body must match somewhere.
#[derive(Debug, Clone)]
pub struct BodyMatch {
    written: String,
    regex: regex_lite::Regex,
}

impl BodyMatch {
    pub fn parse(written: &str) -> Result<BodyMatch, UsageError> {
        regex_lite::Regex::new(written)
            .map(|regex| BodyMatch {
                written: written.to_string(),
                regex,
            })
            .map_err(|e| usage(format!("--expect-body {written}: {e}")))
    }

    pub fn matches(&self, body: &str) -> bool {
        self.regex.is_match(body)
    }
}

impl fmt::Display for BodyMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// Where the check stands after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep trying.
    Pending,
    Healthy,
    /// Out of attempts, or too few left to reach the successes needed.
    Unhealthy,
}

/// Counts attempts and the current run of successes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    needed: u32,
    max_attempts: u32,
    attempts: u32,
    streak: u32,
}

impl Tally {
    pub fn new(successes_needed: u32, max_attempts: u32) -> Tally {
        Tally {
            needed: successes_needed.max(1),
            max_attempts,
            attempts: 0,
            streak: 0,
        }
    }

    /// Records one attempt. A failure starts the run of successes again: a
    /// service that flaps is not healthy.
    pub fn record(&mut self, success: bool) -> Verdict {
        self.attempts += 1;
        self.streak = if success { self.streak + 1 } else { 0 };
        let left = self.max_attempts.saturating_sub(self.attempts);
        if self.streak >= self.needed {
            Verdict::Healthy
        } else if left < self.needed - self.streak {
            // Giving up early saves a cut-over from waiting for the impossible.
            Verdict::Unhealthy
        } else {
            Verdict::Pending
        }
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Successful attempts in a row so far.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    pub fn needed(&self) -> u32 {
        self.needed
    }
}

/// How an attempt went, as the attempt line reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    pub success: bool,
    /// What was seen: `HTTP 200`, `connected`, `exit status 0`, `timed out after 5s`, ...
    pub detail: String,
    pub elapsed: Duration,
}

/// `attempt 2/30: HTTP 503 in 4ms: failed: ... (0/3 in a row)`.
pub fn attempt_line(tally: &Tally, max_attempts: u32, report: &AttemptReport) -> String {
    format!(
        "attempt {}/{max_attempts}: {} in {}: {} ({}/{} in a row)",
        tally.attempts(),
        report.detail,
        human(report.elapsed),
        if report.success { "ok" } else { "failed" },
        tally.streak(),
        tally.needed()
    )
}

/// The last line: the verdict and how long it took.
pub fn verdict_line(verdict: Verdict, tally: &Tally, elapsed: Duration) -> String {
    match verdict {
        Verdict::Healthy => format!(
            "healthy: {} successful attempts in a row after {} attempts in {}",
            tally.streak(),
            tally.attempts(),
            human(elapsed)
        ),
        _ => format!(
            "unhealthy: no {} successful attempts in a row within {} attempts ({})",
            tally.needed(),
            tally.attempts(),
            human(elapsed)
        ),
    }
}

/// `12ms`, `1.5s`.
pub fn human(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Result<Duration, &str>)] = &[
            ("5s", Ok(Duration::from_secs(5))),
            ("500ms", Ok(Duration::from_millis(500))),
            ("1.5s", Ok(Duration::from_millis(1500))),
            ("2m", Ok(Duration::from_secs(120))),
            ("1h", Ok(Duration::from_secs(3600))),
            ("10", Ok(Duration::from_secs(10))),
            (" 3s ", Ok(Duration::from_secs(3))),
            ("0", Ok(Duration::ZERO)),
            ("", Err("is not a duration")),
            ("s", Err("is not a duration")),
            ("-1s", Err("is not a duration")),
            ("5d", Err("unknown unit 'd'")),
            ("1e400", Err("unknown unit")),
        ];
        for (written, expected) in cases {
            match (expected, parse_duration(written)) {
                (Ok(expected), Ok(got)) => assert_eq!(got, *expected, "{written:?}"),
                (Err(expected), Err(got)) => {
                    assert!(got.to_string().contains(expected), "{written:?}: {got}")
                }
                (expected, got) => panic!("{written:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn status_matches() {
        let cases: &[(&str, &[u16], &[u16])] = &[
            ("200", &[200], &[201, 500]),
            ("200,204", &[200, 204], &[202]),
            ("2xx", &[200, 204, 299], &[301, 199]),
            ("2xx, 301", &[250, 301], &[302]),
        ];
        for (written, yes, no) in cases {
            let matcher = StatusMatch::parse(written).unwrap();
            for status in *yes {
                assert!(matcher.matches(*status), "{written} should accept {status}");
            }
            for status in *no {
                assert!(
                    !matcher.matches(*status),
                    "{written} should refuse {status}"
                );
            }
        }
        assert!(StatusMatch::default().matches(204));
        assert!(!StatusMatch::default().matches(404));
        for bad in ["", "abc", "99", "600", "6xx", "200,"] {
            assert!(StatusMatch::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            StatusMatch::parse("2xx,301").unwrap().to_string(),
            "2xx,301"
        );
    }

    fn raw() -> RawHealthCheck {
        RawHealthCheck {
            http: Some("http://127.0.0.1:8080/health".into()),
            timeout: "5s".into(),
            interval: "2s".into(),
            retries: 30,
            successes: 3,
            ..RawHealthCheck::default()
        }
    }

    #[test]
    fn arguments() {
        let check = HealthCheck::parse(&raw()).unwrap();
        assert_eq!(check.timeout, Duration::from_secs(5));
        assert_eq!(check.interval, Duration::from_secs(2));
        assert_eq!((check.max_attempts, check.successes_needed), (30, 3));
        type Change = Box<dyn Fn(&mut RawHealthCheck)>;
        let failures: Vec<(Change, &str)> = vec![
            (Box::new(|r| r.http = None), "give one of --http"),
            (
                Box::new(|r| r.tcp = Some("127.0.0.1:80".into())),
                "only one of",
            ),
            (
                Box::new(|r| r.http = Some("127.0.0.1:80".into())),
                "must start with http",
            ),
            (
                Box::new(|r| r.expect_status = Some("ok".into())),
                "not an HTTP status",
            ),
            (
                Box::new(|r| r.expect_body = Some("(".into())),
                "--expect-body",
            ),
            (
                Box::new(|r| r.timeout = "0s".into()),
                "--timeout must be more than 0",
            ),
            (Box::new(|r| r.interval = "soon".into()), "--interval"),
            (Box::new(|r| r.successes = 0), "at least 1"),
            (Box::new(|r| r.retries = 2), "fewer attempts"),
            (
                Box::new(|r| {
                    r.http = None;
                    r.tcp = Some("localhost".into());
                }),
                "HOST:PORT",
            ),
            (
                Box::new(|r| {
                    r.http = None;
                    r.exec = Some("true".into());
                }),
                "apply to --http only",
            ),
        ];
        for (change, expected) in failures {
            let mut changed = raw();
            changed.expect_status = None;
            change(&mut changed);
            if expected == "apply to --http only" {
                changed.expect_status = Some("200".into());
            }
            let error = HealthCheck::parse(&changed).unwrap_err();
            assert!(error.0.contains(expected), "{changed:?}: {error}");
        }
    }

    #[test]
    fn tally_verdicts() {
        use Verdict::*;
        // (successes needed, max attempts, attempts, verdict after each)
        let cases: &[(u32, u32, &[bool], &[Verdict])] = &[
            (1, 3, &[true], &[Healthy]),
            (1, 3, &[false, false, true], &[Pending, Pending, Healthy]),
            (1, 3, &[false, false, false], &[Pending, Pending, Unhealthy]),
            (3, 10, &[true, true, true], &[Pending, Pending, Healthy]),
            // A failure starts the run again.
            (
                2,
                10,
                &[true, false, true, true],
                &[Pending, Pending, Pending, Healthy],
            ),
            // Too few attempts left to reach the run: give up early.
            (3, 4, &[true, false], &[Pending, Unhealthy]),
            (2, 3, &[false, true, true], &[Pending, Pending, Healthy]),
            (2, 3, &[true, true], &[Pending, Healthy]),
            (2, 2, &[false], &[Unhealthy]),
        ];
        for (needed, max, attempts, verdicts) in cases {
            let mut tally = Tally::new(*needed, *max);
            let got: Vec<Verdict> = attempts.iter().map(|ok| tally.record(*ok)).collect();
            assert_eq!(
                &got, verdicts,
                "needed {needed}, max {max}, attempts {attempts:?}"
            );
        }
    }

    #[test]
    fn lines() {
        let mut tally = Tally::new(3, 30);
        tally.record(true);
        let report = AttemptReport {
            success: true,
            detail: "HTTP 200".into(),
            elapsed: Duration::from_millis(12),
        };
        assert_eq!(
            attempt_line(&tally, 30, &report),
            "attempt 1/30: HTTP 200 in 12ms: ok (1/3 in a row)"
        );
        tally.record(true);
        tally.record(true);
        assert_eq!(
            verdict_line(Verdict::Healthy, &tally, Duration::from_millis(4200)),
            "healthy: 3 successful attempts in a row after 3 attempts in 4.2s"
        );
        assert_eq!(
            verdict_line(Verdict::Unhealthy, &tally, Duration::from_millis(4200)),
            "unhealthy: no 3 successful attempts in a row within 3 attempts (4.2s)"
        );
    }
}
