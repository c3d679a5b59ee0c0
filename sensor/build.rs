//! Builds the kernel programs (`sensor-ebpf`) and leaves the object in `OUT_DIR` for
//! `include_bytes_aligned!`, so the daemon is one self-contained file.
//!
//! The eBPF crate needs `-Z build-std=core` for `bpfel-unknown-none`. We build it with the
//! toolchain at `MNSENSOR_EBPF_TOOLCHAIN` (default `/usr`: Debian's rustc-web with LLVM 22)
//! and `RUSTC_BOOTSTRAP=1`, set here only, so the userspace crates stay on stable. A
//! developer with a rustup nightly and rust-src sets `MNSENSOR_EBPF_TOOLCHAIN=nightly`
//! (docs/building.md). `AYA_BUILD_SKIP=1` skips the kernel build and embeds an empty object
//! (for `cargo check` and userspace-only unit tests).
use std::{env, fs, path::PathBuf};

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
        .context("building the kernel programs (run `cargo xtask setup` if a tool is missing)")
}
