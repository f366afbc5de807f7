//! Core dumps of the agent: it holds credentials, so by default it makes
//! itself non-dumpable (`PR_SET_DUMPABLE` 0: no core file, and its memory is
//! closed to other users' ptrace and /proc/PID/mem) and sets its own soft
//! `RLIMIT_CORE` to 0, keeping the hard limit. Hooks are the operator's
//! applications, not the agent: they get the soft limit the agent started with
//! back (restored between fork and exec, see `hooks::HookPolicy::core_limit`),
//! and exec makes them dumpable again, so an application a hook starts dumps
//! core exactly as it would without the agent. A handful of system calls, made
//! once, before any thread or hook exists.

// Unsafe by necessity: getrlimit and setrlimit on the core limit, for the
// agent and, between fork and exec, for a hook. Each block says why it is sound.
#![allow(unsafe_code)]

use std::io;

use crate::config::CoreDumps;

/// A process's `RLIMIT_CORE`, in bytes (`u64::MAX` for unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Applies `:disable_core_dumps:`, logging what the kernel now says. Returns
/// the core limit hooks get back (`None` when the agent's own limit was left
/// alone). A failure is a warning: it may not keep the agent from deploying.
pub fn apply(setting: CoreDumps) -> Option<CoreLimit> {
    match setting {
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
    }
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
