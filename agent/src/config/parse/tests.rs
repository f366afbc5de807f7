//! Tests of the codedeployagent.yml parser: the key table, its checks and its messages.

use super::*;
use crate::config::live_reload_ignored;

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
    let read = |text: &str| parse(text).map(|p| (p.config.github_endpoint_override, p.warnings));
    let (endpoint, warnings) =
        read(":github_endpoint_override: https://github.mirror.example/api\n").unwrap();
    assert_eq!(
        endpoint.as_deref(),
        Some("https://github.mirror.example/api")
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    let (endpoint, warnings) = read(":github_endpoint_override: http://127.0.0.1:8080\n").unwrap();
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
        matches!(err, ConfigError::Yaml { line: Some(_), .. }),
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
        message.contains("proxy_uri") && message.contains("line 2") && message.contains("socks5"),
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
fn kill_wait_is_clamped_to_a_day() {
    let parsed = parse(":kill_agent_max_wait_time_seconds: 999999\n").unwrap();
    assert_eq!(parsed.config.kill_agent_max_wait, MAX_KILL_WAIT);
    assert_eq!(parsed.warnings.len(), 1);
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

#[test]
fn a_key_that_is_only_a_colon_or_empty_is_warned_about_by_name_and_line() {
    // Found by the agent_config fuzz target: both used to be the key "".
    let parsed = parse(":verbose: true\n:: ftp://proxy\n'': oo\n").unwrap();
    let warned: Vec<(&str, Option<usize>)> = parsed
        .warnings
        .iter()
        .map(|w| (w.key.as_str(), w.line))
        .collect();
    assert_eq!(warned, [(":", Some(2)), ("''", Some(3))]);
}
