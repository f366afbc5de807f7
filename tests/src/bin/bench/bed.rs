//! The benchmark's world: the Commands emulator (with the poll hold the
//! benchmark chooses, which `TestBed` does not expose), moto, and the real
//! release agent, wired from the harness's public parts. Also the timeline
//! of a deployment as the emulator recorded it (when each command was
//! handed out, acknowledged and completed), which is where deployment
//! times come from: the service's clock, not the agent's log.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tempfile::TempDir;

use codedeploy_e2e::emulator::{
    Call, Credential, DeploymentRecord, DeploymentStatus, EmulatorConfig,
};
use codedeploy_e2e::testbed::{HOST_ACCESS_KEY_ID, HOST_ARN, HOST_SECRET_ACCESS_KEY};
use codedeploy_e2e::{
    AgentConfig, AgentProcess, BundleType, Deployment, Emulator, OnPremisesIdentity, Outcome,
    S3Location, S3Server, TestPki,
};

/// Fields drop in order: the agent first, the directory last.
pub struct BenchBed {
    pub agent: Option<AgentProcess>,
    pub emulator: Emulator,
    pub s3: S3Server,
    pki: TestPki,
    credential: Credential,
    buckets: HashSet<String>,
    dir: TempDir,
}

impl BenchBed {
    /// Starts moto and the emulator (empty polls held `poll_hold`) with
    /// their files in a new directory under `parent`.
    pub fn start(parent: &Path, poll_hold: Duration) -> Result<BenchBed, String> {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("codedeploy-bench-")
            .tempdir_in(parent)
            .map_err(|e| format!("cannot create a directory under {}: {e}", parent.display()))?;
        let pki = TestPki::generate().map_err(|e| format!("test PKI: {e}"))?;
        let s3 = S3Server::start(dir.path())?;
        let credential = Credential::new(HOST_ACCESS_KEY_ID, HOST_SECRET_ACCESS_KEY);
        let mut config = EmulatorConfig::new(HOST_ARN, vec![credential.clone()], pki.clone());
        config.poll_hold = poll_hold;
        let emulator = Emulator::start(config).map_err(|e| format!("emulator: {e}"))?;
        Ok(BenchBed {
            agent: None,
            emulator,
            s3,
            pki,
            credential,
            buckets: HashSet::new(),
            dir,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Uploads an already built bundle to a versioned bucket.
    pub fn upload(
        &mut self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        bundle_type: BundleType,
    ) -> Result<S3Location, String> {
        if self.buckets.insert(bucket.to_string()) {
            self.s3.create_versioned_bucket(bucket)?;
        }
        let object = self.s3.put_object(bucket, key, bytes)?;
        Ok(S3Location::of(&object, bundle_type))
    }

    /// An agent configuration with everything under `<bed>/<name>`.
    pub fn agent_config(&self, name: &str, wait_between_runs: u32) -> AgentConfig {
        let mut config = AgentConfig::new(
            &self.path().join(name),
            &self.emulator.endpoint(),
            &self.s3.endpoint(),
            OnPremisesIdentity::IamUser {
                arn: self.emulator.host_identifier().to_string(),
                access_key_id: self.credential.access_key_id.clone(),
                secret_access_key: self.credential.secret_access_key.clone(),
            },
        );
        config.wait_between_runs = wait_between_runs;
        config.verbose = false;
        // The deliberate random delay before the first poll (a fleet's
        // spread) is not start-up cost: the figures measure the agent itself.
        config.extra_line(":startup_delay_max_seconds: 0")
    }

    /// Starts the agent (killing one started before); its pid and the
    /// moment just before the process was spawned.
    pub fn start_agent(
        &mut self,
        binary: &Path,
        config: &AgentConfig,
    ) -> Result<(u32, SystemTime), String> {
        if let Some(mut old) = self.agent.take() {
            old.kill();
        }
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| format!("cannot create {}: {e}", config.dir.display()))?;
        self.pki
            .write_ca_chain(&config.ca_file)
            .map_err(|e| format!("cannot write {}: {e}", config.ca_file.display()))?;
        let spawned_at = SystemTime::now();
        let agent = AgentProcess::spawn(binary, config)
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let pid = agent.pid();
        self.agent = Some(agent);
        Ok((pid, spawned_at))
    }

    /// Rewrites the agent's configuration and sends SIGHUP, which applies
    /// `:wait_between_runs:` from the next poll on.
    pub fn reload_agent(&mut self, config: &AgentConfig) -> Result<(), String> {
        config
            .write()
            .map_err(|e| format!("cannot rewrite {}: {e}", config.config_path().display()))?;
        if let Some(agent) = self.agent.as_mut() {
            agent.signal("HUP");
        }
        Ok(())
    }

    pub fn stop_agent(&mut self) {
        if let Some(agent) = self.agent.as_mut() {
            agent.stop(Duration::from_secs(10));
        }
    }

    /// Waits for the deployment to end, giving up early if the agent exits.
    pub fn wait_for_deployment_end(&mut self, deployment_id: &str, timeout: Duration) -> Outcome {
        let BenchBed {
            agent, emulator, ..
        } = self;
        emulator.wait_until(timeout, |e| {
            !agent.as_mut().is_some_and(|a| a.is_running())
                || e.deployment(deployment_id).is_some_and(|d| {
                    matches!(
                        d.status,
                        DeploymentStatus::Succeeded | DeploymentStatus::Failed(_)
                    )
                })
        });
        emulator.wait_for_deployment_end(deployment_id, Duration::ZERO)
    }

    /// Queues `deployment`, waits for it and fails with the emulator's and
    /// the agent's account unless it succeeded.
    pub fn deploy(&mut self, deployment: &Deployment, timeout: Duration) -> Result<(), String> {
        self.emulator.add_deployment(deployment.clone());
        let outcome = self.wait_for_deployment_end(&deployment.deployment_id, timeout);
        if outcome.is_succeeded() {
            return Ok(());
        }
        let agent = self.agent.as_mut().map(|a| a.report()).unwrap_or_default();
        Err(format!(
            "deployment {} did not succeed: {outcome}\n{}{agent}",
            deployment.deployment_id,
            self.emulator.report()
        ))
    }
}

/// What the emulator recorded of one deployment: its commands and every call,
/// to read each command's timeline from.
pub struct Recorded {
    pub record: DeploymentRecord,
    calls: Vec<Call>,
}

impl Recorded {
    pub fn of(bed: &BenchBed, deployment: &Deployment) -> Result<Recorded, String> {
        let calls = bed.emulator.calls();
        let record = bed
            .emulator
            .deployment(&deployment.deployment_id)
            .ok_or("the emulator lost the deployment")?;
        Ok(Recorded { record, calls })
    }

    /// The timeline of the deployment's command `name`.
    pub fn timeline(&self, name: &str) -> Result<CommandTimeline, String> {
        self.record
            .command(name)
            .map(|c| command_timeline(&self.calls, &c.host_command_identifier))
            .ok_or_else(|| format!("no {name} command"))
    }
}

/// When the service saw one command pass each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandTimeline {
    /// The poll whose answer carried the command arrived.
    pub issued: Option<SystemTime>,
    pub acknowledged: Option<SystemTime>,
    pub completed: Option<SystemTime>,
}

fn request_names(call: &Call, id: &str) -> bool {
    call.request
        .get("HostCommandIdentifier")
        .and_then(Value::as_str)
        == Some(id)
}

/// The timeline of the command `id`, from the calls the emulator recorded
/// (the first of each kind counts).
pub fn command_timeline(calls: &[Call], id: &str) -> CommandTimeline {
    use codedeploy_e2e::Operation as Op;
    let first = |op: Op, matches: &dyn Fn(&Call) -> bool| {
        calls
            .iter()
            .filter(|c| c.operation == Some(op) && c.status == 200 && matches(c))
            .map(|c| c.at)
            .min()
    };
    CommandTimeline {
        issued: first(Op::PollHostCommand, &|c| {
            c.response
                .pointer("/HostCommand/HostCommandIdentifier")
                .and_then(Value::as_str)
                == Some(id)
        }),
        acknowledged: first(Op::PutHostCommandAcknowledgement, &|c| request_names(c, id)),
        completed: first(Op::PutHostCommandComplete, &|c| request_names(c, id)),
    }
}

/// Seconds from `from` to `to`, when both happened in that order.
pub fn seconds_between(from: Option<SystemTime>, to: Option<SystemTime>) -> Option<f64> {
    to?.duration_since(from?).ok().map(|d| d.as_secs_f64())
}

/// A deployment's duration on the service's clock: from the poll that
/// handed out its first command (or from when it was queued, if that poll
/// was already being held) to the completion of its last command.
pub fn deployment_seconds(
    calls: &[Call],
    record: &DeploymentRecord,
    queued_at: SystemTime,
) -> Option<f64> {
    let first = command_timeline(calls, &record.commands.first()?.host_command_identifier);
    let last = command_timeline(calls, &record.commands.last()?.host_command_identifier);
    let start = first.issued.map(|t| t.max(queued_at));
    seconds_between(start, last.completed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use codedeploy_e2e::Operation;
    use serde_json::json;

    fn call(seq: usize, at_ms: u64, op: Operation, request: Value, response: Value) -> Call {
        Call {
            seq,
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms),
            elapsed: Duration::from_millis(at_ms),
            method: "POST".into(),
            operation: Some(op),
            request,
            headers: Vec::new(),
            status: 200,
            response,
            error_type: None,
        }
    }

    fn ms(t: Option<SystemTime>) -> Option<u64> {
        t.map(|t| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        })
    }

    #[test]
    fn timeline_takes_the_first_of_each_step_for_that_command_only() {
        let calls = vec![
            call(1, 100, Operation::PollHostCommand, json!({}), json!({})),
            call(
                2,
                200,
                Operation::PollHostCommand,
                json!({}),
                json!({"HostCommand": {"HostCommandIdentifier": "a"}}),
            ),
            call(
                3,
                250,
                Operation::PutHostCommandAcknowledgement,
                json!({"HostCommandIdentifier": "b"}),
                json!({}),
            ),
            call(
                4,
                300,
                Operation::PutHostCommandAcknowledgement,
                json!({"HostCommandIdentifier": "a"}),
                json!({}),
            ),
            call(
                5,
                900,
                Operation::PutHostCommandComplete,
                json!({"HostCommandIdentifier": "a"}),
                json!({}),
            ),
            // A retried completion does not move the first one.
            call(
                6,
                950,
                Operation::PutHostCommandComplete,
                json!({"HostCommandIdentifier": "a"}),
                json!({}),
            ),
        ];
        let a = command_timeline(&calls, "a");
        assert_eq!(
            (ms(a.issued), ms(a.acknowledged), ms(a.completed)),
            (Some(200), Some(300), Some(900))
        );
        let c = command_timeline(&calls, "c");
        assert_eq!((c.issued, c.acknowledged, c.completed), (None, None, None));
        assert_eq!(seconds_between(a.acknowledged, a.completed), Some(0.6));
        assert_eq!(seconds_between(a.completed, a.acknowledged), None);
    }
}
