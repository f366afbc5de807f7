//! What the benchmark reads about the agent from /proc: resident memory
//! (VmRSS, VmHWM) of a process and of its whole process tree, CPU time of
//! every thread (schedstat, in nanoseconds, and utime+stime in clock
//! ticks), context switches (wake-ups), and open file descriptors.
//!
//! The parsers are pure functions of the file text (tested by tables); the
//! `sample_*` functions only read the files. A process that vanished reads
//! as zero: the benchmark reports what it saw and does not abort mid-run.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A `kB` field of /proc/<pid>/status (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name != field {
            return None;
        }
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// A plain counter of /proc/<pid>/status (`voluntary_ctxt_switches`, ...).
pub fn status_count(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == field).then(|| value.trim().parse().ok())?
    })
}

/// The fields of /proc/<pid>/stat the benchmark needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// utime + stime of the whole thread group (dead threads included), in
    /// clock ticks.
    pub cpu_ticks: u64,
}

/// Parses /proc/<pid>/stat. The command name is parenthesised and may hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(stat: &str) -> Option<Stat> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        ppid,
        cpu_ticks: utime + stime,
    })
}

/// The first field of /proc/<pid>/task/<tid>/schedstat: nanoseconds on CPU.
pub fn parse_schedstat(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// Every process under `root` (itself included), given each process's
/// parent, in breadth-first order.
pub fn descendants(root: u32, parents: &HashMap<u32, u32>) -> Vec<u32> {
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        let mut children: Vec<u32> = parents
            .iter()
            .filter(|(_, p)| **p == parent)
            .map(|(pid, _)| *pid)
            .collect();
        children.sort_unstable();
        tree.extend(children);
        i += 1;
    }
    tree
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// VmRSS of one process, in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(&read(format!("/proc/{pid}/status")), "VmRSS").unwrap_or(0)
}

/// VmHWM (peak resident set) of one process, in KiB.
pub fn hwm_kib(pid: u32) -> u64 {
    status_kib(&read(format!("/proc/{pid}/status")), "VmHWM").unwrap_or(0)
}

/// The resident memory of a process tree: total KiB and how many processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeRss {
    pub kib: u64,
    pub processes: usize,
}

/// VmRSS summed over `pid` and all its descendants.
pub fn tree_rss(pid: u32) -> TreeRss {
    let mut parents = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(stat) = parse_stat(&read(entry.path().join("stat"))) {
                parents.insert(p, stat.ppid);
            }
        }
    }
    let tree = descendants(pid, &parents);
    TreeRss {
        kib: tree.iter().map(|p| rss_kib(*p)).sum(),
        processes: tree.len(),
    }
}

/// CPU and scheduling counters of every thread of a process at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadSample {
    /// Per thread id: (nanoseconds on CPU, voluntary + involuntary switches).
    pub threads: BTreeMap<u32, (u64, u64)>,
    /// utime + stime of the thread group, in clock ticks.
    pub cpu_ticks: u64,
}

pub fn sample_threads(pid: u32) -> ThreadSample {
    let mut threads = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for entry in entries.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let ns = parse_schedstat(&read(entry.path().join("schedstat"))).unwrap_or(0);
            let status = read(entry.path().join("status"));
            let switches = status_count(&status, "voluntary_ctxt_switches").unwrap_or(0)
                + status_count(&status, "nonvoluntary_ctxt_switches").unwrap_or(0);
            threads.insert(tid, (ns, switches));
        }
    }
    ThreadSample {
        threads,
        cpu_ticks: parse_stat(&read(format!("/proc/{pid}/stat")))
            .map(|s| s.cpu_ticks)
            .unwrap_or(0),
    }
}

/// What happened between two samples of the same process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThreadDelta {
    /// CPU nanoseconds of the threads alive at the end (a thread born in
    /// between counts from zero).
    pub cpu_ns: u64,
    pub switches: u64,
    /// Threads seen at the start but gone at the end: their last slice of
    /// CPU is missing from `cpu_ns` (the tick count still has it).
    pub threads_gone: usize,
    pub cpu_ticks: u64,
}

pub fn delta(before: &ThreadSample, after: &ThreadSample) -> ThreadDelta {
    let mut cpu_ns = 0;
    let mut switches = 0;
    for (tid, (ns, sw)) in &after.threads {
        let (ns0, sw0) = before.threads.get(tid).copied().unwrap_or((0, 0));
        cpu_ns += ns.saturating_sub(ns0);
        switches += sw.saturating_sub(sw0);
    }
    ThreadDelta {
        cpu_ns,
        switches,
        threads_gone: before
            .threads
            .keys()
            .filter(|t| !after.threads.contains_key(t))
            .count(),
        cpu_ticks: after.cpu_ticks.saturating_sub(before.cpu_ticks),
    }
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The kernel's clock ticks per second (USER_HZ), from `getconf CLK_TCK`;
/// 100, the value on every mainstream Linux build, when getconf is missing.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|hz| *hz > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcodedeploy-agen\nVmHWM:\t   14000 kB\nVmRSS:\t   13772 kB\n\
                          voluntary_ctxt_switches:\t42\nnonvoluntary_ctxt_switches:\t3\n";

    #[test]
    fn status_fields() {
        let cases: &[(&str, Option<u64>)] = &[
            ("VmRSS", Some(13772)),
            ("VmHWM", Some(14000)),
            ("VmSwap", None),
            // A counter has no kB unit: not a size.
            ("voluntary_ctxt_switches", None),
        ];
        for (field, expected) in cases {
            assert_eq!(status_kib(STATUS, field), *expected, "{field}");
        }
        assert_eq!(status_count(STATUS, "voluntary_ctxt_switches"), Some(42));
        assert_eq!(status_count(STATUS, "nonvoluntary_ctxt_switches"), Some(3));
        assert_eq!(status_count(STATUS, "Threads"), None);
    }

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let cases: &[(&str, Option<Stat>)] = &[
            (
                "1234 (codedeploy-agen) S 1 1234 1234 0 -1 4194560 900 0 0 0 17 5 0 0 20 0 1 0",
                Some(Stat {
                    ppid: 1,
                    cpu_ticks: 22,
                }),
            ),
            (
                "77 (a) b (c)) R 76 77 77 0 -1 0 0 0 0 0 3 4 0 0",
                Some(Stat {
                    ppid: 76,
                    cpu_ticks: 7,
                }),
            ),
            ("", None),
            ("1 (x) S", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_stat(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn schedstat_first_field_is_cpu_nanoseconds() {
        assert_eq!(parse_schedstat("123456789 2000 17\n"), Some(123_456_789));
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn descendants_walk_the_whole_tree_and_nothing_else() {
        let parents: HashMap<u32, u32> = [(10, 1), (11, 10), (12, 10), (13, 11), (20, 1), (21, 20)]
            .into_iter()
            .collect();
        assert_eq!(descendants(10, &parents), vec![10, 11, 12, 13]);
        assert_eq!(descendants(13, &parents), vec![13]);
        assert_eq!(descendants(99, &parents), vec![99]);
    }

    #[test]
    fn delta_counts_new_threads_from_zero_and_names_vanished_ones() {
        let before = ThreadSample {
            threads: [(1, (1_000, 10)), (2, (500, 4))].into_iter().collect(),
            cpu_ticks: 3,
        };
        let after = ThreadSample {
            threads: [(1, (1_600, 15)), (3, (200, 2))].into_iter().collect(),
            cpu_ticks: 4,
        };
        assert_eq!(
            delta(&before, &after),
            ThreadDelta {
                cpu_ns: 800,
                switches: 7,
                threads_gone: 1,
                cpu_ticks: 1,
            }
        );
    }
}
