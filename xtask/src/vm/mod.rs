//! `cargo xtask vm-test [--kernel NAME]…`: the integration tests inside Debian kernels
//! under qemu (docs/building.md, shared/reference/vm-kernel-matrix.md).
pub mod artifacts;
pub mod initramfs;
pub mod kernels;
pub mod qemu;

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cmd::{step, target_dir},
    setup, skips,
};

/// VMs at a time; each TCG VM keeps one host core busy.
const PARALLEL: usize = 2;
/// Test executables that check host tools rather than the kernel, and never run in the
/// busybox guest (docs/testing.md): name, why.
pub const HOST_ONLY: &[(&str, &str)] = &[
    ("service", "systemd-analyze, the notify harness and dpkg are host tools"),
    ("otlp", "the rotel receiver is a host tool"),
    ("syslog", "rsyslog and openssl are host tools"),
    ("delivery", "the rotel receiver is a host tool"),
    ("samba", "smbd, smbclient and smbpasswd are host tools"),
    ("media", "mkfs.ext4 and losetup are host tools"),
    ("print", "cupsd, lpadmin and lp are host tools"),
    (
        "exfil_ways",
        "the busybox guest's `ip` cannot make the network namespace; curl, nc, openssl and python3 are host tools",
    ),
];
/// Console lines shown for a failed kernel.
const TAIL: usize = 60;

#[derive(clap::Args, Default)]
pub struct Args {
    /// Kernel to boot: `6.1`, `6.12` or a linux-image-* package name from the configured apt
    /// suites. Repeatable; default: 6.1 and 6.12.
    #[arg(long = "kernel", value_name = "NAME")]
    pub kernels: Vec<String>,
    /// Only these test executables of mnsensor-tests (`enforce`, `mnsensor_tests-unit`…).
    /// Repeatable; default: all of them.
    #[arg(long = "test", value_name = "NAME")]
    pub tests: Vec<String>,
    /// Passed to every test executable as libtest's name filter.
    #[arg(long, value_name = "SUBSTRING")]
    pub filter: Option<String>,
    /// Boot without `bpf` in the LSM list (as Ubuntu and RHEL kernels do), so enforcement
    /// runs on the `fmod_ret` program; kernels are reported as `NAME-no-bpf-lsm`.
    #[arg(long)]
    pub no_bpf_lsm: bool,
}

struct Outcome {
    name: String,
    package: String,
    log: PathBuf,
    secs: f64,
    console: qemu::Console,
    verdict: Result<(), String>,
}

pub fn vm_test(args: &Args) -> Result<()> {
    setup::setup(true)?;
    let names: Vec<String> = if args.kernels.is_empty() {
        kernels::DEFAULT.iter().map(|k| (*k).to_owned()).collect()
    } else {
        args.kernels.clone()
    };
    let kernels = names.iter().map(|n| kernels::fetch(n)).collect::<Result<Vec<_>>>()?;

    let sensor = artifacts::sensor()?;
    let mut tests = artifacts::tests()?;
    tests.retain(|(name, _)| match HOST_ONLY.iter().find(|(n, _)| n == name) {
        Some((_, why)) => {
            step(format!("not run in the VMs: {name} ({why})"));
            false
        }
        None => true,
    });
    if !args.tests.is_empty() {
        tests.retain(|(name, _)| args.tests.contains(name));
    }
    if tests.is_empty() {
        bail!("no test executables to run (mnsensor-tests has none, or --test matched none)");
    }
    let dir = target_dir().join("vm");
    let contents = initramfs::Contents {
        busybox: &setup::busybox(),
        sensor: &sensor,
        tests: &tests,
        filter: args.filter.as_deref(),
        init: initramfs::INIT,
        overlay: None,
    };
    let initrd = initramfs::build(&dir, &contents)?;
    let expected: Vec<String> = tests.into_iter().map(|(name, _)| name).collect();

    step(format!("booting {} kernel(s), {PARALLEL} at a time", kernels.len()));
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..PARALLEL.min(kernels.len()) {
            s.spawn(|| {
                while let Some(kernel) = kernels.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let outcome = boot(kernel, &initrd, &dir, &expected, args.no_bpf_lsm);
                    outcomes.lock().expect("no panics while locked").push(outcome);
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().expect("no panics while locked");
    outcomes.sort_by_key(|o| {
        names.iter().position(|n| o.name.strip_suffix("-no-bpf-lsm").unwrap_or(&o.name) == n)
    });
    report(&outcomes)
}

fn boot(
    kernel: &kernels::Kernel,
    initrd: &Path,
    dir: &Path,
    expected: &[String],
    no_bpf_lsm: bool,
) -> Outcome {
    let name = if no_bpf_lsm { format!("{}-no-bpf-lsm", kernel.name) } else { kernel.name.clone() };
    let log = dir.join(format!("console-{name}.log"));
    let (secs, console, verdict) = match qemu::boot(&kernel.vmlinuz, initrd, &log, no_bpf_lsm) {
        Ok((code, wall)) => {
            let text = fs::read(&log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let console = qemu::parse(&text);
            let verdict = match code {
                Some(124 | 137) => Err(format!("timed out after {} s", qemu::TIMEOUT.as_secs())),
                Some(0) => console.verdict(expected),
                other => Err(format!("qemu exited with {other:?}")),
            };
            (wall.as_secs_f64(), console, verdict)
        }
        Err(err) => (0.0, qemu::Console::default(), Err(format!("{err:#}"))),
    };
    let result = if verdict.is_ok() { "pass" } else { "FAIL" };
    step(format!("kernel {name}: {result} in {secs:.0} s"));
    Outcome { name, package: kernel.package.clone(), log, secs, console, verdict }
}

fn report(outcomes: &[Outcome]) -> Result<()> {
    for o in outcomes.iter().filter(|o| o.verdict.is_err()) {
        println!("\n--- last {TAIL} console lines of {} ({}) ---", o.name, o.log.display());
        println!("{}", tail(&o.log, TAIL));
    }
    println!("\nvm-test summary:");
    println!(
        "{:<16} {:<42} {:<6} {:>7} {:>7} {:>7} {:>7}  details",
        "kernel", "package", "result", "wall_s", "passed", "failed", "skipped"
    );
    for o in outcomes {
        let (result, details) = match &o.verdict {
            Ok(()) => ("pass", String::new()),
            Err(why) => ("FAIL", why.clone()),
        };
        println!(
            "{:<16} {:<42} {:<6} {:>7.1} {:>7} {:>7} {:>7}  {details}",
            o.name,
            o.package,
            result,
            o.secs,
            o.console.passed,
            o.console.failed,
            o.console.skips.len()
        );
    }
    for o in outcomes {
        for s in &o.console.skips {
            let tag = if skips::allowed(skips::Env::Vm, &s.test) { "allowed" } else { "NOT ALLOWED" };
            println!("skip on {} ({tag}): {}: {}", o.name, s.test, s.reason);
        }
    }
    let (passed, failed, skipped) = outcomes.iter().fold((0, 0, 0), |(p, f, k), o| {
        (p + o.console.passed, f + o.console.failed, k + o.console.skips.len())
    });
    // The failed tests last, where a truncated CI log still shows them.
    for o in outcomes {
        for f in &o.console.failures {
            println!("FAILED on {}: {}", o.name, f.test);
            for line in &f.output {
                println!("    {}", strip_escapes(line));
            }
        }
    }
    println!("vm-test: {passed} passed (of which {skipped} skipped a claim), {failed} failed");
    let failures: Vec<&str> =
        outcomes.iter().filter(|o| o.verdict.is_err()).map(|o| o.name.as_str()).collect();
    if !failures.is_empty() {
        bail!("vm-test failed on kernel(s) {}", failures.join(", "));
    }
    Ok(())
}

fn tail(log: &Path, n: usize) -> String {
    let text = match fs::read(log).with_context(|| format!("reading {}", log.display())) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => return format!("({err:#})"),
    };
    let lines: Vec<&str> = text.lines().collect();
    strip_escapes(&lines[lines.len().saturating_sub(n)..].join("\n"))
}

/// Drops terminal escape sequences (`ESC c` resets the terminal, `ESC [2J` clears it) and
/// carriage returns, so that a console tail is safe to print.
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ parameters final-letter; otherwise ESC and one character.
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn strips_escapes() {
        assert_eq!(super::strip_escapes("\x1bc\x1b[?7l\x1b[2JVMINFO a\r\nb"), "VMINFO a\nb");
    }
}
