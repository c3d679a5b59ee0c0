//! Builds the kernel programs (`sensor-ebpf`) and leaves the object in `OUT_DIR` for
//! `include_bytes_aligned!`, so the daemon is one self-contained file.
//!
//! The eBPF crate needs `-Z build-std=core` for `bpfel-unknown-none`. We build it with the
//! toolchain at `MNSENSOR_EBPF_TOOLCHAIN` (default `/usr`: Debian's rustc-web with LLVM 22)
//! and `RUSTC_BOOTSTRAP=1`, set here only, so the userspace crates stay on stable. A
//! developer with a rustup nightly and rust-src sets `MNSENSOR_EBPF_TOOLCHAIN=nightly`
//! (docs/building.md). `AYA_BUILD_SKIP=1` skips the kernel build and embeds an empty object
//! (for `cargo check` and userspace-only unit tests).
//!
//! The object is then stripped of its DWARF (`llvm-objcopy --strip-debug`): the loader and
//! the verifier's line info need only its BTF, which stays. That makes the object 7.7 →
//! 2.0 MB, and the daemon's RSS 2.5 MiB smaller (the loader reads much of the object).
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};
use aya_build::{Package, Toolchain};

fn main() -> Result<()> {
    println!("cargo:rerun-if-env-changed=MNSENSOR_EBPF_TOOLCHAIN");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true") {
        fs::write(out_dir.join("sensor-ebpf"), b"").context("writing the empty object")?;
        return Ok(());
    }
    let toolchain = env::var("MNSENSOR_EBPF_TOOLCHAIN").unwrap_or_else(|_| "/usr".to_owned());
    if toolchain.starts_with('/') {
        // SAFETY: the build script is single-threaded at this point.
        unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no manifest dir")?);
    let root = manifest.parent().context("sensor/ has no parent")?.join("sensor-ebpf");
    let root = root.to_str().context("non-UTF-8 path")?;
    let package = Package { name: "sensor-ebpf", root_dir: root, ..Default::default() };
    aya_build::build_ebpf([package], Toolchain::Custom(&toolchain))
        .context("building the kernel programs (run `cargo xtask setup` if a tool is missing)")?;
    strip_debug(&out_dir.join("sensor-ebpf"))
}

/// Removes the DWARF sections of the object in place. Without an `llvm-objcopy` (Debian's
/// `llvm-22`, which `cargo xtask setup` installs, or one on `PATH`) the object keeps them:
/// it works the same, only larger.
fn strip_debug(object: &Path) -> Result<()> {
    let tools = ["/usr/lib/llvm-22/bin/llvm-objcopy", "llvm-objcopy"];
    for tool in tools {
        match Command::new(tool).arg("--strip-debug").arg(object).status() {
            Ok(s) if s.success() => return Ok(()),
            Ok(s) => anyhow::bail!("`{tool} --strip-debug {}` failed ({s})", object.display()),
            Err(_) => continue,
        }
    }
    println!(
        "cargo:warning=no llvm-objcopy found ({}): the kernel object keeps its debug sections",
        tools.join(", ")
    );
    Ok(())
}
