//! `cargo xtask lint`: rustfmt and clippy, warnings denied. Not part of `test`.
use anyhow::Result;

use crate::{
    cmd::{cargo, run},
    setup,
};

pub fn lint() -> Result<()> {
    setup::setup(false)?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "sensor-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The eBPF crate for the host target: rustup stable has no rust-src for the BPF target.
    // Code under cfg(target_arch = "bpf") is not linted this way (anchors-rust-aya.md §1.4).
    run(cargo().env("AYA_BUILD_SKIP", "1").env("RUSTC_BOOTSTRAP", "1").args([
        "clippy",
        "-p",
        "sensor-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
        "-C",
        "panic=abort",
        "-Zpanic_abort_tests",
    ]))
}
