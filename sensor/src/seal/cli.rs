//! `mnsensor ledger verify|show|pubkey`. Exit codes of `verify`: [`super::verify::exit`]
//! (docs/ledger.md).
use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Subcommand};

use super::{key, ledger, reader::Reader, verify};

/// Default state directory (as in the embedded configuration).
const DEFAULT_STATE_DIR: &str = "/var/lib/mnsensor";

/// `mnsensor ledger`.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    #[command(subcommand)]
    pub command: LedgerCommand,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check every frame, the hash chain and the signed checkpoints. Exit 0: intact;
    /// 1: cannot verify; 2: tampered; 3: the ledger ends inside a frame (torn tail).
    Verify {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// The public key (64 hex digits, or a file holding them) kept off the host; without
        /// it the key in the state directory is used, which proves less.
        #[arg(long, value_name = "PUBKEY")]
        key: Option<String>,
    },
    /// Print records as JSON lines.
    Show {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// First sequence number to print.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        from: u64,
        /// Keep printing records as they are sealed.
        #[arg(long)]
        follow: bool,
    },
    /// Print the public key of the ledger's signing key (keep it off the host).
    Pubkey {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Measure the seal stage into a scratch state directory (`cargo xtask bench --ledger`).
    #[command(hide = true)]
    Bench {
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        #[arg(long, default_value_t = 1000)]
        fsync_interval_ms: u64,
    },
}

/// Runs a `ledger` subcommand.
pub fn run(args: LedgerArgs) -> ExitCode {
    match args.command {
        LedgerCommand::Verify { state_dir, key } => {
            let public = match key {
                Some(k) => key::parse_public(&k),
                None => key::load(&state_dir).map(|k| k.verifying_key()),
            };
            let public = match public {
                Ok(p) => p,
                Err(e) => return fail(&e),
            };
            match verify::verify(&state_dir, &public) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::from(report.exit_code())
                }
                Err(e) => fail(&e),
            }
        }
        LedgerCommand::Show { state_dir, from, follow } => show(&state_dir, from, follow),
        LedgerCommand::Bench { state_dir, records, fsync_interval_ms } => {
            match super::bench::run(&state_dir, records, fsync_interval_ms) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        LedgerCommand::Pubkey { state_dir } => match key::load(&state_dir) {
            Ok(k) => {
                println!("{}", key::hex(k.verifying_key().as_bytes()));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

fn show(state_dir: &std::path::Path, from: u64, follow: bool) -> ExitCode {
    let dir = ledger::dir_of(state_dir);
    if !dir.is_dir() {
        return fail(&format!("no ledger in {}", dir.display()));
    }
    let mut reader = Reader::new(&dir, from);
    let mut out = std::io::stdout().lock();
    loop {
        match reader.next_entry() {
            Ok(Some(e)) => {
                if out.write_all(&e.body).and_then(|()| out.write_all(b"\n")).is_err() {
                    return ExitCode::SUCCESS;
                }
            }
            Ok(None) if follow => {
                let _ = out.flush();
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => return fail(&e),
        }
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("mnsensor: error: {e}");
    ExitCode::from(verify::exit::ERROR)
}
