//! Tables for the pure parts (layout detection, what is written where, I/O
//! priorities, the fallback warning, the texts of refusals) and the v2 writer
//! against a directory tree laid out like cgroupfs. The real-cgroup tests run
//! whole hooks: they are in `hooks/runner/tests.rs`.

use std::fs;
use std::path::{Path, PathBuf};

use super::cgroup::{HookCgroup, Placement, Version};
use super::layout::{detect, CgroupLayout, Controller, V1Hierarchy};
use super::plan::{self, CgroupWrite, Rlimit};
use super::{AgentPriorityError, CgroupError, Enforcer};
use crate::config::{CpuPercent, HookBounds, IoLevel, IoPriority, Nice, Priority};

/// This machine's kind of host: v1 controllers each mounted alone, the memory
/// group nested, and a unified hierarchy without controllers beside them.
const HYBRID_MOUNTINFO: &str = "\
23 1 0:21 / / rw,relatime - overlay overlay rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/ef1b
2:cpuacct:/
1:cpu:/
0::/
";

fn v1(controllers: &[Controller], dir: &str) -> V1Hierarchy {
    V1Hierarchy {
        controllers: controllers.to_vec(),
        dir: PathBuf::from(dir),
    }
}

#[test]
fn layouts_are_read_from_mountinfo_and_proc_cgroup() {
    use Controller::*;
    let cases: &[(&str, &str, &str, CgroupLayout)] = &[
        (
            "hybrid host, nested memory group",
            HYBRID_MOUNTINFO,
            HYBRID_CGROUP,
            CgroupLayout {
                v1: vec![
                    v1(&[Pids], "/sys/fs/cgroup/pids"),
                    v1(&[Memory], "/sys/fs/cgroup/memory/process_api/ef1b"),
                    v1(&[CpuAcct], "/sys/fs/cgroup/cpuacct"),
                    v1(&[Cpu], "/sys/fs/cgroup/cpu"),
                ],
                v2: Some(PathBuf::from("/sys/fs/cgroup/unified")),
                named: Some(PathBuf::from("/sys/fs/cgroup/systemd")),
            },
        ),
        (
            "Amazon Linux 2: cpu and cpuacct mounted together",
            "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw shared:11 - cgroup cgroup rw,cpu,cpuacct\n\
             31 25 0:27 / /sys/fs/cgroup/memory rw shared:12 - cgroup cgroup rw,memory\n\
             24 23 0:21 / /sys/fs/cgroup/systemd rw shared:6 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd\n",
            "4:memory:/system.slice/codedeploy-agent.service\n3:cpu,cpuacct:/system.slice/codedeploy-agent.service\n1:name=systemd:/system.slice/codedeploy-agent.service\n",
            CgroupLayout {
                v1: vec![
                    v1(&[Memory], "/sys/fs/cgroup/memory/system.slice/codedeploy-agent.service"),
                    v1(
                        &[Cpu, CpuAcct],
                        "/sys/fs/cgroup/cpu,cpuacct/system.slice/codedeploy-agent.service",
                    ),
                ],
                v2: None,
                named: Some(PathBuf::from(
                    "/sys/fs/cgroup/systemd/system.slice/codedeploy-agent.service",
                )),
            },
        ),
        (
            "pure v2 under systemd",
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/system.slice/codedeploy-agent.service\n",
            CgroupLayout {
                v1: vec![],
                v2: Some(PathBuf::from(
                    "/sys/fs/cgroup/system.slice/codedeploy-agent.service",
                )),
                named: None,
            },
        ),
        (
            "container: the mount's root is the container's own group",
            "40 30 0:30 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n",
            "5:memory:/docker/abc\n",
            CgroupLayout {
                v1: vec![v1(&[Memory], "/sys/fs/cgroup/memory")],
                v2: None,
                named: None,
            },
        ),
        (
            "a group outside what the mount shows is unusable",
            "40 30 0:30 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n",
            "5:memory:/docker/abcdef\n5:pids:/\n",
            CgroupLayout::default(),
        ),
        (
            "escaped mount point; unreadable lines skipped",
            "garbage\n41 31 0:38 / /mnt/cg\\040v2 rw - cgroup2 cgroup2 rw\n",
            "nonsense\n0::/a b\n",
            CgroupLayout {
                v1: vec![],
                v2: Some(PathBuf::from("/mnt/cg v2/a b")),
                named: None,
            },
        ),
        (
            "no cgroup file system at all",
            "23 1 0:21 / / rw - ext4 /dev/sda1 rw\n",
            "0::/\n",
            CgroupLayout::default(),
        ),
    ];
    for (name, mountinfo, self_cgroup, expected) in cases {
        assert_eq!(detect(mountinfo, self_cgroup), *expected, "{name}");
    }
}

fn bounds(cpu: Option<u64>, memory_mb: Option<u64>, processes: Option<u64>) -> HookBounds {
    HookBounds {
        cpu_percent: cpu.map(|p| CpuPercent::new(p).unwrap()),
        memory_limit_mb: memory_mb,
        max_processes: processes,
        priority: Priority::default(),
    }
}

fn rendered(writes: &[CgroupWrite]) -> Vec<String> {
    writes
        .iter()
        .map(|w| {
            format!(
                "{}/{}={}{}",
                w.controller.name(),
                w.file,
                w.value,
                if w.optional { " (if present)" } else { "" }
            )
        })
        .collect()
}

#[test]
fn bounds_become_cgroup_files_for_v1_and_v2() {
    let cases: &[(HookBounds, &[&str], &[&str])] = &[
        (HookBounds::default(), &[], &[]),
        (
            bounds(Some(20), Some(64), Some(32)),
            &[
                "cpu/cpu.cfs_period_us=100000",
                "cpu/cpu.cfs_quota_us=20000",
                "memory/memory.limit_in_bytes=67108864",
                "memory/memory.memsw.limit_in_bytes=67108864 (if present)",
                "pids/pids.max=32",
            ],
            &[
                "cpu/cpu.max=20000 100000",
                "memory/memory.max=67108864",
                "memory/memory.swap.max=0 (if present)",
                "pids/pids.max=32",
            ],
        ),
        (
            bounds(Some(250), None, None),
            &[
                "cpu/cpu.cfs_period_us=100000",
                "cpu/cpu.cfs_quota_us=250000",
            ],
            &["cpu/cpu.max=250000 100000"],
        ),
        (
            bounds(Some(1), None, Some(1)),
            &[
                "cpu/cpu.cfs_period_us=100000",
                "cpu/cpu.cfs_quota_us=1000",
                "pids/pids.max=1",
            ],
            &["cpu/cpu.max=1000 100000", "pids/pids.max=1"],
        ),
    ];
    for (bounds, v1, v2) in cases {
        assert_eq!(rendered(&plan::v1_writes(bounds)), *v1, "{bounds:?}");
        assert_eq!(rendered(&plan::v2_writes(bounds)), *v2, "{bounds:?}");
    }
}

#[test]
fn io_priorities_become_ioprio_values() {
    let priority = |nice: Option<i64>, io: Option<IoPriority>| Priority {
        nice: nice.map(|n| Nice::new(n).unwrap()),
        io,
    };
    let be = |level: u64| Some(IoPriority::BestEffort(IoLevel::new(level)));
    let cases: &[(Priority, Option<u32>)] = &[
        (priority(None, None), None),
        (priority(Some(10), None), None),
        (priority(None, Some(IoPriority::Idle)), Some(3 << 13)),
        (priority(None, be(0)), Some(2 << 13)),
        (priority(Some(-20), be(7)), Some((2 << 13) | 7)),
        // Without a level: the one the kernel derives from the nice value.
        (
            priority(None, Some(IoPriority::BestEffort(None))),
            Some((2 << 13) | 4),
        ),
        (
            priority(Some(19), Some(IoPriority::BestEffort(None))),
            Some((2 << 13) | 7),
        ),
        (
            priority(Some(-20), Some(IoPriority::BestEffort(None))),
            Some(2 << 13),
        ),
    ];
    for (priority, expected) in cases {
        assert_eq!(plan::ioprio_value(priority), *expected, "{priority:?}");
    }
}

#[test]
fn the_fallback_says_what_stands_in_for_each_bound() {
    assert_eq!(plan::fallback_warning(&HookBounds::default(), "why"), None);
    let all = bounds(Some(20), Some(64), Some(32));
    let warning = plan::fallback_warning(&all, "read-only file system").unwrap();
    for part in [
        "(read-only file system)",
        ":hook_cpu_percent: 20 is not applied",
        ":hook_memory_limit_mb: 64 is applied as RLIMIT_AS",
        ":hook_max_processes: 32 is applied as RLIMIT_NPROC",
        "not enforced for root",
        "Delegate=yes",
    ] {
        assert!(warning.contains(part), "{part:?} missing from {warning}");
    }
    assert_eq!(
        plan::fallback_rlimits(&all),
        [
            Rlimit::AddressSpace(64 * 1024 * 1024),
            Rlimit::Processes(32)
        ]
    );
    let memory_only = plan::fallback_warning(&bounds(None, Some(8), None), "x").unwrap();
    assert!(!memory_only.contains("hook_cpu_percent"), "{memory_only}");
}

/// A directory laid out like a delegated v2 group.
fn fake_v2_group(controllers: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("cgroup.controllers"), controllers).unwrap();
    fs::write(tmp.path().join("cgroup.subtree_control"), "").unwrap();
    fs::write(tmp.path().join("cgroup.procs"), "").unwrap();
    tmp
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_v2_writer_enables_controllers_and_writes_each_bound() {
    let tree = fake_v2_group("cpuset cpu io memory hugetlb pids rdma misc\n");
    let layout = CgroupLayout {
        v1: vec![],
        v2: Some(tree.path().to_path_buf()),
        named: None,
    };
    let bounds = bounds(Some(20), Some(64), Some(32));
    let placement = Placement::establish(&layout, &bounds, "codedeploy-hooks").unwrap();
    assert_eq!(placement.version(), Version::V2);
    assert!(placement.missing.is_empty());
    let parent = tree.path().join("codedeploy-hooks");
    assert_eq!(
        read(&tree.path().join("cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    assert_eq!(
        read(&parent.join("cgroup.subtree_control")),
        "+cpu +memory +pids"
    );

    // The kernel offers memory.swap.max only with swap accounting: written
    // where it exists, never created.
    let with_swap = parent.join("with-swap");
    fs::create_dir_all(&with_swap).unwrap();
    fs::write(with_swap.join("memory.swap.max"), "max").unwrap();
    fs::write(with_swap.join("cgroup.procs"), "").unwrap();
    let group = HookCgroup::create(&placement, "with-swap", &bounds).unwrap();
    assert_eq!(read(&with_swap.join("cpu.max")), "20000 100000");
    assert_eq!(read(&with_swap.join("memory.max")), "67108864");
    assert_eq!(read(&with_swap.join("memory.swap.max")), "0");
    assert_eq!(read(&with_swap.join("pids.max")), "32");
    assert_eq!(group.join_fds().len(), 1, "one cgroup.procs to join");
    assert_eq!(group.dirs().collect::<Vec<_>>(), [with_swap.as_path()]);

    let plain = HookCgroup::create(&placement, "plain", &bounds).unwrap();
    let dir = parent.join("plain");
    assert!(!dir.join("memory.swap.max").exists());
    assert_eq!(read(&dir.join("pids.max")), "32");
    // Accounting as the kernel lays it out.
    fs::write(
        dir.join("memory.events"),
        "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n",
    )
    .unwrap();
    fs::write(
        dir.join("cpu.stat"),
        "usage_usec 250000\nuser_usec 200000\n",
    )
    .unwrap();
    assert_eq!(plain.oom_kills(), Some(1));
    assert_eq!(
        plain.cpu_usage(),
        Some(std::time::Duration::from_millis(250))
    );
}

#[test]
fn a_v2_group_without_the_controllers_is_refused_or_partly_used() {
    let bounds = bounds(Some(20), Some(64), Some(32));
    let none = fake_v2_group("cpuset io\n");
    let layout = CgroupLayout {
        v1: vec![],
        v2: Some(none.path().to_path_buf()),
        named: None,
    };
    let why = Placement::establish(&layout, &bounds, "codedeploy-hooks")
        .unwrap_err()
        .to_string();
    assert!(
        why.contains("not delegated") && why.contains("Delegate=yes"),
        "{why}"
    );

    let some = fake_v2_group("cpu memory\n");
    let layout = CgroupLayout {
        v1: vec![],
        v2: Some(some.path().to_path_buf()),
        named: None,
    };
    let placement = Placement::establish(&layout, &bounds, "codedeploy-hooks").unwrap();
    assert_eq!(placement.missing, [Controller::Pids]);
    assert_eq!(
        read(&some.path().join("cgroup.subtree_control")),
        "+cpu +memory"
    );
}

#[test]
fn without_a_writable_cgroup_rlimits_and_priorities_stand_in() {
    let bounds = HookBounds {
        priority: Priority {
            nice: Nice::new(7),
            io: Some(IoPriority::Idle),
        },
        ..bounds(Some(20), Some(64), Some(32))
    };
    let layout = CgroupLayout {
        v1: vec![],
        v2: Some(PathBuf::from("/nonexistent/cgroup")),
        named: None,
    };
    let enforcer = Enforcer::with_layout(bounds, &layout, "codedeploy-hooks");
    assert!(!enforcer.uses_cgroups_fully());
    let confinement = enforcer.confine("d-TEST.BeforeInstall");
    let pre = confinement.pre_exec().unwrap();
    assert!(pre.join.is_empty());
    assert_eq!(pre.nice, Some(7));
    assert_eq!(pre.ioprio, Some(3 << 13));
    assert_eq!(
        pre.rlimits,
        [
            Rlimit::AddressSpace(64 * 1024 * 1024),
            Rlimit::Processes(32)
        ]
    );

    // No bounds at all: nothing to do in the child.
    let disabled = Enforcer::disabled();
    assert!(disabled.confine("x").pre_exec().is_none());
}

#[test]
fn why_a_cgroup_or_the_agents_priority_is_refused_reads_as_before() {
    let denied = || std::io::Error::from_raw_os_error(libc::EACCES);
    let group = || PathBuf::from("/sys/fs/cgroup/system.slice/codedeploy-agent.service");
    let cases: [(Box<dyn std::error::Error>, &str); 12] = [
        (
            Box::new(CgroupError::NoHierarchy { controllers: vec![Controller::Cpu, Controller::Memory] }),
            "no mounted cgroup hierarchy holds the cpu, memory controller(s)",
        ),
        (Box::new(CgroupError::NothingMounted), "no cgroup hierarchy is mounted"),
        (
            Box::new(CgroupError::EveryHierarchyRefused(vec![
                CgroupError::Create { dir: group().join("a"), source: denied() },
                CgroupError::Create { dir: group().join("b"), source: denied() },
            ])),
            "cannot create /sys/fs/cgroup/system.slice/codedeploy-agent.service/a: Permission denied (os error 13); cannot create /sys/fs/cgroup/system.slice/codedeploy-agent.service/b: Permission denied (os error 13)",
        ),
        (
            Box::new(CgroupError::NotDelegated { controllers: vec![Controller::Pids], dir: group() }),
            "the pids controller(s) are not delegated to /sys/fs/cgroup/system.slice/codedeploy-agent.service (run the agent under systemd with Delegate=yes)",
        ),
        (
            Box::new(CgroupError::Read { path: group().join("cgroup.controllers"), source: denied() }),
            "cannot read /sys/fs/cgroup/system.slice/codedeploy-agent.service/cgroup.controllers: Permission denied (os error 13)",
        ),
        (
            Box::new(CgroupError::Open { path: group().join("h/cgroup.procs"), source: denied() }),
            "cannot open /sys/fs/cgroup/system.slice/codedeploy-agent.service/h/cgroup.procs: Permission denied (os error 13)",
        ),
        (
            Box::new(CgroupError::Write { value: "64".into(), path: group().join("h/pids.max"), source: denied() }),
            "cannot write 64 to /sys/fs/cgroup/system.slice/codedeploy-agent.service/h/pids.max: Permission denied (os error 13)",
        ),
        (
            Box::new(CgroupError::Enable { enable: "+cpu +memory".into(), path: group().join("cgroup.subtree_control"), source: denied() }),
            "cannot enable +cpu +memory in /sys/fs/cgroup/system.slice/codedeploy-agent.service/cgroup.subtree_control: Permission denied (os error 13)",
        ),
        (
            Box::new(CgroupError::EnableAfterMove { enable: "+cpu".into(), dir: group(), leaf: group().join("agent"), source: denied() }),
            "cannot enable +cpu in /sys/fs/cgroup/system.slice/codedeploy-agent.service after moving the agent to /sys/fs/cgroup/system.slice/codedeploy-agent.service/agent: Permission denied (os error 13)",
        ),
        (
            Box::new(AgentPriorityError::ListThreads { source: denied() }),
            "cannot list the agent's threads in /proc/self/task: Permission denied (os error 13)",
        ),
        (
            Box::new(AgentPriorityError::Nice { nice: -5, source: denied() }),
            "cannot set the agent's nice value to -5: Permission denied (os error 13)",
        ),
        (
            Box::new(AgentPriorityError::IoPriority { source: denied() }),
            "cannot set the agent's I/O priority: Permission denied (os error 13)",
        ),
    ];
    for (error, expected) in cases {
        assert_eq!(error.to_string(), expected);
    }
}
