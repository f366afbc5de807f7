//! What `codedeploy-local` prints: one line per event, and on failure the
//! official lines operators know plus the failing script's output tail. Pure:
//! text from outcomes; the caller writes it.

use std::path::Path;

use crate::event::LifecycleEvent;
use crate::hooks::ScriptFailure;

/// How one event of a local deployment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventResult {
    Succeeded,
    /// Nothing to run; the reason says why.
    Skipped(SkipReason),
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The event runs from an earlier revision and this host has none.
    NoEarlierRevision,
    /// The appspec has no scripts for the event.
    NoScripts,
}

pub fn starting_line(deployment_dir: &Path) -> String {
    format!(
        "Starting to execute deployment from within folder {}",
        deployment_dir.display()
    )
}

pub fn event_line(event: &LifecycleEvent, result: &EventResult) -> String {
    let outcome = match result {
        EventResult::Succeeded => "succeeded",
        EventResult::Skipped(SkipReason::NoEarlierRevision) => {
            "skipped (no earlier revision on this host to run it from)"
        }
        EventResult::Skipped(SkipReason::NoScripts) => "skipped (no scripts in the appspec)",
        EventResult::Failed => "FAILED",
    };
    format!("{event}: {outcome}")
}

/// The lines after a failed script: where it was, why it failed, its output.
pub fn script_failure_lines(archive_dir: &Path, failure: &ScriptFailure) -> Vec<String> {
    let mut lines = vec![
        format!(
            "Your local deployment failed while trying to execute your script at {}",
            archive_dir.join(&failure.script_name).display()
        ),
        failure.message.clone(),
    ];
    let tail: Vec<&str> = failure.log.lines().filter(|l| !l.is_empty()).collect();
    if !tail.is_empty() {
        lines.push("The script's last output:".to_string());
        lines.extend(tail.iter().map(|l| format!("    {l}")));
    }
    lines
}

/// The line after a failure outside any script (bundle, appspec, install).
pub fn failure_line(event: &LifecycleEvent, message: &str) -> String {
    format!("Your local deployment failed during {event}: {message}")
}

pub fn scripts_log_line(deployment_dir: &Path) -> String {
    format!(
        "See the deployment log at {} for more details",
        deployment_dir.join("logs").join("scripts.log").display()
    )
}

pub const SUCCESS_LINE: &str = "AppSpec file valid. Local deployment successful";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::ErrorCode;

    #[test]
    fn lines_use_the_official_wording() {
        let dir = Path::new("/opt/codedeploy-agent/deployment-root/g/d-ABCDEFGHI-local");
        assert_eq!(
            starting_line(dir),
            "Starting to execute deployment from within folder /opt/codedeploy-agent/deployment-root/g/d-ABCDEFGHI-local"
        );
        assert_eq!(
            scripts_log_line(dir),
            "See the deployment log at /opt/codedeploy-agent/deployment-root/g/d-ABCDEFGHI-local/logs/scripts.log for more details"
        );
        let cases = [
            (EventResult::Succeeded, "Install: succeeded"),
            (EventResult::Failed, "Install: FAILED"),
            (
                EventResult::Skipped(SkipReason::NoScripts),
                "Install: skipped (no scripts in the appspec)",
            ),
            (
                EventResult::Skipped(SkipReason::NoEarlierRevision),
                "Install: skipped (no earlier revision on this host to run it from)",
            ),
        ];
        for (result, expected) in cases {
            assert_eq!(event_line(&LifecycleEvent::Install, &result), expected);
        }
    }

    #[test]
    fn a_script_failure_names_the_script_and_shows_its_output() {
        let failure = ScriptFailure {
            code: ErrorCode::ScriptFailed,
            script_name: "scripts/start.sh".into(),
            message: "Script at specified location: scripts/start.sh failed with exit code 3"
                .into(),
            log: "[stdout]starting\n[stderr]port in use\n".into(),
            killed: None,
        };
        let lines = script_failure_lines(Path::new("/r/g/d/deployment-archive"), &failure);
        assert_eq!(
            lines,
            [
                "Your local deployment failed while trying to execute your script at /r/g/d/deployment-archive/scripts/start.sh",
                "Script at specified location: scripts/start.sh failed with exit code 3",
                "The script's last output:",
                "    [stdout]starting",
                "    [stderr]port in use",
            ]
        );
    }
}
