//! `mnsensor generate DIR` (hidden): the man pages (one per command, clap_mangen) and the
//! bash, zsh and fish completions (clap_complete), generated from the real command line, for
//! the Debian package.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes `man/mnsensor*.1` and `bash/mnsensor.bash`, `zsh/_mnsensor`, `fish/mnsensor.fish`.
pub fn generate(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = dir.join("man");
    fs::create_dir_all(&man)?;
    let cmd = Cli::command();
    // `mnsensor.1`, `mnsensor-run.1`, `mnsensor-policy-check.1`, … (hidden ones left out).
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for entry in fs::read_dir(&man)? {
        written.push(entry?.path());
    }
    for (shell, sub) in [(Shell::Bash, "bash"), (Shell::Zsh, "zsh"), (Shell::Fish, "fish")] {
        let out = dir.join(sub);
        fs::create_dir_all(&out)?;
        written.push(clap_complete::generate_to(shell, &mut cmd.clone(), "mnsensor", &out)?);
    }
    written.sort();
    Ok(written)
}
