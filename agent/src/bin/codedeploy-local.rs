//! `codedeploy-local`: deploys a revision on this host without the service.
//! Argument parsing and wiring only; the work is `codedeploy_agent::frontends::local`.
//!
//! Exit status: 0 the deployment succeeded, 1 it failed, 2 the options or the
//! agent configuration are unusable (nothing was deployed).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use codedeploy_agent::config::DEFAULT_CONFIG_FILE;
use codedeploy_agent::frontends::local::{run_cli, RawOptions};

#[derive(Parser)]
#[command(
    name = "codedeploy-local",
    version,
    about = "Deploys a revision on this host the way the CodeDeploy agent would, without the service"
)]
struct Cli {
    /// Local directory, local archive (tar, tgz, zip), s3://bucket/key[?versionId=..&etag=..]
    /// [default: the current directory]
    #[arg(short = 'l', long = "bundle-location")]
    bundle_location: Option<String>,
    /// tar, tgz, zip or directory [default: directory, or what a local archive's content shows]
    #[arg(short = 't', long = "type")]
    bundle_type: Option<String>,
    /// DISALLOW, OVERWRITE or RETAIN [default: DISALLOW]; the appspec's own value wins
    #[arg(short = 'b', long = "file-exists-behavior")]
    file_exists_behavior: Option<String>,
    /// Deployment group id: the folder under the deployment root
    /// [default: default-local-deployment-group]
    #[arg(short = 'g', long = "deployment-group")]
    deployment_group: Option<String>,
    /// DEPLOYMENT_GROUP_NAME for the hooks [default: LocalFleet]
    #[arg(short = 'd', long = "deployment-group-name")]
    deployment_group_name: Option<String>,
    /// APPLICATION_NAME for the hooks [default: the bundle location]
    #[arg(short = 'a', long = "application-name")]
    application_name: Option<String>,
    /// Comma-separated events to run, in order; DownloadBundle and Install are
    /// always added; names outside the standard ones are custom events
    #[arg(short = 'e', long = "events")]
    events: Option<String>,
    /// The agent configuration file (root_dir, log_dir, ...)
    #[arg(short = 'c', long = "agent-configuration-file", default_value = DEFAULT_CONFIG_FILE)]
    agent_configuration_file: PathBuf,
    /// The appspec file's name at the top of the revision [default: appspec.yml]
    #[arg(short = 'A', long = "appspec-filename")]
    appspec_filename: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let raw = RawOptions {
        bundle_location: cli.bundle_location,
        bundle_type: cli.bundle_type,
        file_exists_behavior: cli.file_exists_behavior,
        deployment_group: cli.deployment_group,
        deployment_group_name: cli.deployment_group_name,
        application_name: cli.application_name,
        events: cli.events,
        appspec_filename: cli.appspec_filename,
    };
    let exit = run_cli(
        &raw,
        &cli.agent_configuration_file,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(exit as u8)
}
