//! Command line (stable contract; later releases extend it).
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::{LogFormat, parse_filter};

/// mnsensor: eBPF host sensor for file servers that hold My Number data.
#[derive(Debug, Parser)]
#[command(name = "mnsensor", version, about, propagate_version = true)]
pub struct Cli {
    /// Log level of the daemon's own diagnostics on stderr: error, warn, info, debug, trace,
    /// or a `tracing` filter such as `warn,sensor::daemon=debug`.
    #[arg(long, global = true, default_value = "info", env = "MNSENSOR_LOG", value_parser = parse_filter)]
    pub log_level: String,
    /// Format of the diagnostics on stderr: `text` (colours only on a terminal), `json` (one
    /// object a line), `journal` (`<N>` priority prefixes, no time: journald adds both), or
    /// `auto` (`journal` when stderr is the journal, else `text`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto, env = "MNSENSOR_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sensor in the foreground until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Check, explain and test access policies (docs/policy.md).
    Policy(crate::policy::cli::PolicyArgs),
    /// Check the configuration, or show the one in effect (docs/configuration.md).
    Config(ConfigArgs),
    /// Ask the running sensor how it is doing; exits 1 when it is not running or not healthy.
    Status(StatusArgs),
    /// Write the man pages and shell completions into DIR (for packaging; `cargo xtask package`).
    #[command(hide = true)]
    Generate {
        /// Output directory (created): `man/*.1`, `bash/mnsensor.bash`, `zsh/_mnsensor`, `fish/mnsensor.fish`.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Verify, show and anchor the hash-chained ledger (docs/ledger.md).
    Ledger(crate::seal::cli::LedgerArgs),
}

/// `mnsensor run`.
#[derive(Clone, Debug, Args)]
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
    /// Where `mnsensor status` reaches the sensor [default: /run/mnsensor/status.sock].
    #[arg(long, value_name = "PATH")]
    pub status_socket: Option<PathBuf>,
}

/// `mnsensor config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and the policies it names without starting; every
    /// error with file:line:column. Exit 0 valid, 1 invalid.
    Check {
        /// The configuration file.
        #[arg(value_name = "FILE", default_value = crate::config::DEFAULT_CONFIG_PATH)]
        file: PathBuf,
        /// Skip the policy checks that need the target host (owners, users, paths).
        #[arg(long)]
        no_host_checks: bool,
    },
    /// Print the configuration `mnsensor run` would use with these arguments, as YAML.
    Show(RunArgs),
}

/// `mnsensor status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The sensor's status socket.
    #[arg(long, value_name = "PATH", default_value = crate::config::DEFAULT_STATUS_SOCKET)]
    pub socket: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
}

/// How `mnsensor status` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
}
