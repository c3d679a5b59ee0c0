//! Debian kernels from the configured apt suites, cached as
//! `target/vm/kernels/<package>/vmlinuz`.
use std::{fs, path::PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::{
    apt,
    cmd::{step, target_dir},
};

/// Short names and the metapackage whose dependency is the newest image of that series.
/// Image names carry an ABI number that changes, so they are never written down here.
const SERIES: &[(&str, &str)] =
    &[("6.1", "linux-image-cloud-amd64"), ("6.12", "linux-image-6.12-cloud-amd64")];

/// What `vm-test` boots without `--kernel`.
pub const DEFAULT: &[&str] = &["6.1", "6.12"];

pub struct Kernel {
    /// As given: `6.1` or a package name. Names the console log.
    pub name: String,
    pub package: String,
    pub vmlinuz: PathBuf,
}

/// Resolves `name` (a short name or a `linux-image-*` package), downloading it if not cached.
pub fn fetch(name: &str) -> Result<Kernel> {
    let metapackage = match SERIES.iter().find(|(short, _)| *short == name) {
        Some((_, meta)) => Some(*meta),
        None if name.starts_with("linux-image-") || name.starts_with("linux-binary-") => None,
        None => bail!("unknown kernel {name:?}: use 6.1, 6.12 or a linux-image-* package name"),
    };
    apt::with_fresh_lists(&format!("getting kernel {name}"), || {
        let package = match metapackage {
            Some(meta) => apt::kernel_dependency(meta)?,
            None => name.to_owned(),
        };
        let vmlinuz = download(&package)?;
        Ok(Kernel { name: name.to_owned(), package, vmlinuz })
    })
}

fn download(package: &str) -> Result<PathBuf> {
    let dir = target_dir().join("vm/kernels").join(package);
    let vmlinuz = dir.join("vmlinuz");
    if vmlinuz.is_file() {
        step(format!("kernel {package}: cached at {}", vmlinuz.display()));
        return Ok(vmlinuz);
    }
    let debs = target_dir().join("vm/debs").join(package);
    let deb = apt::download(package, &debs)?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Up to 6.12 the image is boot/vmlinuz-<ver>; from 7.x on it is in linux-binary-*.
    let member = apt::extract(
        &deb,
        |m| {
            m.starts_with("./boot/vmlinuz-")
                || (m.starts_with("./usr/lib/modules/") && m.ends_with("/vmlinuz"))
        },
        &vmlinuz,
    )?;
    fs::remove_dir_all(&debs).with_context(|| format!("removing {}", debs.display()))?;
    step(format!("kernel {package}: extracted {member} to {}", vmlinuz.display()));
    Ok(vmlinuz)
}
