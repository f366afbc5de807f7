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
    "enable_archive_reuse",
];

fn is_retired(key: &str) -> bool {
    RETIRED_KEYS.contains(&key) || key.starts_with("instance_service_")
}

/// Regions where the official agent accepts `use_fips_mode`.
const FIPS_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "us-gov-west-1",
    "us-gov-east-1",
];

/// The parsed file: the config and what the operator should be told about it.
#[derive(Debug)]
pub struct ParsedConfig {
    pub config: AgentConfig,
    pub warnings: Vec<ConfigWarning>,
}

pub fn parse_agent_config(text: &str, file: &Path) -> Result<ParsedConfig, ConfigError> {
    let mut config = AgentConfig::default();
    let mut warnings = Vec::new();
    let document: Value = serde_norway::from_str(text).map_err(|e| ConfigError::Syntax {
        file: file.to_path_buf(),
        line: e.location().map(|l| l.line()),
        message: e.to_string(),
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
        let key = raw_key.strip_prefix(':').unwrap_or(raw_key);
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

/// Checks that need more than the file: the region the agent ended up with.
pub fn check_fips_region(config: &AgentConfig, region: &str) -> Result<(), String> {
    if config.use_fips_mode && !FIPS_REGIONS.contains(&region) {
        return Err(format!(
            "use_fips_mode is set but region {region} has no FIPS endpoint; FIPS is available in {}",
            FIPS_REGIONS.join(", ")
        ));
    }
    Ok(())
}

/// The keys whose new value a running agent does not pick up on SIGHUP, when
/// they differ between the running and the re-read configuration (pure). The
/// live ones are `verbose`, `wait_between_runs`, `wait_after_throttle_error`
/// and `poll_jitter_percent`.
pub fn live_reload_ignored(running: &AgentConfig, reread: &AgentConfig) -> Vec<&'static str> {
    // Destructured so that a new field cannot be forgotten here.
    let AgentConfig {
        log_aws_wire,
        log_dir,
        pid_dir,
        program_name,
        root_dir,
        verbose: _,
        wait_between_runs: _,
        wait_after_throttle_error: _,
        wait_after_connection_problem,
        proxy_uri,
        max_revisions,
        disable_imds_v1,
        on_premises_config_file,
        http_read_timeout,
        kill_agent_max_wait,
        enable_deployments_log,
        use_fips_mode,
        deploy_control_endpoint,
        s3_endpoint_override,
        github_endpoint_override,
        enable_auth_policy,
        ongoing_deployment_tracking,
        deployment_spec_ca_file,
        spec_verification,
        log_max_size,
        hardening,
        scripts_log,
        core_dumps,
        hook_bounds,
        agent_priority,
        poll_jitter_percent: _,
        startup_delay_max,
        max_concurrent_commands,
    } = running;
    let mut ignored = Vec::new();
    let mut check = |changed: bool, key: &'static str| {
        if changed {
            ignored.push(key);
        }
    };
    check(*log_aws_wire != reread.log_aws_wire, "log_aws_wire");
    check(*log_dir != reread.log_dir, "log_dir");
    check(*pid_dir != reread.pid_dir, "pid_dir");
    check(*program_name != reread.program_name, "program_name");
    check(*root_dir != reread.root_dir, "root_dir");
    check(
        *wait_after_connection_problem != reread.wait_after_connection_problem,
        "wait_after_connection_problem",
    );
    check(*proxy_uri != reread.proxy_uri, "proxy_uri");
    check(*max_revisions != reread.max_revisions, "max_revisions");
    check(
        *disable_imds_v1 != reread.disable_imds_v1,
        "disable_imds_v1",
    );
    check(
        *on_premises_config_file != reread.on_premises_config_file,
        "on_premises_config_file",
    );
    check(
        *http_read_timeout != reread.http_read_timeout,
        "http_read_timeout",
    );
    check(
        *kill_agent_max_wait != reread.kill_agent_max_wait,
        "kill_agent_max_wait_time_seconds",
    );
    check(
        *enable_deployments_log != reread.enable_deployments_log,
        "enable_deployments_log",
    );
    check(*use_fips_mode != reread.use_fips_mode, "use_fips_mode");
    check(
        *deploy_control_endpoint != reread.deploy_control_endpoint,
        "deploy_control_endpoint",
    );
    check(
        *s3_endpoint_override != reread.s3_endpoint_override,
        "s3_endpoint_override",
    );
    check(
        *github_endpoint_override != reread.github_endpoint_override,
        "github_endpoint_override",
    );
    check(
        *enable_auth_policy != reread.enable_auth_policy,
        "enable_auth_policy",
    );
    check(
        *ongoing_deployment_tracking != reread.ongoing_deployment_tracking,
        "ongoing_deployment_tracking",
    );
    check(
        *deployment_spec_ca_file != reread.deployment_spec_ca_file,
        "deployment_spec_ca_file",
    );
    check(
        *spec_verification != reread.spec_verification,
        "deployment_spec_verify_chain",
    );
    check(*log_max_size != reread.log_max_size, "log_max_size_mb");
    check(
        *hardening != reread.hardening,
        "hardening keys (reject_*, restrict_*, ignore_ownership_in_bundle, archive_max_extraction_size, archive_max_entries, strip_loader_env_in_hooks)",
    );
    check(
        *scripts_log != reread.scripts_log,
        "scripts_log_max_size_mb / scripts_log_max_files",
    );
    check(*core_dumps != reread.core_dumps, "disable_core_dumps");
    check(
        *hook_bounds != reread.hook_bounds,
        "hook bounds (hook_cpu_percent, hook_memory_limit_mb, hook_max_processes, hook_nice, hook_io_priority)",
    );
    check(
        *agent_priority != reread.agent_priority,
        "agent_nice / agent_io_priority",
    );
    check(
        *startup_delay_max != reread.startup_delay_max,
        "startup_delay_max_seconds",
    );
    check(
        *max_concurrent_commands != reread.max_concurrent_commands,
        "max_concurrent_commands",
    );
    ignored
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
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ParsedConfig, ConfigError> {
        parse_agent_config(
            text,
            Path::new("/etc/codedeploy-agent/conf/codedeployagent.yml"),
        )
    }

    #[test]
    fn the_official_default_file_parses_to_its_values() {
        let text = "---\n:log_aws_wire: false\n:log_dir: '/var/log/aws/codedeploy-agent/'\n:pid_dir: '/opt/codedeploy-agent/state/.pid/'\n:program_name: codedeploy-agent\n:root_dir: '/opt/codedeploy-agent/deployment-root'\n:verbose: false\n:wait_between_runs: 1\n:proxy_uri:\n:max_revisions: 5\n";
        let parsed = parse(text).unwrap();
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let c = parsed.config;
        assert_eq!(c.wait_between_runs, Duration::from_secs(1));
        assert_eq!(c.proxy_uri, None);
        assert_eq!(c.max_revisions, 5);
        assert_eq!(
            c.root_dir,
            PathBuf::from("/opt/codedeploy-agent/deployment-root")
        );
        assert_eq!(c.http_read_timeout, Duration::from_secs(80));
        assert_eq!(c.spec_verification, SpecVerification::SignatureAndChain);
    }

    #[test]
    fn empty_file_gives_built_in_defaults() {
        assert_eq!(parse("").unwrap().config, AgentConfig::default());
        assert_eq!(
            parse("---\n").unwrap().config.wait_between_runs,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn plain_keys_are_accepted_like_symbols() {
        let c = parse("root_dir: /srv/root\nverbose: true\n")
            .unwrap()
            .config;
        assert_eq!(c.root_dir, PathBuf::from("/srv/root"));
        assert!(c.verbose);
    }

    #[test]
    fn our_keys_are_read() {
        let c = parse(":deployment_spec_ca_file: /etc/ca.pem\n:deployment_spec_verify_chain: false\n:s3_endpoint_override: http://127.0.0.1:9000\n:deploy_control_endpoint: http://127.0.0.1:8000\n")
            .unwrap()
            .config;
        assert_eq!(c.deployment_spec_ca_file, PathBuf::from("/etc/ca.pem"));
        assert_eq!(c.spec_verification, SpecVerification::SignatureOnly);
        assert_eq!(
            c.s3_endpoint_override.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            c.deploy_control_endpoint.as_deref(),
            Some("http://127.0.0.1:8000")
        );
    }

    #[test]
    fn the_github_endpoint_override_is_read_checked_and_needs_a_restart() {
        assert_eq!(parse("").unwrap().config.github_endpoint_override, None);
        let read =
            |text: &str| parse(text).map(|p| (p.config.github_endpoint_override, p.warnings));
        let (endpoint, warnings) =
            read(":github_endpoint_override: https://github.mirror.example/api\n").unwrap();
        assert_eq!(
            endpoint.as_deref(),
            Some("https://github.mirror.example/api")
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        let (endpoint, warnings) =
            read(":github_endpoint_override: http://127.0.0.1:8080\n").unwrap();
        assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].message.contains("plain HTTP"), "{warnings:?}");
        let error = read(":github_endpoint_override: github.mirror.example\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("github_endpoint_override") && error.contains("line 1"),
            "{error}"
        );

        let running = AgentConfig::default();
        let mut reread = running.clone();
        reread.github_endpoint_override = Some("https://github.mirror.example/api".into());
        assert_eq!(
            live_reload_ignored(&running, &reread),
            vec!["github_endpoint_override"]
        );
    }

    #[test]
    fn bad_values_name_key_line_and_file() {
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                ":verbose: false\n:max_revisions: 0\n",
                "max_revisions",
                2,
                "1 or more",
            ),
            (":max_revisions: many\n", "max_revisions", 1, "1 or more"),
            (
                ":wait_between_runs: soon\n",
                "wait_between_runs",
                1,
                "seconds",
            ),
            (":verbose: maybe\n", "verbose", 1, "true or false"),
            (":root_dir: [a, b]\n", "root_dir", 1, "a string"),
            (
                ":ongoing_deployment_tracking: a/b\n",
                "ongoing_deployment_tracking",
                1,
                "folder name",
            ),
        ];
        for (text, key, line, expected) in cases {
            let err = parse(text).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(key)
                    && message.contains(&format!("line {line}"))
                    && message.contains(expected),
                "{text:?} gave {message}"
            );
            assert!(message.contains("codedeployagent.yml"), "{message}");
        }
    }

    #[test]
    fn unknown_and_retired_keys_warn_without_failing() {
        let parsed = parse(":verbose: true\n:colour: blue\n:children: 1\n:user: deploy\n").unwrap();
        let keys: Vec<_> = parsed
            .warnings
            .iter()
            .map(|w| (w.key.as_str(), w.line))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("colour", Some(2)),
                ("children", Some(3)),
                ("user", Some(4))
            ]
        );
        assert!(parsed.config.verbose);
    }

    #[test]
    fn yaml_syntax_error_names_the_line() {
        let err = parse(":verbose: true\n:root_dir: [unclosed\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::Syntax { line: Some(_), .. }),
            "{err}"
        );
    }

    #[test]
    fn proxy_uri_is_checked_once_and_kept_typed() {
        let c = parse(":proxy_uri: http://user:pw@127.0.0.1:3128\n")
            .unwrap()
            .config;
        let proxy = c.proxy_uri.unwrap();
        assert_eq!(proxy.as_str(), "http://user:pw@127.0.0.1:3128");
        assert_eq!(proxy.redacted(), "http://user:***@127.0.0.1:3128");
        let message = parse(":verbose: true\n:proxy_uri: socks5://u:hunter2@p:1080\n")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("proxy_uri")
                && message.contains("line 2")
                && message.contains("socks5"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        assert_eq!(parse(":proxy_uri: ''\n").unwrap().config.proxy_uri, None);
    }

    #[test]
    fn log_size_bound_in_mib() {
        let size = |text: &str| parse(text).map(|p| p.config.log_max_size);
        assert_eq!(size("").unwrap(), Some(64 * 1024 * 1024));
        assert_eq!(
            size(":log_max_size_mb: 10\n").unwrap(),
            Some(10 * 1024 * 1024)
        );
        assert_eq!(size(":log_max_size_mb: 0.5\n").unwrap(), Some(512 * 1024));
        assert_eq!(size(":log_max_size_mb: 0\n").unwrap(), None);
        assert!(size(":log_max_size_mb: -1\n").is_err());
        assert!(size(":log_max_size_mb: big\n").is_err());
    }

    #[test]
    fn reload_names_the_keys_that_need_a_restart() {
        let running = AgentConfig::default();
        let mut reread = running.clone();
        reread.verbose = true;
        reread.wait_between_runs = Duration::from_secs(5);
        reread.wait_after_throttle_error = Duration::from_secs(9);
        assert!(live_reload_ignored(&running, &reread).is_empty());
        reread.root_dir = PathBuf::from("/elsewhere");
        reread.proxy_uri = Some(ProxyUri::parse("http://p:1").unwrap());
        assert_eq!(
            live_reload_ignored(&running, &reread),
            vec!["root_dir", "proxy_uri"]
        );
    }

    #[test]
    fn kill_wait_is_clamped_to_a_day() {
        let parsed = parse(":kill_agent_max_wait_time_seconds: 999999\n").unwrap();
        assert_eq!(parsed.config.kill_agent_max_wait, MAX_KILL_WAIT);
        assert_eq!(parsed.warnings.len(), 1);
    }

    #[test]
    fn fips_only_in_us_regions() {
        let mut c = AgentConfig {
            use_fips_mode: true,
            ..AgentConfig::default()
        };
        assert!(check_fips_region(&c, "us-west-2").is_ok());
        assert!(check_fips_region(&c, "eu-west-1")
            .unwrap_err()
            .contains("eu-west-1"));
        c.use_fips_mode = false;
        assert!(check_fips_region(&c, "eu-west-1").is_ok());
    }

    #[test]
    fn polling_and_concurrency_keys_are_read_and_checked() {
        let read = |text: &str| {
            parse(text).map(|p| {
                (
                    p.config.poll_jitter_percent,
                    p.config.startup_delay_max,
                    p.config.max_concurrent_commands,
                )
            })
        };
        assert_eq!(read("").unwrap(), (0, None, 16), "defaults");
        // (jitter percent, start-up delay, concurrent commands)
        type Polling = (u32, Option<Duration>, u32);
        let cases: [(&str, Polling); 5] = [
            (":poll_jitter_percent: 10\n", (10, None, 16)),
            (":poll_jitter_percent: 50\n", (50, None, 16)),
            (
                ":startup_delay_max_seconds: 0\n",
                (0, Some(Duration::ZERO), 16),
            ),
            (
                ":startup_delay_max_seconds: 120\n:max_concurrent_commands: 1\n",
                (0, Some(Duration::from_secs(120)), 1),
            ),
            (":max_concurrent_commands: 256\n", (0, None, 256)),
        ];
        for (text, expected) in cases {
            assert_eq!(read(text).unwrap(), expected, "{text}");
        }
        let refused = [
            (":poll_jitter_percent: 51\n", "from 0 to 50"),
            (":poll_jitter_percent: ten\n", "from 0 to 50"),
            (
                ":startup_delay_max_seconds: -5\n",
                "whole number of seconds",
            ),
            (":max_concurrent_commands: 0\n", "from 1 to 256"),
            (":max_concurrent_commands: 1000\n", "from 1 to 256"),
            (
                ":wait_between_runs: 18446744073709551615\n",
                "from 0 to 31536000 (a year)",
            ),
            (
                ":wait_after_throttle_error: 31536001\n",
                "from 0 to 31536000 (a year)",
            ),
        ];
        for (text, expected) in refused {
            let error = read(text).unwrap_err().to_string();
            assert!(
                error.contains(expected) && error.contains("line 1"),
                "{text}: {error}"
            );
        }
        // The jitter applies on SIGHUP; the others need a restart.
        let running = AgentConfig::default();
        let mut reread = running.clone();
        reread.poll_jitter_percent = 20;
        assert!(live_reload_ignored(&running, &reread).is_empty());
        reread.max_concurrent_commands = 4;
        reread.startup_delay_max = Some(Duration::ZERO);
        assert_eq!(
            live_reload_ignored(&running, &reread),
            vec!["startup_delay_max_seconds", "max_concurrent_commands"]
        );
    }
}
