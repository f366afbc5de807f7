//! Host users and groups a test creates with `useradd`/`groupadd` (as root)
//! and removes when they are dropped, also when the test fails. Names carry
//! this process's id, so parallel runs never share an account; creation and
//! removal are serialised because both tools lock /etc/passwd and /etc/group
//! and give up when another one holds the lock.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use nix::unistd::{Group, Uid, User};

static ACCOUNT_TOOLS: Mutex<()> = Mutex::new(());

/// True, after printing why, when the test cannot create accounts (not
/// root). Tests run as root here and in CI; elsewhere they say they skipped.
pub fn skip_unless_root(test: &str) -> bool {
    if Uid::effective().is_root() {
        return false;
    }
    eprintln!(
        "SKIPPED {test}: it creates users and groups with useradd/groupadd, which needs root \
         (uid {}); run the end-to-end tests as root to prove this behaviour",
        Uid::effective()
    );
    true
}

/// `cdp<pid><tag>`: a valid, short, unique account name.
fn unique_name(tag: &str) -> String {
    format!("cdp{}{tag}", std::process::id())
}

/// Runs an account tool, retrying while another process holds the lock.
fn run_tool(program: &str, args: &[&str]) -> Result<(), String> {
    let _serialised = ACCOUNT_TOOLS.lock().unwrap_or_else(|e| e.into_inner());
    let mut last = String::new();
    for _attempt in 0..10 {
        let output = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        last = format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        if !last.contains("lock") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Err(last)
}

/// A group that exists until dropped.
pub struct HostGroup {
    pub name: String,
    pub gid: u32,
}

impl HostGroup {
    pub fn create(tag: &str) -> HostGroup {
        let name = unique_name(tag);
        if Group::from_name(&name).ok().flatten().is_some() {
            // Left by an earlier run whose process had the same id.
            let _ = run_tool("groupdel", &[&name]);
        }
        run_tool("groupadd", &[&name]).unwrap_or_else(|e| panic!("{e}"));
        let gid = Group::from_name(&name)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("group {name} exists after groupadd"))
            .gid
            .as_raw();
        HostGroup { name, gid }
    }
}

impl Drop for HostGroup {
    fn drop(&mut self) {
        if let Err(e) = run_tool("groupdel", &[&self.name]) {
            eprintln!("could not remove the test group {}: {e}", self.name);
        }
    }
}

/// A user with its own group, a home directory and `/bin/sh` as shell, that
/// exists until dropped (home and group removed with it).
pub struct HostUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl HostUser {
    pub fn create(tag: &str) -> HostUser {
        let name = unique_name(tag);
        if User::from_name(&name).ok().flatten().is_some() {
            let _ = run_tool("userdel", &["--remove", &name]);
        }
        run_tool(
            "useradd",
            &["--create-home", "--user-group", "--shell", "/bin/sh", &name],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let user = User::from_name(&name)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("user {name} exists after useradd"));
        HostUser {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
            name,
        }
    }
}

impl Drop for HostUser {
    fn drop(&mut self) {
        if let Err(e) = run_tool("userdel", &["--remove", &self.name]) {
            // userdel warns (and may fail) about a missing mail spool only.
            if User::from_name(&self.name).ok().flatten().is_some() {
                eprintln!("could not remove the test user {}: {e}", self.name);
            }
        }
        if Group::from_name(&self.name).ok().flatten().is_some() {
            let _ = run_tool("groupdel", &[&self.name]);
        }
    }
}
