//! Why an appspec could not be found or accepted. Every error names the file; YAML
//! and validation errors also carry the key path and line that serde_norway
//! attaches to them. Construction only: no I/O.

use std::path::PathBuf;

use thiserror::Error;

/// A message for the person who wrote the appspec: what is wrong with one
/// value and how to fix it, e.g. `mode '648' contains '8', which is not an
/// octal digit (0-7)`. The caller places it: the parser hands it to
/// serde_norway, which adds the key path and line, and [`AppSpecError::Invalid`]
/// adds the file; a value's own parser may quote a part's problem in its own
/// (`acl entry 'u:bob:rwz' is invalid: ...`). Nothing else is ever flattened
/// into one: an I/O or YAML error stays a `#[source]` of [`AppSpecError`].
pub type Problem = String;

#[derive(Debug, Error)]
pub enum AppSpecError {
    /// The wording up to "..." is the official agent's, which operators search for.
    #[error(
        "The CodeDeploy agent did not find an AppSpec file within the unpacked revision directory at revision-relative path \"{expected}\". The revision was unpacked to directory \"{archive_dir}\", and the AppSpec file was expected but not found at path \"{path}\". Check that the revision contains an AppSpec file at its top level with exactly this name, or name the file in the deployment's AppSpecFilename."
    )]
    NotFound {
        expected: String,
        archive_dir: PathBuf,
        path: PathBuf,
    },

    #[error("Could not read the AppSpec file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Worded as a [`AppSpecError::Read`] whose cause is the encoding.
    #[error(
        "Could not read the AppSpec file {path}: it is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
        .source.valid_up_to()
    )]
    NotUtf8 {
        path: PathBuf,
        #[source]
        source: std::str::Utf8Error,
    },

    #[error(
        "The AppSpec file {} is {size} bytes; an AppSpec larger than {limit} bytes is refused (it lists files, permissions and hooks, and a real one is a few kilobytes)",
        .path.display()
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },

    #[error(
        "Invalid AppSpec file {}: it holds {openers} `[` and `{{` characters, more than the {limit} the agent reads (they open flow collections, whose nesting makes YAML parsing slow); write long lists in block style (`- item` lines)",
        .file.display()
    )]
    TooManyFlowCollections {
        file: PathBuf,
        openers: usize,
        limit: usize,
    },

    #[error("The AppSpec file {file} is empty: it must define at least version and os")]
    Empty { file: PathBuf },

    /// Malformed YAML or a rule of the appspec grammar broken; the source's text
    /// names the key path (e.g. `hooks.BeforeInstall[0].timeout`) and the line.
    #[error("Invalid AppSpec file {file}: {source}")]
    Invalid {
        file: PathBuf,
        #[source]
        source: serde_norway::Error,
    },

    /// The list is printed the way the official agent prints it: `["A", "B"]`.
    #[error("{file_name} file contains unknown lifecycle events: [{}]", quoted_list(.events))]
    UnknownLifecycleEvents {
        file_name: String,
        events: Vec<String>,
    },

    #[error(
        "You specified a lifecycle event which is not a default one and doesn't exist in your {file_name} file: {event}"
    )]
    CustomEventWithoutHooks { file_name: String, event: String },
}

impl AppSpecError {
    /// The 1-based line the error points at, when the parser knows it.
    pub fn line(&self) -> Option<usize> {
        match self {
            AppSpecError::Invalid { source, .. } => source.location().map(|l| l.line()),
            _ => None,
        }
    }
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
