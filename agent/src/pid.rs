//! Whether a process id names a running process: for a pid file's holder and
//! for the writer a temporary file is named after.

use std::path::Path;

/// Whether process `pid` exists on this host (a zombie counts: it has not
/// been reaped). Pid 0 is no process.
pub fn alive(pid: u32) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_a_reaped_one_and_pid_zero_are_not() {
        assert!(alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        assert!(!alive(child.id()));
        assert!(!alive(0));
    }
}
