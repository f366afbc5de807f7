//! What a fuzz target's scratch directory holds after a run, to check that
//! nothing was written outside the place it was meant for.

use std::fs;
use std::path::{Path, PathBuf};

/// Every path below `root`, without following links.
pub fn tree(root: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                pending.push(path.clone());
            }
            all.push(path);
        }
    }
    all
}
