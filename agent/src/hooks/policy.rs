//! What the operator's configuration decides about every hook: the environment
//! it inherits and the bounds and modes of the logs its output goes to. Built
//! once from the agent configuration and handed to each event's run.

use crate::config::{AgentConfig, DirModes, HookEnvPolicy, ScriptsLogBounds};
use crate::core_dumps::CoreLimit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HookPolicy {
    pub env: HookEnvPolicy,
    pub scripts_log: ScriptsLogBounds,
    /// `restrict_agent_dir_permissions`: scripts.log and the deployments log
    /// are created 0640 instead of 0644.
    pub log_files: DirModes,
    /// The core-file limit the agent started with, given back to each hook
    /// when the agent lowered its own (see `core_dumps`).
    pub core_limit: Option<CoreLimit>,
}

impl HookPolicy {
    pub fn from_config(config: &AgentConfig, core_limit: Option<CoreLimit>) -> HookPolicy {
        HookPolicy {
            env: config.hardening.hook_env,
            scripts_log: config.scripts_log,
            log_files: config.hardening.agent_dirs,
            core_limit,
        }
    }
}

/// The user the agent runs as, for the audit line of each hook: its name, or
/// its uid when the user database has none.
pub(crate) fn agent_user() -> String {
    let uid = nix::unistd::Uid::effective();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}
