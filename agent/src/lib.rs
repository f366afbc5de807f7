//! A CodeDeploy-compatible host agent. The lifecycle reads in the module names:
//! configuration and identity, the Commands protocol, the deployment spec, the
//! bundle, the appspec, install, hooks, and the lifecycle/poller that drive them.
//!
//! Pure logic (appspec, spec parsing, install planning, endpoints, the poll
//! schedule, diagnostics) does no I/O; adaptors (HTTP, S3, files, processes) are
//! thin and sit beside it.

pub mod appspec;
pub mod atomic_file;
pub mod blocking;
pub mod bundle;
pub mod config;
pub mod core_dumps;
pub mod deadline;
pub mod deployment_spec;
pub mod diagnostics;
pub mod event;
mod folder_chain;
pub mod frontends;
pub mod hooks;
pub mod http;
pub mod identity;
pub mod install;
pub mod lifecycle;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod names;
pub mod pid;
pub mod poller;
pub mod protocol;
#[cfg(test)]
mod purity;
pub mod shutdown;
pub mod version_file;

/// The agent's version, sent to the service and written to `.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
