//! The file operations on the deployment-root layout: a deployment's logs
//! folder, the instruction pointer files that name a group's last successful
//! and most recent deployment folders, and removing old revisions as
//! [`retention`](crate::lifecycle::retention) decides. Every function blocks:
//! callers on the runtime run them through
//! [`off_runtime`](crate::blocking::off_runtime) when they may take long.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::atomic_file::Durability;
use crate::lifecycle::retention::{folders_to_delete, DeploymentFolder};

use super::{DeploymentDir, DeploymentRoot};

/// A file operation on the layout that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct LayoutError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl LayoutError {
    fn at(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError {
        let path = path.to_path_buf();
        move |source| LayoutError {
            action,
            path,
            source,
        }
    }
}

/// Creates `<deployment>/logs/` (and the deployment folder above it).
pub fn create_logs_dir(dir: &DeploymentDir) -> Result<(), LayoutError> {
    let logs = dir.logs_dir();
    std::fs::create_dir_all(&logs).map_err(LayoutError::at("create", &logs))
}

/// Creates `deployment-instructions/`.
pub fn create_instructions_dir(root: &DeploymentRoot) -> Result<(), LayoutError> {
    let dir = root.instructions_dir();
    std::fs::create_dir_all(&dir).map_err(LayoutError::at("create", &dir))
}

/// The deployment folder a pointer file names; `None` when the file is
/// missing or empty (the group has no such deployment on this host).
pub fn read_pointer(file: &Path) -> Result<Option<DeploymentDir>, LayoutError> {
    match std::fs::read_to_string(file) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(DeploymentDir::at(text.trim()))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LayoutError::at("read", file)(e)),
    }
}

/// Replaces a pointer file whole, so that a reader never sees half a path.
pub fn write_pointer(file: &Path, dir: &DeploymentDir) -> Result<(), LayoutError> {
    crate::atomic_file::replace(file, None, Durability::Unsynced, |out| {
        out.write_all(dir.path().to_string_lossy().as_bytes())
    })
    .map_err(LayoutError::at("write", file))
}

/// Writes the `.bundle-source` marker: `downloaded` or `archive-reuse`.
pub fn write_bundle_source(dir: &DeploymentDir, source: &str) -> Result<(), LayoutError> {
    let file = dir.bundle_source_file();
    crate::atomic_file::replace(&file, None, Durability::Unsynced, |out| {
        out.write_all(source.as_bytes())
    })
    .map_err(LayoutError::at("write", &file))
}

/// Removes the temporary files that writers killed mid-write left in the
/// folders the agent replaces files in: `deployment-instructions/`, the
/// ongoing-deployment folder and every deployment folder (its bundle-source
/// marker). A file a live process is writing stays. Returns the paths
/// removed; reads as many folders as retention keeps.
pub fn remove_leftover_temporaries(root: &DeploymentRoot) -> Vec<PathBuf> {
    let mut folders = vec![root.instructions_dir(), root.ongoing_dir()];
    let subfolders = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    for group in subfolders(root.path()) {
        if !folders.contains(&group) {
            folders.extend(subfolders(&group));
        }
    }
    folders
        .iter()
        .flat_map(|dir| {
            crate::atomic_file::remove_leftovers(dir)
                .into_iter()
                .map(|name| dir.join(name))
        })
        .collect()
}

/// Keeps at most `max_revisions` deployment folders of the group (the
/// current one counted, the last successful one never removed); a folder
/// that cannot be removed is logged and left. Blocks for as long as the
/// removed trees take: run it off the runtime.
pub fn remove_old_revisions(
    root: &DeploymentRoot,
    group_id: &str,
    current_deployment_id: &str,
    max_revisions: u32,
) {
    let group_dir = root.group_dir(group_id);
    let Ok(entries) = std::fs::read_dir(&group_dir) else {
        return;
    };
    let folders: Vec<DeploymentFolder> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            Some(DeploymentFolder {
                name: e.file_name().to_string_lossy().into_owned(),
                modified,
            })
        })
        .collect();
    let last_successful = read_pointer(&root.last_successful_install_file(group_id))
        .ok()
        .flatten()
        .and_then(|dir| {
            dir.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        });
    for name in folders_to_delete(
        &folders,
        current_deployment_id,
        last_successful.as_deref(),
        max_revisions,
    ) {
        let path = group_dir.join(&name);
        tracing::info!("removing old revision {}", path.display());
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!("cannot remove old revision {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_a_killed_writer_are_removed_from_the_agents_folders_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = DeploymentRoot::new(dir.path(), "ongoing-deployment");
        let gone = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            child.wait().unwrap();
            child.id()
        };
        let deployment = root.deployment("group-1", "d-ABCDEF123");
        let archive = deployment.archive_dir();
        std::fs::create_dir_all(&archive).unwrap();
        std::fs::create_dir_all(root.instructions_dir()).unwrap();
        std::fs::create_dir_all(root.ongoing_dir()).unwrap();
        let leftover = format!(".tmp-{gone}-a1b2c3");
        let live = format!(".tmp-{}-a1b2c3", std::process::id());
        let planted = [
            root.instructions_dir().join(&leftover),
            root.ongoing_dir().join(&leftover),
            deployment.path().join(&leftover),
        ];
        for path in &planted {
            std::fs::write(path, "half").unwrap();
        }
        // A revision's own file of that name, and a live writer's file, stay.
        std::fs::write(archive.join(&leftover), "the revision's").unwrap();
        std::fs::write(root.instructions_dir().join(&live), "being written").unwrap();

        let mut removed = remove_leftover_temporaries(&root);
        removed.sort();
        let mut expected = planted.to_vec();
        expected.sort();
        assert_eq!(removed, expected);
        assert!(planted.iter().all(|p| !p.exists()));
        assert!(archive.join(&leftover).exists());
        assert!(root.instructions_dir().join(&live).exists());
        assert!(
            remove_leftover_temporaries(&DeploymentRoot::new(dir.path().join("none"), "o"))
                .is_empty()
        );
    }
}
