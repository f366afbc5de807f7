//! `codedeploy-agent`: argument parsing and wiring only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use codedeploy_agent::config::DEFAULT_CONFIG_FILE;

#[derive(Parser)]
#[command(
    name = "codedeploy-agent",
    version,
    about = "A CodeDeploy-compatible host agent"
)]
struct Cli {
    /// The agent configuration file (codedeployagent.yml).
    #[arg(long, short = 'c', global = true, default_value = DEFAULT_CONFIG_FILE)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent in the foreground: poll for commands and deploy.
    Run,
    /// Check a bundle directory, archive or appspec file for everything that
    /// would fail its deployment on this host (exit 0 valid, 1 problems, 2 usage).
    Validate(codedeploy_agent::validate::ValidateArgs),
    /// Wait until a service is healthy over HTTP, TCP or a command
    /// (exit 0 healthy, 1 unhealthy, 2 usage).
    Health(codedeploy_agent::health::HealthArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => ExitCode::from(codedeploy_agent::validate::run_cli(
            &args,
            &cli.config,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ) as u8),
        Command::Health(args) => ExitCode::from(codedeploy_agent::health::run_cli(
            &args,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ) as u8),
        Command::Run => {
            codedeploy_agent::hygiene::limit_heap_arenas();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("codedeploy-agent: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(codedeploy_agent::daemon::run(&cli.config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("codedeploy-agent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
