//! From command to action: a command prepared once ([`command`]), the executor
//! that runs it, what can fail it and how the service is told ([`failure`]),
//! the deployment-root layout and its files, which revision a hook runs from,
//! retention of old revisions, and command tracking and records.

pub mod command;
pub mod executor;
pub mod failure;
pub mod layout;
pub mod record;
pub mod retention;
pub mod revision;
pub mod tracking;
