//! Process hygiene at start-up: no core dumps of the agent (it holds
//! credentials), and the `.version` file the official agents keep beside the
//! deployment root. Deciding paths and file content is pure; the rest is a
//! handful of system calls made once, before any thread or hook exists.
//!
//! Core dumps: the agent makes itself non-dumpable (`PR_SET_DUMPABLE` 0: no
//! core file, and its memory is closed to other users' ptrace and
//! /proc/PID/mem) and sets its own soft `RLIMIT_CORE` to 0, keeping the hard
//! limit. Hooks are the operator's applications, not the agent: they get the
//! soft limit the agent started with back (restored between fork and exec, see
//! `hooks::HookPolicy::core_limit`), and exec makes them dumpable again, so an
//! application a hook starts dumps core exactly as it would without the agent.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::{AgentConfig, CoreDumps, DirModes};

/// A process's `RLIMIT_CORE`, in bytes (`u64::MAX` for unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreLimit {
    pub soft: u64,
    pub hard: u64,
}

/// The start-up hygiene for `config`, each step logged: core dumps per
/// `:disable_core_dumps:`, then `.version`. Returns the core limit hooks get
/// back (`None` when the agent's own limit was left alone). Failures are
/// warnings: none of this may keep the agent from deploying.
pub fn start_up(config: &AgentConfig) -> Option<CoreLimit> {
    let restore_for_hooks = match config.core_dumps {
        CoreDumps::Allowed => {
            tracing::info!("disable_core_dumps is false: the agent may dump core (its memory can hold credentials)");
            None
        }
        CoreDumps::Disabled => match disable_core_dumps() {
            Ok(off) => {
                tracing::info!(
                    "core dumps disabled: dumpable {}, core file size limit {} (hooks get {} back)",
                    u8::from(off.dumpable),
                    off.now.soft,
                    describe_limit(off.original.soft)
                );
                Some(off.original)
            }
            Err(e) => {
                tracing::warn!("cannot disable core dumps of the agent: {e}");
                None
            }
        },
    };
    for (dir, mode, key) in restricted_modes(config) {
        let restricted = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)));
        match restricted {
            Ok(()) => tracing::info!("{key}: {} is now {mode:04o}", dir.display()),
            Err(e) => tracing::warn!("{key}: cannot make {} {mode:04o}: {e}", dir.display()),
        }
    }
    let path = version_file(&config.root_dir);
    match write_version_file(&path, crate::VERSION) {
        Ok(()) => tracing::info!(
            "wrote {} (agent_version: {})",
            path.display(),
            crate::VERSION
        ),
        Err(e) => tracing::warn!("cannot write {}: {e}", path.display()),
    }
    restore_for_hooks
}

/// The directories `restrict_agent_dir_permissions` and
/// `restrict_log_dir_permissions` tighten, with their modes and the key. The
/// deployment root keeps search permission for others (0711): `runas` users
/// must reach their scripts. Pure.
pub fn restricted_modes(config: &AgentConfig) -> Vec<(PathBuf, u32, &'static str)> {
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

fn describe_limit(bytes: u64) -> String {
    if bytes == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        bytes.to_string()
    }
}

/// What [`disable_core_dumps`] did, read back from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreDumpsOff {
    /// The limit the agent was started with, for its hooks.
    pub original: CoreLimit,
    pub now: CoreLimit,
    pub dumpable: bool,
}

fn core_limit() -> io::Result<CoreLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(CoreLimit {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

/// Sets the calling process's soft `RLIMIT_CORE`; async-signal-safe, so a
/// hook's pre-exec may call it.
pub fn set_core_soft_limit(limit: CoreLimit) -> io::Result<()> {
    let wanted = libc::rlimit {
        rlim_cur: limit.soft.min(limit.hard),
        rlim_max: limit.hard,
    };
    // SAFETY: setrlimit reads one rlimit through a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &wanted) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the agent non-dumpable and its soft core limit 0, and reads both back.
pub fn disable_core_dumps() -> io::Result<CoreDumpsOff> {
    let original = core_limit()?;
    set_core_soft_limit(CoreLimit {
        soft: 0,
        hard: original.hard,
    })?;
    nix::sys::prctl::set_dumpable(false).map_err(io::Error::from)?;
    Ok(CoreDumpsOff {
        original,
        now: core_limit()?,
        dumpable: nix::sys::prctl::get_dumpable().map_err(io::Error::from)?,
    })
}

/// Where the official agents keep `.version`: beside the deployment root
/// (`/opt/codedeploy-agent/.version` for the default root). Pure.
pub fn version_file(root_dir: &Path) -> PathBuf {
    // Collecting the components drops a trailing slash.
    let root: PathBuf = root_dir.components().collect();
    root.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("/"))
        .join(".version")
}

/// `.version` as the official agents write it: `agent_version: <version>`.
pub fn version_text(version: &str) -> String {
    format!("agent_version: {version}\n")
}

/// Writes `.version` atomically (temporary file, then rename), read-only for
/// everyone (0444) as 2.x does.
pub fn write_version_file(path: &Path, version: &str) -> io::Result<()> {
    crate::atomic_file::replace(
        path,
        Some(0o444),
        crate::atomic_file::Durability::Unsynced,
        |out| out.write_all(version_text(version).as_bytes()),
    )
}

/// Heap arenas glibc may create: one for the runtime thread and one for the
/// blocking threads that unpack and install. By default glibc creates up to
/// eight per core, each keeping the memory freed in it, which an idle agent
/// then holds for good.
const MALLOC_ARENAS: libc::c_int = 2;

/// Caps glibc's heap arenas (see [`MALLOC_ARENAS`]). Call once, before any
/// thread exists. A no-op on other C libraries.
pub fn limit_heap_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning; it is called before
    // any other thread exists, and M_ARENA_MAX takes any positive count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// What the agent does when it turns idle (after start-up, and when the last
/// running command ends), so that it is as small between deployments as
/// before the first: the heap memory freed by the command goes back to the
/// kernel (glibc only), and so do the resident pages of its own code (see
/// [`release_code_pages`]).
pub fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages; it is thread-safe and
    // takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
    release_code_pages();
}

/// Unmaps the agent's own code and constant data from its address space.
/// They are clean pages of the executable, still in the page cache: the few
/// the poll loop runs come back on first use (a minor fault, no disk read),
/// the rest (start-up, S3, unpack, install) stay out of the agent's resident
/// set until the next deployment needs them, and the kernel can reclaim them
/// without touching the agent. Only mappings of the executable that are not
/// writable and hold no page of their own (`Anonymous: 0`) are touched: the
/// relocated read-only data (RELRO) is private to the process and must stay.
/// Best effort: nothing happens when /proc cannot be read.
pub fn release_code_pages() {
    let (Ok(exe), Ok(smaps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/smaps"),
    ) else {
        return;
    };
    for (start, end) in clean_image_ranges(&smaps, &exe) {
        // SAFETY: the range is a whole mapping of the executable, read-only
        // and without any private (anonymous) page, as /proc/self/smaps said;
        // MADV_DONTNEED on such a mapping only drops page-table entries, and
        // the next access reads the same bytes from the file again.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// The address ranges, in `/proc/self/smaps` text, of the mappings of `exe`
/// that are not writable and hold no anonymous page. Pure.
pub fn clean_image_ranges(smaps: &str, exe: &Path) -> Vec<(usize, usize)> {
    struct Mapping {
        range: (usize, usize),
        candidate: bool,
        anonymous_kib: Option<u64>,
    }
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        let header_range = first.split_once('-').and_then(|(start, end)| {
            Some((
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
            ))
        });
        if let Some(range) = header_range {
            let perms = fields.next().unwrap_or_default();
            // Offset, device and inode, then the path (which may hold spaces,
            // or end in " (deleted)").
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            mappings.push(Mapping {
                range,
                candidate: exe.to_str() == Some(path.as_str())
                    && perms.len() == 4
                    && !perms.contains('w'),
                anonymous_kib: None,
            });
        } else if first == "Anonymous:" {
            if let Some(mapping) = mappings.last_mut() {
                mapping.anonymous_kib = fields.next().and_then(|kib| kib.parse().ok());
            }
        }
    }
    mappings
        .into_iter()
        .filter(|m| m.candidate && m.anonymous_kib == Some(0) && m.range.0 < m.range.1)
        .map(|m| m.range)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricting_keys_name_their_directories() {
        let mut config = AgentConfig::default();
        assert!(restricted_modes(&config).is_empty());
        config.hardening.agent_dirs = DirModes::Restricted;
        config.hardening.log_dir = DirModes::Restricted;
        let modes: Vec<(String, u32)> = restricted_modes(&config)
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
        let readme = include_str!("../../README.md");
        let documented = |key: &str| -> Option<String> {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `:{key}:`")))?;
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            cells.get(2).map(|c| c.trim_matches('`').to_string())
        };
        let defaults = crate::config::documented_defaults(&AgentConfig::default());
        assert!(defaults.len() >= 15, "{defaults:?}");
        for (key, default) in defaults {
            assert_eq!(
                documented(key).as_deref(),
                Some(default.as_str()),
                "README.md's row for `:{key}:` must give the default `{default}`"
            );
        }
    }

    #[test]
    fn the_version_file_sits_beside_the_deployment_root() {
        let cases = [
            (
                "/opt/codedeploy-agent/deployment-root",
                "/opt/codedeploy-agent/.version",
            ),
            (
                "/opt/codedeploy-agent/deployment-root/",
                "/opt/codedeploy-agent/.version",
            ),
            ("/srv/cd/root", "/srv/cd/.version"),
            ("/root-at-top", "/.version"),
            ("relative-root", "/.version"),
        ];
        for (root, expected) in cases {
            assert_eq!(version_file(Path::new(root)), Path::new(expected), "{root}");
        }
    }

    #[test]
    fn the_version_file_has_the_official_format_and_is_read_only() {
        assert_eq!(version_text("1.2.3"), "agent_version: 1.2.3\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent/.version");
        write_version_file(&path, "0.9.0").unwrap();
        // Rewritten at every start, over the read-only file of the last one.
        write_version_file(&path, "1.0.0").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "agent_version: 1.0.0\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444);
    }

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r--p 00000000 08:01 42 /opt/codedeploy-agent/bin/codedeploy-agent
Rss:                 400 kB
Anonymous:             0 kB
55d0c0100000-55d0c0700000 r-xp 00100000 08:01 42 /opt/codedeploy-agent/bin/codedeploy-agent
Rss:                5000 kB
Anonymous:             0 kB
55d0c0700000-55d0c0800000 r--p 00700000 08:01 42 /opt/codedeploy-agent/bin/codedeploy-agent
Rss:                 600 kB
Anonymous:           600 kB
55d0c0800000-55d0c0810000 rw-p 00800000 08:01 42 /opt/codedeploy-agent/bin/codedeploy-agent
Rss:                  64 kB
Anonymous:            64 kB
55d0c1000000-55d0c1100000 rw-p 00000000 00:00 0 [heap]
Rss:                 700 kB
Anonymous:           700 kB
7f0000000000-7f0000100000 r-xp 00000000 08:01 7 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 900 kB
Anonymous:             0 kB
7f0000200000-7f0000201000 r-xp 00000000 08:01 43 /opt/codedeploy-agent/bin/codedeploy-agent (deleted)
Anonymous:             0 kB
";

    /// Text and plain read-only data of the executable are released; its
    /// RELRO (private pages), its writable data, the heap, other files and
    /// a binary replaced on disk are not.
    #[test]
    fn only_clean_read_only_mappings_of_the_executable_are_released() {
        let exe = Path::new("/opt/codedeploy-agent/bin/codedeploy-agent");
        assert_eq!(
            clean_image_ranges(SMAPS, exe),
            vec![
                (0x55d0c0000000, 0x55d0c0100000),
                (0x55d0c0100000, 0x55d0c0700000)
            ]
        );
        assert!(clean_image_ranges(SMAPS, Path::new("/usr/bin/other")).is_empty());
        assert!(clean_image_ranges("", exe).is_empty());
    }

    /// On this very process: the executable's resident code shrinks, and the
    /// code, its constants and its relocated data all still work afterwards.
    #[test]
    fn releasing_code_pages_shrinks_the_resident_set_and_keeps_the_process_working() {
        fn resident_image_kib() -> u64 {
            let exe = std::fs::read_link("/proc/self/exe").unwrap();
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let mut total = 0;
            let mut ours = false;
            for line in smaps.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields
                    .first()
                    .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
                {
                    ours = fields.get(5) == Some(&exe.to_str().unwrap());
                } else if ours && fields.first() == Some(&"Rss:") {
                    total += fields[1].parse::<u64>().unwrap();
                }
            }
            total
        }
        // Touch a good part of the binary first: formatting, parsing, YAML.
        let config: serde_norway::Value = serde_norway::from_str("a: [1, 2, {b: c}]").unwrap();
        let before = resident_image_kib();
        release_code_pages();
        let after = resident_image_kib();
        assert!(after < before, "resident image {before} KiB -> {after} KiB");
        let again: serde_norway::Value = serde_norway::from_str("a: [1, 2, {b: c}]").unwrap();
        assert_eq!(config, again);
        assert_eq!(format!("{:?}", Path::new("/x")), "\"/x\"");
    }
}
