//! The agent log: `<log_dir>/<program_name>.log` (and stderr), one line per event
//! in the official layout `YYYY-MM-DDTHH:MM:SS LEVEL [program(pid)]: component:
//! [span fields] message`, so that operators' greps keep working. Nothing secret is
//! ever passed to a log macro; dependencies log at WARN and above only.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The line layout of the official agent's log.
pub struct AgentLogFormat {
    program: String,
    pid: u32,
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

/// Where the log goes: the returned path is the log file, when it could be opened.
pub fn init(log_dir: &Path, program_name: &str, verbose: bool) -> Option<PathBuf> {
    let level = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("CODEDEPLOY_AGENT_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,codedeploy_agent={level}")));
    let format = AgentLogFormat {
        program: program_name.to_string(),
        pid: std::process::id(),
    };
    let file_path = log_dir.join(format!("{program_name}.log"));
    let file = std::fs::create_dir_all(log_dir).and_then(|()| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file_path)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(format);
    match file {
        Ok(file) => {
            use tracing_subscriber::fmt::writer::MakeWriterExt;
            let writer = std::io::stderr.and(Mutex::new(file));
            let _ = builder.with_writer(writer).try_init();
            Some(file_path)
        }
        Err(e) => {
            let _ = builder.with_writer(std::io::stderr).try_init();
            tracing::warn!(
                "cannot open the log file {}: {e}; logging to stderr only",
                file_path.display()
            );
            None
        }
    }
}
