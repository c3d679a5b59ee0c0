//! The guest's root file system: busybox, `/init` (init.sh), the daemon and the tests,
//! packed as a gzip'd newc cpio by busybox itself (no host cpio needed).
use std::{
    fs,
    io::Write as _,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{display, run, step};

/// The vm-test `/init`.
pub const INIT: &str = include_str!("init.sh");
const APPLETS: &[&str] = &[
    "sh", "mount", "umount", "cat", "echo", "poweroff", "ls", "grep", "sed", "sleep", "true", "false", "ln",
    "mkdir", "rm", "ip", "id", "env", "chmod", "head", "tail", "wc", "seq", "dd", "cp", "mv", "kill", "stat",
    "readlink", "touch", "printf", "uname", "cut", "tr", "sync",
];
const FILES: &[(&str, &str)] = &[
    // Debian's first system users and groups: the policy tests name `daemon` and `bin`.
    // busybox has no `useradd`, so the enforcement tests (tests/tests/enforce.rs) use the
    // fixed users `mnt_vm1`..`mnt_vm4` (each with its own primary group) and the group
    // `mnt_vmgrp`, which lists `mnt_vm1` and `mnt_vm2` as members.
    (
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nbin:x:2:2:bin:/bin:/bin/false\n\
         mnt_vm1:x:60001:60001::/nonexistent:/bin/false\nmnt_vm2:x:60002:60002::/nonexistent:/bin/false\n\
         mnt_vm3:x:60003:60003::/nonexistent:/bin/false\nmnt_vm4:x:60004:60004::/nonexistent:/bin/false\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    ),
    (
        "etc/group",
        "root:x:0:\ndaemon:x:1:\nbin:x:2:\nmnt_vm1:x:60001:\nmnt_vm2:x:60002:\nmnt_vm3:x:60003:\n\
         mnt_vm4:x:60004:\nmnt_vmgrp:x:60100:mnt_vm1,mnt_vm2\nnogroup:x:65534:\nnobody:x:65534:\n",
    ),
    ("etc/nsswitch.conf", "passwd: files\ngroup: files\n"),
];
const DIRS: &[&str] = &["bin", "dev", "etc", "proc", "root", "sys", "tests", "tmp"];

pub struct Contents<'a> {
    pub busybox: &'a Path,
    pub sensor: &'a Path,
    /// `(name, executable)`: copied to `/tests/<name>`.
    pub tests: &'a [(String, PathBuf)],
    /// libtest name filter for every executable (`/etc/vmtest-filter`).
    pub filter: Option<&'a str>,
    /// The text of `/init`: [`INIT`] for vm-test.
    pub init: &'a str,
    /// A tree copied over the root (symbolic links followed), after everything but `/init`.
    pub overlay: Option<&'a Path>,
}

/// Builds `<dir>/initramfs.cpio.gz` from a fresh `<dir>/initramfs/` tree.
pub fn build(dir: &Path, contents: &Contents<'_>) -> Result<PathBuf> {
    let tree = dir.join("initramfs");
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    for d in DIRS {
        mkdir(&tree.join(d))?;
    }
    copy(contents.busybox, &tree.join("bin/busybox"))?;
    for applet in APPLETS {
        let link = tree.join("bin").join(applet);
        symlink("busybox", &link).with_context(|| format!("symlinking {}", link.display()))?;
    }
    copy(contents.sensor, &tree.join("bin/mnsensor"))?;
    for (name, exe) in contents.tests {
        copy(exe, &tree.join("tests").join(name))?;
    }
    for (path, text) in FILES {
        write(&tree.join(path), text, 0o644)?;
    }
    write(&tree.join("etc/vmtest-filter"), contents.filter.unwrap_or(""), 0o644)?;
    if let Some(overlay) = contents.overlay {
        copy_tree(overlay, &tree)?;
    }
    write(&tree.join("init"), contents.init, 0o755)?;

    let cpio = dir.join("initramfs.cpio");
    pack(contents.busybox, &tree, &cpio)?;
    run(Command::new("gzip").args(["-1", "-f"]).arg(&cpio))?;
    let gz = dir.join("initramfs.cpio.gz");
    let size = fs::metadata(&gz).with_context(|| format!("stat {}", gz.display()))?.len();
    step(format!("initramfs: {} ({:.1} MB)", gz.display(), size as f64 / 1e6));
    Ok(gz)
}

/// `find . | busybox cpio -o -H newc > cpio`, with the file list made here.
fn pack(busybox: &Path, tree: &Path, cpio: &Path) -> Result<()> {
    let mut names = String::new();
    list(tree, Path::new("."), &mut names)?;
    let out = fs::File::create(cpio).with_context(|| format!("creating {}", cpio.display()))?;
    let mut cmd = Command::new(busybox);
    cmd.args(["cpio", "-o", "-H", "newc"]).current_dir(tree).stdin(Stdio::piped()).stdout(out);
    let line = format!("{} > {}", display(&cmd), cpio.display());
    step(format!("$ {line}"));
    let mut child = cmd.spawn().with_context(|| format!("could not start `{line}`"))?;
    child
        .stdin
        .take()
        .context("cpio stdin")?
        .write_all(names.as_bytes())
        .with_context(|| format!("feeding file names to `{line}`"))?;
    let status = child.wait().with_context(|| format!("waiting for `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Appends `rel` and everything below it (relative to `root`), one per line, parents first.
fn list(root: &Path, rel: &Path, names: &mut String) -> Result<()> {
    names.push_str(rel.to_str().context("non-UTF-8 path in the initramfs")?);
    names.push('\n');
    let path = root.join(rel);
    if path.is_symlink() || !path.is_dir() {
        return Ok(());
    }
    let mut entries = fs::read_dir(&path)
        .with_context(|| format!("listing {}", path.display()))?
        .map(|e| Ok(e?.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("listing {}", path.display()))?;
    entries.sort();
    for entry in entries {
        list(root, &rel.join(entry), names)?;
    }
    Ok(())
}

/// Copies the files under `from` to the same places under `to`, creating directories.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    mkdir(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry.with_context(|| format!("listing {}", from.display()))?;
        let (src, dest) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dest)?;
        } else {
            copy(&src, &dest)?;
        }
    }
    Ok(())
}

fn mkdir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}
