//! Running the real agent binary: its configuration files written in the
//! official formats (`codedeployagent.yml` with `:symbol:` keys, the plain
//! `codedeploy.onpremises.yml`), the process started as
//! `codedeploy-agent --config <file> run` with its output captured to files,
//! and killed when dropped.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Who the host is, as the on-premises file says.
#[derive(Clone, Debug)]
pub enum OnPremisesIdentity {
    /// `iam_user_arn` with static keys.
    IamUser {
        arn: String,
        access_key_id: String,
        secret_access_key: String,
    },
    /// `iam_session_arn` with a shared-credentials file (written by
    /// [`write_credentials_file`]).
    IamSession {
        arn: String,
        credentials_file: PathBuf,
    },
    /// No on-premises file at all: the agent must find out from instance
    /// metadata that it is an EC2 instance (see `crate::imds`).
    Ec2,
}

impl OnPremisesIdentity {
    /// The host identifier the agent sends (empty for an EC2 instance, whose
    /// identifier comes from instance metadata).
    pub fn arn(&self) -> &str {
        match self {
            OnPremisesIdentity::IamUser { arn, .. }
            | OnPremisesIdentity::IamSession { arn, .. } => arn,
            OnPremisesIdentity::Ec2 => "",
        }
    }
}

/// Writes a shared-credentials file with a `[default]` profile.
pub fn write_credentials_file(
    path: &Path,
    access_key_id: &str,
    secret_access_key: &str,
    session_token: Option<&str>,
) -> io::Result<()> {
    let mut text = format!(
        "[default]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {secret_access_key}\n"
    );
    if let Some(token) = session_token {
        text.push_str(&format!("aws_session_token = {token}\n"));
    }
    std::fs::write(path, text)
}

/// Everything the agent's two configuration files say.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Where the config files and the agent's captured output go.
    pub dir: PathBuf,
    pub log_dir: PathBuf,
    pub pid_dir: PathBuf,
    pub root_dir: PathBuf,
    pub on_premises_config_file: PathBuf,
    pub ca_file: PathBuf,
    pub deploy_control_endpoint: String,
    pub s3_endpoint_override: String,
    pub wait_between_runs: u32,
    pub verbose: bool,
    pub region: String,
    pub identity: OnPremisesIdentity,
    /// Extra `codedeployagent.yml` lines, written as given.
    pub extra_lines: Vec<String>,
    /// Extra environment variables for the agent process.
    pub env: Vec<(String, String)>,
}

impl AgentConfig {
    /// A configuration whose files and directories all live under `dir`.
    pub fn new(
        dir: &Path,
        deploy_control_endpoint: &str,
        s3_endpoint_override: &str,
        identity: OnPremisesIdentity,
    ) -> Self {
        AgentConfig {
            dir: dir.to_path_buf(),
            log_dir: dir.join("log"),
            pid_dir: dir.join("pid"),
            root_dir: dir.join("deployment-root"),
            on_premises_config_file: dir.join("codedeploy.onpremises.yml"),
            ca_file: dir.join("ca-chain.pem"),
            deploy_control_endpoint: deploy_control_endpoint.to_string(),
            s3_endpoint_override: s3_endpoint_override.to_string(),
            wait_between_runs: 1,
            verbose: true,
            region: "us-east-1".to_string(),
            identity,
            extra_lines: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Adds a raw line to `codedeployagent.yml` (e.g. `:max_revisions: 2`).
    pub fn extra_line(mut self, line: &str) -> Self {
        self.extra_lines.push(line.to_string());
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// The environment the agent under test runs with: the developer's AWS
    /// set-up and proxies removed, loopback never proxied, `env` added.
    pub fn apply_env(&self, command: &mut Command) {
        for name in SCRUBBED_ENV {
            command.env_remove(name);
        }
        command.env("NO_PROXY", "127.0.0.1,localhost");
        command.env("RUST_BACKTRACE", "1");
        for (name, value) in &self.env {
            command.env(name, value);
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("codedeployagent.yml")
    }

    /// The text of `codedeployagent.yml`.
    pub fn agent_yaml(&self) -> String {
        let mut text = format!(
            "---\n\
             :log_dir: {}\n\
             :pid_dir: {}\n\
             :program_name: codedeploy-agent\n\
             :root_dir: {}\n\
             :verbose: {}\n\
             :wait_between_runs: {}\n\
             :on_premises_config_file: {}\n\
             :deploy_control_endpoint: {}\n\
             :s3_endpoint_override: {}\n\
             :deployment_spec_ca_file: {}\n",
            self.log_dir.display(),
            self.pid_dir.display(),
            self.root_dir.display(),
            self.verbose,
            self.wait_between_runs,
            self.on_premises_config_file.display(),
            self.deploy_control_endpoint,
            self.s3_endpoint_override,
            self.ca_file.display(),
        );
        for line in &self.extra_lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The text of `codedeploy.onpremises.yml` (`None`: no file, an EC2 host).
    pub fn on_premises_yaml(&self) -> Option<String> {
        Some(match &self.identity {
            OnPremisesIdentity::IamUser {
                arn,
                access_key_id,
                secret_access_key,
            } => format!(
                "---\naws_access_key_id: {access_key_id}\naws_secret_access_key: {secret_access_key}\niam_user_arn: {arn}\nregion: {}\n",
                self.region
            ),
            OnPremisesIdentity::IamSession {
                arn,
                credentials_file,
            } => format!(
                "---\niam_session_arn: {arn}\naws_credentials_file: {}\nregion: {}\n",
                credentials_file.display(),
                self.region
            ),
            OnPremisesIdentity::Ec2 => return None,
        })
    }

    /// Writes both files (for an EC2 host, removes the on-premises file) and
    /// creates the log and pid directories (as the package would). The
    /// deployment root is left for the agent to create.
    pub fn write(&self) -> io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::create_dir_all(&self.log_dir)?;
        std::fs::create_dir_all(&self.pid_dir)?;
        match self.on_premises_yaml() {
            Some(text) => std::fs::write(&self.on_premises_config_file, text)?,
            None => match std::fs::remove_file(&self.on_premises_config_file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
        }
        let path = self.config_path();
        std::fs::write(&path, self.agent_yaml())?;
        Ok(path)
    }
}

/// Environment variables that would leak the developer's AWS setup or
/// proxies into the agent under test.
const SCRUBBED_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_HOST_IDENTIFIER",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// A running agent. Dropping it kills the process.
#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl AgentProcess {
    /// Writes the configuration and starts `<binary> --config <file> run`.
    pub fn spawn(binary: &Path, config: &AgentConfig) -> io::Result<AgentProcess> {
        let config_path = config.write()?;
        let stdout_path = config.dir.join("agent.stdout");
        let stderr_path = config.dir.join("agent.stderr");
        // The agent runs in its own directory: a relative path must not be
        // resolved from there.
        let binary = if binary.is_relative() && binary.components().count() > 1 {
            std::env::current_dir()?.join(binary)
        } else {
            binary.to_path_buf()
        };
        let mut command = Command::new(&binary);
        command
            .arg("--config")
            .arg(&config_path)
            .arg("run")
            .current_dir(&config.dir)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(&stderr_path)?);
        config.apply_env(&mut command);
        let child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start the agent {}: {e}", binary.display()),
            )
        })?;
        Ok(AgentProcess {
            child,
            stdout_path,
            stderr_path,
            log_path: config.log_dir.join("codedeploy-agent.log"),
            exit: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit.is_none()
    }

    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.is_running();
        self.exit
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// `<log_dir>/codedeploy-agent.log`.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// Everything the agent wrote: stdout, stderr and its log file.
    pub fn all_output(&self) -> String {
        format!("{}\n{}\n{}", self.stdout(), self.stderr(), self.log())
    }

    /// A labelled dump for assertion messages (long outputs keep their end).
    pub fn report(&mut self) -> String {
        let status = match self.exit_status() {
            None => format!("running (pid {})", self.pid()),
            Some(s) => format!("exited: {s}"),
        };
        format!(
            "=== agent {status} ===\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- {} ---\n{}\n",
            tail(&self.stdout(), 20_000),
            tail(&self.stderr(), 20_000),
            self.log_path.display(),
            tail(&self.log(), 20_000)
        )
    }

    /// Sends a signal by name (`TERM`, `HUP`, `KILL`, ...) to the agent's pid.
    pub fn signal(&mut self, name: &str) {
        if self.is_running() {
            let _ = Command::new("kill")
                .arg(format!("-{name}"))
                .arg(self.pid().to_string())
                .status();
        }
    }

    /// Waits until the process has exited, at most `timeout`; its status.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.exit_status()
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `max` bytes of `text`, from a character boundary on (failure
/// reports print the end of long logs).
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> AgentConfig {
        AgentConfig::new(
            dir,
            "http://127.0.0.1:1111",
            "http://127.0.0.1:2222",
            OnPremisesIdentity::IamUser {
                arn: "arn:aws:iam::123456789012:user/host".into(),
                access_key_id: "AKIA1".into(),
                secret_access_key: "s3cr3t".into(),
            },
        )
    }

    #[test]
    fn agent_yaml_uses_symbol_keys_and_carries_extra_lines() {
        let dir = tempfile::tempdir().unwrap();
        let text = config(dir.path())
            .extra_line(":max_revisions: 2")
            .agent_yaml();
        assert!(text.starts_with("---\n:log_dir: "), "{text}");
        assert!(text.contains(":deploy_control_endpoint: http://127.0.0.1:1111\n"));
        assert!(text.contains(":s3_endpoint_override: http://127.0.0.1:2222\n"));
        assert!(text.contains(":wait_between_runs: 1\n"));
        assert!(text.ends_with(":max_revisions: 2\n"));
        for line in text.lines().skip(1) {
            assert!(line.starts_with(':'), "{line}");
        }
    }

    #[test]
    fn on_premises_yaml_names_the_user_and_region() {
        let dir = tempfile::tempdir().unwrap();
        let text = config(dir.path()).on_premises_yaml().unwrap();
        assert!(text.contains("iam_user_arn: arn:aws:iam::123456789012:user/host\n"));
        assert!(text.contains("aws_access_key_id: AKIA1\n"));
        assert!(text.contains("aws_secret_access_key: s3cr3t\n"));
        assert!(text.contains("region: us-east-1\n"));
    }

    #[test]
    fn an_ec2_host_has_no_on_premises_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.write().unwrap();
        assert!(cfg.on_premises_config_file.exists());
        cfg.identity = OnPremisesIdentity::Ec2;
        assert_eq!(cfg.on_premises_yaml(), None);
        cfg.write().unwrap();
        assert!(!cfg.on_premises_config_file.exists());
        assert!(cfg.config_path().exists());
    }

    #[test]
    fn spawn_captures_output_and_kill_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-agent");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"args: $*\"\necho oops >&2\nexec sleep 30\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = config(&dir.path().join("agent"));
        let mut agent = AgentProcess::spawn(&script, &cfg).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while agent.stderr().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(agent.is_running());
        assert_eq!(
            agent.stdout().trim(),
            format!("args: --config {} run", cfg.config_path().display())
        );
        assert_eq!(agent.stderr().trim(), "oops");
        assert!(cfg.log_dir.is_dir() && cfg.pid_dir.is_dir());
        assert!(!cfg.root_dir.exists());
        let pid = agent.pid();
        drop(agent);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
