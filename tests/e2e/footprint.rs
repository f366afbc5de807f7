//! What the running agent exposes on its host: no listening socket of any
//! kind (TCP, UDP or unix), read from /proc/net and /proc/<pid>/fd while the
//! agent polls and after it has run a deployment.

use std::collections::HashSet;
use std::time::Duration;

use codedeploy_e2e::emulator::Operation;
use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::support::*;

/// The socket inodes the process holds open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inode| inode.parse().ok())
        })
        .collect()
}

/// Sockets of `/proc/net/<table>` owned by `inodes` that accept connections:
/// TCP in state LISTEN (0A), any bound UDP socket, unix sockets flagged
/// `__SO_ACCEPTCON`.
fn listening(pid: u32, inodes: &HashSet<u64>) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(state), Some(inode)) = (fields.get(3), fields.get(9)) else {
                continue;
            };
            let inode: u64 = inode.parse().unwrap_or(0);
            let accepts = table.starts_with("udp") || *state == "0A";
            if accepts && inodes.contains(&inode) {
                found.push(format!("{table}: {line}"));
            }
        }
    }
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    for line in unix.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(flags), Some(inode)) = (fields.get(3), fields.get(6)) else {
            continue;
        };
        let accepting = u32::from_str_radix(flags, 16)
            .map(|f| f & 0x0001_0000 != 0)
            .unwrap_or(false);
        if accepting && inodes.contains(&inode.parse().unwrap_or(0)) {
            found.push(format!("unix: {line}"));
        }
    }
    found
}

#[test]
fn running_agent_has_no_listening_socket() {
    let bed = TestBed::start("no-listening-socket");
    let dir = bed.path().join("site");
    let revision = Revision::new()
        .file(
            "appspec.yml",
            format!(
                "version: 0.0\nos: linux\nfiles:\n  - source: index.html\n    destination: {}\n",
                dir.display()
            ),
        )
        .file("index.html", "hello\n");
    let location = bed.upload("footprint", "site.tgz", &revision, BundleType::Tgz);
    bed.start_agent(&agent_binary());
    let pid = bed.agent_pid().expect("the agent was started");

    let polled = bed.emulator.wait_until(Duration::from_secs(30), |e| {
        e.count(Operation::PollHostCommand) >= 3
    });
    ensure!(bed, polled, "the agent polls");
    // The detector itself: this test process runs the emulator, which listens.
    let own = listening(std::process::id(), &socket_inodes(std::process::id()));
    ensure!(
        bed,
        !own.is_empty(),
        "the emulator's own listening socket is detected"
    );
    let inodes = socket_inodes(pid);
    ensure!(
        bed,
        !inodes.is_empty(),
        "the agent holds its HTTPS connection while it polls (fds of pid {pid})"
    );
    let open = listening(pid, &inodes);
    ensure!(
        bed,
        open.is_empty(),
        "no listening socket while idle: {open:#?}"
    );

    let deployment = Deployment::new("footprint", "fleet", location);
    bed.emulator.add_deployment(deployment.clone());
    let outcome = bed.wait_for_deployment_end(&deployment.deployment_id, DEPLOYMENT_DEADLINE);
    ensure!(
        bed,
        outcome.is_succeeded(),
        "the deployment succeeds: {outcome}"
    );
    let open = listening(pid, &socket_inodes(pid));
    ensure!(
        bed,
        open.is_empty(),
        "no listening socket after a deployment: {open:#?}"
    );
}
