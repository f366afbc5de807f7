use super::*;

fn ended<'a>(
    group: &'a str,
    deployment: &'a str,
    event: &'a str,
    failure: Option<(u8, Option<&'a str>)>,
    now: f64,
) -> CommandEnded<'a> {
    CommandEnded {
        deployment_group: group,
        deployment_id: deployment,
        lifecycle_event: event,
        seconds: 1.5,
        failure,
        now,
    }
}

fn value(text: &str, series: &str) -> Option<String> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')
            .map(str::to_string)
    })
}

#[test]
fn deployments_are_counted_once_by_group_and_result() {
    let mut m = Metrics::start(
        "1.2.3",
        "/etc/codedeploy-agent/conf/codedeployagent.yml",
        100.0,
        None,
    );
    for (event, now) in [
        ("ApplicationStop", 101.0),
        ("Install", 102.0),
        ("ValidateService", 103.0),
    ] {
        m.command_ended(&ended("Web", "d-1", event, None, now));
    }
    // Traffic hooks after ValidateService: the same deployment, counted once,
    // its end moving.
    m.command_ended(&ended("Web", "d-1", "AfterAllowTraffic", None, 104.0));
    m.command_ended(&ended(
        "Web",
        "d-2",
        "BeforeInstall",
        Some((4, None)),
        110.0,
    ));
    m.command_ended(&ended(
        "Jobs",
        "d-3",
        "ApplicationStart",
        Some((3, Some("timeout"))),
        120.0,
    ));
    let text = m.render();
    let cases = [
        ("codedeploy_agent_info{version=\"1.2.3\",config_file=\"/etc/codedeploy-agent/conf/codedeployagent.yml\"}", "1"),
        ("codedeploy_agent_start_time_seconds", "100.000"),
        ("codedeploy_agent_deployments_total{deployment_group=\"Web\",result=\"succeeded\"}", "1"),
        ("codedeploy_agent_deployments_total{deployment_group=\"Web\",result=\"failed\"}", "1"),
        ("codedeploy_agent_deployments_total{deployment_group=\"Jobs\",result=\"failed\"}", "1"),
        ("codedeploy_agent_last_deployment_succeeded{deployment_group=\"Web\"}", "0"),
        ("codedeploy_agent_last_deployment_end_time_seconds{deployment_group=\"Web\"}", "110.000"),
        ("codedeploy_agent_lifecycle_event_duration_seconds{lifecycle_event=\"Install\"}", "1.500"),
        ("codedeploy_agent_failed_commands_total{error_code=\"4\"}", "1"),
        ("codedeploy_agent_failed_commands_total{error_code=\"3\"}", "1"),
        ("codedeploy_agent_hook_scripts_killed_total{reason=\"timeout\"}", "1"),
        ("codedeploy_agent_hook_scripts_killed_total{reason=\"memory_bound\"}", "0"),
        ("codedeploy_agent_poll_errors_total{kind=\"throttling\"}", "0"),
        ("codedeploy_agent_throttled_since_timestamp_seconds", "0.000"),
    ];
    for (series, expected) in cases {
        assert_eq!(
            value(&text, series).as_deref(),
            Some(expected),
            "{series}\n{text}"
        );
    }
    assert!(
        !text.contains("d-1"),
        "no deployment id is a label:\n{text}"
    );
}

#[test]
fn counters_survive_a_restart_and_the_run_figures_start_afresh() {
    let mut first = Metrics::start("1.0.0", "/etc/a.yml", 100.0, None);
    first.command_ended(&ended("Web", "d-1", "ValidateService", None, 101.0));
    first.command_ended(&ended("Web", "d-2", "Install", Some((5, None)), 102.0));
    first.command_ended(&ended(
        "Web",
        "d-3",
        "AfterInstall",
        Some((4, Some("memory_bound"))),
        103.0,
    ));
    first.poll_failed("connection", 104.0);
    first.poll_failed("throttling", 105.0);
    let written = first.render();
    let second = Metrics::start("1.0.1", "/etc/a.yml", 200.0, Some(&written));
    let text = second.render();
    for series in [
        "codedeploy_agent_deployments_total{deployment_group=\"Web\",result=\"succeeded\"}",
        "codedeploy_agent_deployments_total{deployment_group=\"Web\",result=\"failed\"}",
        "codedeploy_agent_failed_commands_total{error_code=\"5\"}",
        "codedeploy_agent_hook_scripts_killed_total{reason=\"memory_bound\"}",
        "codedeploy_agent_poll_errors_total{kind=\"connection\"}",
        "codedeploy_agent_last_deployment_end_time_seconds{deployment_group=\"Web\"}",
        "codedeploy_agent_lifecycle_event_duration_seconds{lifecycle_event=\"AfterInstall\"}",
    ] {
        assert_eq!(value(&text, series), value(&written, series), "{series}");
    }
    assert_eq!(
        value(
            &text,
            "codedeploy_agent_deployments_total{deployment_group=\"Web\",result=\"failed\"}"
        )
        .as_deref(),
        Some("2")
    );
    assert_eq!(
        value(&text, "codedeploy_agent_start_time_seconds").as_deref(),
        Some("200.000")
    );
    assert_eq!(
        value(&text, "codedeploy_agent_throttled_since_timestamp_seconds").as_deref(),
        Some("0.000")
    );
    assert!(text.contains("version=\"1.0.1\""));
}

#[test]
fn an_idle_agent_changes_nothing_and_a_throttling_spell_is_one_change_each_way() {
    let mut m = Metrics::start("1", "/c", 0.0, None);
    assert!(
        !m.poll_answered(),
        "an answered poll while idle changes nothing"
    );
    assert!(m.poll_failed("throttling", 50.0));
    assert!(m.poll_failed("throttling", 80.0));
    let text = m.render();
    assert_eq!(
        value(&text, "codedeploy_agent_throttled_since_timestamp_seconds").as_deref(),
        Some("50.000")
    );
    assert_eq!(
        value(
            &text,
            "codedeploy_agent_poll_errors_total{kind=\"throttling\"}"
        )
        .as_deref(),
        Some("2")
    );
    assert!(m.poll_answered(), "the spell ends");
    assert!(!m.poll_answered());
}

#[test]
fn hostile_group_names_are_escaped_and_read_back_whole() {
    let group = "a \"quoted\" \\ group\nwith a newline";
    let mut m = Metrics::start("1", "/c", 0.0, None);
    m.command_ended(&ended(group, "d-1", "ValidateService", None, 1.0));
    let text = m.render();
    assert!(
        text.contains(r#"deployment_group="a \"quoted\" \\ group\nwith a newline""#),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains("quoted")).count(),
        3,
        "one line per series:\n{text}"
    );
    let again = Metrics::start("1", "/c", 0.0, Some(&text));
    assert_eq!(again.render(), text);
}
