//! Command line (stable contract; later releases extend it).
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// mnsensor: eBPF host sensor for file servers that hold My Number data.
#[derive(Debug, Parser)]
#[command(name = "mnsensor", version, about, propagate_version = true)]
pub struct Cli {
    /// Log level of the daemon's own diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "info", env = "MNSENSOR_LOG")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sensor in the foreground until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Check, explain and test access policies (docs/policy.md).
    Policy(crate::policy::cli::PolicyArgs),
    /// Verify, show and anchor the hash-chained ledger (docs/ledger.md).
    Ledger(crate::seal::cli::LedgerArgs),
}

/// `mnsensor run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (YAML); without it the embedded default is used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Access policy file or directory (YAML, docs/policy.md); repeatable.
    #[arg(long, value_name = "PATH")]
    pub policy: Vec<PathBuf>,
    /// Report file events for this file or directory (recursively); repeatable.
    #[arg(long, value_name = "PATH")]
    pub protect: Vec<PathBuf>,
    /// Where records go: `stdout` or `jsonl:PATH`; repeatable; replaces the configured outputs.
    #[arg(long, value_name = "SPEC")]
    pub output: Vec<String>,
    /// State directory (ledger, signing key, output cursors); default from the config,
    /// /var/lib/mnsensor.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Kernel-to-daemon ring buffer size in bytes (power of two, ≥ 4096).
    #[arg(long, value_name = "BYTES")]
    pub ring_buffer_bytes: Option<u32>,
}
