//! A forwarding name for the poller, which still calls
//! `crate::hygiene::return_freed_memory`.

// kept until the poller moves to crate::memory::return_freed_memory
pub use crate::memory::return_freed_memory;
