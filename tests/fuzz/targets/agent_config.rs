//! Fuzz target: the agent configuration file (`codedeployagent.yml`). Any
//! text, as an operator or a configuration tool may write it: it must end in
//! a configuration with warnings or an error naming the file (and the key
//! and line where one is known), never a panic, in bounded time and memory.

use std::path::Path;

use codedeploy_agent::config::parse_agent_config;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/etc/codedeploy-agent/conf/codedeployagent.yml");
    match parse_agent_config(text, file) {
        Ok(parsed) => {
            for warning in &parsed.warnings {
                assert!(!warning.key.is_empty(), "a warning without its key");
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.contains("codedeployagent.yml"),
                "an error that does not name the file: {message}"
            );
        }
    }
}
