//! What the forked child does to itself before it runs a hook script (join
//! its cgroup, priorities, fallback rlimits), and the agent's own priority.
//!
//! The child half runs between fork and exec: only async-signal-safe system
//! calls, no allocation, no locks. Everything it needs (open descriptors,
//! numbers) is prepared in the parent.

// Unsafe by necessity: setrlimit, setpriority and ioprio_set, which nix does not wrap, some between fork and exec. Each block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

use crate::config::Priority;

use super::error::AgentPriorityError;
use super::plan::{self, Rlimit};

const IOPRIO_WHO_PROCESS: libc::c_int = 1;

/// The child's side of the bounds, ready before the fork.
#[derive(Debug, Clone, Default)]
pub struct PreExec {
    /// `cgroup.procs` of the hook's groups: writing `0` moves the writer.
    pub join: Vec<RawFd>,
    pub nice: Option<i32>,
    pub ioprio: Option<u32>,
    pub rlimits: Vec<Rlimit>,
}

impl PreExec {
    pub fn with_priority(priority: &Priority) -> PreExec {
        PreExec {
            nice: priority.nice.map(|n| n.value()),
            ioprio: plan::ioprio_value(priority),
            ..PreExec::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.join.is_empty()
            && self.nice.is_none()
            && self.ioprio.is_none()
            && self.rlimits.is_empty()
    }

    /// Runs in the child after fork: joining the cgroup comes first, so that
    /// nothing the script starts is ever outside it. A failure fails the spawn:
    /// a hook must not run unbounded when bounds were asked for.
    pub fn apply_in_child(&self) -> io::Result<()> {
        for fd in &self.join {
            // SAFETY: `fd` is an open descriptor the parent keeps until the
            // spawn returns; the buffer is a static one-byte string.
            let written = unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) };
            if written != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(nice) = self.nice {
            set_nice(0, nice)?;
        }
        if let Some(value) = self.ioprio {
            set_ioprio(0, value)?;
        }
        for limit in &self.rlimits {
            let (resource, value) = match *limit {
                Rlimit::AddressSpace(bytes) => (libc::RLIMIT_AS, bytes),
                Rlimit::Processes(n) => (libc::RLIMIT_NPROC, n),
            };
            let limit = libc::rlimit {
                rlim_cur: value as libc::rlim_t,
                rlim_max: value as libc::rlim_t,
            };
            // SAFETY: a plain system call on a stack value.
            if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

fn set_nice(tid: libc::id_t, nice: i32) -> io::Result<()> {
    // SAFETY: a plain system call.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_ioprio(tid: libc::c_int, value: u32) -> io::Result<()> {
    // SAFETY: ioprio_set takes three integers; nix and libc have no wrapper.
    let done = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            tid,
            value as libc::c_int,
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Applies `:agent_nice:` and `:agent_io_priority:` to every thread of the
/// agent (Linux keeps both per thread; threads started later inherit them).
/// Hooks inherit them too unless `:hook_nice:` / `:hook_io_priority:` say
/// otherwise.
pub fn apply_to_agent(priority: &Priority) -> Result<(), AgentPriorityError> {
    if !priority.is_set() {
        return Ok(());
    }
    let ioprio = plan::ioprio_value(priority);
    let tasks = std::fs::read_dir("/proc/self/task")
        .map_err(|source| AgentPriorityError::ListThreads { source })?;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(nice) = priority.nice {
            set_nice(tid as libc::id_t, nice.value()).map_err(|source| {
                AgentPriorityError::Nice {
                    nice: nice.value(),
                    source,
                }
            })?;
        }
        if let Some(value) = ioprio {
            set_ioprio(tid, value).map_err(|source| AgentPriorityError::IoPriority { source })?;
        }
    }
    Ok(())
}
