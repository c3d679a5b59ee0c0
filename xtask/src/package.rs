//! `cargo xtask package [--test]`: the Debian package (cargo-deb, metadata in
//! sensor/Cargo.toml), and with `--test` its install, upgrade, removal and purge in a scratch
//! root (`dpkg --root`, maintainer scripts run in a chroot with a static busybox as `/bin/sh`).
//!
//! The scratch root never touches the host's dpkg database or systemd: the maintainer
//! scripts only call `systemctl`/`deb-systemd-*` when those exist and systemd runs, and in
//! the chroot neither does.
use std::{
    fs,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    cmd::{cargo, output, probe, root, run, step, target_dir},
    setup,
};

/// The cargo-deb release installed when missing (`cargo install --locked`: minutes).
const CARGO_DEB_VERSION: &str = "3.8.0";

#[derive(clap::Args)]
pub struct Args {
    /// Then install, upgrade, remove and purge it in a scratch root and check the files.
    #[arg(long)]
    pub test: bool,
}

pub fn package(args: &Args) -> Result<()> {
    setup::setup(args.test)?;
    install_cargo_deb()?;
    let started = Instant::now();
    run(cargo().args(["build", "--release", "-p", "sensor", "--bin", "mnsensor"]))?;
    let generated = root().join("packaging/generated");
    let _ = fs::remove_dir_all(&generated);
    run(Command::new(target_dir().join("release/mnsensor")).arg("generate").arg(&generated))?;
    let first = deb(None)?;
    step(format!("package: {} ({:.0?})", first.display(), started.elapsed()));
    if args.test {
        let started = Instant::now();
        // The upgrade installs the same tree as a later Debian revision.
        let second = deb(Some("2"))?;
        scratch_test(&first, &second)?;
        step(format!("package test: passed ({:.0?})", started.elapsed()));
    }
    Ok(())
}

fn install_cargo_deb() -> Result<()> {
    if probe(cargo().args(["deb", "--version"]))?.is_some() {
        return Ok(());
    }
    step(format!("cargo-deb not found; installing {CARGO_DEB_VERSION} (a few minutes)"));
    let started = Instant::now();
    run(cargo().args(["install", "cargo-deb", "--version", CARGO_DEB_VERSION, "--locked"]))?;
    step(format!("installed cargo-deb in {:.0?}", started.elapsed()));
    Ok(())
}

/// Builds the .deb from the release binary; returns its path.
fn deb(revision: Option<&str>) -> Result<PathBuf> {
    let out_dir = target_dir().join("package");
    fs::create_dir_all(&out_dir)?;
    let mut cmd = cargo();
    cmd.args(["deb", "-p", "sensor", "--no-build", "--output"]).arg(&out_dir);
    if let Some(r) = revision {
        cmd.args(["--deb-revision", r]);
    }
    let printed = output(&mut cmd)?;
    let path = printed.lines().rev().map(str::trim).find(|l| l.ends_with(".deb")).map(PathBuf::from);
    path.with_context(|| format!("cargo deb printed no .deb path: {printed}"))
}

/// Install, check, edit, upgrade, remove, purge, each checked.
fn scratch_test(first: &Path, second: &Path) -> Result<()> {
    let dir = target_dir().join("package/scratch");
    let _ = fs::remove_dir_all(&dir);
    let r = ScratchRoot::new(&dir)?;

    r.dpkg(&["-i"], first)?;
    for f in [
        "usr/bin/mnsensor",
        "usr/lib/systemd/system/mnsensor.service",
        "etc/mnsensor/config.yaml",
        "etc/mnsensor/policies.d/00-default.yaml",
        "usr/share/bash-completion/completions/mnsensor",
        "usr/share/zsh/vendor-completions/_mnsensor",
        "usr/share/fish/vendor_completions.d/mnsensor.fish",
        "usr/share/doc/mnsensor/examples/payroll-mynumber.yaml",
    ] {
        ensure!(r.path(f).is_file(), "installed package lacks /{f}");
    }
    ensure!(
        fs::read_dir(r.path("usr/share/man/man1"))?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("mnsensor.1")),
        "no mnsensor.1 man page"
    );
    for d in ["var/lib/mnsensor", "var/log/mnsensor"] {
        let mode = fs::metadata(r.path(d)).with_context(|| format!("/{d} not created"))?.permissions().mode();
        ensure!(mode & 0o777 == 0o700, "/{d} has mode {:o}, not 0700", mode & 0o777);
    }
    let conffiles = r.query("${Conffiles}")?;
    for c in ["/etc/mnsensor/config.yaml", "/etc/mnsensor/policies.d/00-default.yaml"] {
        ensure!(conffiles.contains(c), "{c} is not a conffile: {conffiles}");
    }
    // The packaged binary carries its kernel programs and runs (on the installed files).
    let binary = fs::read(r.path("usr/bin/mnsensor"))?;
    ensure!(embeds_bpf_object(&binary), "the packaged binary has no embedded BPF object");
    let check = output(
        Command::new(r.path("usr/bin/mnsensor"))
            .args(["config", "check", "--no-host-checks"])
            .arg(r.path("etc/mnsensor/config.yaml")),
    )?;
    ensure!(check.contains("configuration OK"), "installed config check: {check}");

    // The operator edits the configuration; the ledger holds data.
    let edited = "# edited by the operator\noutputs: [stdout]\n";
    fs::write(r.path("etc/mnsensor/config.yaml"), edited)?;
    fs::create_dir_all(r.path("var/lib/mnsensor/ledger"))?;
    fs::write(r.path("var/lib/mnsensor/ledger/0001.seg"), "records")?;

    r.dpkg(&["-i", "--force-confold"], second)?;
    ensure!(r.query("${Version}")?.ends_with("-2"), "upgrade did not install revision 2");
    ensure!(
        fs::read_to_string(r.path("etc/mnsensor/config.yaml"))? == edited,
        "upgrade lost the edited conffile"
    );
    ensure!(r.path("var/lib/mnsensor/ledger/0001.seg").is_file(), "upgrade lost the ledger");

    r.dpkg(&["-r"], Path::new("mnsensor"))?;
    ensure!(!r.path("usr/bin/mnsensor").exists(), "removal left the binary");
    ensure!(r.path("var/lib/mnsensor/ledger/0001.seg").is_file(), "removal deleted the ledger");
    ensure!(
        fs::read_to_string(r.path("etc/mnsensor/config.yaml"))? == edited,
        "removal lost the configuration"
    );

    r.dpkg(&["-P"], Path::new("mnsensor"))?;
    for gone in ["var/lib/mnsensor", "var/log/mnsensor", "etc/mnsensor/config.yaml"] {
        ensure!(!r.path(gone).exists(), "purge left /{gone}");
    }
    fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(())
}

/// Whether `binary` holds an ELF object for the BPF machine (EM_BPF = 247) after its own header.
fn embeds_bpf_object(binary: &[u8]) -> bool {
    binary.windows(20).skip(1).any(|w| w.starts_with(b"\x7fELF") && u16::from_le_bytes([w[18], w[19]]) == 247)
}

/// A directory with an empty dpkg database and busybox as the shell of maintainer scripts.
struct ScratchRoot {
    dir: PathBuf,
}

impl ScratchRoot {
    fn new(dir: &Path) -> Result<Self> {
        for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "bin", "sbin", "usr/bin", "usr/sbin", "tmp"] {
            fs::create_dir_all(dir.join(d))?;
        }
        for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
            fs::write(dir.join(f), "")?;
        }
        fs::create_dir_all(dir.join("dev"))?;
        run(Command::new("mknod").args(["-m", "666"]).arg(dir.join("dev/null")).args(["c", "1", "3"]))?;
        let busybox = setup::busybox();
        if !busybox.is_file() {
            bail!("{} is missing: run `cargo xtask setup --vm`", busybox.display());
        }
        fs::copy(&busybox, dir.join("bin/busybox"))?;
        for tool in ["sh", "rm", "mkdir", "chmod", "cat", "test", "true", "echo"] {
            symlink("busybox", dir.join("bin").join(tool))?;
        }
        Ok(Self { dir: dir.to_owned() })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// `dpkg --root`; `--force-depends` because the scratch root holds no other package
    /// (libc6 is the host's).
    fn dpkg(&self, args: &[&str], target: &Path) -> Result<()> {
        run(Command::new("dpkg")
            .arg(format!("--root={}", self.dir.display()))
            .arg("--force-depends")
            .args(args)
            .arg(target))
    }

    fn query(&self, format: &str) -> Result<String> {
        output(Command::new("dpkg-query").arg(format!("--root={}", self.dir.display())).args([
            "-W",
            &format!("-f={format}"),
            "mnsensor",
        ]))
    }
}
