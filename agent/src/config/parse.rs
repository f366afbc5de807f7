//! Reads codedeployagent.yml: YAML whose keys are Ruby symbols (`:key: value`),
//! plain `key:` accepted too. Pure: text in, typed config and warnings out.
//! Unknown and retired keys are warnings (operators carry keys between versions);
//! a known key with a value of the wrong type is an error naming file, key and line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_norway::Value;

use super::model::{
    AgentConfig, ConfigWarning, SpecVerification, MAX_CONCURRENT_COMMANDS, MAX_KILL_WAIT,
    MAX_POLL_JITTER_PERCENT,
};
use super::proxy::ProxyUri;
use super::ConfigError;

mod bounds;
mod download;
mod hardening;

/// Keys the official agents know that this agent accepts and does not use
/// (`instance_service_*` by prefix, see [`is_retired`]).
const RETIRED_KEYS: &[&str] = &[
    "children",
    "wait_after_error",
    "wait_between_spawning_children",
    "shared_dir",
    "user",
    "group",
    "instance_service_region",
    "instance_service_endpoint",
    "instance_service_port",
    "codedeploy_test_profile",
    "ssl_verify_peer",
];

fn is_retired(key: &str) -> bool {
    RETIRED_KEYS.contains(&key) || key.starts_with("instance_service_")
}

/// The parsed file: the config and what the operator should be told about it.
#[derive(Debug)]
pub struct ParsedConfig {
    pub config: AgentConfig,
    pub warnings: Vec<ConfigWarning>,
}

pub fn parse_agent_config(text: &str, file: &Path) -> Result<ParsedConfig, ConfigError> {
    let mut config = AgentConfig::default();
    let mut warnings = Vec::new();
    let document: Value = serde_norway::from_str(text).map_err(|source| ConfigError::Yaml {
        file: file.to_path_buf(),
        line: source.location().map(|l| l.line()),
        source,
    })?;
    let mapping = match document {
        Value::Null => return Ok(ParsedConfig { config, warnings }),
        Value::Mapping(mapping) => mapping,
        other => {
            return Err(ConfigError::Syntax {
                file: file.to_path_buf(),
                line: Some(1),
                message: format!(
                    "the file must be a mapping of `:key: value` lines, found {}",
                    kind(&other)
                ),
            })
        }
    };

    for (raw_key, value) in mapping {
        let Some(raw_key) = raw_key.as_str() else {
            return Err(ConfigError::Syntax {
                file: file.to_path_buf(),
                line: None,
                message: format!(
                    "keys must be names such as `:root_dir:`, found {}",
                    kind(&raw_key)
                ),
            });
        };
        // A key is never named "": `:: value` is the key `:`, and an empty
        // one (`'': value`) is named as YAML writes it.
        let key = match raw_key.strip_prefix(':').unwrap_or(raw_key) {
            "" if raw_key.is_empty() => "''",
            "" => raw_key,
            key => key,
        };
        let field = Field {
            file,
            text,
            key,
            value: &value,
        };
        if value.is_null() {
            // `:proxy_uri:` with nothing after it: the default applies.
            continue;
        }
        if hardening::read_key(&field, &mut config, &mut warnings)? {
            continue;
        }
        if bounds::read_key(&field, &mut config)? {
            continue;
        }
        if download::read_key(&field, &mut config, &mut warnings) {
            continue;
        }
        match key {
            "log_aws_wire" => config.log_aws_wire = field.boolean()?,
            "log_dir" => config.log_dir = field.path()?,
            "pid_dir" => config.pid_dir = field.path()?,
            "program_name" => config.program_name = field.string()?,
            "root_dir" => config.root_dir = field.path()?,
            "verbose" => config.verbose = field.boolean()?,
            "wait_between_runs" => config.wait_between_runs = field.seconds()?,
            "wait_after_throttle_error" => config.wait_after_throttle_error = field.seconds()?,
            "wait_after_connection_problem" => {
                config.wait_after_connection_problem = field.seconds()?
            }
            "proxy_uri" => {
                config.proxy_uri = match field.optional_string()? {
                    Some(text) => Some(ProxyUri::parse(&text).map_err(|why| {
                        field.invalid_hiding_value(&format!(
                            "an http:// or https:// proxy URL ({why})"
                        ))
                    })?),
                    None => None,
                }
            }
            "log_max_size_mb" => {
                let megabytes = field.number().ok().filter(|n| *n >= 0.0 && n.is_finite());
                let megabytes = megabytes.ok_or_else(|| {
                    field.invalid("a size in MiB (0 leaves rotation to logrotate)")
                })?;
                config.log_max_size =
                    (megabytes > 0.0).then(|| ((megabytes * 1024.0 * 1024.0) as u64).max(1024));
            }
            "max_revisions" => {
                config.max_revisions = field
                    .integer()
                    .ok()
                    .filter(|n| (1..=u32::MAX as u64).contains(n))
                    .map(|n| n as u32)
                    .ok_or_else(|| field.invalid("an integer of 1 or more"))?;
            }
            "disable_imds_v1" => config.disable_imds_v1 = field.boolean()?,
            "on_premises_config_file" => config.on_premises_config_file = field.path()?,
            "http_read_timeout" => config.http_read_timeout = field.seconds()?,
            "kill_agent_max_wait_time_seconds" => {
                let wait = field.seconds()?;
                if wait > MAX_KILL_WAIT {
                    warnings.push(field.warning(format!(
                        "{} s is more than 24 hours; using 86400 s",
                        wait.as_secs()
                    )));
                }
                config.kill_agent_max_wait = wait.min(MAX_KILL_WAIT);
            }
            "enable_deployments_log" => config.enable_deployments_log = field.boolean()?,
            "use_fips_mode" => config.use_fips_mode = field.boolean()?,
            "deploy_control_endpoint" => {
                config.deploy_control_endpoint = field.optional_string()?;
                if let Some(endpoint) = &config.deploy_control_endpoint {
                    match endpoint_scheme(endpoint) {
                        Some("https") => {}
                        Some("http") => warnings.push(field.warning(format!(
                            "{endpoint} is plain HTTP: credentials and commands cross the network unencrypted; use https:// outside a test bench"
                        ))),
                        _ => return Err(field.invalid("an https:// URL (http:// is accepted with a warning)")),
                    }
                }
            }
            "s3_endpoint_override" => config.s3_endpoint_override = field.optional_string()?,
            "github_endpoint_override" => {
                config.github_endpoint_override = field.optional_string()?;
                if let Some(endpoint) = &config.github_endpoint_override {
                    match endpoint_scheme(endpoint) {
                        Some("https") => {}
                        Some("http") => warnings.push(field.warning(format!(
                            "{endpoint} is plain HTTP: GitHub access tokens and revisions cross the network unencrypted; use https:// outside a test bench"
                        ))),
                        _ => return Err(field.invalid("an https:// URL (http:// is accepted with a warning)")),
                    }
                }
            }
            "metrics_textfile" => {
                let path = field.path()?;
                if !path.is_absolute() {
                    return Err(field.invalid(
                        "an absolute path to a .prom file in node_exporter's textfile directory",
                    ));
                }
                if path.extension().is_none_or(|e| e != "prom") {
                    warnings.push(field.warning(format!(
                        "{} does not end in .prom: node_exporter's textfile collector reads only *.prom files",
                        path.display()
                    )));
                }
                config.metrics_textfile = Some(path);
            }
            "enable_archive_reuse" => config.enable_archive_reuse = field.boolean()?,
            "enable_auth_policy" => config.enable_auth_policy = field.boolean()?,
            "ongoing_deployment_tracking" => {
                let name = field.string()?;
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(field.invalid("a folder name under root_dir (no `/`)"));
                }
                config.ongoing_deployment_tracking = name;
            }
            "poll_jitter_percent" => {
                config.poll_jitter_percent = field
                    .integer()
                    .ok()
                    .filter(|n| *n <= u64::from(MAX_POLL_JITTER_PERCENT))
                    .map(|n| n as u32)
                    .ok_or_else(|| {
                        field.invalid(&format!(
                            "a whole percentage of wait_between_runs from 0 to {MAX_POLL_JITTER_PERCENT}"
                        ))
                    })?;
            }
            "startup_delay_max_seconds" => config.startup_delay_max = Some(field.seconds()?),
            "max_concurrent_commands" => {
                config.max_concurrent_commands = field
                    .integer()
                    .ok()
                    .filter(|n| (1..=u64::from(MAX_CONCURRENT_COMMANDS)).contains(n))
                    .map(|n| n as u32)
                    .ok_or_else(|| {
                        field.invalid(&format!(
                            "a whole number from 1 to {MAX_CONCURRENT_COMMANDS}"
                        ))
                    })?;
            }
            "deployment_spec_ca_file" => config.deployment_spec_ca_file = field.path()?,
            "deployment_spec_verify_chain" => {
                config.spec_verification = if field.boolean()? {
                    SpecVerification::SignatureAndChain
                } else {
                    SpecVerification::SignatureOnly
                };
            }
            retired if is_retired(retired) => warnings.push(
                field.warning("this key is retired and has no effect on this agent".to_string()),
            ),
            _ => warnings.push(
                field.warning(
                    "unknown key, ignored (check its spelling against the README's key table)"
                        .to_string(),
                ),
            ),
        }
    }
    Ok(ParsedConfig { config, warnings })
}

/// The scheme of a URL, lower-cased, when it has one (`scheme://…`).
fn endpoint_scheme(url: &str) -> Option<&'static str> {
    let (scheme, _) = url.split_once("://")?;
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Some("https"),
        "http" => Some("http"),
        _ => Some("other"),
    }
}

/// One key of the file, with what is needed to explain a bad value.
struct Field<'a> {
    file: &'a Path,
    text: &'a str,
    key: &'a str,
    value: &'a Value,
}

impl Field<'_> {
    fn line(&self) -> Option<usize> {
        line_of_key(self.text, self.key)
    }

    fn invalid(&self, expected: &str) -> ConfigError {
        ConfigError::InvalidValue {
            file: self.file.to_path_buf(),
            key: self.key.to_string(),
            line: self.line(),
            expected: expected.to_string(),
            found: describe(self.value),
        }
    }

    /// Like `invalid`, for values that may carry a password.
    fn invalid_hiding_value(&self, expected: &str) -> ConfigError {
        ConfigError::InvalidValue {
            file: self.file.to_path_buf(),
            key: self.key.to_string(),
            line: self.line(),
            expected: expected.to_string(),
            found: "a value not shown here (it may hold a password)".to_string(),
        }
    }

    fn warning(&self, message: String) -> ConfigWarning {
        ConfigWarning {
            key: self.key.to_string(),
            line: self.line(),
            message,
        }
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        match self.value {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s == "true" => Ok(true),
            Value::String(s) if s == "false" => Ok(false),
            _ => Err(self.invalid("true or false")),
        }
    }

    fn integer(&self) -> Result<u64, ConfigError> {
        match self.value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| self.invalid("a whole number of 0 or more"))
    }

    fn number(&self) -> Result<f64, ConfigError> {
        match self.value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| self.invalid("a number"))
    }

    /// At most a year: every waiting time is added to a clock reading or to
    /// another waiting time, and a sum that does not fit would panic.
    fn seconds(&self) -> Result<Duration, ConfigError> {
        const MAX_SECONDS: u64 = 365 * 86_400;
        self.integer()
            .ok()
            .filter(|s| *s <= MAX_SECONDS)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                self.invalid(&format!(
                    "a whole number of seconds from 0 to {MAX_SECONDS} (a year)"
                ))
            })
    }

    fn string(&self) -> Result<String, ConfigError> {
        match self.value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(self.invalid("a string")),
        }
    }

    fn optional_string(&self) -> Result<Option<String>, ConfigError> {
        let s = self.string()?;
        Ok((!s.trim().is_empty()).then(|| s.trim().to_string()))
    }

    fn path(&self) -> Result<PathBuf, ConfigError> {
        let s = self.string()?;
        if s.trim().is_empty() {
            return Err(self.invalid("a path"));
        }
        Ok(PathBuf::from(s.trim()))
    }
}

/// The 1-based line where `key` (as `:key:` or `key:`) is defined, for messages.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let symbol = format!(":{key}:");
    let plain = format!("{key}:");
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            line.starts_with(&symbol) || line.starts_with(&plain)
        })
        .map(|i| i + 1)
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{s}\""),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind(other).to_string(),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests;
