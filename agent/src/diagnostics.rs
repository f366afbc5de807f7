//! The diagnostics the service receives with PutHostCommandComplete: the error
//! codes 0–7, the message, the failing script and the tail of the script output,
//! and how they are bounded for the wire. Which failure gets which code is
//! decided in one place, [`lifecycle::failure`](crate::lifecycle::failure).
//! Pure code.

use serde::Serialize;

/// The service's error codes, as the official agent sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Succeeded = 0,
    ScriptMissing = 1,
    ScriptNotExecutable = 2,
    ScriptTimedOut = 3,
    ScriptFailed = 4,
    UnknownError = 5,
    OutputsLeftOpen = 6,
    FailedAfterRestart = 7,
}

impl ErrorCode {
    /// The number the service receives.
    pub fn number(self) -> u8 {
        self as u8
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.number())
    }
}

/// The longest script-output tail sent to the service, in characters.
pub const LOG_TAIL_LIMIT: usize = 2048;

/// The JSON object carried (as a string) in the Complete's `Diagnostics.Payload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub error_code: ErrorCode,
    pub script_name: String,
    pub message: String,
    pub log: String,
}

impl Diagnostic {
    pub fn succeeded(detail: &str) -> Diagnostic {
        Diagnostic {
            error_code: ErrorCode::Succeeded,
            script_name: String::new(),
            message: format!("Succeeded: {detail}"),
            log: String::new(),
        }
    }

    /// A failure outside any script (spec, download, unpack, appspec, install).
    pub fn unknown_error(message: impl Into<String>) -> Diagnostic {
        Diagnostic::failed(ErrorCode::UnknownError, "", message, "")
    }

    pub fn failed(
        code: ErrorCode,
        script_name: &str,
        message: impl Into<String>,
        log: &str,
    ) -> Diagnostic {
        Diagnostic {
            error_code: code,
            script_name: script_name.to_string(),
            message: message.into(),
            log: log.to_string(),
        }
    }

    /// The payload string, kept within the envelope's 8192-character limit by
    /// shortening the message (the log tail is already bounded).
    pub fn to_payload(&self) -> String {
        const PAYLOAD_LIMIT: usize = 8192;
        let mut diagnostic = self.clone();
        loop {
            let payload = serde_json::to_string(&diagnostic)
                .expect("a struct of strings and an integer always serialises");
            let excess = payload.chars().count().saturating_sub(PAYLOAD_LIMIT);
            if excess == 0 {
                return payload;
            }
            let keep = diagnostic
                .message
                .chars()
                .count()
                .saturating_sub(excess + 16);
            if keep == 0 && diagnostic.message.is_empty() {
                diagnostic.log = tail_chars(&diagnostic.log, LOG_TAIL_LIMIT / 2);
            }
            diagnostic.message = diagnostic.message.chars().take(keep).collect();
        }
    }
}

/// The tail of a command's script output for the diagnostics: the newest whole
/// lines whose total stays within [`LOG_TAIL_LIMIT`] characters, joined without a
/// separator (each line keeps its own newline); a newest line longer than the
/// limit contributes its last [`LOG_TAIL_LIMIT`] characters.
pub fn log_tail<S: AsRef<str>>(lines: &[S]) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut total = 0;
    for line in lines.iter().rev() {
        let line = line.as_ref();
        let len = line.chars().count();
        if total + len > LOG_TAIL_LIMIT {
            if kept.is_empty() {
                return tail_chars(line, LOG_TAIL_LIMIT);
            }
            break;
        }
        total += len;
        kept.push(line);
    }
    kept.reverse();
    kept.concat()
}

fn tail_chars(text: &str, limit: usize) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(limit)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_newest_whole_lines_within_limit() {
        let line = format!("[stdout]{}\n", "x".repeat(991)); // 1000 chars
        let lines = vec![
            "LifecycleEvent - X\n".to_string(),
            line.clone(),
            line.clone(),
            line.clone(),
        ];
        let tail = log_tail(&lines);
        assert_eq!(tail, format!("{line}{line}"));
    }

    #[test]
    fn log_tail_of_an_oversized_newest_line_is_its_last_characters() {
        let long = format!("{}end\n", "y".repeat(5000));
        let tail = log_tail(&["short\n".to_string(), long]);
        assert_eq!(tail.chars().count(), LOG_TAIL_LIMIT);
        assert!(tail.ends_with("yend\n"));
    }

    #[test]
    fn payload_stays_within_envelope_limit() {
        let diagnostic = Diagnostic::unknown_error("m".repeat(20_000));
        let payload = diagnostic.to_payload();
        assert!(payload.chars().count() <= 8192, "{}", payload.len());
        let back: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(back["error_code"], 5);
    }

    #[test]
    fn success_payload_has_empty_log_and_script() {
        let payload = Diagnostic::succeeded("CompletedNoopCommand").to_payload();
        assert_eq!(
            payload,
            r#"{"error_code":0,"script_name":"","message":"Succeeded: CompletedNoopCommand","log":""}"#
        );
    }
}
