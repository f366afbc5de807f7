//! Lifecycle hooks: the environment scripts get, the runner that executes them
//! with timeouts and process-group kills, and the script logs.

mod environment;
mod runner;
mod script_log;

pub use environment::{hook_environment, HOOK_VARIABLES};
pub use runner::{run_event, run_event_with_grace, EventRun, ScriptFailure, KILL_GRACE};
pub use script_log::{clean_output, deployments_log_line, scripts_log_line};
