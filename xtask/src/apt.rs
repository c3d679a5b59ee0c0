//! Debian packages: detection, installation, download and extraction of one file.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::cmd::{self, display, output, probe, run, step};

/// `apt-get update` runs at most once per xtask process.
static UPDATED: AtomicBool = AtomicBool::new(false);

fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// Whether `package` is installed: dpkg's status is exactly `install ok installed`.
pub fn is_installed(package: &str) -> Result<bool> {
    let status = probe(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))?;
    Ok(status.as_deref() == Some("install ok installed"))
}

/// Runs `apt-get update` unless this process already did.
pub fn update_once() -> Result<()> {
    if !UPDATED.swap(true, Ordering::SeqCst) {
        run(apt_get().arg("update"))?;
    }
    Ok(())
}

/// Installs the packages of `packages` that are missing; returns those it installed.
pub fn install_missing(packages: &[&str]) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for package in packages {
        if !is_installed(package)? {
            missing.push((*package).to_owned());
        }
    }
    if missing.is_empty() {
        return Ok(missing);
    }
    ensure!(cmd::is_root()?, "packages missing ({}); run as root to install them", missing.join(" "));
    update_once()?;
    run(apt_get().args(["install", "-y", "--no-install-recommends"]).args(&missing))?;
    Ok(missing)
}

/// Runs `f`; if it fails and the package lists were not refreshed in this process yet (a
/// fresh machine has none; old ones name files that left the mirror), runs `apt-get update`
/// and then `f` once more.
pub fn with_fresh_lists<T>(what: &str, f: impl Fn() -> Result<T>) -> Result<T> {
    f().or_else(|first| {
        if UPDATED.load(Ordering::SeqCst) {
            return Err(first);
        }
        step(format!("{what} failed ({first:#}); refreshing the package lists"));
        update_once()?;
        f()
    })
}

/// The first `linux-image-*` package that the candidate version of `metapackage` depends on.
pub fn kernel_dependency(metapackage: &str) -> Result<String> {
    let text = output(Command::new("apt-cache").args(["show", "--no-all-versions", metapackage]))?;
    parse_kernel_dependency(&text)
        .with_context(|| format!("{metapackage} depends on no linux-image-* package"))
}

fn parse_kernel_dependency(show: &str) -> Option<String> {
    let depends = show.lines().find_map(|l| l.strip_prefix("Depends:"))?;
    depends
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|name| name.starts_with("linux-image-"))
        .map(str::to_owned)
}

/// `apt-get download package` into a fresh `dir`; returns the `.deb`.
pub fn download(package: &str, dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = apt_get();
    cmd.args(["download", package]).current_dir(dir);
    run(&mut cmd)?;
    let deb = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("`{}` left no .deb in {}", display(&cmd), dir.display()))?;
    Ok(deb)
}

/// Extracts the first member of `deb` whose path satisfies `pick` to `dest` (atomically,
/// through `dest.tmp`), mode 0755. Returns the member's path.
pub fn extract(deb: &Path, pick: impl Fn(&str) -> bool, dest: &Path) -> Result<String> {
    let listing = output(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    let member = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|m| pick(m))
        .with_context(|| format!("no matching file in {}", deb.display()))?
        .to_owned();

    let mut fsys = Command::new("dpkg-deb");
    fsys.arg("--fsys-tarfile").arg(deb).stdout(Stdio::piped());
    let line = display(&fsys);
    let mut fsys = fsys.spawn().with_context(|| format!("could not start `{line}`"))?;
    let tmp = dest.with_extension("tmp");
    let file = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let tar_status = Command::new("tar")
        .args(["-xO", &member])
        .stdin(fsys.stdout.take().context("dpkg-deb stdout")?)
        .stdout(file)
        .status()
        .context("could not start `tar -xO`")?;
    let fsys_status = fsys.wait().with_context(|| format!("waiting for `{line}`"))?;
    if !fsys_status.success() || !tar_status.success() {
        bail!("`{line} | tar -xO {member}` failed ({fsys_status}, {tar_status})");
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", tmp.display()))?;
    fs::rename(&tmp, dest).with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    Ok(member)
}

#[cfg(test)]
mod tests {
    use super::parse_kernel_dependency;

    #[test]
    fn kernel_dependency_of_metapackages() {
        let six_one = "Package: linux-image-cloud-amd64\nVersion: 6.1.192-2\n\
            Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)\n";
        assert_eq!(parse_kernel_dependency(six_one).as_deref(), Some("linux-image-6.1.0-56-cloud-amd64"));
        let other = "Depends: linux-base (>= 4.3~), linux-image-6.12.117+deb12-cloud-amd64 (= 1)\n";
        assert_eq!(parse_kernel_dependency(other).as_deref(), Some("linux-image-6.12.117+deb12-cloud-amd64"));
        assert_eq!(parse_kernel_dependency("Depends: linux-base\n"), None);
    }
}
