//! `cargo xtask test`: the whole suite, as CI runs it. Stops at the first failing stage;
//! within a stage, every test executable runs (`--no-fail-fast`) so one run shows all failures.
//! Every test stage counts its skip markers and fails on one off the allowlist (skips.rs).
use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result};

use crate::{
    cmd::{cargo, run, step, target_dir},
    package, setup,
    skips::{self, Env},
    vm,
};

pub fn test() -> Result<()> {
    stage("setup", || setup::setup(true))?;
    let mut unit = cargo();
    unit.args([
        "test",
        "--no-fail-fast",
        "--workspace",
        "--exclude",
        "mnsensor-tests",
        "--exclude",
        "sensor-ebpf",
    ]);
    test_stage("unit tests", unit)?;
    stage("build mnsensor", || run(cargo().args(["build", "-p", "sensor", "--bin", "mnsensor"])))?;
    let bin = target_dir().join("debug/mnsensor");
    let mut host = cargo();
    host.env("MNSENSOR_BIN", &bin).args(["test", "--no-fail-fast", "-p", "mnsensor-tests"]);
    test_stage("integration tests on the host", host)?;
    // cargo-deb (installed once, minutes), the release build, then the scratch-root test.
    stage("package", || package::package(&package::Args { test: true }))?;
    stage("integration tests in VMs", || vm::vm_test(&vm::Args::default()))?;
    // Kernels with fentry but without the BPF LSM (Ubuntu, RHEL): the fmod_ret backend.
    // Only the enforcement tests, to keep the stage short.
    stage("enforcement without the BPF LSM (6.12 guest)", || {
        vm::vm_test(&vm::Args {
            kernels: vec!["6.12".to_owned()],
            tests: vec!["enforce_backend".to_owned()],
            no_bpf_lsm: true,
            ..vm::Args::default()
        })
    })?;
    step("test: all stages passed");
    Ok(())
}

fn stage(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    step(format!("=== stage: {name}"));
    f().with_context(|| format!("stage `{name}` failed"))
}

/// A stage of host tests: `cmd` with `MNSENSOR_SKIP_FILE` set to a fresh file, whose markers
/// are printed and checked against the host allowlist, also when tests failed.
fn test_stage(name: &str, mut cmd: Command) -> Result<()> {
    let file = target_dir().join("xtask-skips").join(format!("{}.txt", name.replace(' ', "-")));
    stage(name, || {
        fs::create_dir_all(file.parent().expect("has a parent"))
            .with_context(|| format!("creating {}", file.display()))?;
        let _ = fs::remove_file(&file);
        let ran = run(cmd.env("MNSENSOR_SKIP_FILE", &file));
        let counted = skips::check(name, Env::Host, &skips::parse(&read(&file)));
        ran.and(counted)
    })
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}
