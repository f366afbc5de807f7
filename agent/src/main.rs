//! `codedeploy-agent`: argument parsing and wiring only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use codedeploy_agent::config::DEFAULT_CONFIG_FILE;

#[derive(Parser)]
#[command(
    name = "codedeploy-agent",
    about = "A CodeDeploy-compatible host agent",
    disable_version_flag = true,
    arg_required_else_help = true
)]
struct Cli {
    /// The agent configuration file (codedeployagent.yml).
    #[arg(long, short = 'c', global = true, default_value = DEFAULT_CONFIG_FILE)]
    config: PathBuf,
    /// Print the version as `.version` holds it (`agent_version: X.Y.Z`).
    #[arg(long, short = 'V')]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent in the foreground: poll for commands and deploy.
    Run,
    /// Start the agent: `systemctl start` under systemd, else `run` in the
    /// background (exit 0 started or already running, 1 failed).
    Start,
    /// Stop the agent as its unit would: a running command may finish within
    /// :kill_agent_max_wait_time_seconds: (exit 0 stopped or not running).
    Stop,
    /// Stop, then start.
    Restart,
    /// What the agent is doing, read from disk (exit 0 running, 3 not
    /// running, 4 unknown).
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a bundle directory, archive or appspec file for everything that
    /// would fail its deployment on this host (exit 0 valid, 1 problems, 2 usage).
    Validate(codedeploy_agent::frontends::validate::ValidateArgs),
    /// Wait until a service is healthy over HTTP, TCP or a command
    /// (exit 0 healthy, 1 unhealthy, 2 usage).
    Health(codedeploy_agent::frontends::health::HealthArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        if cli.version {
            print!(
                "{}",
                codedeploy_agent::version_file::text(codedeploy_agent::VERSION)
            );
            return ExitCode::SUCCESS;
        }
        eprintln!("codedeploy-agent: a command is needed (see --help)");
        return ExitCode::from(2);
    };
    let verb = |verb| {
        ExitCode::from(codedeploy_agent::frontends::control::run_cli(
            verb,
            &cli.config,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ))
    };
    match command {
        Command::Start => verb(codedeploy_agent::frontends::control::Verb::Start),
        Command::Stop => verb(codedeploy_agent::frontends::control::Verb::Stop),
        Command::Restart => verb(codedeploy_agent::frontends::control::Verb::Restart),
        Command::Status { json } => ExitCode::from(codedeploy_agent::frontends::status::run_cli(
            &cli.config,
            json,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
        Command::Validate(args) => ExitCode::from(codedeploy_agent::frontends::validate::run_cli(
            &args,
            &cli.config,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ) as u8),
        Command::Health(args) => ExitCode::from(codedeploy_agent::frontends::health::run_cli(
            &args,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ) as u8),
        Command::Run => {
            codedeploy_agent::memory::limit_heap_arenas();
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
            match runtime.block_on(codedeploy_agent::frontends::daemon::run(&cli.config)) {
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
