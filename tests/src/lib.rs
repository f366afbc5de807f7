//! The end-to-end test harness of the CodeDeploy agent: a CodeDeploy
//! Commands control-plane emulator (`emulator`), a real S3 server
//! (`s3`, moto), a test PKI for signed deployment specifications (`ca`),
//! revision bundles (`bundle`), an instance-metadata emulator (`imds`), a
//! scripted HTTP service for health checks (`http_target`), a
//! real forward proxy (`proxy`, tinyproxy), the real agent process (`agent`),
//! a bandwidth-capping proxy in front of S3 (`throttle`),
//! `testbed`, which wires them together for one test, and a Debian root booted
//! with systemd as its PID 1 (`container`) for the tests of the packaged service.
//!
//! Everything listens on and talks to 127.0.0.1 only.

pub mod agent;
pub mod bundle;
pub mod ca;
pub mod chaos;
pub mod container;
pub mod emulator;
pub mod github;
pub mod http_target;
pub mod imds;
pub mod proxy;
pub mod s3;
pub mod s3_faults;
pub mod testbed;
pub mod throttle;
pub mod tls_relay;

pub use agent::{AgentConfig, AgentProcess, OnPremisesIdentity};
pub use bundle::{BundleType, Revision};
pub use ca::TestPki;
pub use emulator::{
    CommandRecord, Deployment, DeploymentStatus, Diagnostics, Emulator, Operation, Outcome,
    S3Location, SpecFormat,
};
pub use s3::S3Server;
pub use testbed::{HostRegistration, TestBed};
