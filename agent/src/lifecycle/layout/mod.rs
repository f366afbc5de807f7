//! The deployment-root layout shared with the official agent, so that a host can
//! switch agents between two deployments. This file is paths only, with no
//! file access; [`disk`] holds the few file operations on them.

pub mod disk;

use std::path::{Path, PathBuf};

/// `<root_dir>`: the deployment root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRoot {
    root: PathBuf,
    ongoing_folder: String,
}

impl DeploymentRoot {
    pub fn new(root: impl Into<PathBuf>, ongoing_folder: impl Into<String>) -> DeploymentRoot {
        DeploymentRoot {
            root: root.into(),
            ongoing_folder: ongoing_folder.into(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `<root>/<group id>/`: every deployment of one deployment group.
    pub fn group_dir(&self, group_id: &str) -> PathBuf {
        self.root.join(group_id)
    }

    /// `<root>/<group id>/<deployment id>/`.
    pub fn deployment(&self, group_id: &str, deployment_id: &str) -> DeploymentDir {
        DeploymentDir {
            dir: self.group_dir(group_id).join(deployment_id),
        }
    }

    pub fn instructions_dir(&self) -> PathBuf {
        self.root.join("deployment-instructions")
    }

    /// `<group>_last_successful_install`: names the folder of the last good Install.
    pub fn last_successful_install_file(&self, group_id: &str) -> PathBuf {
        self.instructions_dir()
            .join(format!("{group_id}_last_successful_install"))
    }

    /// `<group>_most_recent_install`: names the folder of the last good DownloadBundle.
    pub fn most_recent_install_file(&self, group_id: &str) -> PathBuf {
        self.instructions_dir()
            .join(format!("{group_id}_most_recent_install"))
    }

    /// `<group>-cleanup`: one path per line, every file and folder the last Install made.
    pub fn cleanup_file(&self, group_id: &str) -> PathBuf {
        self.instructions_dir().join(format!("{group_id}-cleanup"))
    }

    /// `<group>-install.json`: the instructions of the last Install.
    pub fn install_instructions_file(&self, group_id: &str) -> PathBuf {
        self.instructions_dir()
            .join(format!("{group_id}-install.json"))
    }

    /// `deployment-logs/codedeploy-agent-deployments.log`: every script line of every deployment.
    pub fn deployments_log(&self) -> PathBuf {
        self.root
            .join("deployment-logs")
            .join("codedeploy-agent-deployments.log")
    }

    /// `<ongoing_deployment_tracking>/`: one file per command being executed.
    pub fn ongoing_dir(&self) -> PathBuf {
        self.root.join(&self.ongoing_folder)
    }
}

/// `<root>/<group id>/<deployment id>/`: one deployment's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentDir {
    dir: PathBuf,
}

impl DeploymentDir {
    /// A deployment folder named by an instructions file (an absolute path).
    pub fn at(dir: impl Into<PathBuf>) -> DeploymentDir {
        DeploymentDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The downloaded bundle; always named `bundle.tar`, whatever its type.
    pub fn bundle_file(&self) -> PathBuf {
        self.dir.join("bundle.tar")
    }

    /// The unpacked revision, with the appspec at its top.
    pub fn archive_dir(&self) -> PathBuf {
        self.dir.join("deployment-archive")
    }

    /// `.bundle-source`: how DownloadBundle got the revision (`downloaded`,
    /// or `archive-reuse` from an earlier deployment's folder), as 2.1 marks it.
    pub fn bundle_source_file(&self) -> PathBuf {
        self.dir.join(".bundle-source")
    }

    /// `.bundle-etag`: the ETag record an official 2.x agent keeps.
    pub fn etag_record(&self) -> PathBuf {
        self.dir.join(".bundle-etag")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    pub fn scripts_log(&self) -> PathBuf {
        self.logs_dir().join("scripts.log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_official_agent() {
        let root = DeploymentRoot::new(
            "/opt/codedeploy-agent/deployment-root",
            "ongoing-deployment",
        );
        let d = root.deployment("g-1", "d-ABC");
        assert_eq!(
            d.bundle_file(),
            Path::new("/opt/codedeploy-agent/deployment-root/g-1/d-ABC/bundle.tar")
        );
        assert_eq!(
            d.archive_dir(),
            Path::new("/opt/codedeploy-agent/deployment-root/g-1/d-ABC/deployment-archive")
        );
        assert_eq!(
            d.scripts_log(),
            Path::new("/opt/codedeploy-agent/deployment-root/g-1/d-ABC/logs/scripts.log")
        );
        assert_eq!(
            root.last_successful_install_file("g-1"),
            Path::new("/opt/codedeploy-agent/deployment-root/deployment-instructions/g-1_last_successful_install")
        );
        assert_eq!(
            root.cleanup_file("g-1"),
            Path::new("/opt/codedeploy-agent/deployment-root/deployment-instructions/g-1-cleanup")
        );
        assert_eq!(
            root.ongoing_dir(),
            Path::new("/opt/codedeploy-agent/deployment-root/ongoing-deployment")
        );
    }
}
