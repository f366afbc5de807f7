//! One deployment group never runs two commands at once: they share the
//! group's folders and instruction files. Commands of one group take turns in
//! the order they arrived; commands of different groups run side by side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// One lock per deployment group with a command running or waiting; a group's
/// entry is dropped when nobody holds or waits for it, so that the map does
/// not grow with every group ever deployed.
#[derive(Debug, Default)]
pub(super) struct GroupLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// A command's turn in its deployment group, until dropped.
#[derive(Debug)]
pub(super) struct GroupTurn<'a> {
    locks: &'a GroupLocks,
    group: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl GroupLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        // Only inserts and removes happen under this lock: a poisoned map is
        // still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until no other command of `group` runs.
    pub(super) async fn take_turn(&self, group: &str) -> GroupTurn<'_> {
        let lock = Arc::clone(self.map().entry(group.to_string()).or_default());
        let guard = match Arc::clone(&lock).try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                tracing::info!(
                    "deployment group {group} is running another command: this one waits for it"
                );
                lock.lock_owned().await
            }
        };
        GroupTurn {
            locks: self,
            group: group.to_string(),
            guard: Some(guard),
        }
    }
}

impl Drop for GroupTurn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        if map
            .get(&self.group)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            map.remove(&self.group);
        }
    }
}
