//! The CodeDeploy Commands protocol: wire types, endpoint selection, SigV4
//! signing and the HTTP client.

pub mod client;
pub mod endpoint;
pub mod signing;
pub mod types;

pub use client::{CommandsClient, CommandsError, ErrorClass, TransportSettings};
pub use types::{CommandStatus, Envelope, HostCommand};
