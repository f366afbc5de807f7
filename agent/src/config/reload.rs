//! What SIGHUP can change in a running agent: the keys whose new value is
//! picked up live, and the ones that need a restart (the daemon logs those).
//! Pure: two configurations in, key names out.

use super::model::AgentConfig;

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
        metrics_textfile,
        enable_archive_reuse,
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
        bundle_download,
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
        *enable_archive_reuse != reread.enable_archive_reuse,
        "enable_archive_reuse",
    );
    check(
        *metrics_textfile != reread.metrics_textfile,
        "metrics_textfile",
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
    check(
        *bundle_download != reread.bundle_download,
        "bundle_ranged_download_threshold / bundle_download_connections",
    );
    ignored
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::ProxyUri;

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
}
