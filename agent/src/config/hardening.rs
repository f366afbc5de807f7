//! The operator hardening settings: the official 2.x keys (`reject_*_in_bundle`,
//! `ignore_ownership_in_bundle`, `archive_max_extraction_size`,
//! `restrict_*_permissions`, `restrict_hook_env_to_allowlist`,
//! `strip_loader_env_in_hooks`), our `archive_max_entries`, the scripts.log
//! bounds and core dumps, as typed modes. Pure data with their defaults, and
//! the directories the `restrict_*_permissions` keys tighten;
//! `parse/hardening.rs` reads the keys.
//!
//! 2.x ships every protection off. Ours keeps the ones that break no valid
//! revision always on (path traversal, links leaving the archive, device nodes,
//! an extraction-size cap, an entry-count cap): their keys can only make the
//! agent stricter.

use std::path::PathBuf;

/// The default cap on what one bundle may unpack to. Generous on purpose: it
/// stops a compression bomb from filling the disk, not a large application.
pub const DEFAULT_MAX_EXTRACTION_SIZE: u64 = 16 * 1024 * 1024 * 1024;

/// The default cap on the entries (files, directories, links) of one bundle.
/// A million empty files compress to a tgz of a few MB, so the count, not
/// only the size, is bounded: it caps the time and the inodes a bundle can
/// cost. Memory no longer grows with it (Install plans into a file on disk,
/// `bench --only many-files` in BENCHMARKS.md), so the default lets the
/// largest node_modules-heavy or monorepo revisions through; an operator
/// raises `:archive_max_entries:` for a bigger one.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;

/// scripts.log is rotated when it would grow past this (`:scripts_log_max_size_mb:`).
pub const DEFAULT_SCRIPTS_LOG_MAX_SIZE: u64 = 64 * 1024 * 1024;

/// scripts.log and its rotated copies together (`:scripts_log_max_files:`), as 2.x.
pub const DEFAULT_SCRIPTS_LOG_MAX_FILES: u32 = 8;

/// Every hardening decision the agent takes, grouped by where it applies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hardening {
    pub bundle: BundlePolicy,
    pub install: InstallPolicy,
    pub hook_env: HookEnvPolicy,
    pub agent_dirs: DirModes,
    pub log_dir: DirModes,
}

/// What an archive may contain, checked entry by entry while unpacking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundlePolicy {
    pub links: LinkPolicy,
    pub setid_bits: SetIdBits,
    pub ownership: Ownership,
    /// Bytes of file content one bundle may unpack to.
    pub max_extraction_size: u64,
    /// Entries (files, directories, links) one bundle may hold; never 0.
    pub max_entries: u64,
}

impl Default for BundlePolicy {
    fn default() -> BundlePolicy {
        BundlePolicy {
            links: LinkPolicy::InsideArchive,
            setid_bits: SetIdBits::Keep,
            ownership: Ownership::FromArchive,
            max_extraction_size: DEFAULT_MAX_EXTRACTION_SIZE,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// Links in an archive (`reject_symlinks_in_bundle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPolicy {
    /// Links are kept when they point inside the archive (default; a link out
    /// of it is refused whatever the key says).
    InsideArchive,
    /// No symbolic or hard link at all (`reject_symlinks_in_bundle: true`).
    Refuse,
}

/// Setuid and setgid bits in the archive and in the appspec's modes
/// (`reject_unsafe_permissions_in_bundle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetIdBits {
    /// Kept as the archive or the appspec says (default, as 1.8.x and 2.x).
    Keep,
    Refuse,
}

/// Owners of extracted files (`ignore_ownership_in_bundle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// As root, a tar's owners are restored, like `tar -p` (default).
    FromArchive,
    /// Files belong to the agent's user.
    Agent,
}

/// Checks on the appspec's `permissions` section, applied by Install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallPolicy {
    /// `reject_unsafe_permissions_in_bundle` also covers the appspec's modes.
    pub setid_modes: SetIdBits,
    pub selinux: SeLinuxTypes,
    pub link_targets: PermissionLinks,
}

impl Default for InstallPolicy {
    fn default() -> InstallPolicy {
        InstallPolicy {
            setid_modes: SetIdBits::Keep,
            selinux: SeLinuxTypes::Any,
            link_targets: PermissionLinks::Skip,
        }
    }
}

/// SELinux types an appspec may give (`reject_unconfined_selinux_in_bundle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeLinuxTypes {
    Any,
    /// `unconfined_t`, `kernel_t` and `init_t` are refused.
    RefuseUnconfined,
}

/// The SELinux types `reject_unconfined_selinux_in_bundle` refuses.
pub const UNCONFINED_SELINUX_TYPES: [&str; 3] = ["unconfined_t", "kernel_t", "init_t"];

/// A `permissions` target that is a symbolic link
/// (`reject_symlink_permission_targets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionLinks {
    /// Mode and ACL steps leave the link alone, owner steps change the link
    /// itself, never its target (default).
    Skip,
    /// The deployment fails naming the link.
    Refuse,
}

/// The modes the agent gives the directories and files it creates
/// (`restrict_agent_dir_permissions`, `restrict_log_dir_permissions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirModes {
    /// Readable by everyone (0755 / 0644): host tooling reads agent state and logs.
    #[default]
    WorldReadable,
    /// Owner (and group for logs) only.
    Restricted,
}

/// What a hook inherits from the agent's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HookEnvPolicy {
    pub inherit: EnvInheritance,
    pub loader: LoaderVariables,
}

/// `restrict_hook_env_to_allowlist`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnvInheritance {
    /// Everything the agent has (default, as the official agents).
    #[default]
    Full,
    /// Only shell basics (see `hooks::HOOK_ENV_ALLOWLIST`) and the deployment's
    /// variables.
    Allowlist,
}

/// `strip_loader_env_in_hooks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoaderVariables {
    #[default]
    Keep,
    /// `LD_PRELOAD`, `LD_LIBRARY_PATH` and `LD_AUDIT` are removed.
    Strip,
}

/// The size bounds of each deployment's scripts.log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptsLogBounds {
    /// Rotated when a line would take it past this many bytes.
    pub max_size: u64,
    /// scripts.log plus its rotated copies (`.1` …); the oldest goes first.
    pub max_files: u32,
}

impl Default for ScriptsLogBounds {
    fn default() -> ScriptsLogBounds {
        ScriptsLogBounds {
            max_size: DEFAULT_SCRIPTS_LOG_MAX_SIZE,
            max_files: DEFAULT_SCRIPTS_LOG_MAX_FILES,
        }
    }
}

/// `disable_core_dumps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CoreDumps {
    /// The agent holds credentials: no core file, and no ptrace by other users
    /// (default, as 2.x).
    #[default]
    Disabled,
    Allowed,
}

/// The default of each hardening and hygiene key as the README's
/// configuration table writes it, rendered from `config` (a test holds the
/// README to these).
pub fn documented_defaults(config: &super::AgentConfig) -> Vec<(&'static str, String)> {
    let on = |b: bool| b.to_string();
    let h = &config.hardening;
    let size = |bytes: u64| match bytes {
        b if b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b => b.to_string(),
    };
    vec![
        (
            "scripts_log_max_size_mb",
            (config.scripts_log.max_size >> 20).to_string(),
        ),
        (
            "scripts_log_max_files",
            config.scripts_log.max_files.to_string(),
        ),
        (
            "disable_core_dumps",
            on(config.core_dumps == CoreDumps::Disabled),
        ),
        // Always on: the key cannot turn it off.
        ("reject_path_traversal_in_bundle", on(true)),
        (
            "reject_symlinks_in_bundle",
            on(h.bundle.links == LinkPolicy::Refuse),
        ),
        (
            "reject_unsafe_permissions_in_bundle",
            on(h.bundle.setid_bits == SetIdBits::Refuse),
        ),
        (
            "reject_unconfined_selinux_in_bundle",
            on(h.install.selinux == SeLinuxTypes::RefuseUnconfined),
        ),
        (
            "reject_symlink_permission_targets",
            on(h.install.link_targets == PermissionLinks::Refuse),
        ),
        (
            "ignore_ownership_in_bundle",
            on(h.bundle.ownership == Ownership::Agent),
        ),
        (
            "archive_max_extraction_size",
            size(h.bundle.max_extraction_size),
        ),
        ("archive_max_entries", h.bundle.max_entries.to_string()),
        (
            "restrict_agent_dir_permissions",
            on(h.agent_dirs == DirModes::Restricted),
        ),
        (
            "restrict_log_dir_permissions",
            on(h.log_dir == DirModes::Restricted),
        ),
        (
            "restrict_hook_env_to_allowlist",
            on(h.hook_env.inherit == EnvInheritance::Allowlist),
        ),
        (
            "strip_loader_env_in_hooks",
            on(h.hook_env.loader == LoaderVariables::Strip),
        ),
        // There is no port to enable.
        ("enable_command_port", on(false)),
    ]
}

/// The directories `restrict_agent_dir_permissions` and
/// `restrict_log_dir_permissions` tighten, with their modes and the key. The
/// deployment root keeps search permission for others (0711): `runas` users
/// must reach their scripts. Pure.
pub fn restricted_dirs(config: &super::AgentConfig) -> Vec<(PathBuf, u32, &'static str)> {
    let mut dirs = Vec::new();
    if config.hardening.agent_dirs == DirModes::Restricted {
        dirs.push((
            config.root_dir.clone(),
            0o711,
            "restrict_agent_dir_permissions",
        ));
        dirs.push((
            config.pid_dir.clone(),
            0o700,
            "restrict_agent_dir_permissions",
        ));
    }
    if config.hardening.log_dir == DirModes::Restricted {
        dirs.push((
            config.log_dir.clone(),
            0o750,
            "restrict_log_dir_permissions",
        ));
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::super::AgentConfig;
    use super::*;

    #[test]
    fn restricting_keys_name_their_directories() {
        let mut config = AgentConfig::default();
        assert!(restricted_dirs(&config).is_empty());
        config.hardening.agent_dirs = DirModes::Restricted;
        config.hardening.log_dir = DirModes::Restricted;
        let modes: Vec<(String, u32)> = restricted_dirs(&config)
            .into_iter()
            .map(|(dir, mode, _)| (dir.display().to_string(), mode))
            .collect();
        assert_eq!(
            modes,
            [
                ("/opt/codedeploy-agent/deployment-root".to_string(), 0o711),
                ("/opt/codedeploy-agent/state/.pid/".to_string(), 0o700),
                ("/var/log/aws/codedeploy-agent/".to_string(), 0o750),
            ]
        );
    }

    /// The README's configuration table and the code's defaults must agree.
    #[test]
    fn the_readme_documents_the_defaults_the_code_has() {
        let readme = include_str!("../../../README.md");
        let documented = |key: &str| -> Option<String> {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `:{key}:`")))?;
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            cells.get(2).map(|c| c.trim_matches('`').to_string())
        };
        let defaults = documented_defaults(&AgentConfig::default());
        assert!(defaults.len() >= 15, "{defaults:?}");
        for (key, default) in defaults {
            assert_eq!(
                documented(key).as_deref(),
                Some(default.as_str()),
                "README.md's row for `:{key}:` must give the default `{default}`"
            );
        }
    }
}
