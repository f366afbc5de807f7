//! Fuzz target: appspec parsing and validation. Any bytes, as the agent would
//! read them from `appspec.yml`: parsing must end in a typed appspec or an
//! error that names the file, never a panic, and must stay bounded in time
//! and memory (alias bombs, deep nesting).

use std::path::Path;

use codedeploy_agent::appspec;

pub fn run(data: &[u8]) {
    // The agent reads the file as UTF-8 and reports anything else as a read
    // error before parsing; only text reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/deployment-root/g/d/deployment-archive/appspec.yml");
    if let Err(error) = appspec::parse(text, file) {
        let message = error.to_string();
        assert!(!message.is_empty(), "an appspec error without a message");
    }
}
