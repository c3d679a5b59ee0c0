//! Reads records back from the ledger in sequence order, following it as it grows: used by
//! the outputs that tail it and by `mnsensor ledger show`.
use std::{
    fs::File,
    io::{self, Read as _},
    path::{Path, PathBuf},
};

use super::{
    frame::{self, Kind, Parsed},
    ledger,
};

/// Most bytes read from a segment at once.
const CHUNK: u64 = 256 << 10;

/// One record read back.
#[derive(Clone, Debug)]
pub struct Entry {
    pub seq: u64,
    pub time_ns: i64,
    pub body: Vec<u8>,
}

/// A reader positioned at a sequence number.
pub struct Reader {
    dir: PathBuf,
    /// Records before this are skipped.
    from: u64,
    /// The segment being read: its first seq and file.
    current: Option<(u64, File)>,
    buf: Vec<u8>,
    at: usize,
    /// Frames in the current segment that could not be read (tampering or a bug).
    pub corrupt: u64,
}

impl Reader {
    /// A reader returning records with `seq >= from` from the ledger directory `dir`.
    pub fn new(dir: &Path, from: u64) -> Self {
        Self { dir: dir.to_owned(), from, current: None, buf: Vec::new(), at: 0, corrupt: 0 }
    }

    /// The next record, or `None` when the reader is at the end of what is written.
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            match frame::parse(&self.buf[self.at..]) {
                Parsed::Frame(f) => {
                    self.at += f.len;
                    if f.kind == Kind::Record && f.seq >= self.from {
                        self.from = f.seq + 1;
                        return Ok(Some(Entry { seq: f.seq, time_ns: f.time_ns, body: f.body.to_vec() }));
                    }
                }
                Parsed::Incomplete => {
                    if self.fill()? == 0 && !self.advance()? {
                        return Ok(None);
                    }
                }
                Parsed::Corrupt(why) => {
                    self.corrupt += 1;
                    tracing::error!(dir = %self.dir.display(), why, next = self.from, "Unreadable ledger frame; skipping to the next segment.");
                    if !self.advance()? {
                        // Stay here; a later segment may appear.
                        self.at = self.buf.len();
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Bytes the reader's buffer holds room for (tests: it stays near one chunk).
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.buf.capacity()
    }

    /// Reads up to [`CHUNK`] more of the current segment; returns the bytes read. An output
    /// that lags behind (a receiver that was down) so holds one chunk, not the rest of a
    /// segment; a frame longer than a chunk is completed over several calls.
    fn fill(&mut self) -> io::Result<usize> {
        let Some((_, file)) = self.current.as_mut() else { return Ok(0) };
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        let before = self.buf.len();
        file.take(CHUNK).read_to_end(&mut self.buf)?;
        Ok(self.buf.len() - before)
    }

    /// Moves to the next segment when there is one (the current one is then complete).
    fn advance(&mut self) -> io::Result<bool> {
        let after = self.current.as_ref().map(|c| c.0);
        let next =
            ledger::segments(&self.dir)?.into_iter().find(|(first, _)| after.is_none_or(|a| *first > a));
        let Some((first, path)) = next else { return Ok(false) };
        // The current segment may have grown before the next one started.
        if self.fill()? > 0 {
            return Ok(true);
        }
        self.open(first, &path)
    }

    /// Opens the segment holding `from` (or the oldest after it).
    fn open_next(&mut self) -> io::Result<bool> {
        let segs = ledger::segments(&self.dir)?;
        let pick = segs.iter().rev().find(|(first, _)| *first <= self.from).or_else(|| segs.first());
        let Some((first, path)) = pick else { return Ok(false) };
        self.open(*first, path)
    }

    /// Opens a segment past its header; `false` while the header is not written yet.
    fn open(&mut self, first: u64, path: &Path) -> io::Result<bool> {
        let mut file = File::open(path)?;
        let mut head = [0u8; frame::SEGMENT_HEAD];
        match file.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        self.buf.clear();
        self.at = 0;
        self.current = Some((first, file));
        Ok(true)
    }
}
