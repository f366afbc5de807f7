//! Fuzz target: the Commands service's answers as the agent reads them. The
//! first byte picks the operation (PollHostCommand or
//! GetDeploymentSpecification) and the HTTP status (a success, a refusal, a
//! throttle, a fault); the rest is the body. Decoding must end in a command,
//! none, a specification or a classified error, never a panic; a
//! specification's envelope then goes through verification and the spec
//! parser as in `deployment_spec`.

use codedeploy_agent::protocol::{decode_poll_answer, decode_spec_answer};

// Only its `open_and_parse` is used here.
#[allow(dead_code)]
#[path = "deployment_spec.rs"]
mod deployment_spec;

pub fn run(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let status = [200u16, 400, 429, 500][usize::from(selector >> 1) % 4];
    if selector & 1 == 0 {
        match decode_poll_answer(status, body) {
            Ok(Some(command)) => assert_eq!(status, 200, "a command in a refusal: {command:?}"),
            Ok(None) => assert_eq!(status, 200, "an answer in a refusal"),
            Err(error) => assert!(!error.to_string().is_empty(), "an error without a message"),
        }
        return;
    }
    match decode_spec_answer(status, body) {
        Ok(answer) => {
            if let Some(envelope) = answer
                .deployment_specification
                .and_then(|spec| spec.generic_envelope)
            {
                deployment_spec::open_and_parse(&envelope);
            }
        }
        Err(error) => assert!(!error.to_string().is_empty(), "an error without a message"),
    }
}
