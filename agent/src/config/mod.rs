//! The agent's configuration: codedeployagent.yml (model, parser, defaults) and
//! the on-premises registration file. Reading the files is the only I/O here.

mod bounds;
mod fips;
mod hardening;
mod model;
mod onprem;
mod parse;
mod proxy;
mod reload;

use std::path::{Path, PathBuf};

pub use bounds::{CpuPercent, HookBounds, IoLevel, IoPriority, Nice, Priority};
pub use fips::{check_fips_region, NoFipsEndpoint};
pub use hardening::{
    documented_defaults, restricted_dirs, BundlePolicy, CoreDumps, DirModes, EnvInheritance,
    Hardening, HookEnvPolicy, InstallPolicy, LinkPolicy, LoaderVariables, Ownership,
    PermissionLinks, ScriptsLogBounds, SeLinuxTypes, SetIdBits, DEFAULT_MAX_EXTRACTION_SIZE,
    DEFAULT_SCRIPTS_LOG_MAX_FILES, DEFAULT_SCRIPTS_LOG_MAX_SIZE, UNCONFINED_SELINUX_TYPES,
};
pub use model::{
    AgentConfig, BundleDownload, ConfigWarning, SpecVerification, DEFAULT_CONFIG_FILE,
    DEFAULT_DOWNLOAD_CONNECTIONS, DEFAULT_LOG_MAX_SIZE, DEFAULT_MAX_CONCURRENT_COMMANDS,
    DEFAULT_ON_PREMISES_FILE, DEFAULT_RANGED_DOWNLOAD_THRESHOLD, DEFAULT_SPEC_CA_FILE,
    MAX_CONCURRENT_COMMANDS, MAX_DOWNLOAD_CONNECTIONS, MAX_POLL_JITTER_PERCENT,
};
pub use onprem::{parse_on_premises, OnPremisesIdentity};
pub use parse::{parse_agent_config, ParsedConfig};
pub use proxy::{ProxyUri, ProxyUriError};
pub use reload::live_reload_ignored;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{}: {source}", file.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Yaml {
        file: PathBuf,
        line: Option<usize>,
        #[source]
        source: serde_norway::Error,
    },
    /// YAML, but not the shape the agent reads; `message` is the sentence a
    /// person reads.
    #[error("{}{}: {message}", file.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Syntax {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("{}{}: key `:{key}:` must be {expected}, found {found}", file.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    InvalidValue {
        file: PathBuf,
        key: String,
        line: Option<usize>,
        expected: String,
        found: String,
    },
    #[error("{}: The deployment failed because the format of the following on-premises configuration file is invalid: {} ({source})", file.display(), file.display())]
    OnPremisesYaml {
        file: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    /// A missing or conflicting key of the on-premises file; `message` is the
    /// official agent's sentence, which operators search for.
    #[error("{}: {message}", file.display())]
    OnPremises { file: PathBuf, message: String },
}

/// Reads and parses the agent configuration file.
pub fn load_agent_config(file: &Path) -> Result<ParsedConfig, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse_agent_config(&text, file)
}

/// Reads the on-premises file; a missing file means the host is not registered
/// on-premises (it is then an EC2 instance).
pub fn load_on_premises(file: &Path) -> Result<Option<OnPremisesIdentity>, ConfigError> {
    match std::fs::read_to_string(file) {
        Ok(text) => parse_on_premises(&text, file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read {
            file: file.to_path_buf(),
            source,
        }),
    }
}

/// The agent configuration and its warnings; a missing file means the
/// built-in defaults, with a note saying so (`codedeploy-local` and
/// `validate` are often tried before the agent is set up).
pub fn load_or_defaults(
    file: &Path,
) -> Result<(AgentConfig, Vec<ConfigWarning>, Option<String>), ConfigError> {
    match load_agent_config(file) {
        Ok(parsed) => Ok((parsed.config, parsed.warnings, None)),
        Err(ConfigError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let config = AgentConfig::default();
            let note = format!(
                "note: the agent configuration file {} does not exist; using the built-in defaults \
                 (deployment root {}, logs in {})",
                file.display(),
                config.root_dir.display(),
                config.log_dir.display()
            );
            Ok((config, Vec::new(), Some(note)))
        }
        Err(e) => Err(e),
    }
}
