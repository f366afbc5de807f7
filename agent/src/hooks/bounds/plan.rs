//! What to write where for a hook's bounds, and what the fallback can and
//! cannot express. Pure: typed bounds in, file names and values out.

use crate::config::{HookBounds, IoPriority, Priority};

use super::layout::Controller;

/// The CFS period the CPU quota is expressed over. 100 ms is the kernel's
/// default: short enough that a bounded hook never stalls for long, long
/// enough that the throttling itself costs nothing measurable.
pub const CPU_PERIOD_US: u64 = 100_000;

const MIB: u64 = 1024 * 1024;

/// One value to write into a hook's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupWrite {
    pub controller: Controller,
    pub file: &'static str,
    pub value: String,
    /// Written only when the kernel offers the file (swap accounting is often
    /// off); a missing required file is an error.
    pub optional: bool,
}

fn write(controller: Controller, file: &'static str, value: String) -> CgroupWrite {
    CgroupWrite {
        controller,
        file,
        value,
        optional: false,
    }
}

fn optional(controller: Controller, file: &'static str, value: String) -> CgroupWrite {
    CgroupWrite {
        optional: true,
        ..write(controller, file, value)
    }
}

fn cpu_quota_us(percent: u32) -> u64 {
    CPU_PERIOD_US * u64::from(percent) / 100
}

/// cgroup v1, in the order they must be written (the period before the quota,
/// memory before memory+swap, which may never be below it).
pub fn v1_writes(bounds: &HookBounds) -> Vec<CgroupWrite> {
    let mut writes = Vec::new();
    if let Some(percent) = bounds.cpu_percent {
        writes.push(write(
            Controller::Cpu,
            "cpu.cfs_period_us",
            CPU_PERIOD_US.to_string(),
        ));
        writes.push(write(
            Controller::Cpu,
            "cpu.cfs_quota_us",
            cpu_quota_us(percent.value()).to_string(),
        ));
    }
    if let Some(mb) = bounds.memory_limit_mb {
        let bytes = mb.saturating_mul(MIB).to_string();
        writes.push(write(
            Controller::Memory,
            "memory.limit_in_bytes",
            bytes.clone(),
        ));
        // Without this a host with swap pages the hook out instead of bounding it.
        writes.push(optional(
            Controller::Memory,
            "memory.memsw.limit_in_bytes",
            bytes,
        ));
    }
    if let Some(n) = bounds.max_processes {
        writes.push(write(Controller::Pids, "pids.max", n.to_string()));
    }
    writes
}

/// cgroup v2.
pub fn v2_writes(bounds: &HookBounds) -> Vec<CgroupWrite> {
    let mut writes = Vec::new();
    if let Some(percent) = bounds.cpu_percent {
        writes.push(write(
            Controller::Cpu,
            "cpu.max",
            format!("{} {CPU_PERIOD_US}", cpu_quota_us(percent.value())),
        ));
    }
    if let Some(mb) = bounds.memory_limit_mb {
        writes.push(write(
            Controller::Memory,
            "memory.max",
            mb.saturating_mul(MIB).to_string(),
        ));
        writes.push(optional(Controller::Memory, "memory.swap.max", "0".into()));
    }
    if let Some(n) = bounds.max_processes {
        writes.push(write(Controller::Pids, "pids.max", n.to_string()));
    }
    writes
}

/// The controllers the bounds need (v2 names; on v1 `cpuacct` is added for
/// accounting where it is mounted).
pub fn needed_controllers(bounds: &HookBounds) -> Vec<Controller> {
    let mut needed = Vec::new();
    if bounds.cpu_percent.is_some() {
        needed.push(Controller::Cpu);
    }
    if bounds.memory_limit_mb.is_some() {
        needed.push(Controller::Memory);
    }
    if bounds.max_processes.is_some() {
        needed.push(Controller::Pids);
    }
    needed
}

const IOPRIO_CLASS_SHIFT: u32 = 13;
const IOPRIO_CLASS_BE: u32 = 2;
const IOPRIO_CLASS_IDLE: u32 = 3;

/// The `ioprio_set` value for a priority. A best-effort class without a level
/// takes the level the kernel gives a process of that nice value
/// (`(nice + 20) / 5`), so `hook_nice: 10` alone and with `best-effort` agree.
pub fn ioprio_value(priority: &Priority) -> Option<u32> {
    match priority.io? {
        IoPriority::Idle => Some(IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT),
        IoPriority::BestEffort(level) => {
            let level = match level {
                Some(level) => u32::from(level.value()),
                None => {
                    let nice = priority.nice.map_or(0, |n| n.value());
                    ((nice + 20) / 5).clamp(0, 7) as u32
                }
            };
            Some((IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | level)
        }
    }
}

/// A resource limit the fallback sets in the child before it runs the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    /// Address space, in bytes.
    AddressSpace(u64),
    /// Processes of the script's user.
    Processes(u64),
}

/// The rlimits that stand in for the cgroup bounds when no controller is
/// writable.
pub fn fallback_rlimits(bounds: &HookBounds) -> Vec<Rlimit> {
    let mut limits = Vec::new();
    if let Some(mb) = bounds.memory_limit_mb {
        limits.push(Rlimit::AddressSpace(mb.saturating_mul(MIB)));
    }
    if let Some(n) = bounds.max_processes {
        limits.push(Rlimit::Processes(n));
    }
    limits
}

/// The one warning for the agent's lifetime when the cgroup bounds cannot be
/// applied: which ones, why, and what stands in for them.
pub fn fallback_warning(bounds: &HookBounds, why: &str) -> Option<String> {
    if !bounds.needs_cgroup() {
        return None;
    }
    let mut instead = Vec::new();
    if let Some(percent) = bounds.cpu_percent {
        instead.push(format!(
            ":hook_cpu_percent: {} is not applied (no rlimit expresses a share of a CPU; RLIMIT_CPU only caps total CPU time)",
            percent.value()
        ));
    }
    if let Some(mb) = bounds.memory_limit_mb {
        instead.push(format!(
            ":hook_memory_limit_mb: {mb} is applied as RLIMIT_AS (address space, which counts reserved memory too, per process, not for the hook as a whole)"
        ));
    }
    if let Some(n) = bounds.max_processes {
        instead.push(format!(
            ":hook_max_processes: {n} is applied as RLIMIT_NPROC (counted per user across the host, and not enforced for root)"
        ));
    }
    Some(format!(
        "hook resource bounds cannot use cgroups ({why}); falling back to rlimits and priorities: {}. Run the agent as root under systemd with Delegate=yes, or on a host with writable cgroup v1 controllers, for exact bounds.",
        instead.join("; ")
    ))
}
