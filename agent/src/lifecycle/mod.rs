//! From command to action: the deployment-root layout, which revision a hook runs
//! from, retention of old revisions, command tracking and the executor.

pub mod executor;
pub mod layout;
pub mod record;
pub mod retention;
pub mod revision;
pub mod tracking;
