//! Reading the hardening and hygiene keys of codedeployagent.yml into
//! [`Hardening`], [`ScriptsLogBounds`] and [`CoreDumps`]. Pure. A key that asks
//! to turn off a protection this agent always keeps is a warning, never an error:
//! an operator's 2.x file must start this agent unchanged.

use serde_norway::Value;

use super::super::hardening::{
    CoreDumps, DirModes, EnvInheritance, LinkPolicy, LoaderVariables, Ownership, PermissionLinks,
    SeLinuxTypes, SetIdBits, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_EXTRACTION_SIZE,
};
use super::super::model::{AgentConfig, ConfigWarning};
use super::super::ConfigError;
use super::Field;

/// Reads `field` when it is one of the keys this module owns; `Ok(false)` for
/// any other key.
pub(super) fn read_key(
    field: &Field<'_>,
    config: &mut AgentConfig,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<bool, ConfigError> {
    let hardening = &mut config.hardening;
    let on = |field: &Field<'_>| field.boolean();
    match field.key {
        "reject_symlinks_in_bundle" => {
            hardening.bundle.links = if on(field)? {
                LinkPolicy::Refuse
            } else {
                LinkPolicy::InsideArchive
            }
        }
        "reject_path_traversal_in_bundle" => {
            if !on(field)? {
                warnings.push(field.warning(
                    "is false, but this agent always refuses archive entries, files sources and hook locations that leave the revision; the check stays on".to_string(),
                ));
            }
        }
        "reject_unsafe_permissions_in_bundle" => {
            let bits = if on(field)? {
                SetIdBits::Refuse
            } else {
                SetIdBits::Keep
            };
            hardening.bundle.setid_bits = bits;
            hardening.install.setid_modes = bits;
        }
        "reject_unconfined_selinux_in_bundle" => {
            hardening.install.selinux = if on(field)? {
                SeLinuxTypes::RefuseUnconfined
            } else {
                SeLinuxTypes::Any
            }
        }
        "reject_symlink_permission_targets" => {
            hardening.install.link_targets = if on(field)? {
                PermissionLinks::Refuse
            } else {
                PermissionLinks::Skip
            }
        }
        "ignore_ownership_in_bundle" => {
            hardening.bundle.ownership = if on(field)? {
                Ownership::Agent
            } else {
                Ownership::FromArchive
            }
        }
        "archive_max_extraction_size" => match field.value {
            Value::Bool(false) => warnings.push(field.warning(format!(
                "cannot turn the extraction cap off; it stays at {DEFAULT_MAX_EXTRACTION_SIZE} bytes"
            ))),
            _ => {
                hardening.bundle.max_extraction_size = byte_size(field.value)
                    .filter(|size| *size > 0)
                    .ok_or_else(|| {
                        field.invalid(
                            "a size of 1 byte or more: a whole number of bytes, or a number with B, KB, MB, GB, TB, KiB, MiB, GiB or TiB (e.g. \"4GiB\")",
                        )
                    })?
            }
        },
        "archive_max_entries" => match field.value {
            Value::Bool(false) => warnings.push(field.warning(format!(
                "cannot turn the entry cap off; it stays at {DEFAULT_MAX_ENTRIES} entries"
            ))),
            _ => {
                hardening.bundle.max_entries = field
                    .integer()
                    .ok()
                    .filter(|entries| *entries > 0)
                    .ok_or_else(|| {
                        field.invalid(
                            "a whole number of entries of 1 or more (files, directories and links in one bundle, e.g. 500000)",
                        )
                    })?
            }
        },
        "restrict_agent_dir_permissions" => hardening.agent_dirs = dir_modes(on(field)?),
        "restrict_log_dir_permissions" => hardening.log_dir = dir_modes(on(field)?),
        "restrict_hook_env_to_allowlist" => {
            hardening.hook_env.inherit = if on(field)? {
                EnvInheritance::Allowlist
            } else {
                EnvInheritance::Full
            }
        }
        "strip_loader_env_in_hooks" => {
            hardening.hook_env.loader = if on(field)? {
                LoaderVariables::Strip
            } else {
                LoaderVariables::Keep
            }
        }
        "enable_command_port" => {
            if on(field)? {
                warnings.push(field.warning(
                    "is true, but this agent has no command port and opens no socket; `codedeploy-agent status` reads the state on disk instead".to_string(),
                ));
            }
        }
        "disable_powershell_profile_in_hooks" => {
            on(field)?;
            warnings.push(field.warning(
                "applies to PowerShell hooks on Windows only and has no effect on this agent".to_string(),
            ));
        }
        "disable_core_dumps" => {
            config.core_dumps = if on(field)? {
                CoreDumps::Disabled
            } else {
                CoreDumps::Allowed
            }
        }
        "scripts_log_max_size_mb" => {
            let megabytes = field.number().ok().filter(|n| *n > 0.0 && n.is_finite());
            let megabytes = megabytes.ok_or_else(|| {
                field.invalid("a size in MiB greater than 0 (fractions allowed, e.g. 0.5)")
            })?;
            config.scripts_log.max_size = ((megabytes * 1024.0 * 1024.0) as u64).max(1024);
        }
        "scripts_log_max_files" => {
            config.scripts_log.max_files = field
                .integer()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| {
                    field.invalid("a whole number from 1 to 1000 (scripts.log and its rotated copies)")
                })?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn dir_modes(restricted: bool) -> DirModes {
    if restricted {
        DirModes::Restricted
    } else {
        DirModes::WorldReadable
    }
}

/// A byte count as 2.x writes it: a whole number, or a whole number with a
/// decimal (KB = 1000) or binary (KiB = 1024) unit, any case.
pub(crate) fn byte_size(value: &Value) -> Option<u64> {
    let text = match value {
        Value::Number(n) => return n.as_u64(),
        Value::String(s) => s.trim(),
        _ => return None,
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::super::hardening::{
        BundlePolicy, Hardening, ScriptsLogBounds, DEFAULT_SCRIPTS_LOG_MAX_FILES,
    };
    use super::super::{parse_agent_config, ParsedConfig};
    use super::*;

    fn parse(text: &str) -> Result<ParsedConfig, ConfigError> {
        parse_agent_config(
            text,
            Path::new("/etc/codedeploy-agent/conf/codedeployagent.yml"),
        )
    }

    fn config(text: &str) -> AgentConfig {
        let parsed = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        parsed.config
    }

    #[test]
    fn each_key_sets_its_mode() {
        type Check = fn(&AgentConfig) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |c| {
                c.hardening == Hardening::default()
                    && c.scripts_log == ScriptsLogBounds::default()
                    && c.core_dumps == CoreDumps::Disabled
            }),
            (":reject_symlinks_in_bundle: true", |c| {
                c.hardening.bundle.links == LinkPolicy::Refuse
            }),
            (":reject_symlinks_in_bundle: false", |c| {
                c.hardening.bundle.links == LinkPolicy::InsideArchive
            }),
            (":reject_unsafe_permissions_in_bundle: true", |c| {
                c.hardening.bundle.setid_bits == SetIdBits::Refuse
                    && c.hardening.install.setid_modes == SetIdBits::Refuse
            }),
            (":reject_unconfined_selinux_in_bundle: true", |c| {
                c.hardening.install.selinux == SeLinuxTypes::RefuseUnconfined
            }),
            (":reject_symlink_permission_targets: true", |c| {
                c.hardening.install.link_targets == PermissionLinks::Refuse
            }),
            (":ignore_ownership_in_bundle: true", |c| {
                c.hardening.bundle.ownership == Ownership::Agent
            }),
            (":archive_max_extraction_size: 1048576", |c| {
                c.hardening.bundle.max_extraction_size == 1 << 20
            }),
            (":archive_max_extraction_size: 4GiB", |c| {
                c.hardening.bundle.max_extraction_size == 4 << 30
            }),
            (":archive_max_extraction_size: '500MB'", |c| {
                c.hardening.bundle.max_extraction_size == 500_000_000
            }),
            ("", |c| {
                c.hardening.bundle.max_entries == DEFAULT_MAX_ENTRIES
            }),
            (":archive_max_entries: 500000", |c| {
                c.hardening.bundle.max_entries == 500_000
                    && c.hardening.bundle.max_extraction_size == DEFAULT_MAX_EXTRACTION_SIZE
            }),
            (":archive_max_entries: 1", |c| {
                c.hardening.bundle.max_entries == 1
            }),
            (":archive_max_entries: '50'", |c| {
                c.hardening.bundle.max_entries == 50
            }),
            (":restrict_agent_dir_permissions: true", |c| {
                c.hardening.agent_dirs == DirModes::Restricted
                    && c.hardening.log_dir == DirModes::WorldReadable
            }),
            (":restrict_log_dir_permissions: true", |c| {
                c.hardening.log_dir == DirModes::Restricted
                    && c.hardening.agent_dirs == DirModes::WorldReadable
            }),
            (":restrict_hook_env_to_allowlist: true", |c| {
                c.hardening.hook_env.inherit == EnvInheritance::Allowlist
            }),
            (":strip_loader_env_in_hooks: true", |c| {
                c.hardening.hook_env.loader == LoaderVariables::Strip
            }),
            (":disable_core_dumps: false", |c| {
                c.core_dumps == CoreDumps::Allowed
            }),
            ("disable_core_dumps: true", |c| {
                c.core_dumps == CoreDumps::Disabled
            }),
            (":scripts_log_max_size_mb: 0.25", |c| {
                c.scripts_log.max_size == 256 * 1024
                    && c.scripts_log.max_files == DEFAULT_SCRIPTS_LOG_MAX_FILES
            }),
            (":scripts_log_max_files: 3", |c| {
                c.scripts_log.max_files == 3
            }),
            // Protections that stay on: the value is accepted, nothing changes.
            (":reject_path_traversal_in_bundle: false", |c| {
                c.hardening == Hardening::default()
            }),
            (":archive_max_extraction_size: false", |c| {
                c.hardening.bundle == BundlePolicy::default()
            }),
            (":archive_max_entries: false", |c| {
                c.hardening.bundle == BundlePolicy::default()
            }),
        ];
        for (text, check) in cases {
            assert!(check(&config(text)), "{text:?} gave {:?}", config(text));
        }
    }

    #[test]
    fn bad_values_name_the_key_the_line_and_what_is_expected() {
        let cases: &[(&str, &str, &str)] = &[
            (
                ":verbose: true\n:reject_symlinks_in_bundle: yes please\n",
                "reject_symlinks_in_bundle",
                "true or false",
            ),
            (
                ":archive_max_extraction_size: 0\n",
                "archive_max_extraction_size",
                "1 byte or more",
            ),
            (
                ":archive_max_extraction_size: 4 potatoes\n",
                "archive_max_extraction_size",
                "GiB",
            ),
            (
                ":archive_max_extraction_size: -5\n",
                "archive_max_extraction_size",
                "1 byte or more",
            ),
            (
                ":archive_max_entries: 0\n",
                "archive_max_entries",
                "a whole number of entries of 1 or more",
            ),
            (
                ":archive_max_entries: -5\n",
                "archive_max_entries",
                "a whole number of entries of 1 or more",
            ),
            (
                ":archive_max_entries: 1.5\n",
                "archive_max_entries",
                "a whole number of entries of 1 or more",
            ),
            (
                ":archive_max_entries: lots\n",
                "archive_max_entries",
                "a whole number of entries of 1 or more",
            ),
            (
                ":archive_max_entries: true\n",
                "archive_max_entries",
                "a whole number of entries of 1 or more",
            ),
            (
                ":scripts_log_max_size_mb: 0\n",
                "scripts_log_max_size_mb",
                "greater than 0",
            ),
            (
                ":scripts_log_max_size_mb: big\n",
                "scripts_log_max_size_mb",
                "greater than 0",
            ),
            (
                ":scripts_log_max_files: 0\n",
                "scripts_log_max_files",
                "1 to 1000",
            ),
            (
                ":disable_core_dumps: sometimes\n",
                "disable_core_dumps",
                "true or false",
            ),
            (
                ":enable_command_port: 8080\n",
                "enable_command_port",
                "true or false",
            ),
            (
                ":deploy_control_endpoint: ftp://codedeploy.example\n",
                "deploy_control_endpoint",
                "https://",
            ),
            (
                ":deploy_control_endpoint: codedeploy.example\n",
                "deploy_control_endpoint",
                "https://",
            ),
        ];
        for (text, key, expected) in cases {
            let message = parse(text).unwrap_err().to_string();
            let line = text.lines().count();
            assert!(
                message.contains(&format!("`:{key}:`"))
                    && message.contains(&format!("line {line}"))
                    && message.contains(expected),
                "{text:?} gave {message}"
            );
        }
    }

    #[test]
    fn keys_that_cannot_loosen_or_do_nothing_here_warn_once() {
        let cases: &[(&str, &str)] = &[
            (":reject_path_traversal_in_bundle: false", "stays on"),
            (
                ":archive_max_extraction_size: false",
                "cannot turn the extraction cap off",
            ),
            (
                ":archive_max_entries: false",
                "cannot turn the entry cap off; it stays at 1000000 entries",
            ),
            (":enable_command_port: true", "no command port"),
            (":disable_powershell_profile_in_hooks: true", "Windows only"),
            (
                ":deploy_control_endpoint: http://127.0.0.1:8443",
                "plain HTTP",
            ),
        ];
        for (text, fragment) in cases {
            let warnings = parse(text).unwrap().warnings;
            assert_eq!(warnings.len(), 1, "{text:?}: {warnings:?}");
            assert!(
                warnings[0].message.contains(fragment),
                "{text:?}: {warnings:?}"
            );
        }
        for quiet in [
            ":reject_path_traversal_in_bundle: true",
            ":enable_command_port: false",
            ":deploy_control_endpoint: https://codedeploy-commands.us-east-1.amazonaws.com",
        ] {
            assert!(parse(quiet).unwrap().warnings.is_empty(), "{quiet:?}");
        }
    }

    #[test]
    fn retired_official_keys_are_accepted_with_one_warning_each() {
        let keys = [
            "children",
            "wait_between_spawning_children",
            "shared_dir",
            "user",
            "group",
            "instance_service_region",
            "instance_service_endpoint",
            "instance_service_port",
            "instance_service_anything_new",
            "codedeploy_test_profile",
            "ssl_verify_peer",
            "wait_after_error",
        ];
        let text: String = keys.iter().map(|k| format!(":{k}: 4\n")).collect();
        let parsed = parse(&text).unwrap();
        let warned: Vec<(&str, Option<usize>)> = parsed
            .warnings
            .iter()
            .map(|w| (w.key.as_str(), w.line))
            .collect();
        let expected: Vec<(&str, Option<usize>)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, Some(i + 1)))
            .collect();
        assert_eq!(warned, expected);
        assert!(parsed
            .warnings
            .iter()
            .all(|w| w.message.contains("retired")));
        // `ssl_verify_peer: false` in particular changes nothing: TLS is always verified.
        assert_eq!(parsed.config, AgentConfig::default());
    }

    #[test]
    fn byte_sizes_as_2x_writes_them() {
        let cases: &[(Value, Option<u64>)] = &[
            (Value::from(1234u64), Some(1234)),
            (Value::from("1234"), Some(1234)),
            (Value::from("2KB"), Some(2000)),
            (Value::from("2 kib"), Some(2048)),
            (Value::from("3MiB"), Some(3 << 20)),
            (Value::from("1TB"), Some(1_000_000_000_000)),
            (Value::from("1.5GB"), None),
            (Value::from("GB"), None),
            (Value::from("99999999999TiB"), None),
            (Value::from(-1i64), None),
            (Value::from(true), None),
        ];
        for (value, expected) in cases {
            assert_eq!(byte_size(value), *expected, "{value:?}");
        }
    }
}
