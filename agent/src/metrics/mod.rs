//! Metrics without a socket: the agent keeps a `.prom` file for
//! node_exporter's textfile collector (`:metrics_textfile:`, off by default),
//! replaced whole (temporary file and rename in the same folder, mode 0644)
//! when its state changes: at start, when a command ends, when a poll fails
//! and when a throttling spell ends. An idle agent whose polls are answered
//! writes nothing. Counters are read back from the file at start, so they
//! survive restarts as long as the file does.
//!
//! [`model`] is the pure part (what is counted, the text format); this file
//! is the thin shell that keeps it behind a lock and writes it out.

pub mod model;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::atomic_file::Durability;

pub use model::{CommandEnded, Metrics};

/// The agent's metrics and where they go; does nothing when not configured.
#[derive(Debug, Default)]
pub struct MetricsFile {
    inner: Option<(PathBuf, Mutex<Metrics>)>,
}

/// Seconds since the epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl MetricsFile {
    /// No metrics file.
    pub fn disabled() -> MetricsFile {
        MetricsFile::default()
    }

    /// Starts the metrics of this run at `path`, keeping the counters the
    /// file holds from earlier runs, and writes it.
    pub fn start(path: &Path, version: &str, config_file: &Path) -> MetricsFile {
        let previous = std::fs::read_to_string(path).ok();
        let metrics = Metrics::start(
            version,
            &config_file.display().to_string(),
            unix_now(),
            previous.as_deref(),
        );
        let file = MetricsFile {
            inner: Some((path.to_path_buf(), Mutex::new(metrics))),
        };
        file.update(|_| true);
        file
    }

    /// Changes the metrics with `change` and rewrites the file when it says
    /// something changed.
    pub fn update(&self, change: impl FnOnce(&mut Metrics) -> bool) {
        let Some((path, metrics)) = &self.inner else {
            return;
        };
        // Only plain data is changed under this lock: a poisoned one is
        // still consistent.
        let mut metrics = metrics.lock().unwrap_or_else(|e| e.into_inner());
        if !change(&mut metrics) {
            return;
        }
        let text = metrics.render();
        let written = crate::atomic_file::replace(path, Some(0o644), Durability::Unsynced, |out| {
            std::io::Write::write_all(out, text.as_bytes())
        });
        if let Err(e) = written {
            tracing::warn!("cannot write the metrics file {}: {e}", path.display());
        }
    }
}
