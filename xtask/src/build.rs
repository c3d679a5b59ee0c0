//! `cargo xtask build [--release]`: the daemon, with the kernel programs built by
//! sensor/build.rs.
use anyhow::Result;

use crate::{
    cmd::{cargo, run},
    setup,
};

pub fn build(release: bool) -> Result<()> {
    setup::setup(false)?;
    let mut cmd = cargo();
    cmd.args(["build", "-p", "sensor"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}
