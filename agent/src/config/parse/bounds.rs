//! Reading the resource-bound keys of codedeployagent.yml (ours) into
//! [`HookBounds`] and the agent's own [`Priority`](super::super::bounds::Priority).
//! Pure. A bad value is an error naming the file, line and key.

use serde_norway::Value;

use super::super::bounds::{CpuPercent, IoPriority, Nice};
use super::super::model::AgentConfig;
use super::super::ConfigError;
use super::Field;

/// Reads `field` when it is one of the keys this module owns; `Ok(false)` for
/// any other key.
pub(super) fn read_key(field: &Field<'_>, config: &mut AgentConfig) -> Result<bool, ConfigError> {
    let hook = &mut config.hook_bounds;
    match field.key {
        "hook_cpu_percent" => {
            hook.cpu_percent = Some(
                field
                    .integer()
                    .ok()
                    .and_then(CpuPercent::new)
                    .ok_or_else(|| {
                        field.invalid(
                            "a percentage of one CPU from 1 to 100000 (20 = a fifth of a CPU, 200 = two CPUs)",
                        )
                    })?,
            )
        }
        "hook_memory_limit_mb" => {
            hook.memory_limit_mb = Some(positive(field, "a whole number of MiB, 1 or more")?)
        }
        "hook_max_processes" => {
            hook.max_processes = Some(positive(field, "a whole number of processes, 1 or more")?)
        }
        "hook_nice" => hook.priority.nice = Some(nice(field)?),
        "hook_io_priority" => hook.priority.io = Some(io_priority(field)?),
        "agent_nice" => config.agent_priority.nice = Some(nice(field)?),
        "agent_io_priority" => config.agent_priority.io = Some(io_priority(field)?),
        _ => return Ok(false),
    }
    Ok(true)
}

fn positive(field: &Field<'_>, expected: &str) -> Result<u64, ConfigError> {
    field
        .integer()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| field.invalid(expected))
}

fn nice(field: &Field<'_>) -> Result<Nice, ConfigError> {
    let value = match field.value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    value
        .and_then(Nice::new)
        .ok_or_else(|| field.invalid("a nice value from -20 to 19"))
}

fn io_priority(field: &Field<'_>) -> Result<IoPriority, ConfigError> {
    match field.value {
        Value::String(s) => IoPriority::parse(s),
        _ => None,
    }
    .ok_or_else(|| field.invalid("`idle`, `best-effort` or `best-effort:<0-7>`"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::super::bounds::{HookBounds, IoLevel, Priority};
    use super::super::parse_agent_config;
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        parse_agent_config(
            text,
            Path::new("/etc/codedeploy-agent/conf/codedeployagent.yml"),
        )
        .map(|p| p.config)
    }

    #[test]
    fn bounds_are_off_unless_configured() {
        let config = parse(":verbose: true\n").unwrap();
        assert_eq!(config.hook_bounds, HookBounds::default());
        assert!(!config.hook_bounds.needs_cgroup());
        assert_eq!(config.agent_priority, Priority::default());
    }

    #[test]
    fn bound_keys_parse_into_typed_values() {
        let config = parse(
            ":hook_cpu_percent: 250\n:hook_memory_limit_mb: 512\n:hook_max_processes: '64'\n:hook_nice: -5\n:hook_io_priority: best-effort:6\n:agent_nice: 10\n:agent_io_priority: idle\n",
        )
        .unwrap();
        let hook = config.hook_bounds;
        assert_eq!(hook.cpu_percent.map(CpuPercent::value), Some(250));
        assert_eq!(hook.memory_limit_mb, Some(512));
        assert_eq!(hook.max_processes, Some(64));
        assert_eq!(hook.priority.nice.map(Nice::value), Some(-5));
        assert_eq!(
            hook.priority.io,
            Some(IoPriority::BestEffort(IoLevel::new(6)))
        );
        assert!(hook.needs_cgroup());
        assert_eq!(config.agent_priority.nice.map(Nice::value), Some(10));
        assert_eq!(config.agent_priority.io, Some(IoPriority::Idle));
    }

    #[test]
    fn bad_bound_values_name_key_line_and_what_is_expected() {
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                ":verbose: true\n:hook_cpu_percent: 0\n",
                "hook_cpu_percent",
                2,
                "percentage of one CPU",
            ),
            (
                ":hook_cpu_percent: 20%\n",
                "hook_cpu_percent",
                1,
                "percentage of one CPU",
            ),
            (
                ":hook_memory_limit_mb: 0\n",
                "hook_memory_limit_mb",
                1,
                "MiB, 1 or more",
            ),
            (
                ":hook_memory_limit_mb: 1.5\n",
                "hook_memory_limit_mb",
                1,
                "MiB, 1 or more",
            ),
            (
                ":hook_max_processes: -3\n",
                "hook_max_processes",
                1,
                "processes, 1 or more",
            ),
            (":hook_nice: 20\n", "hook_nice", 1, "-20 to 19"),
            (":hook_nice: low\n", "hook_nice", 1, "-20 to 19"),
            (":agent_nice: -21\n", "agent_nice", 1, "-20 to 19"),
            (
                ":hook_io_priority: realtime\n",
                "hook_io_priority",
                1,
                "best-effort:<0-7>",
            ),
            (
                ":agent_io_priority: best-effort:9\n",
                "agent_io_priority",
                1,
                "best-effort:<0-7>",
            ),
            (":agent_io_priority: 3\n", "agent_io_priority", 1, "`idle`"),
        ];
        for (text, key, line, expected) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(
                message.contains(&format!("`:{key}:`"))
                    && message.contains(&format!("line {line}"))
                    && message.contains(expected)
                    && message.contains("codedeployagent.yml"),
                "{text:?} gave {message}"
            );
        }
    }
}
