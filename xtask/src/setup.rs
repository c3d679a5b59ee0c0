//! `cargo xtask setup [--vm]`: installs what is missing, and only that.
use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, Result, ensure};

use crate::{
    apt,
    cmd::{self, cargo, probe, run, step, target_dir},
};

/// Debian's Rust 1.96 (builds the eBPF crate, with its `core` source) and what
/// bpf-linker links against.
const PACKAGES: &[&str] = &[
    "rustc-web",
    "rust-web-src",
    "cargo-web",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    // mkfs.ext4 and losetup: tests/tests/enforce_identity.rs makes its own filesystem.
    "e2fsprogs",
    "mount",
    // `systemd-analyze verify|security` on the unit (tests/tests/service.rs); systemd need
    // not run.
    "systemd",
    // The exfiltration tests: a network namespace with a veth pair, and python3 senders.
    "iproute2",
    "python3",
    // tests/tests/exfil_ways.rs sends with nc (the OpenBSD one: `-N` shuts the socket down
    // at the end of its input) and curl, and pipes through openssl (also a receiver package).
    "netcat-openbsd",
    "curl",
    // The print detection test (tests/tests/print.rs) runs its own cupsd with a raw queue on
    // the built-in file: device; no filters or drivers are needed.
    "cups-daemon",
    "cups-client",
];
/// Third-party receivers of the delivery tests (tests/tests/otlp.rs, syslog.rs): rsyslog
/// with its TLS driver, socat as the TLS front of rotel (it starts no service, unlike a web
/// server package), openssl for test certificates, and python3-venv for rotel.
const RECEIVER_PACKAGES: &[&str] = &["rsyslog", "rsyslog-openssl", "socat", "openssl", "python3-venv"];
/// The Samba attribution test (tests/tests/samba.rs): the test runs its own `smbd` on a
/// loopback port with its own configuration and password database (`samba` also brings
/// `smbpasswd`), and reads through `smbclient`. Where the package's own service starts on
/// install, the test does not use it.
const SAMBA_PACKAGES: &[&str] = &["samba", "smbclient"];
/// rotel, the OTLP receiver from PyPI (a Rust collector that can print what it receives).
const ROTEL_VERSION: &str = "0.0.1a15";
/// For `vm-test`. Replaces a preinstalled qemu-utils 10 with 7.2's; that is fine. bpftool goes
/// into the guest of `bench --vm` (bpf_stats, the sensor's programs gone after a stop).
const VM_PACKAGES: &[&str] = &["qemu-system-x86", "bpftool"];
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
const TRACEFS: &str = "/sys/kernel/tracing";

pub fn setup(vm: bool) -> Result<()> {
    let mut done = Vec::new();
    let packages = [PACKAGES, RECEIVER_PACKAGES, SAMBA_PACKAGES, if vm { VM_PACKAGES } else { &[] }].concat();
    for package in apt::install_missing(&packages)? {
        done.push(format!("installed {package}"));
    }
    if install_bpf_linker()? {
        done.push(format!("installed bpf-linker {BPF_LINKER_VERSION}"));
    }
    if install_rotel()? {
        done.push(format!("installed rotel {ROTEL_VERSION} in {}", rotel_dir().display()));
    }
    if mount_tracefs()? {
        done.push(format!("mounted tracefs on {TRACEFS}"));
    }
    if vm && fetch_busybox()? {
        done.push(format!("extracted {}", busybox().display()));
    }
    if done.is_empty() {
        step(format!("setup{}: nothing to do", if vm { " --vm" } else { "" }));
    } else {
        step(format!("setup: {}", done.join(", ")));
    }
    Ok(())
}

fn install_bpf_linker() -> Result<bool> {
    let wanted = format!("bpf-linker {BPF_LINKER_VERSION}");
    let found = bpf_linker_version()?;
    if found.as_deref() == Some(&wanted) {
        return Ok(false);
    }
    let found = found.unwrap_or_else(|| "none".to_owned());
    step(format!("{wanted} not on PATH (found: {found}); building it (~1-2 min)"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![PathBuf::from(LLVM_BIN)];
    dirs.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(dirs).context("joining PATH")?;
    run(cargo().env("PATH", path).args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--locked",
        "--force",
        "--no-default-features",
        "--features",
        "llvm-22",
    ]))?;
    ensure!(
        bpf_linker_version()?.as_deref() == Some(&wanted),
        "bpf-linker was installed but `bpf-linker --version` still does not say `{wanted}`: \
         is cargo's bin directory (~/.cargo/bin) on PATH?"
    );
    Ok(true)
}

/// `bpf-linker --version`, trimmed, or `None` if it is not on PATH or fails.
fn bpf_linker_version() -> Result<Option<String>> {
    Ok(probe(Command::new("bpf-linker").arg("--version"))?.map(|v| v.trim().to_owned()))
}

/// Where rotel is installed: a Python venv; the tests run `<dir>/bin/rotel-agent`.
pub fn rotel_dir() -> PathBuf {
    target_dir().join("receivers")
}

/// Installs rotel from PyPI into [`rotel_dir`] unless that version is there.
fn install_rotel() -> Result<bool> {
    let dir = rotel_dir();
    let stamp = dir.join("rotel.version");
    let agent = dir.join("bin/rotel-agent");
    if agent.is_file() && fs::read_to_string(&stamp).is_ok_and(|v| v.trim() == ROTEL_VERSION) {
        return Ok(false);
    }
    step(format!("installing rotel {ROTEL_VERSION} from PyPI into {}", dir.display()));
    let venv = dir.join("venv");
    run(Command::new("/usr/bin/python3").arg("-m").arg("venv").arg("--clear").arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--pre",
        &format!("rotel=={ROTEL_VERSION}"),
    ]))?;
    let found = cmd::output(Command::new(venv.join("bin/python")).args([
        "-c",
        "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
    ]))?;
    fs::create_dir_all(dir.join("bin")).with_context(|| format!("creating {}", dir.display()))?;
    let _ = fs::remove_file(&agent);
    std::os::unix::fs::symlink(found.trim(), &agent)
        .with_context(|| format!("linking {}", agent.display()))?;
    fs::write(&stamp, ROTEL_VERSION).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(true)
}

/// aya finds tracepoints through tracefs; some machines do not mount it.
fn mount_tracefs() -> Result<bool> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    let mounted = mounts.lines().any(|l| {
        let mut fields = l.split_whitespace().skip(1);
        (fields.next(), fields.next()) == (Some(TRACEFS), Some("tracefs"))
    });
    if mounted {
        return Ok(false);
    }
    ensure!(cmd::is_root()?, "tracefs is not mounted on {TRACEFS}; run as root to mount it");
    run(Command::new("mount").args(["-t", "tracefs", "tracefs", TRACEFS]))?;
    Ok(true)
}

/// Static busybox for the VM initramfs (from Debian's busybox-static).
pub fn busybox() -> PathBuf {
    target_dir().join("vm/busybox")
}

fn fetch_busybox() -> Result<bool> {
    let dest = busybox();
    if dest.is_file() {
        return Ok(false);
    }
    let dir = target_dir().join("vm/debs/busybox-static");
    apt::with_fresh_lists("downloading busybox-static", || {
        let deb = apt::download("busybox-static", &dir)?;
        apt::extract(&deb, |m| m == "./bin/busybox" || m == "./usr/bin/busybox", &dest)
    })?;
    fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(true)
}
