//! The typed values of the resource-bound keys (ours): what bounds every hook
//! script gets (`:hook_cpu_percent:`, `:hook_memory_limit_mb:`,
//! `:hook_max_processes:`, `:hook_nice:`, `:hook_io_priority:`) and the agent's
//! own priority (`:agent_nice:`, `:agent_io_priority:`). Validated once by the
//! parser; `hooks::bounds` applies them.

/// Resource bounds for hook scripts. `None` leaves that resource unbounded;
/// the default bounds nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookBounds {
    /// CPU time per wall-clock time, in percent of one CPU (150 = one and a
    /// half CPUs).
    pub cpu_percent: Option<CpuPercent>,
    /// Memory in MiB (kept in MiB so that messages say what the operator wrote).
    pub memory_limit_mb: Option<u64>,
    /// Processes (and threads) the script and everything it starts may hold
    /// at once.
    pub max_processes: Option<u64>,
    pub priority: Priority,
}

impl HookBounds {
    /// Whether a bound only a cgroup can enforce exactly is configured.
    pub fn needs_cgroup(&self) -> bool {
        self.cpu_percent.is_some() || self.memory_limit_mb.is_some() || self.max_processes.is_some()
    }
}

/// A CPU share in percent of one CPU, 1 or more (more than 100 spans CPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuPercent(u32);

impl CpuPercent {
    /// Up to 100 000 % (a thousand CPUs): past that a quota means nothing.
    pub fn new(percent: u64) -> Option<CpuPercent> {
        (1..=100_000)
            .contains(&percent)
            .then_some(CpuPercent(percent as u32))
    }

    pub fn value(self) -> u32 {
        self.0
    }
}

/// A scheduling priority: a nice value and an I/O priority, each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Priority {
    pub nice: Option<Nice>,
    pub io: Option<IoPriority>,
}

impl Priority {
    pub fn is_set(&self) -> bool {
        self.nice.is_some() || self.io.is_some()
    }
}

/// A nice value, -20 (most favoured) to 19 (least).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nice(i8);

impl Nice {
    pub fn new(value: i64) -> Option<Nice> {
        (-20..=19).contains(&value).then_some(Nice(value as i8))
    }

    pub fn value(self) -> i32 {
        i32::from(self.0)
    }
}

/// An I/O scheduling class as `ionice` names them. `realtime` is not offered:
/// a hook must never be able to starve the host's own I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPriority {
    /// Disk time nobody else wants.
    Idle,
    /// The normal class; `None` takes the level the kernel derives from the
    /// nice value.
    BestEffort(Option<IoLevel>),
}

/// A best-effort I/O level, 0 (highest) to 7 (lowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoLevel(u8);

impl IoLevel {
    pub fn new(value: u64) -> Option<IoLevel> {
        (value <= 7).then_some(IoLevel(value as u8))
    }

    pub fn value(self) -> u8 {
        self.0
    }
}

impl IoPriority {
    /// `idle`, `best-effort` or `best-effort:<0-7>`.
    pub fn parse(text: &str) -> Option<IoPriority> {
        match text.trim() {
            "idle" => Some(IoPriority::Idle),
            "best-effort" => Some(IoPriority::BestEffort(None)),
            other => {
                let level = other.strip_prefix("best-effort:")?.trim().parse().ok()?;
                IoLevel::new(level).map(|l| IoPriority::BestEffort(Some(l)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_priorities_parse_from_ionice_names() {
        let level = |n| Some(IoPriority::BestEffort(Some(IoLevel::new(n).unwrap())));
        let cases: &[(&str, Option<IoPriority>)] = &[
            ("idle", Some(IoPriority::Idle)),
            (" idle ", Some(IoPriority::Idle)),
            ("best-effort", Some(IoPriority::BestEffort(None))),
            ("best-effort:0", level(0)),
            ("best-effort:7", level(7)),
            ("best-effort:8", None),
            ("best-effort:", None),
            ("best-effort:-1", None),
            ("realtime", None),
            ("realtime:0", None),
            ("IDLE", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(IoPriority::parse(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn nice_and_cpu_percent_ranges() {
        assert_eq!(Nice::new(-20).map(Nice::value), Some(-20));
        assert_eq!(Nice::new(19).map(Nice::value), Some(19));
        assert_eq!(Nice::new(20), None);
        assert_eq!(Nice::new(-21), None);
        assert_eq!(CpuPercent::new(0), None);
        assert_eq!(CpuPercent::new(250).map(CpuPercent::value), Some(250));
        assert_eq!(CpuPercent::new(100_001), None);
    }
}
