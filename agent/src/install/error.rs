//! Why Install failed: conflicts found while planning (worded as the official
//! agent's, which operators know) and failures while applying, each naming the
//! path concerned.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum InstallError {
    /// The agent was told to stop while Install planned or copied; what was
    /// installed so far is in the cleanup file, which the next Install replays.
    #[error("Install stopped: the agent is shutting down")]
    Stopped,

    /// A hardening key of the agent configuration refuses this step.
    #[error("The deployment failed because the agent's configuration refuses a permission step on {}: {reason}", .path.display())]
    Refused { path: PathBuf, reason: String },

    #[error("The deployment failed because a specified file already exists at this location: {}", .path.display())]
    FileExists { path: PathBuf },

    #[error(
        "The deployment failed because the AppSpec file copies two sources, {} and {}, to the same destination {}. Remove one of them from the files section.",
        .first.display(), .second.display(), .destination.display()
    )]
    TwoSources {
        destination: PathBuf,
        first: PathBuf,
        second: PathBuf,
    },

    #[error(
        "The deployment failed because the AppSpec file installs the file {} at {}, where this deployment also creates a directory. Update the files section or the revision's layout.",
        .source_path.display(), .destination.display()
    )]
    FileOverPlannedDirectory {
        source_path: PathBuf,
        destination: PathBuf,
    },

    #[error(
        "The deployment failed because it must create the directory {}, where the AppSpec file also installs the file {}. Update the files section or the revision's layout.",
        .directory.display(), .source_path.display()
    )]
    DirectoryOverPlannedFile {
        directory: PathBuf,
        source_path: PathBuf,
    },

    #[error("The deployment failed because it must create the directory {}, but a file already exists there", .directory.display())]
    DirectoryOverExistingFile { directory: PathBuf },

    #[error("The deployment failed because {} exists and is a directory; file_exists_behavior replaces files, never directories", .path.display())]
    FileOverExistingDirectory { path: PathBuf },

    #[error("The source '{source_name}' of a files entry does not exist in the revision (expected at {})", .path.display())]
    SourceMissing { source_name: String, path: PathBuf },

    #[error(
        "The revision's symbolic link {} points to a directory outside the revision ({}); Install copies directories only from inside the revision",
        .link.display(), .target.display()
    )]
    LinkLeavesRevision { link: PathBuf, target: PathBuf },

    #[error("The revision's symbolic link {} leads back into a directory being copied (a loop)", .link.display())]
    LinkLoop { link: PathBuf },

    #[error("The revision's entry {} is neither a file, a directory nor a symbolic link and cannot be installed", .path.display())]
    UnsupportedSource { path: PathBuf },

    #[error(
        "The deployment failed because the permissions for {}, a file this deployment installs, give pattern {pattern}; a pattern applies only to directory objects",
        .object.display()
    )]
    PatternOnFile { object: PathBuf, pattern: String },

    #[error(
        "The deployment failed because the permissions for {}, a file this deployment installs, give except; except applies only to directory objects",
        .object.display()
    )]
    ExceptOnFile { object: PathBuf },

    #[error(
        "The deployment failed because a default (d:) acl entry would apply to the file {}; default entries are for directories only",
        .file.display()
    )]
    DefaultAclOnFile { file: PathBuf },

    #[error("The deployment failed because the permissions for {} are specified more than once in the AppSpec file", .path.display())]
    PermissionsTwice { path: PathBuf },

    #[error("The deployment failed because user '{user}' (owner of {}) does not exist on this host", .path.display())]
    UnknownUser { user: String, path: PathBuf },

    #[error("The deployment failed because group '{group}' (of {}) does not exist on this host", .path.display())]
    UnknownGroup { group: String, path: PathBuf },

    #[error("The deployment failed while setting permissions on {}: `{command}` {detail}", .path.display())]
    Command {
        command: String,
        path: PathBuf,
        detail: String,
    },

    #[error("Install could not {action} {}: {source}", .path.display())]
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
