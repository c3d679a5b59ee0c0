//! The `mnsensor` binary: parse the command line, set up logging, run.
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use sensor::{
    cli::{Cli, Command},
    config::Config,
    daemon::{self, RunSpec},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_writer(sensor::seal::redact::stderr).with_env_filter(filter).init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: what failed and why, outermost first.
            eprintln!("mnsensor: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            let mut config = match &args.config {
                Some(path) => Config::load(path)?,
                None => Config::embedded()?,
            };
            config.protect.extend(args.protect);
            config.policies.extend(args.policy);
            if !args.output.is_empty() {
                config.outputs = args.output;
            }
            if let Some(dir) = args.state_dir {
                config.state_dir = dir;
            }
            if let Some(bytes) = args.ring_buffer_bytes {
                config.ring_buffer_bytes = bytes;
            }
            config.validate("the command line")?;
            let spec = RunSpec { config, config_source: daemon::source_name(args.config.as_ref()) };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(daemon::run(spec))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(args) => Ok(sensor::policy::cli::run(args)),
        Command::Ledger(args) => Ok(sensor::seal::cli::run(args)),
    }
}
