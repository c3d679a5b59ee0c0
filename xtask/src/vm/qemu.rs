//! Booting one kernel under qemu, and reading the verdict from its console.
use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::{
    cmd::{display, step},
    skips::{self, Env, Skip},
};

/// Host-side limit for one VM (boot, all tests, power-off).
/// Measured 2026-12-07 on a 2-core machine with other work running: 6.12 in 20.4 min, 6.1 in
/// 36.1 min (the 6.1 guest is the slow one); the limit leaves a third on top of that.
pub const TIMEOUT: Duration = Duration::from_secs(50 * 60);
const APPEND: &str = "console=ttyS0 panic=-1 quiet lsm=lockdown,capability,landlock,yama,apparmor,bpf";
/// The same without the BPF LSM, as Ubuntu and RHEL kernels boot: fentry programs load, BPF
/// LSM programs do not (the sensor enforces with `fmod_ret`).
const APPEND_NO_BPF_LSM: &str = "console=ttyS0 panic=-1 quiet lsm=lockdown,capability,landlock,yama,apparmor";

/// Boots `vmlinuz` with `initrd` (with the BPF LSM unless `no_bpf_lsm`), console to `log`;
/// returns qemu's exit code (124: timeout) and the wall time. qemu exits 0 on `poweroff -f`
/// whether or not the tests passed.
pub fn boot(vmlinuz: &Path, initrd: &Path, log: &Path, no_bpf_lsm: bool) -> Result<(Option<i32>, Duration)> {
    boot_for(vmlinuz, initrd, log, TIMEOUT, &[], no_bpf_lsm)
}

/// [`boot`] with another time limit and more qemu arguments.
pub fn boot_for(
    vmlinuz: &Path,
    initrd: &Path,
    log: &Path,
    timeout: Duration,
    extra: &[&str],
    no_bpf_lsm: bool,
) -> Result<(Option<i32>, Duration)> {
    let console = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let console2 = console.try_clone().context("duplicating the console log handle")?;
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=10", &timeout.as_secs().to_string(), "qemu-system-x86_64"])
        .args(accel())
        .args(extra)
        .args(["-smp", "1", "-m", "2G", "-nographic", "-nic", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", if no_bpf_lsm { APPEND_NO_BPF_LSM } else { APPEND }])
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console2);
    let line = display(&cmd);
    step(format!("$ {line} > {}", log.display()));
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("could not start `{line}`"))?;
    Ok((status.code(), start.elapsed()))
}

/// KVM only where the CPU has vmx/svm: a `/dev/kvm` alone can be a PVM host that fails.
fn accel() -> [&'static str; 4] {
    if kvm() { ["-accel", "kvm", "-cpu", "host"] } else { ["-accel", "tcg", "-cpu", "max"] }
}

/// Whether the guest runs under KVM (else TCG, software emulation).
pub fn kvm() -> bool {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// What the guest's init.sh printed.
#[derive(Debug, Default, PartialEq)]
pub struct Console {
    /// `VMTEST <name> exit=<code>`, in order.
    pub exits: Vec<(String, i32)>,
    /// `VMTEST DONE` was seen.
    pub done: bool,
    /// Sums over the `test result:` lines of libtest.
    pub passed: u64,
    pub failed: u64,
    /// The skip markers (`MNSENSOR-SKIP …`), in order.
    pub skips: Vec<Skip>,
    /// Each failed test (`test <name> ... FAILED`) with the first lines of what it printed
    /// (libtest's `---- <name> stdout ----` block), in order.
    pub failures: Vec<Failure>,
}

/// One failed test and the start of its captured output.
#[derive(Debug, Default, PartialEq)]
pub struct Failure {
    pub test: String,
    pub output: Vec<String>,
}

/// Lines kept of one failed test's output: its panic message and the assertion's values.
const FAILURE_LINES: usize = 12;

/// Parses a console log. Lines may start with terminal escape codes, so markers are found
/// anywhere in a line.
pub fn parse(log: &str) -> Console {
    let mut console = Console { skips: skips::parse(log), ..Console::default() };
    // The failure whose `---- name stdout ----` block is being read.
    let mut block: Option<usize> = None;
    for line in log.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(name) = line.strip_prefix("---- ").and_then(|l| l.strip_suffix(" stdout ----")) {
            block = console.failures.iter().position(|f| f.test == name);
            continue;
        }
        if let Some(f) = block.map(|i| &mut console.failures[i]) {
            if line == "failures:" || line.starts_with("test result: ") {
                block = None;
            } else if f.output.len() < FAILURE_LINES && !line.trim().is_empty() {
                f.output.push(line.to_owned());
            }
        }
        if let Some(name) = line.strip_prefix("test ").and_then(|l| l.strip_suffix(" ... FAILED")) {
            console.failures.push(Failure { test: name.to_owned(), output: Vec::new() });
        } else if let Some(i) = line.find("VMTEST ") {
            let marker = line[i + "VMTEST ".len()..].trim_end();
            if marker == "DONE" {
                console.done = true;
            } else if let Some((name, code)) = marker.rsplit_once(" exit=")
                && let Ok(code) = code.parse()
            {
                console.exits.push((name.to_owned(), code));
            }
        } else if let Some(i) = line.find("test result: ") {
            // "test result: ok. 3 passed; 0 failed; 0 ignored; …"
            for part in line[i..].split(['.', ';']) {
                match part.split_whitespace().collect::<Vec<_>>()[..] {
                    [n, "passed"] => console.passed += n.parse::<u64>().unwrap_or(0),
                    [n, "failed"] => console.failed += n.parse::<u64>().unwrap_or(0),
                    _ => {}
                }
            }
        }
    }
    console
}

impl Console {
    /// `Ok` when every expected executable exited 0, the run finished and every skip is on
    /// the VM allowlist; else why not.
    pub fn verdict(&self, expected: &[String]) -> Result<(), String> {
        let mut problems = Vec::new();
        for name in expected {
            match self.exits.iter().find(|(n, _)| n == name) {
                Some((_, 0)) => {}
                Some((_, code)) => problems.push(format!("{name} exit={code}")),
                None => problems.push(format!("{name}: no marker")),
            }
        }
        if !self.done {
            problems.push("no VMTEST DONE".to_owned());
        }
        for s in self.skips.iter().filter(|s| !skips::allowed(Env::Vm, &s.test)) {
            problems.push(format!("skip not allowed: {} ({})", s.test, s.reason));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join(", ")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_markers_and_results() {
        let log = "\x1bc\x1b[?7lVMINFO kernel=6.1.0\r\n\
            running 2 tests\r\n\
            test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s\r\n\
            \r\nVMTEST exec exit=0\r\n\
            test result: FAILED. 1 passed; 3 failed; 0 ignored\n\
            \x1b[0mVMTEST file exit=101\n\
            MNSENSOR-SKIP protected_io::aio_direct_read -- no O_DIRECT\n\
            test reads_are_counted ... FAILED\n\
            \nfailures:\n\n---- reads_are_counted stdout ----\n\
            thread 'reads_are_counted' panicked at tests/x.rs:1:1:\nbytes: 3 != 4\n\
            \nfailures:\n    reads_are_counted\n\
            test result: FAILED. 0 passed; 1 failed\n\
            \nVMTEST DONE\n";
        let console = parse(log);
        assert_eq!(
            console,
            Console {
                exits: vec![("exec".into(), 0), ("file".into(), 101)],
                done: true,
                passed: 3,
                failed: 4,
                skips: vec![Skip {
                    test: "protected_io::aio_direct_read".into(),
                    reason: "no O_DIRECT".into()
                }],
                failures: vec![Failure {
                    test: "reads_are_counted".into(),
                    output: vec![
                        "thread 'reads_are_counted' panicked at tests/x.rs:1:1:".into(),
                        "bytes: 3 != 4".into(),
                    ],
                }],
            }
        );
        assert_eq!(console.verdict(&["exec".into()]), Ok(()));
        assert_eq!(
            console.verdict(&["exec".into(), "file".into(), "net".into()]),
            Err("file exit=101, net: no marker".into())
        );
        assert_eq!(parse("VMTEST exec exit=0\n").verdict(&["exec".into()]), Err("no VMTEST DONE".into()));
        assert_eq!(
            parse("MNSENSOR-SKIP enforce::x -- no users\nVMTEST exec exit=0\nVMTEST DONE\n")
                .verdict(&["exec".into()]),
            Err("skip not allowed: enforce::x (no users)".into())
        );
    }
}
