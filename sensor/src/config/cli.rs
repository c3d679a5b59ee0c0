//! `mnsensor config check|show`. Exit status: 0 valid, 1 invalid, 2 usage error (clap).
use std::{io::Write as _, path::Path, process::ExitCode};

use super::Config;
use crate::{
    cli::{ConfigArgs, ConfigCommand},
    policy::{LoadOptions, PolicySet},
};

pub fn run(args: ConfigArgs) -> ExitCode {
    let ok = match args.command {
        ConfigCommand::Check { file, no_host_checks } => check(&file, no_host_checks),
        ConfigCommand::Show(run) => match Config::effective(&run) {
            Ok(config) => {
                print!("{}", config.to_yaml());
                true
            }
            Err(e) => {
                eprintln!("mnsensor: {e}");
                false
            }
        },
    };
    let _ = std::io::stdout().flush();
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The configuration file, then the policy set it names (as the daemon would load it).
fn check(file: &Path, no_host_checks: bool) -> bool {
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mnsensor: {e}");
            return false;
        }
    };
    let sources = crate::daemon::policy_sources(&config.policies);
    let options = LoadOptions { host_checks: !no_host_checks, ..LoadOptions::default() };
    let set = if sources.is_empty() {
        PolicySet::embedded().ok()
    } else {
        crate::policy::cli::load(&sources, &options)
    };
    let Some(set) = set else {
        eprintln!("mnsensor: configuration {} is valid, but its policy set is not", file.display());
        return false;
    };
    println!(
        "configuration OK: {} ({} policy file{}, policy set sha256 {})",
        file.display(),
        set.files().len(),
        if set.files().len() == 1 { "" } else { "s" },
        set.hash()
    );
    true
}
