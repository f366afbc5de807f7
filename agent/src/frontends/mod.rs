//! What people and the service manager run: the daemon (`codedeploy-agent`
//! with no verb), the service verbs and `status`, `codedeploy-local`,
//! `validate` and `health`. Each front-end wires the lifecycle layers below it
//! together; none of the layers imports a front-end.

pub mod control;
pub mod daemon;
pub mod health;
pub mod local;
pub mod status;
pub mod validate;
