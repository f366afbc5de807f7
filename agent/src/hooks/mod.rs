//! Running lifecycle hook scripts.
