//! The protected set: paths resolved to kernel identities (device, inode).
use std::{os::unix::fs::MetadataExt as _, path::PathBuf};

use sensor_common::path::{InodeKey, PROTECT_TREE, Protected};

/// A protected path that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("protected path {path}: {source}")]
pub struct ProtectError {
    path: PathBuf,
    source: std::io::Error,
}

/// One protected file or directory.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Canonical path.
    pub path: PathBuf,
    pub key: InodeKey,
    pub value: Protected,
}

/// Every protected entry, in the order given.
#[derive(Clone, Debug, Default)]
pub struct ProtectSet {
    entries: Vec<Entry>,
}

/// The kernel's internal encoding of a userspace `dev_t` (`MKDEV`: major << 20 | minor).
pub fn kernel_dev(st_dev: u64) -> u32 {
    (libc::major(st_dev) << 20) | libc::minor(st_dev)
}

impl ProtectSet {
    /// Resolves paths (which must exist) to identities.
    pub fn resolve(paths: &[PathBuf]) -> Result<Self, ProtectError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(paths.len());
        for p in paths {
            let err = |source| ProtectError {
                path: p.clone(),
                source,
            };
            let path = p.canonicalize().map_err(err)?;
            let meta = std::fs::metadata(&path).map_err(err)?;
            let key = InodeKey {
                ino: meta.ino(),
                dev: kernel_dev(meta.dev()),
                _pad: 0,
            };
            if entries.iter().any(|e| e.key == key) {
                continue;
            }
            let rule = entries.len() as u32;
            let flags = if meta.is_dir() { PROTECT_TREE } else { 0 };
            entries.push(Entry {
                path,
                key,
                value: Protected { rule, flags },
            });
        }
        Ok(Self { entries })
    }

    /// The entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The configured path of the entry with this identity.
    pub fn path_of(&self, dev: u32, ino: u64) -> Option<String> {
        self.entries
            .iter()
            .find(|e| e.key.dev == dev && e.key.ino == ino)
            .map(|e| e.path.display().to_string())
    }

    /// Canonical paths, for `sensor.start`.
    pub fn paths(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| e.path.display().to_string())
            .collect()
    }

    /// Whether nothing is protected.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
