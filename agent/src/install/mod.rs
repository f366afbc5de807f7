//! Install (LIFECYCLE.md "Install"): replay the previous cleanup file, plan the
//! copies and permissions from the parsed appspec, write `<group>-install.json`,
//! apply the plan while recording the new cleanup file. Planning is pure
//! (`plan.rs`); the rest is a thin layer over the file system. Never parses the
//! appspec itself: the caller does, before anything is removed, so that an
//! invalid appspec leaves the previous revision in place.

mod apply;
mod cleanup;
mod error;
mod instructions;
mod plan;
mod revision_tree;

use std::path::Path;

pub use cleanup::{parse_cleanup, run_cleanup, CleanupEntry};
pub use error::InstallError;
pub use instructions::instructions_json;
pub use plan::{plan, Existing, InstallPlan, Instruction, RevisionTree, SourceKind};
pub use revision_tree::{host_existing, FsRevision};

use crate::appspec::{AppSpec, FileExistsBehavior};

/// Everything one Install needs; paths come from the deployment-root layout.
#[derive(Debug, Clone, Copy)]
pub struct InstallRequest<'a> {
    pub appspec: &'a AppSpec,
    /// `deployment-archive/` of the current deployment.
    pub archive_dir: &'a Path,
    /// Already resolved with [`effective_behavior`].
    pub file_exists_behavior: FileExistsBehavior,
    /// `<group>-cleanup`.
    pub cleanup_file: &'a Path,
    /// `<group>-install.json`.
    pub instructions_file: &'a Path,
}

/// The appspec's own `file_exists_behavior` wins, then the deployment's
/// override, then DISALLOW.
pub fn effective_behavior(
    appspec: Option<FileExistsBehavior>,
    spec: Option<FileExistsBehavior>,
) -> FileExistsBehavior {
    appspec.or(spec).unwrap_or_default()
}

/// Runs Install. Blocking: call it from `spawn_blocking`.
pub fn install(request: &InstallRequest<'_>) -> Result<(), InstallError> {
    run_cleanup(request.cleanup_file)?;
    let revision = FsRevision::new(request.archive_dir)?;
    let plan = plan::plan(
        request.appspec,
        &revision,
        &host_existing,
        request.file_exists_behavior,
    )?;
    instructions::write_instructions(&plan, request.instructions_file)?;
    let mut cleanup = cleanup::CleanupLog::create(request.cleanup_file)?;
    apply::apply(&plan, &mut cleanup)
}

#[cfg(test)]
mod tests;
