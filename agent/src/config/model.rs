//! The agent configuration as typed values, with the official defaults. Built by
//! `parse.rs` from codedeployagent.yml; read everywhere else, never re-validated.

use std::path::PathBuf;
use std::time::Duration;

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
            enable_auth_policy: false,
            ongoing_deployment_tracking: "ongoing-deployment".to_string(),
            deployment_spec_ca_file: PathBuf::from(DEFAULT_SPEC_CA_FILE),
            spec_verification: SpecVerification::SignatureAndChain,
            log_max_size: Some(DEFAULT_LOG_MAX_SIZE),
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
