//! The CodeDeploy Commands protocol: wire types, endpoint selection, SigV4
//! signing and the HTTP client.

mod answer;
pub mod client;
pub mod endpoint;
pub mod signing;
pub mod types;

pub use answer::{decode_poll_answer, decode_spec_answer};
pub use client::{CommandsClient, CommandsError, ErrorClass, TransportSettings};
pub use types::{CommandStatus, Envelope, HostCommand};
