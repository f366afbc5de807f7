//! The agent log: `<log_dir>/<program_name>.log` (and stderr), one line per event
//! in the official layout `YYYY-MM-DDTHH:MM:SS LEVEL [program(pid)]: component:
//! [span fields] message`, so that operators' greps keep working. Nothing secret is
//! ever passed to a log macro; dependencies log at WARN and above only.
//!
//! The file is rotated by size (`<log>.1` … `<log>.7`), each line written whole
//! after the size check, so no line is lost or split. A file renamed or truncated
//! by logrotate is followed: the agent appends (`O_APPEND`, so `copytruncate`
//! works) and reopens the path within a second when it was moved away. The
//! verbosity can be changed while running (SIGHUP re-reads `:verbose:`).
//!
//! When stderr is the journal (systemd names it in `JOURNAL_STREAM`), the
//! lines that would go to stderr go to the journal through its native
//! protocol instead, each with its span fields as journal fields
//! (`DEPLOYMENT_ID`, `DEPLOYMENT_GROUP_ID`, `LIFECYCLE_EVENT`, `HOST_COMMAND`,
//! `HOOK_SCRIPT`), so that `journalctl DEPLOYMENT_ID=d-…` finds one
//! deployment. The file keeps its format either way.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

/// Rotated files kept beside the log: `<log>.1` (newest) to `<log>.7`.
pub const ROTATED_FILES_KEPT: u32 = 7;
/// How often the log path is checked for an external rotation.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// Overrides the agent's level choice entirely: a comma-separated list of
/// `target=level` directives and an optional bare default level, e.g.
/// `warn,codedeploy_agent=trace`.
const FILTER_ENV: &str = "CODEDEPLOY_AGENT_LOG";

/// The line layout of the official agent's log.
#[derive(Debug)]
pub struct AgentLogFormat {
    program: String,
    pid: u32,
}

impl AgentLogFormat {
    /// The layout for this process, logging as `program`.
    pub fn new(program: &str) -> AgentLogFormat {
        AgentLogFormat {
            program: program.to_string(),
            pid: std::process::id(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for AgentLogFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let component = metadata
            .target()
            .rsplit("::")
            .next()
            .unwrap_or(metadata.target());
        write!(
            writer,
            "{} {} [{}({})]: {}: ",
            chrono::Local::now().format("%Y-%m-%dT%H:%M:%S"),
            metadata.level(),
            self.program,
            self.pid,
            component
        )?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, "[{fields}] ")?;
                    }
                }
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Where and how the agent logs.
#[derive(Debug, Clone)]
pub struct LogSettings<'a> {
    pub log_dir: &'a Path,
    pub program_name: &'a str,
    pub verbose: bool,
    /// Rotate before the file would grow past this many bytes; `None` never.
    pub max_size: Option<u64>,
}

/// The log level could not be switched (the subscriber is gone).
#[derive(Debug, thiserror::Error)]
#[error("cannot change the log level: {0}")]
pub struct LevelChangeError(#[source] reload::Error);

/// The running log: its file, and the switch for its verbosity.
pub struct LogControl {
    file: Option<PathBuf>,
    set_filter: Box<dyn Fn(Targets) -> Result<(), reload::Error> + Send + Sync>,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl LogControl {
    /// The log file, when it could be opened (else the log goes to stderr only).
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Switches debug lines on or off (unless `CODEDEPLOY_AGENT_LOG` decides).
    pub fn set_verbose(&self, verbose: bool) -> Result<(), LevelChangeError> {
        (self.set_filter)(filter(verbose)).map_err(LevelChangeError)
    }
}

fn filter(verbose: bool) -> Targets {
    filter_from(std::env::var(FILTER_ENV).ok().as_deref(), verbose)
}

/// `CODEDEPLOY_AGENT_LOG`'s directives when they parse, else the default.
fn filter_from(directives: Option<&str>, verbose: bool) -> Targets {
    directives
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| default_filter(verbose))
}

/// Dependencies at WARN and above, the agent at INFO (DEBUG when verbose).
pub(crate) fn default_filter(verbose: bool) -> Targets {
    let level = if verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    Targets::new()
        .with_default(tracing::Level::WARN)
        .with_target("codedeploy_agent", level)
}

/// Sets the process-wide log up. A log file that cannot be opened is reported
/// on stderr, which then carries the log alone.
pub fn init(settings: &LogSettings<'_>) -> LogControl {
    let (filter_layer, handle) = reload::Layer::new(filter(settings.verbose));
    let set_filter = Box::new(move |filter: Targets| handle.reload(filter));
    let format = || AgentLogFormat {
        program: settings.program_name.to_string(),
        pid: std::process::id(),
    };
    let file_path = settings
        .log_dir
        .join(format!("{}.log", settings.program_name));
    let opened = std::fs::create_dir_all(settings.log_dir)
        .and_then(|()| LogFile::open(&file_path, settings.max_size));
    let journal = journal_layer(settings.program_name);
    let to_stderr = journal.is_none();
    // Each output is a layer that may be absent: `Option<Layer>` is a layer.
    let stderr_layer = to_stderr.then(|| {
        tracing_subscriber::fmt::layer()
            .event_format(format())
            .with_writer(io::stderr)
    });
    let (file, open_error) = match opened {
        Ok(file) => (Some(file), None),
        Err(e) => (None, Some(e)),
    };
    let file_layer = file.map(|file| {
        tracing_subscriber::fmt::layer()
            .event_format(format())
            .with_writer(file)
    });
    let _ = tracing_subscriber::registry()
        .with(filter_layer)
        .with(journal)
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
    match open_error {
        None => LogControl {
            file: Some(file_path),
            set_filter,
        },
        Some(e) => {
            tracing::warn!(
                "cannot open the log file {}: {e}; logging to {} only",
                file_path.display(),
                if to_stderr { "stderr" } else { "the journal" }
            );
            LogControl {
                file: None,
                set_filter,
            }
        }
    }
}

/// The journal, when stderr is connected to it: `JOURNAL_STREAM` names the
/// device and inode of the stream systemd gave the service, and stderr must
/// still be that stream (a child that redirected it is not in the journal).
fn journal_layer(program_name: &str) -> Option<tracing_journald::Layer> {
    let stream = std::env::var("JOURNAL_STREAM").ok()?;
    let (device, inode) = stream.split_once(':')?;
    let stderr = nix::sys::stat::fstat(libc::STDERR_FILENO).ok()?;
    if device.parse::<u64>().ok()? != stderr.st_dev || inode.parse::<u64>().ok()? != stderr.st_ino {
        return None;
    }
    match tracing_journald::layer() {
        Ok(layer) => Some(
            layer
                .with_field_prefix(None)
                .with_syslog_identifier(program_name.to_string()),
        ),
        Err(e) => {
            eprintln!("cannot reach the journal's socket ({e}): logging to stderr");
            None
        }
    }
}

/// The log file, rotated by size and followed across external rotation.
pub struct LogFile {
    path: PathBuf,
    max_size: Option<u64>,
    open: Mutex<OpenLog>,
}

impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFile")
            .field("path", &self.path)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

struct OpenLog {
    file: File,
    checked_at: Instant,
    /// A failed rotation is said once on stderr, not on every line.
    rotation_failed: bool,
}

impl LogFile {
    pub fn open(path: &Path, max_size: Option<u64>) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_path_buf(),
            max_size,
            open: Mutex::new(OpenLog {
                file: open_append(path)?,
                checked_at: Instant::now(),
                rotation_failed: false,
            }),
        })
    }

    /// Appends one formatted line (or several, whole), rotating first if it
    /// would not fit.
    pub fn write_line(&self, line: &[u8]) -> io::Result<()> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.checked_at.elapsed() >= FOLLOW_EVERY {
            open.checked_at = Instant::now();
            if moved_away(&self.path, &open.file) {
                open.file = open_append(&self.path)?;
            }
        }
        if let Some(max) = self.max_size {
            let len = open.file.metadata()?.len();
            if needs_rotation(len, line.len(), max) {
                match rotate(&self.path, ROTATED_FILES_KEPT) {
                    Ok(()) => {
                        open.file = open_append(&self.path)?;
                        open.rotation_failed = false;
                    }
                    // Keep appending to the current file: a line is never dropped.
                    Err(e) if !open.rotation_failed => {
                        open.rotation_failed = true;
                        eprintln!("cannot rotate {}: {e}", self.path.display());
                    }
                    Err(_) => {}
                }
            }
        }
        open.file.write_all(line)
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter(self)
    }
}

/// One event's writer; the formatter hands it the whole line at once.
#[derive(Debug)]
pub struct LogFileWriter<'a>(&'a LogFile);

impl Write for LogFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_line(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Was the path renamed or deleted since `file` was opened from it?
fn moved_away(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(on_disk), Ok(open)) => on_disk.dev() != open.dev() || on_disk.ino() != open.ino(),
        (Err(_), _) => true,
        (_, Err(_)) => false,
    }
}

fn rotate(path: &Path, kept: u32) -> io::Result<()> {
    for (from, to) in rotation_renames(path, kept) {
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether a line of `incoming` bytes must go to a fresh file (pure). A line
/// longer than the bound still goes whole into an empty file.
pub fn needs_rotation(len: u64, incoming: usize, max: u64) -> bool {
    len > 0 && len.saturating_add(incoming as u64) > max
}

/// The renames that make room for a fresh log, in order: the oldest kept file
/// is overwritten, each other moves up one, the log becomes `<log>.1` (pure).
pub fn rotation_renames(path: &Path, kept: u32) -> Vec<(PathBuf, PathBuf)> {
    let numbered = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    let mut renames: Vec<(PathBuf, PathBuf)> = (1..kept)
        .rev()
        .map(|n| (numbered(n), numbered(n + 1)))
        .collect();
    if kept > 0 {
        renames.push((path.to_path_buf(), numbered(1)));
    }
    renames
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    /// A target, a level, and whether the filter lets that through.
    type Expectation<'a> = (&'a str, Level, bool);

    /// Which (target, level) pairs each filter lets through.
    #[test]
    fn the_level_comes_from_verbose_unless_directives_override_it() {
        let agent = "codedeploy_agent::poller";
        let dependency = "hyper_util::client";
        let cases: [(Option<&str>, bool, &[Expectation]); 5] = [
            (
                None,
                false,
                &[
                    (agent, Level::INFO, true),
                    (agent, Level::DEBUG, false),
                    (dependency, Level::INFO, false),
                    (dependency, Level::WARN, true),
                ],
            ),
            (
                None,
                true,
                &[(agent, Level::DEBUG, true), (agent, Level::TRACE, false)],
            ),
            (
                Some("warn,codedeploy_agent=trace"),
                false,
                &[
                    (agent, Level::TRACE, true),
                    (dependency, Level::INFO, false),
                ],
            ),
            (
                Some("debug"),
                false,
                &[
                    (agent, Level::DEBUG, true),
                    (dependency, Level::DEBUG, true),
                ],
            ),
            // Directives that do not parse leave the default in place.
            (
                Some("codedeploy_agent=loud"),
                false,
                &[(agent, Level::INFO, true), (agent, Level::DEBUG, false)],
            ),
        ];
        for (directives, verbose, expected) in cases {
            let filter = filter_from(directives, verbose);
            for &(target, level, enabled) in expected {
                assert_eq!(
                    filter.would_enable(target, &level),
                    enabled,
                    "{directives:?} verbose={verbose}: {target} at {level}"
                );
            }
        }
    }

    #[test]
    fn rotation_happens_only_when_a_line_would_not_fit() {
        let cases = [
            (0, 10, 100, false),
            (0, 500, 100, false),
            (90, 10, 100, false),
            (91, 10, 100, true),
            (100, 1, 100, true),
        ];
        for (len, incoming, max, expected) in cases {
            assert_eq!(
                needs_rotation(len, incoming, max),
                expected,
                "{len}+{incoming} vs {max}"
            );
        }
    }

    #[test]
    fn renames_shift_the_numbered_files_oldest_first() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            rotation_renames(Path::new("/l/a.log"), 3),
            vec![
                (p("/l/a.log.2"), p("/l/a.log.3")),
                (p("/l/a.log.1"), p("/l/a.log.2")),
                (p("/l/a.log"), p("/l/a.log.1")),
            ]
        );
        assert_eq!(
            rotation_renames(Path::new("a.log"), 1),
            vec![(p("a.log"), p("a.log.1"))]
        );
        assert!(rotation_renames(Path::new("a.log"), 0).is_empty());
    }

    #[test]
    fn every_line_lands_whole_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        let log = LogFile::open(&path, Some(100)).unwrap();
        for i in 0..30 {
            log.write_line(format!("line {i:02} ......................\n").as_bytes())
                .unwrap();
        }
        let mut seen = Vec::new();
        for n in (1..=ROTATED_FILES_KEPT).rev() {
            let rotated = dir.path().join(format!("agent.log.{n}"));
            let text = std::fs::read_to_string(&rotated).unwrap_or_default();
            assert!(
                text.len() <= 100,
                "{} holds {} bytes",
                rotated.display(),
                text.len()
            );
            seen.extend(text.lines().map(str::to_string));
        }
        seen.extend(
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
        // 3 lines per file, 8 files: the 24 newest lines survive, in order.
        let expected: Vec<String> = (6..30)
            .map(|i| format!("line {i:02} ......................"))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_log_moved_away_or_truncated_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        let log = LogFile::open(&path, None).unwrap();
        log.write_line(b"before\n").unwrap();
        std::fs::rename(&path, dir.path().join("agent.log.old")).unwrap();
        // Within the follow interval lines still go to the moved file...
        log.write_line(b"moved\n").unwrap();
        std::thread::sleep(FOLLOW_EVERY + Duration::from_millis(50));
        // ...then the agent reopens its path.
        log.write_line(b"after\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("agent.log.old")).unwrap(),
            "before\nmoved\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        // copytruncate: appending continues at the new end, no hole of zeros.
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        log.write_line(b"truncated\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "truncated\n");
    }
}
