//! `mnsensor.seq`: record numbers that only grow within one boot, across sensor restarts.
//!
//! Numbers are contiguous within a run (a gap downstream means a lost record). Across runs
//! they continue from a reservation kept in the state directory (a tmpfs such as /run, so
//! it starts over at boot): the daemon reserves blocks of [`BLOCK`] numbers ahead of use
//! and a new run starts after the last reservation, so even a crash never reuses a number.
use std::{
    fs::{self, OpenOptions},
    io::{Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

/// Numbers reserved per write of the state file.
pub const BLOCK: u64 = 1 << 20;

/// A sequence state file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use sequence state file {path}: {source}")]
pub struct SeqError {
    path: PathBuf,
    source: std::io::Error,
}

/// The sequence counter.
pub struct Seq {
    next: u64,
    reserved_until: u64,
    path: PathBuf,
}

impl Seq {
    /// Opens (or creates) the state in `dir` and reserves the first block.
    pub fn open(dir: &Path) -> Result<Self, SeqError> {
        let path = dir.join("seq");
        let err = |source| SeqError { path: path.clone(), source };
        fs::create_dir_all(dir).map_err(err)?;
        let start = reserve(&path, None).map_err(err)?;
        Ok(Self { next: start, reserved_until: start + BLOCK, path })
    }

    /// The next number.
    pub fn take(&mut self) -> Result<u64, SeqError> {
        if self.next >= self.reserved_until {
            let start = reserve(&self.path, Some(self.next))
                .map_err(|source| SeqError { path: self.path.clone(), source })?;
            self.next = self.next.max(start);
            self.reserved_until = self.next + BLOCK;
        }
        let n = self.next;
        self.next += 1;
        Ok(n)
    }
}

/// Under an exclusive lock: reads the reserved end `r` (0 when new), writes
/// `max(r, from) + BLOCK`, returns `max(r, from)`.
fn reserve(path: &Path, from: Option<u64>) -> std::io::Result<u64> {
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    // SAFETY: valid fd for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let reserved: u64 = text.trim().parse().unwrap_or(0);
    let start = reserved.max(from.unwrap_or(0));
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", start + BLOCK)?;
    file.sync_data()?;
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, Seq};

    #[test]
    fn grows_across_runs() {
        let dir = std::env::temp_dir().join(format!("mnsensor-seq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut a = Seq::open(&dir).unwrap();
        assert_eq!(a.take().unwrap(), 0);
        assert_eq!(a.take().unwrap(), 1);
        // A second run (or a restart after a crash) starts after the first run's reservation.
        let mut b = Seq::open(&dir).unwrap();
        assert_eq!(b.take().unwrap(), BLOCK);
        // Crossing a block boundary reserves the next block beyond both runs.
        a.next = a.reserved_until;
        let n = a.take().unwrap();
        assert!(n >= 2 * BLOCK, "{n}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
