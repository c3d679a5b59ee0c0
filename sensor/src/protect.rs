//! The protected set: paths resolved to kernel identities (device, inode).
use std::{collections::HashMap, os::unix::fs::MetadataExt as _, path::PathBuf};

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

/// Every protected entry, in the order given, and the files found inside protected
/// directories at start.
#[derive(Clone, Debug, Default)]
pub struct ProtectSet {
    entries: Vec<Entry>,
    /// Files below protected directories (found at start, or created there since): protected
    /// by their own identity too, so that a hard link made elsewhere or a rename out of the
    /// tree still matches. A map: identity checks run per fanotify change record and per
    /// created file.
    members: HashMap<InodeKey, Protected>,
    /// Files that did not fit in `max_inodes`.
    pub overflow: usize,
}

/// The kernel's internal encoding of a userspace `dev_t` (`MKDEV`: major << 20 | minor).
pub fn kernel_dev(st_dev: u64) -> u32 {
    (libc::major(st_dev) << 20) | libc::minor(st_dev)
}

impl ProtectSet {
    /// Resolves paths (which must exist) to identities, and records up to `max_inodes`
    /// entries in all (paths first, then the files found below protected directories).
    pub fn resolve(paths: &[PathBuf], max_inodes: usize) -> Result<Self, ProtectError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(paths.len());
        for p in paths {
            let err = |source| ProtectError { path: p.clone(), source };
            let path = p.canonicalize().map_err(err)?;
            let meta = std::fs::metadata(&path).map_err(err)?;
            let key = InodeKey { ino: meta.ino(), dev: kernel_dev(meta.dev()), _pad: 0 };
            if entries.iter().any(|e| e.key == key) {
                continue;
            }
            let rule = entries.len() as u32;
            let flags = if meta.is_dir() { PROTECT_TREE } else { 0 };
            entries.push(Entry { path, key, value: Protected { rule, flags } });
        }
        let mut set = Self { entries, members: HashMap::new(), overflow: 0 };
        let mut budget = max_inodes.saturating_sub(set.entries.len());
        for e in set.entries.clone() {
            if e.value.flags & PROTECT_TREE != 0 {
                set.walk(&e.path, e.key.dev, e.value.rule, &mut budget);
            }
        }
        Ok(set)
    }

    /// Adds the regular files below `dir` (same device; symlinks not followed).
    fn walk(&mut self, dir: &std::path::Path, dev: u32, rule: u32, budget: &mut usize) {
        let Ok(read) = std::fs::read_dir(dir) else { return };
        for entry in read.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let key = InodeKey { ino: meta.ino(), dev: kernel_dev(meta.dev()), _pad: 0 };
            // A protected directory below this one has its own rule (innermost wins).
            let own_rule = self.entries.iter().any(|e| e.key == key && e.value.flags & PROTECT_TREE != 0);
            if meta.is_dir() && key.dev == dev && !own_rule {
                self.walk(&entry.path(), dev, rule, budget);
            } else if meta.is_file()
                && !self.members.contains_key(&key)
                && !self.entries.iter().any(|e| e.key == key)
            {
                if *budget == 0 {
                    self.overflow += 1;
                    continue;
                }
                *budget -= 1;
                self.members.insert(key, Protected { rule, flags: 0 });
            }
        }
    }

    /// Remembers a file the kernel protected by its inode after start (created in a protected
    /// tree), so identity checks here agree with the kernel's. Bounded like the kernel map.
    pub fn learn(&mut self, key: InodeKey, rule: u32, max_inodes: usize) {
        if self.entries.len() + self.members.len() < max_inodes {
            self.members.entry(key).or_insert(Protected { rule, flags: 0 });
        }
    }

    /// What goes into the kernel's `PROTECTED` map.
    pub fn kernel_entries(&self) -> impl Iterator<Item = (InodeKey, Protected)> + '_ {
        self.entries.iter().map(|e| (e.key, e.value)).chain(self.members.iter().map(|(k, v)| (*k, *v)))
    }

    /// Devices (kernel encoding) the kernel must walk for: those of the protected entries
    /// and of every mount below a protected directory (`/proc/self/mountinfo`).
    pub fn devices(&self) -> Vec<u32> {
        let mut devs: Vec<u32> = self.entries.iter().map(|e| e.key.dev).collect();
        // Bytes: a mount point need not be UTF-8 (a Shift_JIS directory name).
        if let Ok(info) = std::fs::read("/proc/self/mountinfo") {
            for line in info.split(|b| *b == b'\n') {
                // Field 5 is the mount point (octal escapes for spaces and the like).
                let Some(point) = line.split(|b| *b == b' ').nth(4) else { continue };
                let point = unescape_mountinfo(point);
                let inside = self
                    .entries
                    .iter()
                    .any(|e| e.value.flags & PROTECT_TREE != 0 && point.starts_with(&e.path));
                if inside && let Ok(meta) = std::fs::metadata(&point) {
                    devs.push(kernel_dev(meta.dev()));
                }
            }
        }
        devs.sort_unstable();
        devs.dedup();
        devs
    }

    /// The protection rule covering a file, by identity (a protected file, or a file found in
    /// a protected tree at start) or by path (below a protected directory).
    pub fn rule_for(&self, key: InodeKey, path: &std::path::Path) -> Option<u32> {
        let by_identity =
            self.entries.iter().find(|e| e.key == key).map(|e| e.value).or(self.members.get(&key).copied());
        by_identity.map(|v| v.rule).or_else(|| {
            // The innermost protected directory, as the kernel's ancestry walk finds it.
            self.entries
                .iter()
                .filter(|e| e.value.flags & PROTECT_TREE != 0 && path.starts_with(&e.path))
                .max_by_key(|e| e.path.as_os_str().len())
                .map(|e| e.value.rule)
        })
    }

    /// The configured path of protection rule `rule`.
    pub fn rule_path(&self, rule: u32) -> Option<String> {
        self.entries.get(rule as usize).map(|e| crate::event::path::of_os(&e.path))
    }

    /// The entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Canonical paths, for `sensor.start`.
    pub fn paths(&self) -> Vec<String> {
        self.entries.iter().map(|e| crate::event::path::of_os(&e.path)).collect()
    }

    /// Whether nothing is protected.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `/proc/self/mountinfo` writes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape_mountinfo(b: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::unescape_mountinfo;

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape_mountinfo(b"/srv/share\\040jinji"), std::path::Path::new("/srv/share jinji"));
        assert_eq!(unescape_mountinfo(b"/plain"), std::path::Path::new("/plain"));
        let sjis = unescape_mountinfo(b"/srv/\x90l\x8e\x96");
        assert_eq!(std::os::unix::ffi::OsStrExt::as_bytes(sjis.as_os_str()), b"/srv/\x90l\x8e\x96");
    }
}
