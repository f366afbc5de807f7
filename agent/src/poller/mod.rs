//! The poll loop and its schedule.

pub mod schedule;
