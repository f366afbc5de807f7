//! One end-to-end test's world, wired together: a temporary directory, the
//! test PKI, a real S3 server, the Commands emulator and (once started) the
//! agent, with the host's identity and credentials shared between them.
//! Its `report()` is what a failing assertion prints.
//!
//! When a test panics, the temporary directory is kept and its path printed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tempfile::TempDir;

use crate::agent::{AgentConfig, AgentProcess, OnPremisesIdentity};
use crate::bundle::{BundleType, Revision};
use crate::ca::TestPki;
use crate::emulator::{
    Credential, DeploymentStatus, Emulator, EmulatorConfig, Outcome, S3Location,
};
use crate::imds::{ImdsConfig, ImdsEmulator, RoleCredentials};
use crate::s3::S3Server;

/// The host's IAM user: its ARN is the host identifier.
pub const HOST_ARN: &str = "arn:aws:iam::123456789012:user/codedeploy-e2e-host";
pub const HOST_ACCESS_KEY_ID: &str = "AKIAE2ETESTHOST00001";
pub const HOST_SECRET_ACCESS_KEY: &str = "e2e/Host+Secret/0123456789abcdefghijklm";

/// The host's IAM session (temporary credentials with a session token).
pub const SESSION_ARN: &str =
    "arn:aws:sts::123456789012:assumed-role/CodeDeployHostRole/codedeploy-e2e-host";
pub const SESSION_ACCESS_KEY_ID: &str = "ASIAE2ETESTSESSION01";
pub const SESSION_SECRET_ACCESS_KEY: &str = "e2e/Session+Secret/abcdefghijklmnop0123";
pub const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjE2VTestSessionTokenForCodeDeployE2E//////////";

/// The EC2 instance profile's first credentials (see [`TestBed::start_ec2`]).
pub const INSTANCE_ACCESS_KEY_ID: &str = "ASIAE2EINSTANCEPROF1";
pub const INSTANCE_SECRET_ACCESS_KEY: &str = "e2e/Instance+Profile/Secret0123456789ab";
pub const INSTANCE_TOKEN: &str = "IQoJb3JpZ2luX2VjE2VTestInstanceProfileTokenForCodeDeployE2E///";

/// How the host is registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostRegistration {
    /// `iam_user_arn` with static keys in the on-premises file.
    IamUser,
    /// `iam_session_arn` with a shared-credentials file holding a session
    /// token.
    IamSession,
    /// No on-premises file: an EC2 instance, identified by the test bed's
    /// instance-metadata emulator and signing with its instance profile.
    Ec2,
}

/// A test's world. Fields drop in order: the agent first, the temporary
/// directory last.
#[derive(Debug)]
pub struct TestBed {
    agent: Mutex<Option<AgentProcess>>,
    imds: Option<ImdsEmulator>,
    pub emulator: Emulator,
    pub s3: S3Server,
    pub pki: TestPki,
    pub credential: Credential,
    pub registration: HostRegistration,
    buckets: Mutex<HashSet<String>>,
    path: PathBuf,
    keep: bool,
    dir: Option<TempDir>,
}

impl TestBed {
    /// Sets everything up except the agent. Panics with the reason when the
    /// environment cannot provide it (e.g. moto_server is not installed).
    pub fn start(name: &str) -> TestBed {
        TestBed::start_as(name, HostRegistration::IamUser)
    }

    /// Like [`TestBed::start`], with the host registered as `registration`.
    pub fn start_as(name: &str, registration: HostRegistration) -> TestBed {
        let dir = tempfile::Builder::new()
            .prefix(&format!("codedeploy-e2e-{name}-"))
            .tempdir()
            .expect("a temporary directory can be created");
        let path = dir.path().to_path_buf();
        let pki = TestPki::generate().expect("the test PKI can be generated");
        let s3 = S3Server::start(&path).unwrap_or_else(|e| panic!("{e}"));
        let (host, credential) = match registration {
            HostRegistration::IamUser => (
                HOST_ARN,
                Credential::new(HOST_ACCESS_KEY_ID, HOST_SECRET_ACCESS_KEY),
            ),
            HostRegistration::IamSession => (
                SESSION_ARN,
                Credential::new(SESSION_ACCESS_KEY_ID, SESSION_SECRET_ACCESS_KEY)
                    .with_session_token(SESSION_TOKEN),
            ),
            HostRegistration::Ec2 => {
                panic!("an EC2 host needs instance metadata: use TestBed::start_ec2")
            }
        };
        let emulator = Emulator::start(EmulatorConfig::new(
            host,
            vec![credential.clone()],
            pki.clone(),
        ))
        .expect("the emulator can listen on 127.0.0.1");
        TestBed {
            agent: Mutex::new(None),
            imds: None,
            emulator,
            s3,
            pki,
            credential,
            registration,
            buckets: Mutex::new(HashSet::new()),
            path,
            keep: false,
            dir: Some(dir),
        }
    }

    /// An EC2 instance as `instance` describes it: an instance-metadata
    /// emulator handing out the instance profile's credentials (valid for 6
    /// hours, [`INSTANCE_ACCESS_KEY_ID`]), and a Commands emulator in the
    /// instance's region that knows the instance ARN and those credentials.
    pub fn start_ec2(name: &str, instance: ImdsConfig) -> TestBed {
        let dir = tempfile::Builder::new()
            .prefix(&format!("codedeploy-e2e-{name}-"))
            .tempdir()
            .expect("a temporary directory can be created");
        let path = dir.path().to_path_buf();
        let pki = TestPki::generate().expect("the test PKI can be generated");
        let s3 = S3Server::start(&path).unwrap_or_else(|e| panic!("{e}"));
        let credential = Credential::new(INSTANCE_ACCESS_KEY_ID, INSTANCE_SECRET_ACCESS_KEY)
            .with_session_token(INSTANCE_TOKEN);
        let imds = ImdsEmulator::start(instance.clone());
        imds.set_credentials(RoleCredentials::expiring_in(
            INSTANCE_ACCESS_KEY_ID,
            INSTANCE_SECRET_ACCESS_KEY,
            INSTANCE_TOKEN,
            Duration::from_secs(6 * 3600),
        ));
        let mut config = EmulatorConfig::new(
            &instance.host_identifier(),
            vec![credential.clone()],
            pki.clone(),
        );
        config.region = instance.region.clone();
        let emulator = Emulator::start(config).expect("the emulator can listen on 127.0.0.1");
        TestBed {
            agent: Mutex::new(None),
            imds: Some(imds),
            emulator,
            s3,
            pki,
            credential,
            registration: HostRegistration::Ec2,
            buckets: Mutex::new(HashSet::new()),
            path,
            keep: false,
            dir: Some(dir),
        }
    }

    /// The instance-metadata emulator of a bed made by [`TestBed::start_ec2`].
    pub fn imds(&self) -> &ImdsEmulator {
        self.imds
            .as_ref()
            .expect("only a test bed made by TestBed::start_ec2 has instance metadata")
    }

    /// Keeps the temporary directory when the test bed is dropped.
    pub fn keep_files(&mut self) {
        self.keep = true;
    }

    /// The test's temporary directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the agent's files live (`<tmp>/agent`).
    pub fn agent_dir(&self) -> PathBuf {
        self.path.join("agent")
    }

    /// The agent's deployment root as the default configuration sets it.
    pub fn root_dir(&self) -> PathBuf {
        self.agent_dir().join("deployment-root")
    }

    /// Builds `revision` as `bundle_type`, uploads it to `bucket/key`
    /// (creating the versioned bucket on first use) and returns where it is,
    /// with its real version and ETag.
    pub fn upload(
        &self,
        bucket: &str,
        key: &str,
        revision: &Revision,
        bundle_type: BundleType,
    ) -> S3Location {
        {
            let mut buckets = self.buckets.lock().expect("bucket set lock");
            if !buckets.contains(bucket) {
                self.s3
                    .create_versioned_bucket(bucket)
                    .unwrap_or_else(|e| panic!("{e}\n{}", self.s3.log()));
                buckets.insert(bucket.to_string());
            }
        }
        let bytes = revision
            .build(bundle_type)
            .expect("an in-memory revision can be archived");
        let object = self
            .s3
            .put_object(bucket, key, bytes)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.s3.log()));
        S3Location::of(&object, bundle_type)
    }

    /// The default agent configuration: everything under `agent_dir()`,
    /// pointed at this emulator and S3 server, polling from the start (no
    /// start-up delay), trusting the test CA, with
    /// the host's correct identity and credentials (for a session, in
    /// `<agent_dir>/credentials`, written when the agent starts).
    pub fn agent_config(&self) -> AgentConfig {
        let identity = match self.registration {
            HostRegistration::IamUser => OnPremisesIdentity::IamUser {
                arn: self.emulator.host_identifier().to_string(),
                access_key_id: self.credential.access_key_id.clone(),
                secret_access_key: self.credential.secret_access_key.clone(),
            },
            HostRegistration::IamSession => OnPremisesIdentity::IamSession {
                arn: self.emulator.host_identifier().to_string(),
                credentials_file: self.agent_dir().join("credentials"),
            },
            HostRegistration::Ec2 => OnPremisesIdentity::Ec2,
        };
        let mut config = AgentConfig::new(
            &self.agent_dir(),
            &self.emulator.endpoint(),
            &self.s3.endpoint(),
            identity,
        );
        if let Some(imds) = &self.imds {
            config.region = imds.config().region;
            config = config.env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint());
        }
        // The first poll at once: tests time what follows from it.
        config.extra_line(":startup_delay_max_seconds: 0")
    }

    /// Starts the agent with the default configuration.
    pub fn start_agent(&self, binary: &str) {
        self.start_agent_with(binary, &self.agent_config());
    }

    /// Writes the CA chain where `config` expects it and starts the agent
    /// (stopping one started before).
    pub fn start_agent_with(&self, binary: &str, config: &AgentConfig) {
        self.write_agent_files(config);
        let mut slot = self.agent.lock().expect("agent lock");
        if let Some(mut old) = slot.take() {
            old.kill();
        }
        let process =
            AgentProcess::spawn(Path::new(binary), config).unwrap_or_else(|e| panic!("{e}"));
        *slot = Some(process);
    }

    /// Writes what an agent with `config` needs (its configuration, the CA
    /// chain, a session's credentials file) without starting it, for tests
    /// that start it their own way; returns the configuration file.
    pub fn write_agent_files(&self, config: &AgentConfig) -> PathBuf {
        std::fs::create_dir_all(&config.dir).expect("agent directory");
        if let OnPremisesIdentity::IamSession {
            credentials_file, ..
        } = &config.identity
        {
            if !credentials_file.exists() {
                crate::agent::write_credentials_file(
                    credentials_file,
                    &self.credential.access_key_id,
                    &self.credential.secret_access_key,
                    self.credential.session_token.as_deref(),
                )
                .expect("the credentials file can be written");
            }
        }
        self.pki
            .write_ca_chain(&config.ca_file)
            .expect("the CA chain can be written");
        config
            .write()
            .expect("the agent's configuration can be written")
    }

    /// Stops the agent (SIGTERM, then SIGKILL after `grace`).
    pub fn stop_agent(&self, grace: Duration) {
        if let Some(agent) = self.agent.lock().expect("agent lock").as_mut() {
            agent.stop(grace);
        }
    }

    /// Sends the agent a signal by name (`HUP`, `TERM`, `KILL`, ...).
    pub fn signal_agent(&self, name: &str) {
        if let Some(agent) = self.agent.lock().expect("agent lock").as_mut() {
            agent.signal(name);
        }
    }

    /// SIGKILL, as a crash or an out-of-memory kill would end the agent.
    pub fn kill_agent(&self) {
        if let Some(agent) = self.agent.lock().expect("agent lock").as_mut() {
            agent.kill();
        }
    }

    /// Waits at most `timeout` for the agent to exit; its exit status.
    pub fn wait_for_agent_exit(&self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.agent
            .lock()
            .expect("agent lock")
            .as_mut()
            .and_then(|a| a.wait_for_exit(timeout))
    }

    pub fn agent_running(&self) -> bool {
        self.agent
            .lock()
            .expect("agent lock")
            .as_mut()
            .is_some_and(|a| a.is_running())
    }

    /// The running agent's process id, for tools that read /proc.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent
            .lock()
            .expect("agent lock")
            .as_ref()
            .map(|a| a.pid())
    }

    /// Waits until the deployment ends, at most `timeout`, and stops
    /// waiting early when the agent process has exited.
    pub fn wait_for_deployment_end(&self, deployment_id: &str, timeout: Duration) -> Outcome {
        self.emulator.wait_until(timeout, |e| {
            !self.agent_running()
                || e.deployment(deployment_id).is_some_and(|d| {
                    matches!(
                        d.status,
                        DeploymentStatus::Succeeded | DeploymentStatus::Failed(_)
                    )
                })
        });
        self.emulator
            .wait_for_deployment_end(deployment_id, Duration::ZERO)
    }

    /// Everything the agent wrote (stdout, stderr, log file).
    pub fn agent_output(&self) -> String {
        self.agent
            .lock()
            .expect("agent lock")
            .as_ref()
            .map(|a| a.all_output())
            .unwrap_or_default()
    }

    /// What a failing assertion prints: the emulator's calls and
    /// deployments, the agent's output, and where the files are.
    pub fn report(&self) -> String {
        let agent = match self.agent.lock() {
            Ok(mut slot) => slot
                .as_mut()
                .map(|a| a.report())
                .unwrap_or_else(|| "=== agent not started ===\n".to_string()),
            Err(_) => "=== agent lock poisoned ===\n".to_string(),
        };
        format!(
            "\n{}{}=== files under {} ===\n{}",
            self.emulator.report(),
            agent,
            self.path.display(),
            file_listing(&self.path, 400)
        )
    }
}

/// Relative paths under `root` (directories end in `/`), at most `max`.
fn file_listing(root: &Path, max: usize) -> String {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>, max: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            if out.len() >= max {
                return;
            }
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                out.push(format!("{rel}/"));
                walk(root, &path, out, max);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out, max);
    let mut text = out.join("\n");
    if out.len() >= max {
        text.push_str("\n...");
    }
    text.push('\n');
    text
}

impl Drop for TestBed {
    fn drop(&mut self) {
        if let Ok(slot) = self.agent.get_mut() {
            if let Some(agent) = slot.as_mut() {
                agent.kill();
            }
        }
        if let Some(dir) = self.dir.take() {
            if self.keep {
                let _kept = dir.keep();
            } else if std::thread::panicking() {
                let kept = dir.keep();
                eprintln!("codedeploy-e2e: test files kept in {}", kept.display());
            }
        }
    }
}
