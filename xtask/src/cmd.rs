//! Running external commands: every one is printed before it runs, and every failure names
//! the command line.
use std::{
    env, io,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Prints one progress line to stderr.
pub fn step(msg: impl AsRef<str>) {
    eprintln!("xtask: {}", msg.as_ref());
}

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ has a parent").to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` or `<root>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// A `cargo` command (the one that runs us, so the same toolchain) in the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// `RUSTFLAGS=… cargo build -p sensor`: the command line as a shell would show it.
pub fn display(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    let program = cmd.get_program().to_string_lossy();
    // `$CARGO` is a full path into the rustup toolchain; `cargo` reads better.
    parts.push(if program.ends_with("/cargo") { "cargo".into() } else { program.into_owned() });
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` with inherited stdio and fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    step(format!("$ {line}"));
    let status = cmd.status().with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly (not printed, stderr inherited) and returns its stdout.
pub fn output(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{line}`"))?;
    if !out.status.success() {
        bail!("`{line}` failed ({})", out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{line}` printed non-UTF-8"))
}

/// Like [`output`], but a non-zero exit is `Ok(None)` and stderr is discarded: for probes
/// such as `dpkg-query -W` whose failure means "no". A missing program is `Ok(None)` too.
pub fn probe(cmd: &mut Command) -> Result<Option<String>> {
    let line = display(cmd);
    let out = match cmd.stdin(Stdio::null()).stderr(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("could not start `{line}`")),
    };
    Ok(out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Whether we run as root (effective uid 0, from `/proc/self/status`).
pub fn is_root() -> Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).context("no Uid: line")?;
    Ok(uids.split_whitespace().nth(1) == Some("0"))
}
