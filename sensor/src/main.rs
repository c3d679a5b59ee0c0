//! The `mnsensor` binary: parse the command line, set up logging, run.
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use sensor::{
    cli::{Cli, Command, StatusFormat},
    config::Config,
    daemon::{self, RunSpec},
    service::{Service, status},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    sensor::logging::init(&cli.log_level, cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // What failed and why, outermost first.
            eprintln!("mnsensor: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            let config = Config::effective(&args)?;
            let service = Service::start(&args, &config);
            let spec = RunSpec {
                config,
                config_source: daemon::source_name(args.config.as_ref()),
                config_file: args.config,
                service,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(daemon::run(spec))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(args) => Ok(sensor::policy::cli::run(args)),
        Command::Config(args) => Ok(sensor::config::cli::run(args)),
        Command::Generate { dir } => {
            for path in
                sensor::generate::generate(&dir).with_context(|| format!("writing to {}", dir.display()))?
            {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => {
            let snap = match status::query(&args.socket) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("mnsensor: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            match args.format {
                StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&snap)?),
                StatusFormat::Text => print!("{}", status::render(&snap)),
            }
            Ok(if snap.healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Ledger(args) => Ok(sensor::seal::cli::run(args)),
    }
}
