//! The agent configuration as typed values, with the official defaults. Built by
//! `parse.rs` from codedeployagent.yml; read everywhere else, never re-validated.

use std::path::PathBuf;
use std::time::Duration;

use super::bounds::{HookBounds, Priority};
use super::hardening::{CoreDumps, Hardening, ScriptsLogBounds};
use super::proxy::ProxyUri;

/// Where the official agent installs the CA chain that signs deployment specs.
pub const DEFAULT_SPEC_CA_FILE: &str =
    "/opt/codedeploy-agent/certs/host-agent-deployment-signer-ca-chain.pem";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/codedeploy-agent/conf/codedeployagent.yml";
pub const DEFAULT_ON_PREMISES_FILE: &str = "/etc/codedeploy-agent/conf/codedeploy.onpremises.yml";

/// The upper bound the agent puts on `kill_agent_max_wait_time_seconds`.
pub const MAX_KILL_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The agent log is rotated when it would grow past this (`:log_max_size_mb:`).
pub const DEFAULT_LOG_MAX_SIZE: u64 = 64 * 1024 * 1024;

/// Commands run at once by default, as the official 2.x agent's command pool.
pub const DEFAULT_MAX_CONCURRENT_COMMANDS: u32 = 16;
/// The most `:max_concurrent_commands:` accepts: each command may hold hook
/// processes and files open, and the service never has more groups than this
/// running on one host in practice.
pub const MAX_CONCURRENT_COMMANDS: u32 = 256;
/// Beyond half the interval, a poll's jitter could carry it past its next slot.
pub const MAX_POLL_JITTER_PERCENT: u32 = 50;

/// S3 bundles of this size or more are fetched as byte ranges
/// (`:bundle_ranged_download_threshold:`), in parts of up to 8 MiB. Below
/// it, one stream takes a few seconds at most and costs one request; some
/// S3-compatible servers (moto among them) read the whole object for every
/// range, which makes ranges of a middling bundle slower than one stream
/// (the 201 MiB revision of BENCHMARKS.md took 25 s as ranges from moto,
/// 1.1 s as one stream).
pub const DEFAULT_RANGED_DOWNLOAD_THRESHOLD: u64 = 256 * 1024 * 1024;
/// Connections a ranged download uses at once (`:bundle_download_connections:`).
pub const DEFAULT_DOWNLOAD_CONNECTIONS: u32 = 8;
/// The most `:bundle_download_connections:` accepts: past this a host
/// competes with itself, and every connection holds a few chunks in memory.
pub const MAX_DOWNLOAD_CONNECTIONS: u32 = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub log_aws_wire: bool,
    pub log_dir: PathBuf,
    pub pid_dir: PathBuf,
    pub program_name: String,
    pub root_dir: PathBuf,
    pub verbose: bool,
    pub wait_between_runs: Duration,
    pub wait_after_throttle_error: Duration,
    pub wait_after_connection_problem: Duration,
    pub proxy_uri: Option<ProxyUri>,
    pub max_revisions: u32,
    pub disable_imds_v1: bool,
    pub on_premises_config_file: PathBuf,
    pub http_read_timeout: Duration,
    pub kill_agent_max_wait: Duration,
    pub enable_deployments_log: bool,
    pub use_fips_mode: bool,
    pub deploy_control_endpoint: Option<String>,
    pub s3_endpoint_override: Option<String>,
    /// Ours: the GitHub API that GitHub revisions are downloaded from, for a
    /// mirror or a test server; `None` means `https://api.github.com`.
    pub github_endpoint_override: Option<String>,
    /// `:metrics_textfile:` (ours): the `.prom` file the agent keeps its
    /// metrics in for node_exporter's textfile collector; `None` writes none.
    pub metrics_textfile: Option<PathBuf>,
    /// `:enable_archive_reuse:` (2.1): a deployment naming an earlier one
    /// with `ReuseArchiveFromDeploymentId` copies that one's folder instead
    /// of downloading.
    pub enable_archive_reuse: bool,
    pub enable_auth_policy: bool,
    pub ongoing_deployment_tracking: String,
    /// Ours: the CA chain that deployment-spec signatures must lead to.
    pub deployment_spec_ca_file: PathBuf,
    /// Ours: how strictly a PKCS7/JSON spec is checked.
    pub spec_verification: SpecVerification,
    /// Ours: the agent log's size bound in bytes before it is rotated; `None`
    /// leaves rotation to an external tool (logrotate with `copytruncate` or
    /// `create`: the agent follows either).
    pub log_max_size: Option<u64>,
    // Hardening and process hygiene (2.x keys and ours; see config/hardening.rs).
    pub hardening: Hardening,
    /// Ours: the size bounds of each deployment's scripts.log.
    pub scripts_log: ScriptsLogBounds,
    pub core_dumps: CoreDumps,
    // --- hook resource bounds (ours; all off unless configured, see config/bounds.rs) ---
    /// Ours: CPU, memory, process and priority bounds for every hook script.
    pub hook_bounds: HookBounds,
    /// Ours: the agent's own CPU and I/O priority, applied once at start-up.
    pub agent_priority: Priority,
    // --- polling and concurrency (ours; see poller/schedule.rs) ---
    /// Ours: how far after its slot a poll may land, in percent of
    /// `wait_between_runs` (0 to 50; default 0: the start-up phase already
    /// spreads a fleet, and any per-poll jitter raises its busiest second).
    pub poll_jitter_percent: u32,
    /// Ours: the first poll waits a random delay below this; `None` means one
    /// `wait_between_runs`.
    pub startup_delay_max: Option<Duration>,
    /// Ours: how many commands (of different deployment groups) run at once.
    pub max_concurrent_commands: u32,
    /// Ours: when and over how many connections an S3 bundle is fetched as
    /// byte ranges.
    pub bundle_download: BundleDownload,
}

/// How an S3 bundle is downloaded: one stream, or byte ranges over several
/// connections when it is large (`:bundle_ranged_download_threshold:`,
/// `:bundle_download_connections:`). GitHub bundles always take one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleDownload {
    /// Bundles of at least this many bytes (1 or more) are fetched as ranges.
    pub ranged_threshold: u64,
    /// Ranges fetched at once, 1 to [`MAX_DOWNLOAD_CONNECTIONS`]; 1 means
    /// one stream whatever the size.
    pub connections: u32,
}

impl Default for BundleDownload {
    fn default() -> BundleDownload {
        BundleDownload {
            ranged_threshold: DEFAULT_RANGED_DOWNLOAD_THRESHOLD,
            connections: DEFAULT_DOWNLOAD_CONNECTIONS,
        }
    }
}

/// How a signed deployment specification is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecVerification {
    /// The signature, and the signer's certificate chain up to the CA file (default).
    SignatureAndChain,
    /// The signature only, as the Go rewrite does; logged as a warning at start.
    SignatureOnly,
}

impl Default for AgentConfig {
    /// The built-in defaults, for keys the file leaves out.
    fn default() -> AgentConfig {
        AgentConfig {
            log_aws_wire: false,
            log_dir: PathBuf::from("/var/log/aws/codedeploy-agent/"),
            pid_dir: PathBuf::from("/opt/codedeploy-agent/state/.pid/"),
            program_name: "codedeploy-agent".to_string(),
            root_dir: PathBuf::from("/opt/codedeploy-agent/deployment-root"),
            verbose: false,
            wait_between_runs: Duration::from_secs(30),
            wait_after_throttle_error: Duration::from_secs(60),
            wait_after_connection_problem: Duration::from_secs(5),
            proxy_uri: None,
            max_revisions: 5,
            disable_imds_v1: false,
            on_premises_config_file: PathBuf::from(DEFAULT_ON_PREMISES_FILE),
            http_read_timeout: Duration::from_secs(80),
            kill_agent_max_wait: Duration::from_secs(7200),
            enable_deployments_log: true,
            use_fips_mode: false,
            deploy_control_endpoint: None,
            s3_endpoint_override: None,
            github_endpoint_override: None,
            metrics_textfile: None,
            enable_archive_reuse: true,
            enable_auth_policy: false,
            ongoing_deployment_tracking: "ongoing-deployment".to_string(),
            deployment_spec_ca_file: PathBuf::from(DEFAULT_SPEC_CA_FILE),
            spec_verification: SpecVerification::SignatureAndChain,
            log_max_size: Some(DEFAULT_LOG_MAX_SIZE),
            hardening: Hardening::default(),
            scripts_log: ScriptsLogBounds::default(),
            core_dumps: CoreDumps::Disabled,
            hook_bounds: HookBounds::default(),
            agent_priority: Priority::default(),
            poll_jitter_percent: 0,
            startup_delay_max: None,
            max_concurrent_commands: DEFAULT_MAX_CONCURRENT_COMMANDS,
            bundle_download: BundleDownload::default(),
        }
    }
}

/// Something in the file worth telling the operator that does not stop the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}
