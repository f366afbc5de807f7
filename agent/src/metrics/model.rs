//! The agent's metrics as data (pure: the caller passes the time in), their
//! rendering in Prometheus' text format, and reading a rendered file back so
//! that counters survive a restart. Label sets are bounded: deployment groups
//! of this host, lifecycle event names, error codes 1–7, three kill reasons
//! and four kinds of poll error; never a deployment id.

use std::collections::BTreeMap;
use std::fmt::Write;

/// The kinds of poll error, as the Commands client classifies them.
pub const POLL_ERROR_KINDS: [&str; 4] = ["throttling", "connection", "credentials", "other"];
/// Why the agent kills a hook script.
pub const KILL_REASONS: [&str; 3] = ["timeout", "memory_bound", "shutdown"];

/// How one command ended, as the metrics see it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandEnded<'a> {
    /// The deployment group's name (a label: bounded by the host's groups).
    pub deployment_group: &'a str,
    /// Only to count each deployment once; never a label.
    pub deployment_id: &'a str,
    pub lifecycle_event: &'a str,
    /// How long the command ran, from its acknowledgement to its end.
    pub seconds: f64,
    /// `None` when it succeeded; else the error code (1–7) and, when the
    /// agent killed a hook script, why.
    pub failure: Option<(u8, Option<&'a str>)>,
    /// Seconds since the epoch.
    pub now: f64,
}

/// Everything the metrics file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    version: String,
    config_file: String,
    start_time: f64,
    deployments: BTreeMap<(String, &'static str), u64>,
    last_end_time: BTreeMap<String, f64>,
    last_succeeded: BTreeMap<String, bool>,
    event_seconds: BTreeMap<String, f64>,
    failed_commands: BTreeMap<u8, u64>,
    hooks_killed: BTreeMap<String, u64>,
    poll_errors: BTreeMap<String, u64>,
    throttled_since: Option<f64>,
    /// Each group's deployment last counted, so that one deployment is
    /// counted once (not rendered).
    counted: BTreeMap<String, String>,
}

/// The events after whose success a deployment counts as succeeded on this
/// host: the application validated, or traffic allowed back to it.
const FINISHING_EVENTS: [&str; 2] = ["ValidateService", "AfterAllowTraffic"];

impl Metrics {
    /// A new agent run: its identity and start, and the counters of `previous`
    /// (the file the last run wrote), if any.
    pub fn start(version: &str, config_file: &str, now: f64, previous: Option<&str>) -> Metrics {
        let mut metrics = previous.map(restore).unwrap_or_default();
        metrics.version = version.to_string();
        metrics.config_file = config_file.to_string();
        metrics.start_time = now;
        metrics.throttled_since = None;
        metrics
    }

    /// Records how a command ended.
    pub fn command_ended(&mut self, ended: &CommandEnded<'_>) {
        let group = ended.deployment_group.to_string();
        self.event_seconds
            .insert(ended.lifecycle_event.to_string(), ended.seconds);
        let first_count = self.counted.get(&group).map(String::as_str) != Some(ended.deployment_id);
        let result = match ended.failure {
            Some((code, killed)) => {
                *self.failed_commands.entry(code).or_default() += 1;
                if let Some(reason) = killed {
                    *self.hooks_killed.entry(reason.to_string()).or_default() += 1;
                }
                "failed"
            }
            None if FINISHING_EVENTS.contains(&ended.lifecycle_event) => "succeeded",
            // A deployment that goes on: its end time moves if it was counted.
            None => {
                if !first_count {
                    self.last_end_time.insert(group, ended.now);
                }
                return;
            }
        };
        if first_count {
            *self.deployments.entry((group.clone(), result)).or_default() += 1;
            self.counted
                .insert(group.clone(), ended.deployment_id.to_string());
        }
        self.last_end_time.insert(group.clone(), ended.now);
        self.last_succeeded.insert(group, result == "succeeded");
    }

    /// Records a command that failed before its deployment was known.
    pub fn command_refused(&mut self, code: u8) {
        *self.failed_commands.entry(code).or_default() += 1;
    }

    /// Records a failed poll; `true` when this changed what the file says.
    pub fn poll_failed(&mut self, kind: &str, now: f64) -> bool {
        *self.poll_errors.entry(kind.to_string()).or_default() += 1;
        if kind == "throttling" && self.throttled_since.is_none() {
            self.throttled_since = Some(now);
        }
        true
    }

    /// Records an answered poll; `true` when this changed what the file says
    /// (the end of a throttling spell). An idle agent changes nothing.
    pub fn poll_answered(&mut self) -> bool {
        self.throttled_since.take().is_some()
    }

    /// The file's text, in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "codedeploy_agent_info",
            "gauge",
            "The running agent's version and configuration file (always 1).",
            vec![(
                labels(&[
                    ("version", &self.version),
                    ("config_file", &self.config_file),
                ]),
                "1".into(),
            )],
        );
        family(
            "codedeploy_agent_start_time_seconds",
            "gauge",
            "When the agent started, in seconds since the epoch.",
            vec![(String::new(), number(self.start_time))],
        );
        family(
            "codedeploy_agent_deployments_total",
            "counter",
            "Deployments that ended on this host, by deployment group and result: failed at their first failed command, succeeded when ValidateService or AfterAllowTraffic succeeded (kept across restarts in this file).",
            self.deployments
                .iter()
                .map(|((group, result), n)| {
                    (labels(&[("deployment_group", group), ("result", result)]), n.to_string())
                })
                .collect(),
        );
        family(
            "codedeploy_agent_last_deployment_end_time_seconds",
            "gauge",
            "When the group's last deployment on this host ended, in seconds since the epoch.",
            by_group(&self.last_end_time, |t| number(*t)),
        );
        family(
            "codedeploy_agent_last_deployment_succeeded",
            "gauge",
            "Whether the group's last deployment on this host succeeded (1) or failed (0).",
            by_group(&self.last_succeeded, |ok| u8::from(*ok).to_string()),
        );
        family(
            "codedeploy_agent_lifecycle_event_duration_seconds",
            "gauge",
            "How long the last command of each lifecycle event took on this host.",
            self.event_seconds
                .iter()
                .map(|(event, s)| (labels(&[("lifecycle_event", event)]), number(*s)))
                .collect(),
        );
        family(
            "codedeploy_agent_failed_commands_total",
            "counter",
            "Commands reported Failed to the service, by diagnostic error code (kept across restarts in this file).",
            self.failed_commands
                .iter()
                .map(|(code, n)| (labels(&[("error_code", &code.to_string())]), n.to_string()))
                .collect(),
        );
        family(
            "codedeploy_agent_hook_scripts_killed_total",
            "counter",
            "Hook scripts the agent killed, by reason (kept across restarts in this file).",
            fixed(&KILL_REASONS, "reason", &self.hooks_killed),
        );
        family(
            "codedeploy_agent_poll_errors_total",
            "counter",
            "Polls for commands that failed, by kind (kept across restarts in this file).",
            fixed(&POLL_ERROR_KINDS, "kind", &self.poll_errors),
        );
        family(
            "codedeploy_agent_throttled_since_timestamp_seconds",
            "gauge",
            "Since when the service has been throttling this agent's polls, in seconds since the epoch; 0 when it is not.",
            vec![(String::new(), number(self.throttled_since.unwrap_or(0.0)))],
        );
        out
    }
}

/// `{name="value",...}` with the values escaped as the format requires.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(name, value)| {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{name}=\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn number(value: f64) -> String {
    format!("{value:.3}")
}

fn by_group<T>(map: &BTreeMap<String, T>, value: impl Fn(&T) -> String) -> Vec<(String, String)> {
    map.iter()
        .map(|(group, v)| (labels(&[("deployment_group", group)]), value(v)))
        .collect()
}

/// One sample for each of a bounded set of label values, zero when unseen.
fn fixed(values: &[&str], label: &str, counts: &BTreeMap<String, u64>) -> Vec<(String, String)> {
    values
        .iter()
        .map(|value| {
            let n = counts.get(*value).copied().unwrap_or(0);
            (labels(&[(label, value)]), n.to_string())
        })
        .collect()
}

/// The counters and last-deployment figures of a file this agent wrote;
/// lines it does not know are skipped.
fn restore(text: &str) -> Metrics {
    let mut metrics = Metrics::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        let label = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let count = value as u64;
        match name {
            "codedeploy_agent_deployments_total" => {
                let result = match label("result").as_deref() {
                    Some("succeeded") => "succeeded",
                    Some("failed") => "failed",
                    _ => continue,
                };
                if let Some(group) = label("deployment_group") {
                    metrics.deployments.insert((group, result), count);
                }
            }
            "codedeploy_agent_last_deployment_end_time_seconds" => {
                if let Some(group) = label("deployment_group") {
                    metrics.last_end_time.insert(group, value);
                }
            }
            "codedeploy_agent_last_deployment_succeeded" => {
                if let Some(group) = label("deployment_group") {
                    metrics.last_succeeded.insert(group, value == 1.0);
                }
            }
            "codedeploy_agent_lifecycle_event_duration_seconds" => {
                if let Some(event) = label("lifecycle_event") {
                    metrics.event_seconds.insert(event, value);
                }
            }
            "codedeploy_agent_failed_commands_total" => {
                if let Some(code) = label("error_code").and_then(|c| c.parse().ok()) {
                    metrics.failed_commands.insert(code, count);
                }
            }
            "codedeploy_agent_hook_scripts_killed_total" => {
                if let Some(reason) = label("reason").filter(|r| KILL_REASONS.contains(&r.as_str()))
                {
                    metrics.hooks_killed.insert(reason, count);
                }
            }
            "codedeploy_agent_poll_errors_total" => {
                if let Some(kind) = label("kind").filter(|k| POLL_ERROR_KINDS.contains(&k.as_str()))
                {
                    metrics.poll_errors.insert(kind, count);
                }
            }
            _ => {}
        }
    }
    metrics
}

/// One line of the file: the metric's name, its labels, its value.
type Sample<'a> = (&'a str, Vec<(String, String)>, f64);

/// `name{k="v",...} value` → its parts; `None` for anything else.
fn sample(line: &str) -> Option<Sample<'_>> {
    let (head, value) = line.trim().rsplit_once(' ')?;
    let value: f64 = value
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    let (name, rest) = match head.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name, labels, value))
}

#[cfg(test)]
mod tests;
