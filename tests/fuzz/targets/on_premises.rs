//! Fuzz target: the on-premises file (`codedeploy.onpremises.yml`), as the
//! registration tooling or an operator writes it. It must end in an identity,
//! "not on-premises", or an error naming the file; never a panic.

use std::path::Path;

use codedeploy_agent::config::parse_on_premises;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/etc/codedeploy-agent/conf/codedeploy.onpremises.yml");
    match parse_on_premises(text, file) {
        Ok(Some(identity)) => {
            assert!(
                !identity.region().is_empty(),
                "an identity without a region"
            );
        }
        Ok(None) => {}
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.contains("codedeploy.onpremises.yml"),
                "an error that does not name the file: {message}"
            );
        }
    }
}
