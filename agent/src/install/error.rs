//! Why Install failed: conflicts found while planning (worded as the official
//! agent's, which operators know) and failures while applying, each naming the
//! path concerned, escaped (a path may hold a revision's names).

use std::path::PathBuf;

use thiserror::Error;

use crate::names::Escaped;

#[derive(Debug, Error)]
pub enum InstallError {
    /// The agent was told to stop while Install planned or copied; what was
    /// installed so far is in the cleanup file, which the next Install replays.
    #[error("Install stopped: the agent is shutting down")]
    Stopped,

    /// A hardening key of the agent configuration refuses this step.
    #[error("The deployment failed because the agent's configuration refuses a permission step on {}: {reason}", Escaped::of(&.path))]
    Refused { path: PathBuf, reason: String },

    #[error("The deployment failed because a specified file already exists at this location: {}", Escaped::of(&.path))]
    FileExists { path: PathBuf },

    #[error(
        "The deployment failed because the AppSpec file copies two sources, {} and {}, to the same destination {}. Remove one of them from the files section.",
        Escaped::of(&.first), Escaped::of(&.second), Escaped::of(&.destination)
    )]
    TwoSources {
        destination: PathBuf,
        first: PathBuf,
        second: PathBuf,
    },

    #[error(
        "The deployment failed because the AppSpec file installs the file {} at {}, where this deployment also creates a directory. Update the files section or the revision's layout.",
        Escaped::of(&.source_path), Escaped::of(&.destination)
    )]
    FileOverPlannedDirectory {
        source_path: PathBuf,
        destination: PathBuf,
    },

    #[error(
        "The deployment failed because it must create the directory {}, where the AppSpec file also installs the file {}. Update the files section or the revision's layout.",
        Escaped::of(&.directory), Escaped::of(&.source_path)
    )]
    DirectoryOverPlannedFile {
        directory: PathBuf,
        source_path: PathBuf,
    },

    #[error("The deployment failed because it must create the directory {}, but a file already exists there", Escaped::of(&.directory))]
    DirectoryOverExistingFile { directory: PathBuf },

    #[error("The deployment failed because {} exists and is a directory; file_exists_behavior replaces files, never directories", Escaped::of(&.path))]
    FileOverExistingDirectory { path: PathBuf },

    #[error("The source '{source_name}' of a files entry does not exist in the revision (expected at {})", Escaped::of(&.path))]
    SourceMissing { source_name: String, path: PathBuf },

    #[error(
        "The revision's symbolic link {} points to a directory outside the revision ({}); Install copies directories only from inside the revision",
        Escaped::of(&.link), Escaped::of(&.target)
    )]
    LinkLeavesRevision { link: PathBuf, target: PathBuf },

    #[error("The revision's symbolic link {} leads back into a directory being copied (a loop)", Escaped::of(&.link))]
    LinkLoop { link: PathBuf },

    #[error("The revision's entry {} is neither a file, a directory nor a symbolic link and cannot be installed", Escaped::of(&.path))]
    UnsupportedSource { path: PathBuf },

    #[error(
        "The deployment failed because the permissions for {}, a file this deployment installs, give pattern {pattern}; a pattern applies only to directory objects",
        Escaped::of(&.object)
    )]
    PatternOnFile { object: PathBuf, pattern: String },

    #[error(
        "The deployment failed because the permissions for {}, a file this deployment installs, give except; except applies only to directory objects",
        Escaped::of(&.object)
    )]
    ExceptOnFile { object: PathBuf },

    #[error(
        "The deployment failed because a default (d:) acl entry would apply to the file {}; default entries are for directories only",
        Escaped::of(&.file)
    )]
    DefaultAclOnFile { file: PathBuf },

    #[error("The deployment failed because the permissions for {} are specified more than once in the AppSpec file", Escaped::of(&.path))]
    PermissionsTwice { path: PathBuf },

    #[error("The deployment failed because user '{user}' (owner of {}) does not exist on this host", Escaped::of(&.path))]
    UnknownUser { user: String, path: PathBuf },

    #[error("The deployment failed because group '{group}' (of {}) does not exist on this host", Escaped::of(&.path))]
    UnknownGroup { group: String, path: PathBuf },

    #[error("The deployment failed while setting permissions on {}: `{command}` {detail}", Escaped::of(&.path))]
    Command {
        command: String,
        path: PathBuf,
        detail: String,
    },

    #[error("Install could not {action} {}: {source}", Escaped::of(&.path))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl InstallError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> InstallError {
        let path = path.into();
        move |source| InstallError::Io {
            action,
            path,
            source,
        }
    }
}
