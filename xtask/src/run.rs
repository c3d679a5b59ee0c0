//! `cargo xtask run [ARGS…]`: builds the release daemon and becomes `mnsensor run ARGS…`.
use std::{ffi::OsString, os::unix::process::CommandExt as _, process::Command};

use anyhow::{Context as _, Result, ensure};

use crate::{
    build,
    cmd::{self, display, step, target_dir},
};

pub fn run(args: &[OsString]) -> Result<()> {
    ensure!(cmd::is_root()?, "mnsensor loads eBPF programs: run as root (`sudo -E cargo xtask run`)");
    build::build(true)?;
    let mut cmd = Command::new(target_dir().join("release/mnsensor"));
    cmd.arg("run").args(args);
    let line = display(&cmd);
    step(format!("$ {line}"));
    // exec: the daemon takes our pid, so Ctrl-C and `kill` reach it directly.
    let err = cmd.exec();
    Err(err).with_context(|| format!("could not exec `{line}`"))
}
