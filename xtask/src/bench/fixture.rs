//! The files the workloads touch, in a temporary directory removed on drop:
//! `other/plain.dat` (unrelated, 64 KiB), and under `protected/`: `secret.dat` (64 KiB),
//! `big.dat` (64 MiB, read in 4 KiB chunks), `lat/lat-NNNNN` (one per latency probe) and
//! `storm/storm-NN` (the files the rate phases open in turn).
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use super::workload::latency_name;

const SMALL: usize = 64 << 10;
const BIG: usize = 64 << 20;
/// Files of the rate phases' storm: a storm on a file server spreads over many files.
pub const STORM_FILES: usize = 16;

pub struct Fixture {
    pub root: PathBuf,
    pub protected: PathBuf,
    pub other_file: PathBuf,
    pub secret_file: PathBuf,
    pub big_file: PathBuf,
    pub latency_dir: PathBuf,
    pub storm_files: Vec<PathBuf>,
}

impl Fixture {
    /// Creates the tree under the system temporary directory (on this VM: the ext4 root),
    /// with `latency_files` probe files, and reads everything once into the page cache.
    pub fn create(latency_files: usize) -> Result<Self> {
        let root = std::env::temp_dir().join(format!("mnsensor-bench.{}", std::process::id()));
        let protected = root.join("protected");
        let fixture = Self {
            other_file: root.join("other/plain.dat"),
            secret_file: protected.join("secret.dat"),
            big_file: protected.join("big.dat"),
            latency_dir: protected.join("lat"),
            storm_files: (0..STORM_FILES).map(|i| protected.join(format!("storm/storm-{i:02}"))).collect(),
            protected,
            root,
        };
        fs::create_dir_all(fixture.root.join("other"))?;
        fs::create_dir_all(&fixture.latency_dir)?;
        fs::create_dir_all(fixture.protected.join("storm"))?;
        fs::create_dir_all(fixture.root.join("logs"))?;
        write_file(&fixture.other_file, SMALL)?;
        write_file(&fixture.secret_file, SMALL)?;
        write_file(&fixture.big_file, BIG)?;
        for f in &fixture.storm_files {
            fs::write(f, b"storm\n")?;
        }
        for i in 0..latency_files {
            fs::File::create(fixture.latency_dir.join(latency_name(i)))?;
        }
        for f in [&fixture.other_file, &fixture.secret_file, &fixture.big_file] {
            fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        }
        Ok(fixture)
    }

    /// A path for logs and sensor output: outside the protected tree.
    pub fn log(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(name)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.root) {
            eprintln!("xtask: bench: could not remove {}: {e}", self.root.display());
        }
    }
}

fn write_file(path: &Path, len: usize) -> Result<()> {
    let block: Vec<u8> = (0..SMALL).map(|i| (i * 131 % 251) as u8).collect();
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    for _ in 0..len / SMALL {
        f.write_all(&block)?;
    }
    Ok(())
}
