//! Deliver: every output tails the ledger on its own thread with its own persisted cursor
//! (`<state_dir>/cursors/`). A slow or failing output lags (visible in [`Lag`] and in a
//! warning) but never blocks the sealer and never loses a record: it retries from its
//! cursor. One file per output kind; [`open`] makes an exporter from its spec.
pub mod jsonl;
pub mod net;
pub mod otlp;
pub mod severity;
pub mod stdout;
pub mod syslog;
pub mod tls;

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    config::Config,
    seal::{ledger::Shared, reader::Reader},
};

/// One sealed record as the ledger holds it: sequence number and the JSON object (no newline),
/// already redacted and hash-chained.
#[derive(Clone, Debug)]
pub struct Sealed {
    pub seq: u64,
    pub time_ns: i128,
    pub line: Vec<u8>,
}

/// Why an exporter could not deliver a batch.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Try again later (receiver down, timeout, TLS handshake failure, 429/503, UNAVAILABLE...).
    #[error("{0}")]
    Retryable(String),
    /// This batch can never be accepted as it is (e.g. HTTP 400): the driver records the
    /// sequence range it skips in a `sensor.alert` and moves on.
    #[error("{0}")]
    Permanent(String),
}

/// One output: it receives batches of sealed records in sequence order from its own thread.
pub trait Exporter: Send {
    /// The spec it was created from (`stdout`, `jsonl:PATH`, `otlp+grpc://…`, `syslog+tls://…`).
    fn spec(&self) -> &str;
    /// Delivers a batch; Ok means every record in it was accepted by the receiver.
    fn send(&mut self, batch: &[Sealed]) -> Result<(), ExportError>;
    /// SIGHUP: reopen files / reconnect. Default: nothing.
    fn reopen(&mut self) -> Result<(), ExportError> {
        Ok(())
    }
}

/// An output that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The spec names no known output.
    #[error(
        "unknown output {0:?}: expected `stdout`, `jsonl:PATH`, `otlp`, `otlp+grpc://HOST:PORT`, \
         `otlp+http://HOST:PORT/v1/logs` (`grpcs`, `https` for TLS), `syslog+tcp://HOST:PORT` or \
         `syslog+tls://HOST:PORT`"
    )]
    Spec(String),
    #[error(transparent)]
    Otlp(#[from] otlp::OtlpError),
    #[error(transparent)]
    Syslog(#[from] syslog::SyslogError),
    /// The output's file could not be opened.
    #[error("cannot open output file {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    /// The cursor directory or a cursor file could not be used, or the thread not started.
    #[error("cannot set up output {spec}: {source}")]
    Setup { spec: String, source: std::io::Error },
}

/// Makes the exporter for an output spec (`stdout`, `jsonl:PATH`, `otlp…`, `syslog+…`).
pub fn open(spec: &str, config: &Config) -> Result<Box<dyn Exporter>, DeliverError> {
    if spec == "stdout" {
        return Ok(Box::new(stdout::Stdout::new()));
    }
    if let Some(path) = spec.strip_prefix("jsonl:").filter(|p| !p.is_empty()) {
        return Ok(Box::new(jsonl::Jsonl::open(spec, Path::new(path), &config.jsonl)?));
    }
    if spec == "otlp" || spec.starts_with("otlp+") {
        return Ok(Box::new(otlp::Otlp::open(spec, &config.otlp)?));
    }
    if spec.starts_with("syslog+") {
        return Ok(Box::new(syslog::Syslog::open(spec, &config.syslog)?));
    }
    Err(DeliverError::Spec(spec.to_owned()))
}

/// Records per batch handed to an exporter.
const BATCH: usize = 4096;
/// Longest wait between retries of a failing output.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Lag that makes a warning (and how often it repeats).
const LAG_WARN: Duration = Duration::from_secs(10);
/// How often a moving cursor is written to its file.
const CURSOR_EVERY: Duration = Duration::from_millis(200);

/// How far one output is behind the ledger; shared with whoever reports it (heartbeat).
#[derive(Debug)]
pub struct Lag {
    pub spec: String,
    /// The next sequence number this output has not delivered.
    pub next: Arc<AtomicU64>,
    /// Time of the last record it delivered (ns since the epoch).
    pub delivered_time_ns: AtomicI64,
    /// Its last attempt failed.
    pub failing: AtomicBool,
}

/// A lag reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LagReport {
    pub spec: String,
    /// Records sealed but not yet delivered.
    pub records: u64,
    /// Event time between the newest sealed record and the last delivered one.
    pub seconds: u64,
    pub failing: bool,
}

impl Lag {
    /// Reads the lag against the ledger's progress.
    pub fn report(&self, shared: &Shared) -> LagReport {
        let p = shared.progress();
        let next = self.next.load(Ordering::Acquire);
        let records = p.next_seq.saturating_sub(next);
        let delivered = self.delivered_time_ns.load(Ordering::Relaxed);
        let seconds = if records == 0 {
            0
        } else {
            (p.last_time_ns.saturating_sub(delivered) / 1_000_000_000).max(0) as u64
        };
        LagReport { spec: self.spec.clone(), records, seconds, failing: self.failing.load(Ordering::Relaxed) }
    }
}

/// A batch an output rejected for good (`ExportError::Permanent`): reported as a
/// `sensor.alert` by the sealer.
#[derive(Clone, Debug)]
pub struct Rejected {
    pub spec: String,
    pub first: u64,
    pub last: u64,
    pub error: String,
}

/// The running output threads.
pub struct Tails {
    threads: Vec<thread::JoinHandle<()>>,
    lags: Vec<Arc<Lag>>,
    shared: Arc<Shared>,
    reopen: Vec<Arc<AtomicBool>>,
    /// Set at stop: after this instant a failing output gives up (its cursor stays).
    give_up: Arc<Mutex<Option<Instant>>>,
    rejected: Arc<Mutex<Vec<Rejected>>>,
}

impl Tails {
    /// Starts one thread per exporter. Each resumes from its cursor file, or (a new output)
    /// at `start_seq`, the first record of this run.
    pub fn start(
        exporters: Vec<Box<dyn Exporter>>,
        shared: Arc<Shared>,
        state_dir: &Path,
        start_seq: u64,
    ) -> Result<Self, DeliverError> {
        let cursor_dir = state_dir.join("cursors");
        let give_up = Arc::new(Mutex::new(None));
        let rejected = Arc::new(Mutex::new(Vec::new()));
        let mut tails = Self {
            threads: Vec::new(),
            lags: Vec::new(),
            shared: shared.clone(),
            reopen: Vec::new(),
            give_up,
            rejected,
        };
        for exporter in exporters {
            let spec = exporter.spec().to_owned();
            let setup = |source| DeliverError::Setup { spec: spec.clone(), source };
            crate::seal::ledger::create_private_dir(&cursor_dir).map_err(setup)?;
            let cursor = Cursor::new(&cursor_dir, &spec);
            // A cursor beyond the ledger's end belongs to a ledger that was removed: start over.
            let next = cursor.load().map_err(setup)?.filter(|&c| c <= start_seq).unwrap_or(start_seq);
            let lag = Arc::new(Lag {
                spec: spec.clone(),
                next: Arc::new(AtomicU64::new(next)),
                // Up to date as of the start: lag counts from here.
                delivered_time_ns: AtomicI64::new(shared.progress().last_time_ns),
                failing: AtomicBool::new(false),
            });
            shared.register(lag.next.clone());
            let reopen = Arc::new(AtomicBool::new(false));
            let tail = Tail {
                exporter,
                reader: Reader::new(&shared.dir, next),
                shared: shared.clone(),
                cursor,
                lag: lag.clone(),
                reopen: reopen.clone(),
                give_up: tails.give_up.clone(),
                rejected: tails.rejected.clone(),
                warned: None,
            };
            let handle = thread::Builder::new()
                .name(format!("out-{}", tails.threads.len()))
                .spawn(move || tail.run())
                .map_err(setup)?;
            tails.threads.push(handle);
            tails.lags.push(lag);
            tails.reopen.push(reopen);
        }
        Ok(tails)
    }

    /// The lag of every output.
    pub fn lags(&self) -> Vec<LagReport> {
        self.lags.iter().map(|l| l.report(&self.shared)).collect()
    }

    /// The shared lag structs (for a heartbeat).
    pub fn lag_handles(&self) -> &[Arc<Lag>] {
        &self.lags
    }

    /// SIGHUP: every output reopens before its next batch.
    pub fn reopen(&self) {
        for r in &self.reopen {
            r.store(true, Ordering::Release);
        }
        self.shared.wake_all();
    }

    /// Batches rejected for good since the last call.
    pub fn take_rejected(&self) -> Vec<Rejected> {
        std::mem::take(&mut *self.rejected.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Waits (after the ledger was closed) until every output delivered everything, or
    /// `deadline` passed for the ones still failing (their cursors keep the rest).
    pub fn finish(self, deadline: Duration) {
        *self.give_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Instant::now() + deadline);
        let until = Instant::now() + deadline + Duration::from_secs(1);
        for (handle, lag) in self.threads.into_iter().zip(&self.lags) {
            while !handle.is_finished() && Instant::now() < until {
                thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                tracing::error!(output = %lag.spec, "Output still failing at stop; its undelivered records wait in the ledger.");
            }
        }
    }
}

/// An output's persisted position: the next seq it has not delivered.
struct Cursor {
    path: PathBuf,
    saved: Option<u64>,
    saved_at: Instant,
}

impl Cursor {
    fn new(dir: &Path, spec: &str) -> Self {
        let name: String = spec
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
            .take(120)
            .collect();
        Self { path: dir.join(name), saved: None, saved_at: Instant::now() }
    }

    fn load(&self) -> std::io::Result<Option<u64>> {
        match fs::read_to_string(&self.path) {
            Ok(text) => Ok(text.trim().parse().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `next` (atomically: a temporary file renamed over the cursor).
    fn save(&mut self, next: u64, force: bool) {
        if self.saved == Some(next) || (!force && self.saved_at.elapsed() < CURSOR_EVERY) {
            return;
        }
        let tmp = self.path.with_extension("tmp");
        let r = fs::File::create(&tmp)
            .and_then(|mut f| {
                writeln!(f, "{next}")?;
                if force { f.sync_all() } else { Ok(()) }
            })
            .and_then(|()| fs::rename(&tmp, &self.path));
        match r {
            Ok(()) => {
                self.saved = Some(next);
                self.saved_at = Instant::now();
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "Cannot save an output cursor.")
            }
        }
    }
}

struct Tail {
    exporter: Box<dyn Exporter>,
    reader: Reader,
    shared: Arc<Shared>,
    cursor: Cursor,
    lag: Arc<Lag>,
    reopen: Arc<AtomicBool>,
    give_up: Arc<Mutex<Option<Instant>>>,
    rejected: Arc<Mutex<Vec<Rejected>>>,
    /// When the last lag warning was logged.
    warned: Option<Instant>,
}

impl Tail {
    fn run(mut self) {
        let mut batch: Vec<Sealed> = Vec::with_capacity(BATCH);
        loop {
            if self.reopen.swap(false, Ordering::AcqRel)
                && let Err(e) = self.exporter.reopen()
            {
                tracing::error!(output = %self.lag.spec, error = %e, "Output could not reopen.");
            }
            // Read the progress first: when it says closed and nothing is left to read,
            // everything was delivered.
            let progress = self.shared.progress();
            batch.clear();
            let mut bytes = 0;
            while batch.len() < BATCH && bytes < 1 << 20 {
                match self.reader.next_entry() {
                    Ok(Some(e)) => {
                        bytes += e.body.len();
                        batch.push(Sealed { seq: e.seq, time_ns: i128::from(e.time_ns), line: e.body });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(output = %self.lag.spec, error = %e, "Cannot read the ledger.");
                        break;
                    }
                }
            }
            if batch.is_empty() {
                if progress.closed {
                    break;
                }
                self.cursor.save(self.lag.next.load(Ordering::Acquire), false);
                self.shared.wait_beyond(progress.next_seq, Duration::from_millis(500));
                continue;
            }
            if !self.deliver(&batch) {
                break;
            }
            self.warn_lag();
        }
        let next = self.lag.next.load(Ordering::Acquire);
        self.cursor.save(next, true);
    }

    /// Warns (at most every [`LAG_WARN`]) while the output is [`LAG_WARN`] or more behind.
    fn warn_lag(&mut self) {
        if self.warned.is_some_and(|t| t.elapsed() < LAG_WARN) {
            return;
        }
        let lag = self.lag.report(&self.shared);
        if lag.seconds >= LAG_WARN.as_secs() {
            self.warned = Some(Instant::now());
            tracing::warn!(output = %lag.spec, records = lag.records, seconds = lag.seconds, failing = lag.failing, "Output lagging behind the ledger.");
        }
    }

    /// Sends a batch until it is accepted or rejected for good; `false` when the sensor is
    /// stopping and its deadline passed.
    fn deliver(&mut self, batch: &[Sealed]) -> bool {
        let (first, last) = (batch[0].seq, batch[batch.len() - 1].seq);
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.exporter.send(batch) {
                Ok(()) => {
                    if self.lag.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(output = %self.lag.spec, "Output recovered; catching up from its cursor.");
                    }
                    break;
                }
                Err(ExportError::Permanent(error)) => {
                    tracing::error!(output = %self.lag.spec, first, last, %error, "Output rejected records for good; skipping them.");
                    let r = Rejected { spec: self.lag.spec.clone(), first, last, error };
                    self.rejected.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(r);
                    break;
                }
                Err(ExportError::Retryable(error)) => {
                    if !self.lag.failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(output = %self.lag.spec, first, %error, "Output failing; records wait in the ledger.");
                    }
                    self.warn_lag();
                    let give_up = *self.give_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if give_up.is_some_and(|t| Instant::now() >= t) {
                        return false;
                    }
                    thread::sleep(jitter(backoff));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // A SIGHUP while failing (a file moved away, a receiver replaced) is
                    // acted on before the next attempt, not after the batch goes through.
                    if self.reopen.swap(false, Ordering::AcqRel)
                        && let Err(e) = self.exporter.reopen()
                    {
                        tracing::error!(output = %self.lag.spec, error = %e, "Output could not reopen.");
                    }
                }
            }
        }
        let end = &batch[batch.len() - 1];
        self.lag.delivered_time_ns.store(i64::try_from(end.time_ns).unwrap_or(i64::MAX), Ordering::Relaxed);
        self.lag.next.store(last + 1, Ordering::Release);
        self.cursor.save(last + 1, false);
        true
    }
}

/// `d` times a factor in [0.5, 1), so that sensors cut off by the same outage do not all
/// retry at the same instant when the receiver comes back.
fn jitter(d: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}
