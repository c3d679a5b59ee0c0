//! The ledger writer: appends hash-chained frames ([`super::frame`]) to segment files under
//! `<state_dir>/ledger/`, signs a checkpoint every N records or T seconds, commits in
//! groups (a background thread fsyncs every `fsync_interval_ms`), repairs a torn tail at
//! open, and keeps the directory under `max_bytes`.
//!
//! Outputs read the segments through [`super::reader`]; [`Shared`] tells them how far the
//! ledger is written and wakes them on every write.
use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use ed25519_dalek::{Signer as _, SigningKey};

use super::frame::{self, FINAL, Hash, Kind, Parsed};

/// Ledger settings (config `ledger:`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// A new segment starts once the current one reaches this size.
    pub segment_bytes: u64,
    /// Most bytes all segments may take together.
    pub max_bytes: u64,
    /// Group commit: how often written records are fsynced.
    pub fsync_interval: Duration,
    /// A checkpoint is signed after this many records...
    pub checkpoint_records: u64,
    /// ...or this long after the previous one, whichever comes first.
    pub checkpoint_interval: Duration,
}

/// A ledger that could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot use ledger {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("ledger segment {path} does not start with a ledger header")]
    Header { path: PathBuf },
}

/// How far the ledger is written, shared with the outputs that tail it.
#[derive(Debug)]
pub struct Shared {
    /// The ledger directory.
    pub dir: PathBuf,
    progress: Mutex<Progress>,
    wake: Condvar,
    /// Per output: the next sequence number it has not delivered (registered by the tails).
    cursors: Mutex<Vec<Arc<AtomicU64>>>,
}

/// What is written so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// The sequence number after the last written record.
    pub next_seq: u64,
    /// Time of the last written record (ns since the epoch).
    pub last_time_ns: i64,
    /// The ledger is closed: nothing more will be written.
    pub closed: bool,
}

impl Shared {
    /// The current progress.
    pub fn progress(&self) -> Progress {
        *self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits up to `timeout` until more than `seq` records are written or the ledger closes.
    pub fn wait_beyond(&self, seq: u64, timeout: Duration) -> Progress {
        let guard = self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, timeout, |p| p.next_seq <= seq && !p.closed)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard
    }

    /// Registers an output's delivery cursor (the next seq it has not delivered): segments
    /// are removed first once every registered output is past them.
    pub fn register(&self, cursor: Arc<AtomicU64>) {
        self.cursors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(cursor);
    }

    /// The lowest delivery cursor (everything below it reached every output).
    fn delivered(&self) -> u64 {
        let cursors = self.cursors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cursors.iter().map(|c| c.load(Ordering::Acquire)).min().unwrap_or(u64::MAX)
    }

    /// Wakes every waiting output (e.g. to reopen).
    pub fn wake_all(&self) {
        self.wake.notify_all();
    }

    fn publish(&self, update: impl FnOnce(&mut Progress)) {
        update(&mut self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        self.wake.notify_all();
    }
}

/// What opening found about the previous run.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// Sequence number of the last record before this run (none: a new ledger).
    pub last_seq: Option<u64>,
    /// Time of the last frame written before this run.
    pub last_time_ns: i64,
    /// The previous run ended with a final checkpoint (a clean stop).
    pub clean: bool,
    /// Bytes cut from a torn tail, the segment they were in, and why.
    pub cut: Option<(u64, String, &'static str)>,
}

/// Records that did not stay in the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Undelivered segments removed to stay under `max_bytes` (records `first..=last`).
    Pruned { first: u64, last: u64 },
    /// Records that could not be written at all (disk full or I/O error).
    Unwritten { first: u64, last: u64, error: String },
}

/// The ledger writer.
pub struct Ledger {
    dir: PathBuf,
    settings: Settings,
    key: SigningKey,
    file: File,
    /// Segments on disk, oldest first: (first seq, bytes). The last one is being written.
    segments: VecDeque<(u64, u64)>,
    total_bytes: u64,
    /// Frames encoded but not yet written.
    buf: Vec<u8>,
    head: Hash,
    written_head: Hash,
    next_seq: u64,
    written_next: u64,
    last_time: i64,
    since_checkpoint: u64,
    checkpoint_at: Instant,
    /// Seqs assigned but never written; a Skip frame goes before the next frames.
    unwritten: Option<(u64, u64)>,
    /// The Skip frame for `unwritten` is in `buf`.
    skip_in_buf: bool,
    dropped: Vec<Dropped>,
    shared: Arc<Shared>,
    sync: Option<(mpsc::Sender<File>, thread::JoinHandle<()>)>,
}

/// The ledger directory of a state directory.
pub fn dir_of(state_dir: &Path) -> PathBuf {
    state_dir.join("ledger")
}

/// Segment files in `dir`, oldest first: (first seq, path).
pub fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| frame::segment_seq(&e.file_name().to_string_lossy()).map(|s| (s, e.path())))
        .collect();
    out.sort();
    Ok(out)
}

/// Creates a directory (and parents) with mode 0700.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

impl Ledger {
    /// Opens the ledger in `<state_dir>/ledger/`, repairing a torn tail.
    pub fn open(
        state_dir: &Path,
        settings: Settings,
        key: SigningKey,
    ) -> Result<(Self, Recovery), LedgerError> {
        let dir = dir_of(state_dir);
        let io_at = |path: &Path| {
            let path = path.to_owned();
            move |source| LedgerError::Io { path, source }
        };
        create_private_dir(&dir).map_err(io_at(&dir))?;
        let mut found = segments(&dir).map_err(io_at(&dir))?;
        let mut recovery = Recovery::default();
        // A segment whose header was torn (a crash while starting it) holds nothing.
        while let Some((_, path)) = found.last() {
            let len = fs::metadata(path).map_err(io_at(path))?.len();
            if len >= frame::SEGMENT_HEAD as u64 || found.len() == 1 {
                break;
            }
            fs::remove_file(path).map_err(io_at(path))?;
            recovery.cut = Some((len, path.display().to_string(), "torn segment header"));
            found.pop();
        }
        let mut segments: VecDeque<(u64, u64)> = VecDeque::new();
        for (first, path) in &found {
            segments.push_back((*first, fs::metadata(path).map_err(io_at(path))?.len()));
        }
        let (file, head, next_seq) = match found.last() {
            None => {
                let file = new_segment(&dir, 0, &[0; 32]).map_err(io_at(&dir))?;
                segments.push_back((0, frame::SEGMENT_HEAD as u64));
                (file, [0; 32], 0)
            }
            Some((first, path)) => {
                let tail = scan_tail(path).map_err(io_at(path))?;
                let (_, prev) = tail.header.ok_or_else(|| LedgerError::Header { path: path.clone() })?;
                let file = OpenOptions::new().append(true).open(path).map_err(io_at(path))?;
                if tail.good < tail.len {
                    file.set_len(tail.good).and_then(|()| file.sync_all()).map_err(io_at(path))?;
                    recovery.cut = Some((tail.len - tail.good, path.display().to_string(), tail.why));
                    if let Some(last) = segments.back_mut() {
                        last.1 = tail.good;
                    }
                }
                recovery.last_seq = tail.last_seq.or_else(|| first.checked_sub(1));
                recovery.last_time_ns = tail.last_time;
                // A segment started just before the stop holds no frame: the time is in the
                // one before it.
                if tail.head.is_none()
                    && let Some((_, before)) = found.len().checked_sub(2).map(|i| &found[i])
                {
                    recovery.last_time_ns = scan_tail(before).map_or(0, |t| t.last_time);
                }
                recovery.clean = tail.clean;
                (file, tail.head.unwrap_or(prev), tail.last_seq.map_or(*first, |s| s + 1))
            }
        };
        let total_bytes = segments.iter().map(|s| s.1).sum();
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            progress: Mutex::new(Progress { next_seq, last_time_ns: recovery.last_time_ns, closed: false }),
            wake: Condvar::new(),
            cursors: Mutex::new(Vec::new()),
        });
        let sync = start_sync(&file, settings.fsync_interval).map_err(io_at(&dir))?;
        let ledger = Self {
            dir,
            settings,
            key,
            file,
            segments,
            total_bytes,
            buf: Vec::with_capacity(1 << 18),
            head,
            written_head: head,
            next_seq,
            written_next: next_seq,
            last_time: recovery.last_time_ns,
            since_checkpoint: 0,
            checkpoint_at: Instant::now(),
            unwritten: None,
            skip_in_buf: false,
            dropped: Vec::new(),
            shared,
            sync: Some(sync),
        };
        Ok((ledger, recovery))
    }

    /// The progress shared with the outputs.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes the segments take on disk (written frames only).
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Appends a record (JSON object, already redacted) with the next sequence number.
    pub fn append(&mut self, time_ns: i64, body: &[u8]) -> u64 {
        if let Some((first, last)) = self.unwritten
            && !self.skip_in_buf
        {
            self.head =
                frame::encode(&mut self.buf, &self.head, Kind::Skip, last, time_ns, &first.to_le_bytes());
            self.skip_in_buf = true;
        }
        let seq = self.next_seq;
        self.head = frame::encode(&mut self.buf, &self.head, Kind::Record, seq, time_ns, body);
        self.next_seq += 1;
        self.last_time = time_ns;
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.settings.checkpoint_records {
            self.checkpoint(0);
        }
        if self.buf.len() >= 1 << 18 {
            self.flush();
        }
        seq
    }

    /// Encodes a signed checkpoint over the chain so far.
    fn checkpoint(&mut self, flags: u8) {
        let seq = self.next_seq.saturating_sub(1);
        let time = now_ns();
        let msg = frame::checkpoint_message(seq, time, &self.head, flags);
        let mut body = vec![flags];
        body.extend_from_slice(&self.key.sign(&msg).to_bytes());
        self.head = frame::encode(&mut self.buf, &self.head, Kind::Checkpoint, seq, time, &body);
        self.since_checkpoint = 0;
        self.checkpoint_at = Instant::now();
    }

    /// Writes the encoded frames to the segment (the page cache; the sync thread makes them
    /// durable) and wakes the outputs. Starts a new segment or removes old ones as needed.
    /// Never fails: what cannot be written is reported by [`Self::take_dropped`].
    pub fn flush(&mut self) {
        if self.since_checkpoint > 0 && self.checkpoint_at.elapsed() >= self.settings.checkpoint_interval {
            self.checkpoint(0);
        }
        if self.buf.is_empty() {
            return;
        }
        let need = self.buf.len() as u64;
        if self.total_bytes + need > self.settings.max_bytes {
            self.make_room(need);
        }
        let mut attempt = self.write_buf();
        // Disk full: remove old segments (delivered ones first) until the batch fits.
        while let Err(e) = &attempt
            && e.raw_os_error() == Some(libc::ENOSPC)
            && self.make_room(u64::MAX)
        {
            attempt = self.write_buf();
        }
        match attempt {
            Ok(()) => {
                self.written_head = self.head;
                self.written_next = self.next_seq;
                self.unwritten = None;
                self.skip_in_buf = false;
                let (next_seq, last_time_ns) = (self.next_seq, self.last_time);
                self.shared.publish(|p| {
                    p.next_seq = next_seq;
                    p.last_time_ns = last_time_ns;
                });
                if self.segments.back().is_some_and(|s| s.1 >= self.settings.segment_bytes) {
                    self.rotate();
                }
            }
            Err(e) => {
                // Nothing of the batch stays: the chain continues from the last written frame
                // and a Skip frame will name the lost numbers.
                self.buf.clear();
                self.head = self.written_head;
                self.skip_in_buf = false;
                if self.next_seq > self.written_next {
                    let (first, last) = (self.written_next, self.next_seq - 1);
                    self.unwritten = Some((self.unwritten.map_or(first, |u| u.0), last));
                    self.written_next = self.next_seq;
                    tracing::error!(first, last, error = %e, "Cannot write the ledger; these records are lost.");
                    self.dropped.push(Dropped::Unwritten { first, last, error: e.to_string() });
                }
                self.since_checkpoint = 0;
            }
        }
    }

    /// Writes the buffer; on failure cuts the segment back to its last whole frame.
    fn write_buf(&mut self) -> io::Result<()> {
        let Some(seg) = self.segments.back_mut() else { return Ok(()) };
        match self.file.write_all(&self.buf) {
            Ok(()) => {
                seg.1 += self.buf.len() as u64;
                self.total_bytes += self.buf.len() as u64;
                self.buf.clear();
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(seg.1);
                Err(e)
            }
        }
    }

    /// Starts a new segment at the next sequence number.
    fn rotate(&mut self) {
        let first = self.next_seq;
        match new_segment(&self.dir, first, &self.head) {
            Ok(file) => {
                if let Some((tx, _)) = &self.sync
                    && let Ok(clone) = file.try_clone()
                {
                    let _ = tx.send(clone);
                }
                self.file = file;
                self.segments.push_back((first, frame::SEGMENT_HEAD as u64));
                self.total_bytes += frame::SEGMENT_HEAD as u64;
            }
            Err(e) => {
                // Keep writing the current segment; try again after the next write.
                tracing::warn!(error = %e, "Cannot start a new ledger segment.");
                let _ = fs::remove_file(self.dir.join(frame::segment_name(first)));
            }
        }
    }

    /// Removes the oldest segments until `need` more bytes fit (`u64::MAX`: at least one):
    /// fully delivered ones first, then undelivered ones (reported as [`Dropped::Pruned`]).
    /// Returns whether anything was removed.
    fn make_room(&mut self, need: u64) -> bool {
        let delivered = self.shared.delivered();
        let mut removed = false;
        while self.segments.len() > 1 {
            let fits = need != u64::MAX && self.total_bytes.saturating_add(need) <= self.settings.max_bytes;
            if fits || (need == u64::MAX && removed) {
                break;
            }
            let (first, bytes) = self.segments[0];
            let last = self.segments[1].0.saturating_sub(1);
            let path = self.dir.join(frame::segment_name(first));
            if let Err(e) = fs::remove_file(&path) {
                tracing::error!(path = %path.display(), error = %e, "Cannot remove a ledger segment.");
                break;
            }
            self.segments.pop_front();
            self.total_bytes -= bytes;
            removed = true;
            if last >= delivered && first <= last {
                let first = first.max(delivered);
                tracing::error!(first, last, "Ledger full: undelivered records removed.");
                self.dropped.push(Dropped::Pruned { first, last });
            }
        }
        removed
    }

    /// What did not stay in the ledger since the last call.
    pub fn take_dropped(&mut self) -> Vec<Dropped> {
        std::mem::take(&mut self.dropped)
    }

    /// Clean stop: a final checkpoint, written and fsynced; the outputs are told nothing
    /// more comes.
    pub fn close(&mut self) {
        self.checkpoint(FINAL);
        self.flush();
        if let Err(e) = self.file.sync_all() {
            tracing::error!(error = %e, "Cannot fsync the ledger at stop.");
        }
        if let Some((tx, handle)) = self.sync.take() {
            drop(tx);
            let _ = handle.join();
        }
        self.shared.publish(|p| p.closed = true);
    }
}

/// Creates a segment file (0600) with its header.
fn new_segment(dir: &Path, first: u64, prev: &Hash) -> io::Result<File> {
    let path = dir.join(frame::segment_name(first));
    let mut file = OpenOptions::new().append(true).create_new(true).mode(0o600).open(&path)?;
    if let Err(e) = file.write_all(&frame::segment_head(first, prev)) {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    // The new name must survive a power loss too.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(file)
}

/// The fsync thread: syncs the segment being written every `every`, and a finished segment
/// once when the next one starts.
fn start_sync(file: &File, every: Duration) -> io::Result<(mpsc::Sender<File>, thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<File>();
    let mut current = file.try_clone()?;
    let handle = thread::Builder::new().name("ledger-sync".into()).spawn(move || {
        loop {
            match rx.recv_timeout(every) {
                Ok(next) => {
                    let _ = current.sync_data();
                    current = next;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = current.sync_data();
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = current.sync_data();
                    return;
                }
            }
        }
    })?;
    Ok((tx, handle))
}

/// The end of the last segment as found at open.
struct Tail {
    header: Option<(u64, Hash)>,
    len: u64,
    /// Offset after the last whole, valid frame.
    good: u64,
    why: &'static str,
    head: Option<Hash>,
    last_seq: Option<u64>,
    last_time: i64,
    clean: bool,
}

fn scan_tail(path: &Path) -> io::Result<Tail> {
    let bytes = fs::read(path)?;
    let mut t = Tail {
        header: frame::parse_segment_head(&bytes),
        len: bytes.len() as u64,
        good: frame::SEGMENT_HEAD as u64,
        why: "",
        head: None,
        last_seq: None,
        last_time: 0,
        clean: false,
    };
    let Some((_, mut prev)) = t.header else { return Ok(t) };
    let mut at = frame::SEGMENT_HEAD;
    while at < bytes.len() {
        match frame::parse(&bytes[at..]) {
            Parsed::Frame(f) if frame::chain(&prev, f.kind, f.seq, f.time_ns, f.body) == f.hash => {
                prev = f.hash;
                t.head = Some(f.hash);
                t.last_time = f.time_ns;
                t.clean = f.kind == Kind::Checkpoint && f.body.first() == Some(&FINAL);
                if f.kind != Kind::Checkpoint {
                    t.last_seq = Some(f.seq);
                }
                at += f.len;
                t.good = at as u64;
            }
            Parsed::Frame(_) => {
                t.why = "frame does not continue the chain";
                break;
            }
            Parsed::Incomplete => {
                t.why = "partial frame";
                break;
            }
            Parsed::Corrupt(why) => {
                t.why = why;
                break;
            }
        }
    }
    Ok(t)
}

/// Wall-clock nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
