//! Statically linked builds of the daemon and the integration tests for the guest, in their
//! own target directory so that the host build is left alone.
use std::{path::PathBuf, process::Command};

use anyhow::Result;
use serde_json::Value;

use crate::cmd::{cargo, display, output, run, step, target_dir};

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn static_cargo() -> Command {
    let mut cmd = cargo();
    cmd.env("RUSTFLAGS", "-C target-feature=+crt-static");
    cmd
}

fn build_dir() -> PathBuf {
    target_dir().join("vm-build")
}

/// `target/vm-build/x86_64-unknown-linux-gnu/release/mnsensor`, static glibc.
pub fn sensor() -> Result<PathBuf> {
    run(static_cargo()
        .args(["build", "-p", "sensor", "--bin", "mnsensor", "--release", "--target", TARGET, "--target-dir"])
        .arg(build_dir()))?;
    Ok(build_dir().join(TARGET).join("release/mnsensor"))
}

/// `target/vm-build/x86_64-unknown-linux-gnu/release/xtask`, static glibc: the guest side of
/// `bench --vm`, and its workload processes.
pub fn xtask() -> Result<PathBuf> {
    run(static_cargo()
        .args(["build", "-p", "xtask", "--release", "--target", TARGET, "--target-dir"])
        .arg(build_dir()))?;
    Ok(build_dir().join(TARGET).join("release/xtask"))
}

/// The test executables of `mnsensor-tests`, named for the guest's `/tests/`.
pub fn tests() -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = static_cargo();
    cmd.args(["test", "-p", "mnsensor-tests", "--release", "--no-run", "--target", TARGET])
        .args(["--message-format=json", "--target-dir"])
        .arg(build_dir());
    step(format!("$ {}", display(&cmd)));
    let json = output(&mut cmd)?;
    let tests = test_executables(&json);
    step(format!(
        "test executables: {}",
        tests.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(" ")
    ));
    Ok(tests)
}

/// Test executables from cargo's JSON messages: `(target name, path)`; a library's unit
/// tests are `<name>-unit`.
fn test_executables(json: &str) -> Vec<(String, PathBuf)> {
    json.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .filter_map(|m| {
            let exe = PathBuf::from(m["executable"].as_str()?);
            let name = m["target"]["name"].as_str()?;
            let lib = m["target"]["kind"].as_array()?.iter().any(|k| k != "test" && k != "bin");
            Some((if lib { format!("{name}-unit") } else { name.to_owned() }, exe))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_test_executables() {
        let json = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"libc"},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"mnsensor_tests"},"profile":{"test":true},"executable":"/t/mnsensor_tests-1"}
{"reason":"compiler-artifact","target":{"kind":["test"],"name":"exec"},"profile":{"test":true},"executable":"/t/exec-2"}
{"reason":"build-finished","success":true}"#;
        let found = test_executables(json);
        assert_eq!(
            found,
            [
                ("mnsensor_tests-unit".to_owned(), PathBuf::from("/t/mnsensor_tests-1")),
                ("exec".to_owned(), PathBuf::from("/t/exec-2")),
            ]
        );
    }
}
