//! The `.version` file the official agents keep beside the deployment root,
//! rewritten at every start (host tooling reads it to learn the agent's
//! version). Deciding its path and content is pure; writing it is one atomic
//! replace.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where the official agents keep `.version`: beside the deployment root
/// (`/opt/codedeploy-agent/.version` for the default root). Pure.
pub fn path_for(root_dir: &Path) -> PathBuf {
    // Collecting the components drops a trailing slash.
    let root: PathBuf = root_dir.components().collect();
    root.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("/"))
        .join(".version")
}

/// `.version` as the official agents write it: `agent_version: <version>`.
pub fn text(version: &str) -> String {
    format!("agent_version: {version}\n")
}

/// Writes `.version` atomically (temporary file, then rename), read-only for
/// everyone (0444) as 2.x does.
pub fn write(path: &Path, version: &str) -> io::Result<()> {
    crate::atomic_file::replace(
        path,
        Some(0o444),
        crate::atomic_file::Durability::Unsynced,
        |out| out.write_all(text(version).as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_version_file_sits_beside_the_deployment_root() {
        let cases = [
            (
                "/opt/codedeploy-agent/deployment-root",
                "/opt/codedeploy-agent/.version",
            ),
            (
                "/opt/codedeploy-agent/deployment-root/",
                "/opt/codedeploy-agent/.version",
            ),
            ("/srv/cd/root", "/srv/cd/.version"),
            ("/root-at-top", "/.version"),
            ("relative-root", "/.version"),
        ];
        for (root, expected) in cases {
            assert_eq!(path_for(Path::new(root)), Path::new(expected), "{root}");
        }
    }

    #[test]
    fn the_version_file_has_the_official_format_and_is_read_only() {
        assert_eq!(text("1.2.3"), "agent_version: 1.2.3\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent/.version");
        write(&path, "0.9.0").unwrap();
        // Rewritten at every start, over the read-only file of the last one.
        write(&path, "1.0.0").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "agent_version: 1.0.0\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444);
    }
}
