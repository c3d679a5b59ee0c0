//! `cargo xtask test`: the whole suite, as CI runs it. Stops at the first failing stage;
//! within a stage, every test executable runs (`--no-fail-fast`) so one run shows all failures.
use anyhow::{Context as _, Result};

use crate::{
    cmd::{cargo, run, step, target_dir},
    package, setup, vm,
};

pub fn test() -> Result<()> {
    stage("setup", || setup::setup(true))?;
    stage("unit tests", || {
        run(cargo().args([
            "test",
            "--no-fail-fast",
            "--workspace",
            "--exclude",
            "mnsensor-tests",
            "--exclude",
            "sensor-ebpf",
        ]))
    })?;
    stage("build mnsensor", || run(cargo().args(["build", "-p", "sensor", "--bin", "mnsensor"])))?;
    let bin = target_dir().join("debug/mnsensor");
    stage("integration tests on the host", || {
        run(cargo().env("MNSENSOR_BIN", &bin).args(["test", "--no-fail-fast", "-p", "mnsensor-tests"]))
    })?;
    // cargo-deb (installed once, minutes), the release build, then the scratch-root test.
    stage("package", || package::package(&package::Args { test: true }))?;
    stage("integration tests in VMs", || vm::vm_test(&vm::Args::default()))?;
    step("test: all stages passed");
    Ok(())
}

fn stage(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    step(format!("=== stage: {name}"));
    f().with_context(|| format!("stage `{name}` failed"))
}
