//! Where this process's cgroups are, from the text of /proc/self/mountinfo and
//! /proc/self/cgroup. Pure: text in, directories out; the caller reads the files.
//!
//! A v1 controller is found by its mount's super options (`rw,cpu,cpuacct`);
//! the unified (v2) hierarchy by its `cgroup2` file system type. A process's
//! directory in a hierarchy is the mount point joined with its cgroup path
//! relative to the mount's root (in a container the mount's root is often the
//! container's own cgroup, not `/`).

use std::path::{Path, PathBuf};

/// A controller the bounds use. `CpuAcct` only accounts (v1); on v2 `cpu`
/// accounts too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Controller {
    Cpu,
    CpuAcct,
    Memory,
    Pids,
}

impl Controller {
    pub const ALL: [Controller; 4] = [
        Controller::Cpu,
        Controller::CpuAcct,
        Controller::Memory,
        Controller::Pids,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::CpuAcct => "cpuacct",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
        }
    }
}

/// One mounted v1 hierarchy holding some of our controllers, with this
/// process's directory in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub controllers: Vec<Controller>,
    pub dir: PathBuf,
}

/// The cgroup hierarchies this process is in, as far as the bounds care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLayout {
    /// v1 hierarchies holding cpu, cpuacct, memory or pids (a hybrid host has
    /// both these and `v2`).
    pub v1: Vec<V1Hierarchy>,
    /// This process's directory in the unified hierarchy.
    pub v2: Option<PathBuf>,
    /// This process's directory in systemd's named v1 hierarchy
    /// (`name=systemd`), which holds no controller: on a v1-only host it is
    /// where a hook's processes can be tracked when no bound is configured.
    pub named: Option<PathBuf>,
}

impl CgroupLayout {
    /// The v1 directory holding `controller`, if that controller is mounted as v1.
    pub fn v1_dir(&self, controller: Controller) -> Option<&Path> {
        self.v1
            .iter()
            .find(|h| h.controllers.contains(&controller))
            .map(|h| h.dir.as_path())
    }
}

/// The named v1 hierarchy systemd mounts to track its units' processes.
const SYSTEMD_HIERARCHY: &str = "name=systemd";

/// One cgroup file-system mount.
#[derive(Debug)]
struct Mount {
    root: String,
    point: PathBuf,
    /// `None` for cgroup2; the v1 controllers (and `name=`) otherwise.
    v1_options: Option<Vec<String>>,
}

/// Reads the layout from the two files' text. Lines it cannot read are skipped:
/// a kernel adding a field must not turn the bounds off.
pub fn detect(mountinfo: &str, self_cgroup: &str) -> CgroupLayout {
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(parse_mount).collect();
    let mut layout = CgroupLayout::default();
    for line in self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            let dir = mounts
                .iter()
                .filter(|m| m.v1_options.is_none())
                .find_map(|m| dir_in(m, path));
            if layout.v2.is_none() {
                layout.v2 = dir;
            }
            continue;
        }
        let listed: Vec<&str> = controllers.split(',').collect();
        if listed.contains(&SYSTEMD_HIERARCHY) {
            let mount = mounts.iter().find(|m| {
                m.v1_options
                    .as_ref()
                    .is_some_and(|options| options.iter().any(|o| o == SYSTEMD_HIERARCHY))
            });
            if layout.named.is_none() {
                layout.named = mount.and_then(|m| dir_in(m, path));
            }
            continue;
        }
        let ours: Vec<Controller> = Controller::ALL
            .into_iter()
            .filter(|c| listed.contains(&c.name()))
            .collect();
        if ours.is_empty() {
            continue;
        }
        let mount = mounts.iter().find(|m| {
            m.v1_options
                .as_ref()
                .is_some_and(|options| ours.iter().all(|c| options.iter().any(|o| o == c.name())))
        });
        if let Some(dir) = mount.and_then(|m| dir_in(m, path)) {
            layout.v1.push(V1Hierarchy {
                controllers: ours,
                dir,
            });
        }
    }
    layout
}

/// `<mount point>/<path relative to the mount's root>`, or `None` when the
/// process's cgroup is outside what this mount shows.
fn dir_in(mount: &Mount, path: &str) -> Option<PathBuf> {
    let root = mount.root.trim_end_matches('/');
    let relative = path.strip_prefix(root)?;
    if !(relative.is_empty() || relative.starts_with('/')) {
        return None;
    }
    let relative = relative.trim_start_matches('/');
    if relative.split('/').any(|part| part == "..") {
        return None;
    }
    Some(if relative.is_empty() {
        mount.point.clone()
    } else {
        mount.point.join(relative)
    })
}

/// `36 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory`
fn parse_mount(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let before: Vec<&str> = before.split(' ').collect();
    let after: Vec<&str> = after.split(' ').collect();
    let (root, point) = (*before.get(3)?, *before.get(4)?);
    let fstype = *after.first()?;
    let v1_options = match fstype {
        "cgroup2" => None,
        "cgroup" => Some(
            after
                .get(2)?
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>(),
        ),
        _ => return None,
    };
    Some(Mount {
        root: unescape(root),
        point: PathBuf::from(unescape(point)),
        v1_options,
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
