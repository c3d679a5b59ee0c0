//! Content hashes (SHA-256) of executables, cached by file identity so that evaluation can
//! ask for them on the event path: an executable is read once until it changes.
use std::{
    fs::File,
    io::{self, Read as _},
    num::NonZeroUsize,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::Path,
    sync::Mutex,
};

use lru::LruCache;
use sha2::{Digest as _, Sha256};

/// Executables whose hash is remembered.
pub const HASH_CACHE_ENTRIES: usize = 4096;

/// What identifies one version of a file: device, inode, size, and both mtime and ctime
/// (the owner can set mtime back with `touch`, never ctime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl FileKey {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// SHA-256 of executables with an LRU cache keyed by [`FileKey`].
pub struct ProgramHasher {
    cache: Mutex<LruCache<FileKey, [u8; 32]>>,
}

impl Default for ProgramHasher {
    fn default() -> Self {
        Self::new(HASH_CACHE_ENTRIES)
    }
}

impl ProgramHasher {
    pub fn new(entries: usize) -> Self {
        Self {
            cache: Mutex::new(LruCache::new(NonZeroUsize::new(entries.max(1)).unwrap_or(NonZeroUsize::MIN))),
        }
    }

    /// The hash of the regular file at `path` (the last component is not followed: the
    /// kernel reports executables by their resolved path).
    pub fn sha256_path(&self, path: &Path) -> io::Result<[u8; 32]> {
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        self.sha256_file(&file)
    }

    /// The hash of an open regular file (e.g. `/proc/PID/exe` opened by the caller).
    pub fn sha256_file(&self, mut file: &File) -> io::Result<[u8; 32]> {
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        let key = FileKey::of(&meta);
        if let Some(hash) = self.cache.lock().ok().and_then(|mut c| c.get(&key).copied()) {
            return Ok(hash);
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        if FileKey::of(&file.metadata()?) != key {
            return Err(io::Error::other("the file changed while it was hashed"));
        }
        let hash: [u8; 32] = hasher.finalize().into();
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(key, hash);
        }
        Ok(hash)
    }

    /// Hashes currently cached.
    pub fn cached(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }
}

/// SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::{ProgramHasher, sha256};
    use crate::policy::model::hex;

    #[test]
    fn hashes_files_and_caches_by_identity() {
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let dir = std::env::temp_dir().join(format!("mnsensor-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("prog");
        std::fs::write(&p, b"abc").unwrap();
        let h = ProgramHasher::new(8);
        assert_eq!(h.sha256_path(&p).unwrap(), sha256(b"abc"));
        assert_eq!(h.cached(), 1);
        assert_eq!(h.sha256_path(&p).unwrap(), sha256(b"abc"));
        assert_eq!(h.cached(), 1, "second call is a cache hit");
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"d").unwrap();
        drop(f);
        assert_eq!(h.sha256_path(&p).unwrap(), sha256(b"abcd"), "a changed file is hashed again");
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(h.sha256_path(&link).is_err(), "symlinks are not followed");
        assert!(h.sha256_path(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
