//! Lifecycle hooks: the environment scripts get, the runner that executes them
//! with timeouts and process-group kills, and the script logs.

pub mod bounds;
mod environment;
mod policy;
mod runner;
mod script_log;

pub use environment::{hook_environment, HOOK_ENV_ALLOWLIST, HOOK_VARIABLES, LOADER_VARIABLES};
pub use policy::HookPolicy;
pub use runner::{
    run_event, run_event_with_grace, EventRun, KillReason, ScriptFailure, KILL_GRACE,
};
pub use script_log::{clean_output, deployments_log_line, scripts_log_line, strip_controls};
