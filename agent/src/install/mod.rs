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
mod sparse_copy;
mod spool;

use std::cell::Cell;
use std::path::Path;

pub use cleanup::{parse_cleanup, recorded_paths, refusal, run_cleanup, CleanupEntry};
pub use error::InstallError;
pub use instructions::instructions_json;
pub use plan::{plan, Existing, InstallPlan, Instruction, RevisionTree, SourceKind};
pub use revision_tree::{host_existing, FsRevision};
use spool::Spool;

use crate::appspec::{AppSpec, FileExistsBehavior};
use crate::config::{
    InstallPolicy, PermissionLinks, SeLinuxTypes, SetIdBits, UNCONFINED_SELINUX_TYPES,
};
use crate::shutdown::Shutdown;

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
    /// The operator's hardening keys for the `permissions` section.
    pub policy: InstallPolicy,
    /// Checked at every entry planned and every copy: a stop request is
    /// acted on within a second.
    pub stop: &'a Shutdown,
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
    let started = std::time::Instant::now();
    run_cleanup(request.cleanup_file, request.instructions_file)?;
    let cleaned = started.elapsed();
    let revision = FsRevision::new(request.archive_dir)?.stopped_by(request.stop);
    let group_folder = request
        .instructions_file
        .parent()
        .unwrap_or_else(|| Path::new("/"));
    let mut spool = Spool::new(group_folder, &request.appspec.permissions)?;
    plan::plan_into(
        request.appspec,
        &revision,
        &host_existing,
        request.file_exists_behavior,
        &mut spool,
    )?;
    let planned = started.elapsed();
    // Checked as install.json is written, before anything is installed: a
    // refused plan changes nothing.
    let steps = Cell::new(0usize);
    instructions::write_instructions(
        spool.steps()?,
        |step| {
            steps.set(steps.get() + 1);
            check_step(step, &request.policy)
        },
        request.instructions_file,
    )?;
    let written = started.elapsed();
    let mut cleanup = cleanup::CleanupLog::create(request.cleanup_file)?;
    apply::apply(
        spool.steps()?,
        &mut cleanup,
        request.policy.link_targets,
        request.stop,
    )?;
    tracing::info!(
        steps = steps.get(),
        "previous revision removed in {:.3} s, planned in {:.3} s, install.json in {:.3} s, applied in {:.3} s",
        cleaned.as_secs_f64(),
        (planned - cleaned).as_secs_f64(),
        (written - planned).as_secs_f64(),
        (started.elapsed() - written).as_secs_f64(),
    );
    Ok(())
}

/// What Install would refuse, without installing anything: plans the
/// revision against `host` (into an unnamed file in `scratch`, so that a
/// revision of a million files is checked in the memory of ten) and checks
/// every step against the operator's hardening keys. For `validate`.
pub fn check_plan(
    appspec: &AppSpec,
    revision: &FsRevision,
    host: &dyn Fn(&Path) -> Existing,
    behavior: FileExistsBehavior,
    policy: &InstallPolicy,
    scratch: &Path,
) -> Result<(), InstallError> {
    let mut spool = Spool::new(scratch, &appspec.permissions)?;
    plan::plan_into(appspec, revision, host, behavior, &mut spool)?;
    spool
        .steps()?
        .try_for_each(|step| check_step(&step?, policy))
}

/// One step against the operator's hardening keys. Pure.
fn check_step(instruction: &Instruction, policy: &InstallPolicy) -> Result<(), InstallError> {
    {
        match instruction {
            Instruction::Chmod { file, mode }
                if policy.setid_modes == SetIdBits::Refuse && mode.bits() & 0o6000 != 0 =>
            {
                return Err(InstallError::Refused {
                    path: file.clone(),
                    reason: format!(
                        "the appspec gives it mode {:04o}, with the setuid or setgid bit (reject_unsafe_permissions_in_bundle is true)",
                        mode.bits()
                    ),
                })
            }
            Instruction::SetContext { file, context }
                if policy.selinux == SeLinuxTypes::RefuseUnconfined
                    && UNCONFINED_SELINUX_TYPES.contains(&context.type_.as_str()) =>
            {
                return Err(InstallError::Refused {
                    path: file.clone(),
                    reason: format!(
                        "the appspec gives it the SELinux type {}, which runs unconfined (reject_unconfined_selinux_in_bundle is true)",
                        context.type_
                    ),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// The permission-step policy for a link target, for `apply`.
pub(crate) fn refuses_links(policy: PermissionLinks) -> bool {
    policy == PermissionLinks::Refuse
}

#[cfg(test)]
mod tests;
