//! The cgroup file-system side of the bounds: the hooks' parent group set up
//! once, then one group per hook script that is created, limited, emptied
//! (killed or released) and removed. Every function here touches cgroupfs;
//! what to write comes from `plan.rs`.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::error::CgroupError;
use super::layout::{CgroupLayout, Controller};
use super::plan::{self, CgroupWrite};
use crate::config::HookBounds;

/// How long emptying a group may take before the agent gives up on it: a
/// process stuck in the kernel must not hold the deployment.
const EMPTY_LIMIT: Duration = Duration::from_secs(5);
const EMPTY_POLL: Duration = Duration::from_millis(10);
/// The first wait between two looks: a group is usually empty (or removable)
/// a moment after its last process is reaped, and every hook pays this wait.
const FIRST_POLL: Duration = Duration::from_millis(1);

/// 1 ms, 2 ms, 4 ms, 8 ms, then every 10 ms.
fn next_poll(previous: Duration) -> Duration {
    (previous * 2).min(EMPTY_POLL)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// One hierarchy's part of the hooks' home: where hook groups are made, and
/// the agent's own group, where a successful hook's leftovers go.
#[derive(Debug, Clone)]
struct Slot {
    controllers: Vec<Controller>,
    parent: PathBuf,
    home: PathBuf,
}

impl Slot {
    /// Creates a hook's group, and the hooks' parent again first if it went
    /// missing (another agent in the same cgroup, such as a `codedeploy-local`
    /// run beside the daemon, removes the shared parent when it stops).
    fn create_child(&self, version: Version, dir: &Path) -> io::Result<()> {
        match create_dir(dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                create_dir(&self.parent)?;
                if version == Version::V2 && !self.controllers.is_empty() {
                    write_file(
                        &self.parent.join("cgroup.subtree_control"),
                        &enabling(&self.controllers),
                    )?;
                }
                create_dir(dir)
            }
            other => other,
        }
    }
}

/// `+cpu +memory`: what `cgroup.subtree_control` takes to enable them.
fn enabling(controllers: &[Controller]) -> String {
    controllers
        .iter()
        .map(|c| format!("+{}", c.name()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where the hook groups go, set up once for the agent's lifetime.
#[derive(Debug, Clone)]
pub struct Placement {
    version: Version,
    slots: Vec<Slot>,
    /// Controllers the bounds need that no writable hierarchy holds.
    pub missing: Vec<Controller>,
}

impl Placement {
    /// Sets up `<agent's group>/<group_name>` in each hierarchy the bounds
    /// need: v1 where the controllers are mounted as v1 (this wins on a
    /// hybrid host: the v2 tree then has no controllers to give), v2 otherwise.
    pub fn establish(
        layout: &CgroupLayout,
        bounds: &HookBounds,
        group_name: &str,
    ) -> Result<Placement, CgroupError> {
        let needed = plan::needed_controllers(bounds);
        if needed.is_empty() {
            return establish_tracking(layout, group_name);
        }
        if needed.iter().any(|c| layout.v1_dir(*c).is_some()) {
            return establish_v1(layout, &needed, group_name);
        }
        match &layout.v2 {
            Some(dir) => establish_v2(dir, &needed, group_name),
            None => Err(CgroupError::NoHierarchy {
                controllers: needed,
            }),
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Best effort: a parent still holding a hook group stays.
    pub fn remove_parents(&self) {
        for slot in &self.slots {
            let _ = fs::remove_dir(&slot.parent);
        }
    }
}

/// No bound asked for: groups without controllers, only so that every
/// process a hook starts stays known and can be killed. The unified hierarchy
/// first (its `cgroup.kill` is atomic), then systemd's named v1 hierarchy,
/// then a v1 hierarchy whose controller limits nothing unless told to.
fn establish_tracking(layout: &CgroupLayout, group_name: &str) -> Result<Placement, CgroupError> {
    let candidates = layout
        .v2
        .iter()
        .map(|dir| (Version::V2, dir))
        .chain(layout.named.iter().map(|dir| (Version::V1, dir)))
        .chain(
            [Controller::Pids, Controller::CpuAcct]
                .into_iter()
                .filter_map(|c| layout.v1.iter().find(|h| h.controllers.contains(&c)))
                .map(|h| (Version::V1, &h.dir)),
        );
    let mut refused = Vec::new();
    for (version, dir) in candidates {
        let parent = dir.join(group_name);
        match create_dir(&parent) {
            Ok(()) => {
                return Ok(Placement {
                    version,
                    slots: vec![Slot {
                        controllers: Vec::new(),
                        parent,
                        home: dir.clone(),
                    }],
                    missing: Vec::new(),
                })
            }
            Err(source) => refused.push(CgroupError::Create {
                dir: parent,
                source,
            }),
        }
    }
    if refused.is_empty() {
        return Err(CgroupError::NothingMounted);
    }
    Err(CgroupError::EveryHierarchyRefused(refused))
}

fn establish_v1(
    layout: &CgroupLayout,
    needed: &[Controller],
    group_name: &str,
) -> Result<Placement, CgroupError> {
    let mut slots = Vec::new();
    for hierarchy in &layout.v1 {
        // cpuacct only accounts: worth a group whenever it is mounted.
        let used: Vec<Controller> = hierarchy
            .controllers
            .iter()
            .copied()
            .filter(|c| needed.contains(c) || *c == Controller::CpuAcct)
            .collect();
        if used.is_empty() {
            continue;
        }
        let parent = hierarchy.dir.join(group_name);
        if let Err(source) = fs::create_dir_all(&parent) {
            if used.iter().any(|c| needed.contains(c)) {
                return Err(CgroupError::Create {
                    dir: parent,
                    source,
                });
            }
            continue;
        }
        slots.push(Slot {
            controllers: used,
            parent,
            home: hierarchy.dir.clone(),
        });
    }
    let missing = needed
        .iter()
        .copied()
        .filter(|c| !slots.iter().any(|s| s.controllers.contains(c)))
        .collect();
    Ok(Placement {
        version: Version::V1,
        slots,
        missing,
    })
}

/// v2: the controllers must be enabled in the agent's group and in the hooks'
/// parent. A group with processes cannot enable controllers for its children
/// (the no-internal-processes rule), so when the agent's own group refuses,
/// the agent and any application processes living there (hooks' leftovers,
/// under `KillMode=process`) move into a leaf `agent` group first.
fn establish_v2(
    dir: &Path,
    needed: &[Controller],
    group_name: &str,
) -> Result<Placement, CgroupError> {
    let controllers = dir.join("cgroup.controllers");
    let available = fs::read_to_string(&controllers).map_err(|source| CgroupError::Read {
        path: controllers,
        source,
    })?;
    let available: Vec<&str> = available.split_whitespace().collect();
    let (usable, missing): (Vec<Controller>, Vec<Controller>) =
        needed.iter().partition(|c| available.contains(&c.name()));
    if usable.is_empty() {
        return Err(CgroupError::NotDelegated {
            controllers: needed.to_vec(),
            dir: dir.to_path_buf(),
        });
    }
    let enable = enabling(&usable);
    let mut home = dir.to_path_buf();
    if let Err(source) = write_file(&dir.join("cgroup.subtree_control"), &enable) {
        if source.raw_os_error() != Some(Errno::EBUSY as i32) {
            return Err(CgroupError::Enable {
                enable,
                path: dir.join("cgroup.subtree_control"),
                source,
            });
        }
        let leaf = dir.join("agent");
        create_dir(&leaf).map_err(CgroupError::create(&leaf))?;
        for pid in read_pids(dir) {
            // A process that exited meanwhile is fine; anything else shows
            // up as the retry's EBUSY below.
            let _ = write_file(&leaf.join("cgroup.procs"), &pid.to_string());
        }
        if let Err(source) = write_file(&dir.join("cgroup.subtree_control"), &enable) {
            return Err(CgroupError::EnableAfterMove {
                enable,
                dir: dir.to_path_buf(),
                leaf,
                source,
            });
        }
        home = leaf;
    }
    let parent = dir.join(group_name);
    create_dir(&parent).map_err(CgroupError::create(&parent))?;
    if let Err(source) = write_file(&parent.join("cgroup.subtree_control"), &enable) {
        return Err(CgroupError::Enable {
            enable,
            path: parent.join("cgroup.subtree_control"),
            source,
        });
    }
    Ok(Placement {
        version: Version::V2,
        slots: vec![Slot {
            controllers: usable,
            parent,
            home,
        }],
        missing,
    })
}

/// One hook script's group (one directory per hierarchy on v1).
#[derive(Debug)]
pub struct HookCgroup {
    version: Version,
    /// (controllers, the hook's directory, where leftovers go).
    dirs: Vec<(Vec<Controller>, PathBuf, PathBuf)>,
    /// `cgroup.procs` of each directory, opened before the fork so that the
    /// child only has to write to them.
    procs: Vec<File>,
}

impl HookCgroup {
    /// Creates `<parent>/<name>` in every slot and writes the bounds.
    pub fn create(
        placement: &Placement,
        name: &str,
        bounds: &HookBounds,
    ) -> Result<HookCgroup, CgroupError> {
        let writes = match placement.version {
            Version::V1 => plan::v1_writes(bounds),
            Version::V2 => plan::v2_writes(bounds),
        };
        let mut group = HookCgroup {
            version: placement.version,
            dirs: Vec::new(),
            procs: Vec::new(),
        };
        for slot in &placement.slots {
            let dir = slot.parent.join(name);
            slot.create_child(placement.version, &dir)
                .map_err(CgroupError::create(&dir))?;
            group
                .dirs
                .push((slot.controllers.clone(), dir.clone(), slot.home.clone()));
            for w in writes
                .iter()
                .filter(|w| slot.controllers.contains(&w.controller))
            {
                apply(&dir, w)?;
            }
            let procs = dir.join("cgroup.procs");
            // `create` as in `write_file`: a no-op on cgroupfs.
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&procs)
                .map_err(|source| CgroupError::Open {
                    path: procs,
                    source,
                })?;
            group.procs.push(file);
        }
        Ok(group)
    }

    /// The descriptors the child writes `0` (itself) into before it runs the
    /// script. Valid while `self` lives.
    pub fn join_fds(&self) -> Vec<RawFd> {
        self.procs.iter().map(AsRawFd::as_raw_fd).collect()
    }

    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, dir, _)| dir.as_path())
    }

    fn dir_of(&self, controller: Controller) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(controllers, _, _)| controllers.contains(&controller))
            .map(|(_, dir, _)| dir.as_path())
    }

    /// Every process still in the group (in any of its hierarchies).
    pub fn pids(&self) -> Vec<Pid> {
        let mut all = BTreeSet::new();
        for (_, dir, _) in &self.dirs {
            all.extend(read_pids(dir));
        }
        all.into_iter().map(Pid::from_raw).collect()
    }

    /// Whether only zombies (which wait for their parent, not for us) or
    /// nothing is left.
    pub fn is_empty(&self) -> bool {
        self.pids().into_iter().all(is_zombie_or_gone)
    }

    /// Sends `signal` to every process in the group.
    pub fn signal_all(&self, signal: Signal) {
        for pid in self.pids() {
            let _ = kill(pid, signal);
        }
    }

    /// SIGKILL to everything in the group until it is empty: `cgroup.kill`
    /// where the kernel has it (5.14+: atomic, a forking process cannot slip
    /// out), otherwise rounds of SIGKILL over `cgroup.procs` (a process forked
    /// between two rounds is still in the group and dies in the next one).
    pub async fn kill_all(&self) {
        let cgroup_kill = (self.version == Version::V2)
            .then(|| self.dirs.first().map(|(_, dir, _)| dir.join("cgroup.kill")))
            .flatten()
            .filter(|path| path.exists());
        let deadline = crate::deadline::from_now(EMPTY_LIMIT);
        let mut poll = FIRST_POLL;
        loop {
            match &cgroup_kill {
                Some(path) => {
                    let _ = write_file(path, "1");
                }
                None => self.signal_all(Signal::SIGKILL),
            }
            if self.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    cgroup = %self.dirs().next().map(|d| d.display().to_string()).unwrap_or_default(),
                    left = ?self.pids(),
                    "hook processes survived SIGKILL for 5 s"
                );
                return;
            }
            tokio::time::sleep(poll).await;
            poll = next_poll(poll);
        }
    }

    /// Moves what a hook left running (typically the application it started)
    /// into the agent's own group, out of the hook's bounds.
    pub async fn release_leftovers(&self) {
        let deadline = crate::deadline::from_now(EMPTY_LIMIT);
        let mut poll = FIRST_POLL;
        loop {
            let mut moved_any = false;
            for (_, dir, home) in &self.dirs {
                for pid in read_pids(dir) {
                    if write_file(&home.join("cgroup.procs"), &pid.to_string()).is_ok() {
                        moved_any = true;
                    }
                }
            }
            if self.is_empty() {
                if moved_any {
                    tracing::info!("processes the hook left running were moved out of its bounds");
                }
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(left = ?self.pids(), "cannot move the hook's leftover processes out of its cgroup");
                return;
            }
            tokio::time::sleep(poll).await;
            poll = next_poll(poll);
        }
    }

    /// How many processes the kernel's OOM killer ended in this group.
    pub fn oom_kills(&self) -> Option<u64> {
        let dir = self.dir_of(Controller::Memory)?;
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        let text = fs::read_to_string(dir.join(file)).ok()?;
        keyed_value(&text, "oom_kill")
    }

    /// The CPU time the group used, from its own accounting.
    pub fn cpu_usage(&self) -> Option<Duration> {
        match self.version {
            Version::V1 => {
                let dir = self.dir_of(Controller::CpuAcct)?;
                let text = fs::read_to_string(dir.join("cpuacct.usage")).ok()?;
                text.trim().parse().ok().map(Duration::from_nanos)
            }
            Version::V2 => {
                let dir = self.dirs.first().map(|(_, dir, _)| dir)?;
                let text = fs::read_to_string(dir.join("cpu.stat")).ok()?;
                keyed_value(&text, "usage_usec").map(Duration::from_micros)
            }
        }
    }

    /// Removes the group's directories, retrying while the kernel still
    /// counts exiting processes in them.
    pub async fn remove(mut self) {
        self.procs.clear();
        let deadline = crate::deadline::from_now(EMPTY_LIMIT);
        let mut poll = FIRST_POLL;
        while !self.dirs.is_empty() {
            self.dirs.retain(|(_, dir, _)| !remove_dir(dir));
            if self.dirs.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                for dir in self.dirs() {
                    tracing::warn!(cgroup = %dir.display(), "cannot remove the hook's cgroup");
                }
                self.dirs.clear();
                return;
            }
            tokio::time::sleep(poll).await;
            poll = next_poll(poll);
        }
    }
}

impl Drop for HookCgroup {
    /// A group abandoned while its script runs (a cancelled run, a panic
    /// unwinding through the runner) is killed: nobody enforces its timeout
    /// any more. Then it is removed if it can be; the kernel refuses while
    /// processes are still exiting, which is right.
    fn drop(&mut self) {
        if !self.dirs.is_empty() && !self.is_empty() {
            tracing::warn!(left = ?self.pids(), "the hook's cgroup was abandoned: killing what is in it");
            self.signal_all(Signal::SIGKILL);
        }
        for (_, dir, _) in &self.dirs {
            remove_dir(dir);
        }
    }
}

/// Whether `dir` is gone (removed now or before).
fn remove_dir(dir: &Path) -> bool {
    match fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == ErrorKind::NotFound,
    }
}

fn apply(dir: &Path, w: &CgroupWrite) -> Result<(), CgroupError> {
    let path = dir.join(w.file);
    if w.optional && !path.exists() {
        return Ok(());
    }
    write_file(&path, &w.value).map_err(|source| CgroupError::Write {
        value: w.value.clone(),
        path,
        source,
    })
}

/// One `write(2)` of the whole value, as cgroupfs expects. Creates the file
/// only outside cgroupfs (a test tree); cgroupfs itself refuses new files.
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(value.as_bytes())
}

fn create_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

fn read_pids(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

fn is_zombie_or_gone(pid: Pid) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// `key value` lines (memory.events, memory.oom_control, cpu.stat).
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}
