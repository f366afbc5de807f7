//! Install: plan the copies from the appspec, apply them, keep the cleanup file.
