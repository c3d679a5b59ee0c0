//! The permission responder: `FAN_OPEN_PERM` | `FAN_OPEN_EXEC_PERM` (and optionally
//! `FAN_ACCESS_PERM`) on protected trees, decided by a daemon callback under a hard deadline.
//!
//! Threads:
//! * the **responder thread** (`mnsensor-fan-perm`) owns the permission group and a FID
//!   notification group that tracks new directories. It reads events, answers this process's
//!   own events at once (the daemon must never wait on itself), hands the others to workers,
//!   and answers each one with the worker's verdict or, when the deadline passes first, with
//!   the fail mode. It never runs daemon code and never opens files in the trees (only
//!   directories, which are not intercepted: the mask has no `FAN_ONDIR`).
//! * **worker threads** (`mnsensor-fan-decide-N`) run the callback. A slow callback only ties
//!   up its worker; the deadline is kept by the responder thread regardless. A request waiting
//!   for a free worker expires like any other.
//!
//! The deadline runs from when the event is read from the queue. Each event's descriptor is
//! kept until its answer is written (the kernel matches answers by descriptor), at most
//! `max_pending` at once; past that, new events get the fail mode immediately.
use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    panic::AssertUnwindSafe,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc as std_mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{
    FanotifyError, init_fd_group, init_fid_group,
    record::{self, RawEvent},
    sys,
    tree::{Group, Tree},
};

/// A decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// What to answer when no decision arrives in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// Allow (availability first; the default).
    FailOpen,
    /// Deny (`EPERM` to the caller).
    FailClosed,
}

impl FailMode {
    fn verdict(self) -> Verdict {
        match self {
            Self::FailOpen => Verdict::Allow,
            Self::FailClosed => Verdict::Deny,
        }
    }
}

/// Which permission is asked (one bit per event: permission events are never merged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PermMask {
    /// `FAN_OPEN_PERM`.
    pub open: bool,
    /// `FAN_OPEN_EXEC_PERM`: the open of `execve(2)`/`execveat(2)`/`uselib(2)`.
    pub exec: bool,
    /// `FAN_ACCESS_PERM`: a read (`read(2)`, `readv`, `sendfile`, ... ).
    pub access: bool,
}

impl PermMask {
    fn from_mask(m: u64) -> Self {
        Self {
            open: m & libc::FAN_OPEN_PERM != 0,
            exec: m & libc::FAN_OPEN_EXEC_PERM != 0,
            access: m & libc::FAN_ACCESS_PERM != 0,
        }
    }
}

/// One permission question, from the event and its descriptor.
#[derive(Clone, Debug)]
pub struct PermissionRequest {
    /// The asking process (thread-group id; 0 if outside our pid namespace).
    pub pid: u32,
    /// The protected file's name inside the trees, which the decision is about: the name
    /// opened when it is one of the file's in-tree names, else the file's first in-tree name
    /// (a hard link elsewhere, a bind mount, another mount of the filesystem, another mount
    /// namespace reach the same file under another name).
    pub path: PathBuf,
    /// The name the process opened, as `/proc/self/fd` shows it.
    pub opened: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// `st_mode`, `st_uid`, `st_gid`, `st_nlink` of the file.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub mask: PermMask,
    /// When the event was read; the deadline counts from here.
    pub received: Instant,
}

/// Something the daemon should alert on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The callback did not answer within the deadline; `applied` (the fail mode) was used.
    DeadlineExpired { pid: u32, path: PathBuf, applied: Verdict },
    /// Too many requests were waiting; `applied` (the fail mode) was used at once.
    Overloaded { pid: u32, path: PathBuf, applied: Verdict },
    /// The callback panicked; `applied` (the fail mode) was used.
    DecisionPanicked { pid: u32, path: PathBuf, applied: Verdict },
    /// A queue overflowed: on the permission group (its queue is unlimited, so not
    /// expected) permission events were allowed unasked by the kernel; on the directory
    /// tracker, new directories may have been missed (the trees are walked again).
    QueueOverflow,
    /// A directory in a protected tree could not be marked: opens in it are not intercepted.
    Unwatched { path: PathBuf },
    /// A system call failed in the responder thread.
    Error { message: String },
}

/// Responder settings.
#[derive(Clone, Copy, Debug)]
pub struct ResponderOptions {
    /// How long the callback has (default 200 ms).
    pub deadline: Duration,
    /// The answer when it is late (default [`FailMode::FailOpen`]).
    pub fail_mode: FailMode,
    /// Also intercept reads (`FAN_ACCESS_PERM`): one request per read call, expensive.
    pub access_perm: bool,
    /// Threads running the callback (default 2, at least 1).
    pub workers: usize,
    /// Requests held at once before new ones get the fail mode at once (default 256).
    pub max_pending: usize,
    /// Most marked objects: directories and files (default [`super::responder_mark_limit`]).
    pub max_marks: usize,
    /// How long the callback's owner may reuse a decision (default 1 s).
    pub decision_cache: Duration,
}

impl Default for ResponderOptions {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(200),
            decision_cache: Duration::from_secs(1),
            fail_mode: FailMode::FailOpen,
            access_perm: false,
            workers: 2,
            max_pending: 256,
            max_marks: super::responder_mark_limit(),
        }
    }
}

/// The decision callback.
pub type Decide = Arc<dyn Fn(&PermissionRequest) -> Verdict + Send + Sync>;

/// What the reader thread knows of a permission event before it reads the file's name.
#[derive(Clone, Copy, Debug)]
pub struct QuickRequest {
    pub pid: u32,
    pub dev: u64,
    pub ino: u64,
    pub mask: PermMask,
    /// When the event was read.
    pub received: Instant,
}

/// A decision the reader thread makes itself, before reading the file's name: it must not
/// block (answers already known only). `None` hands the event to a worker and [`Decide`].
pub type Quick = Arc<dyn Fn(&QuickRequest) -> Option<Verdict> + Send + Sync>;

/// Decision counters (monotonic; each is incremented just before its answer is written, so a
/// caller that saw the effect of an answer also sees it counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionCounts {
    /// Allowed by the callback.
    pub allowed: u64,
    /// Denied by the callback.
    pub denied: u64,
    /// Answered with the fail mode because the deadline passed.
    pub expired: u64,
    /// Answered with the fail mode at once (overload or callback panic).
    pub failed: u64,
    /// This process's own events, allowed at once.
    pub own: u64,
    /// Allowed while shutting down.
    pub shutdown: u64,
    /// Notices dropped because the channel was full.
    pub notices_dropped: u64,
}

#[derive(Default)]
struct Counters {
    allowed: AtomicU64,
    denied: AtomicU64,
    expired: AtomicU64,
    failed: AtomicU64,
    own: AtomicU64,
    shutdown: AtomicU64,
    notices_dropped: AtomicU64,
}

struct Shared {
    stop: AtomicBool,
    wake: OwnedFd,
    counters: Counters,
}

/// Capacity of the notice channel.
const NOTICE_CAPACITY: usize = 1024;
const BUF_WORDS: usize = 64 * 1024 / 8;

/// A running permission responder. Stops (answering everything pending with `FAN_ALLOW`)
/// on [`stop`](Self::stop) or drop.
pub struct Responder {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    notices: Option<mpsc::Receiver<Notice>>,
}

impl Responder {
    /// Marks `trees` and starts answering. Errors (unsupported kernel, unusable path, mark
    /// limit) come back before any thread is started; on error no mark remains.
    pub fn start(trees: &[PathBuf], opts: ResponderOptions, decide: Decide) -> Result<Self, FanotifyError> {
        Self::start_with_quick(trees, opts, decide, None)
    }

    /// [`Self::start`] with a [`Quick`] answer tried on the reader thread first.
    pub fn start_with_quick(
        trees: &[PathBuf],
        opts: ResponderOptions,
        decide: Decide,
        quick: Option<Quick>,
    ) -> Result<Self, FanotifyError> {
        let perm_fd = init_fd_group(libc::FAN_CLASS_CONTENT, libc::FAN_UNLIMITED_QUEUE)?;
        let (track_fd, features) = init_fid_group()?;
        // Never FAN_ONDIR here: the responder thread opens directories while walking.
        let mut perm = libc::FAN_OPEN_PERM | libc::FAN_OPEN_EXEC_PERM;
        if opts.access_perm {
            perm |= libc::FAN_ACCESS_PERM;
        }
        let mut track = libc::FAN_CREATE
            | libc::FAN_MOVED_FROM
            | libc::FAN_MOVED_TO
            | libc::FAN_DELETE
            | libc::FAN_DELETE_SELF
            | libc::FAN_ONDIR;
        if features.target_fid_and_rename {
            track |= libc::FAN_RENAME;
        }
        let groups = vec![
            Group {
                fd: perm_fd,
                dir_mask: perm | libc::FAN_EVENT_ON_CHILD,
                file_mask: perm,
                needs: ("FAN_OPEN_EXEC_PERM", "5.0"),
            },
            Group {
                fd: track_fd,
                dir_mask: track,
                file_mask: 0,
                needs: ("FID directory events (FAN_CREATE/FAN_MOVED_TO)", "5.1"),
            },
        ];
        let tree = Tree::new(groups, features.target_fid_and_rename, trees, opts.max_marks, true)?;
        let wake = sys::eventfd().map_err(FanotifyError::sys("eventfd"))?;
        let shared = Arc::new(Shared { stop: AtomicBool::new(false), wake, counters: Counters::default() });
        let (notice_tx, notices) = mpsc::channel(NOTICE_CAPACITY);
        let (job_tx, job_rx) = std_mpsc::channel::<Job>();
        let (verdict_tx, verdict_rx) = std_mpsc::channel::<(u64, Option<Verdict>)>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for i in 0..opts.workers.max(1) {
            let job_rx = Arc::clone(&job_rx);
            let verdict_tx = verdict_tx.clone();
            let decide = Arc::clone(&decide);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("mnsensor-fan-decide-{i}"))
                .spawn(move || worker(&job_rx, &verdict_tx, &*decide, &shared))
                .map_err(FanotifyError::sys("spawn decision worker"))?;
        }
        drop(verdict_tx);
        let mut state = State {
            tree,
            shared: Arc::clone(&shared),
            opts,
            own_pid: std::process::id(),
            pending: BTreeMap::new(),
            next_id: 0,
            jobs: Some(job_tx),
            verdicts: verdict_rx,
            notices: notice_tx,
            quick,
        };
        tracing::debug!(marked = state.tree.len(), ?features, "fanotify responder ready.");
        let thread = std::thread::Builder::new()
            .name("mnsensor-fan-perm".into())
            .spawn(move || state.run())
            .map_err(FanotifyError::sys("spawn responder thread"))?;
        Ok(Self { shared, thread: Some(thread), notices: Some(notices) })
    }

    /// The notice channel (available once; later calls return `None`).
    pub fn notices(&mut self) -> Option<mpsc::Receiver<Notice>> {
        self.notices.take()
    }

    /// A snapshot of the decision counters.
    pub fn counts(&self) -> DecisionCounts {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DecisionCounts {
            allowed: g(&c.allowed),
            denied: g(&c.denied),
            expired: g(&c.expired),
            failed: g(&c.failed),
            own: g(&c.own),
            shutdown: g(&c.shutdown),
            notices_dropped: g(&c.notices_dropped),
        }
    }

    /// Answers everything pending with `FAN_ALLOW`, removes the marks, closes the groups and
    /// joins the responder thread. Workers still inside the callback finish on their own;
    /// their verdicts are discarded.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared.stop.store(true, Ordering::SeqCst);
            sys::eventfd_signal(self.shared.wake.as_fd());
            if t.join().is_err() {
                tracing::error!(
                    "fanotify responder thread panicked (its groups were closed, so pending events were allowed)."
                );
            }
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Job {
    id: u64,
    req: PermissionRequest,
}

fn worker(
    jobs: &Mutex<std_mpsc::Receiver<Job>>,
    verdicts: &std_mpsc::Sender<(u64, Option<Verdict>)>,
    decide: &(dyn Fn(&PermissionRequest) -> Verdict + Send + Sync),
    shared: &Shared,
) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            rx.recv()
        };
        let Ok(job) = job else { return };
        let v = std::panic::catch_unwind(AssertUnwindSafe(|| decide(&job.req))).ok();
        if verdicts.send((job.id, v)).is_err() {
            return;
        }
        sys::eventfd_signal(shared.wake.as_fd());
    }
}

/// A permission event held until answered.
struct Pending {
    fd: OwnedFd,
    deadline: Instant,
    pid: u32,
    path: PathBuf,
}

struct State {
    /// groups[0]: permission group; groups[1]: directory tracker (FID).
    tree: Tree,
    shared: Arc<Shared>,
    opts: ResponderOptions,
    own_pid: u32,
    /// By id; ids grow and the deadline is constant, so the first entry expires first.
    pending: BTreeMap<u64, Pending>,
    next_id: u64,
    jobs: Option<std_mpsc::Sender<Job>>,
    verdicts: std_mpsc::Receiver<(u64, Option<Verdict>)>,
    notices: mpsc::Sender<Notice>,
    quick: Option<Quick>,
}

const PERM: usize = 0;
const TRACK: usize = 1;

impl State {
    fn run(&mut self) {
        let mut buf = vec![0u64; BUF_WORDS];
        while !self.shared.stop.load(Ordering::SeqCst) {
            let timeout = self.poll_timeout();
            let mut fds = [
                pollfd(self.shared.wake.as_raw_fd()),
                pollfd(self.tree.groups[PERM].fd.as_raw_fd()),
                pollfd(self.tree.groups[TRACK].fd.as_raw_fd()),
            ];
            if let Err(e) = sys::poll(&mut fds, timeout) {
                self.notice(Notice::Error { message: format!("poll: {e}") });
                std::thread::sleep(Duration::from_millis(10));
            }
            if fds[0].revents != 0 {
                sys::eventfd_drain(self.shared.wake.as_fd());
            }
            self.collect_verdicts();
            if self.shared.stop.load(Ordering::SeqCst) {
                break;
            }
            // Names first: a file created a moment ago is then indexed when its opens are read.
            if fds[2].revents != 0 {
                self.read_track(&mut buf);
            }
            if fds[1].revents != 0 {
                self.read_perm(&mut buf);
            }
            self.expire();
        }
        self.finish(&mut buf);
    }

    /// Milliseconds until the earliest deadline, rounded up (-1: none pending).
    fn poll_timeout(&self) -> i32 {
        match self.pending.values().next() {
            None => -1,
            Some(p) => {
                let left = p.deadline.saturating_duration_since(Instant::now());
                let ms = left.as_micros().div_ceil(1000);
                ms.min(i32::MAX as u128) as i32
            }
        }
    }

    fn notice(&self, n: Notice) {
        if self.notices.try_send(n).is_err() {
            self.shared.counters.notices_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn answer(&self, fd: &OwnedFd, v: Verdict) {
        let r = match v {
            Verdict::Allow => libc::FAN_ALLOW,
            Verdict::Deny => libc::FAN_DENY,
        };
        if let Err(e) = sys::respond(self.tree.groups[PERM].fd.as_fd(), fd.as_raw_fd(), r) {
            // ENOENT: already answered (cannot happen here) — anything else is worth a notice.
            if e.raw_os_error() != Some(libc::ENOENT) {
                self.notice(Notice::Error { message: format!("fanotify response write: {e}") });
            }
        }
    }

    fn collect_verdicts(&mut self) {
        while let Ok((id, v)) = self.verdicts.try_recv() {
            // Late verdicts (already expired) find nothing.
            let Some(p) = self.pending.remove(&id) else {
                continue;
            };
            let c = &self.shared.counters;
            match v {
                Some(v) => {
                    match v {
                        Verdict::Allow => c.allowed.fetch_add(1, Ordering::Relaxed),
                        Verdict::Deny => c.denied.fetch_add(1, Ordering::Relaxed),
                    };
                    self.answer(&p.fd, v);
                }
                None => {
                    let applied = self.opts.fail_mode.verdict();
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    self.notice(Notice::DecisionPanicked { pid: p.pid, path: p.path, applied });
                    self.answer(&p.fd, applied);
                }
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let p = entry.remove();
            let applied = self.opts.fail_mode.verdict();
            // Counted and announced before the answer: whoever sees the answer's effect can
            // also see the notice.
            self.shared.counters.expired.fetch_add(1, Ordering::Relaxed);
            self.notice(Notice::DeadlineExpired { pid: p.pid, path: p.path.clone(), applied });
            self.answer(&p.fd, applied);
            tracing::warn!(pid = p.pid, path = %p.path.display(), ?applied, "Permission decision missed its deadline.");
        }
    }

    /// Reads the queued permission events (the deadline clock only starts once an event is
    /// read). A read that left the buffer more than half empty had the whole queue: events
    /// queued since keep the descriptor readable for the next `poll`, so the read that would
    /// only return `EAGAIN` is skipped (one syscall less per decision).
    fn read_perm(&mut self, buf: &mut [u64]) {
        let bytes = sys::as_bytes(buf);
        loop {
            let n = match sys::read(self.tree.groups[PERM].fd.as_fd(), bytes) {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(e) => {
                    self.notice(Notice::Error { message: format!("read permission events: {e}") });
                    return;
                }
            };
            for ev in record::events(&bytes[..n]) {
                match ev {
                    Ok(ev) => self.perm_event(&ev),
                    Err(e) => self.notice(Notice::Error { message: e.to_string() }),
                }
            }
            if n <= bytes.len() / 2 {
                return;
            }
        }
    }

    fn perm_event(&mut self, ev: &RawEvent<'_>) {
        if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
            self.notice(Notice::QueueOverflow);
        }
        if ev.fd < 0 {
            return;
        }
        // SAFETY: a descriptor from an event we just read, adopted once.
        let fd = unsafe { sys::adopt(ev.fd) };
        let pid = ev.pid.max(0) as u32;
        let perm_bits = libc::FAN_OPEN_PERM | libc::FAN_OPEN_EXEC_PERM | libc::FAN_ACCESS_PERM;
        if ev.mask & perm_bits == 0 {
            return; // not a permission event: nothing to answer
        }
        if pid == self.own_pid {
            self.shared.counters.own.fetch_add(1, Ordering::Relaxed);
            self.answer(&fd, Verdict::Allow);
            return;
        }
        let received = Instant::now();
        let st = sys::fstat(fd.as_raw_fd()).ok();
        if let (Some(quick), Some(s)) = (&self.quick, st) {
            let q = QuickRequest {
                pid,
                dev: s.st_dev,
                ino: s.st_ino,
                mask: PermMask::from_mask(ev.mask),
                received,
            };
            // A panic is the same as no answer: the worker decides.
            if let Ok(Some(v)) = std::panic::catch_unwind(AssertUnwindSafe(|| quick(&q))) {
                let c = &self.shared.counters;
                match v {
                    Verdict::Allow => c.allowed.fetch_add(1, Ordering::Relaxed),
                    Verdict::Deny => c.denied.fetch_add(1, Ordering::Relaxed),
                };
                self.answer(&fd, v);
                return;
            }
        }
        let opened = sys::fd_path(fd.as_raw_fd()).unwrap_or_default();
        let fail = |this: &Self, fd: &OwnedFd, path: PathBuf| {
            let applied = this.opts.fail_mode.verdict();
            this.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            this.notice(Notice::Overloaded { pid, path, applied });
            this.answer(fd, applied);
        };
        if self.pending.len() >= self.opts.max_pending {
            return fail(self, &fd, opened);
        }
        let path = match st {
            Some(s) => self.tree.protected_name((s.st_dev, s.st_ino), &opened),
            None => opened.clone(),
        };
        let req = PermissionRequest {
            pid,
            path: path.clone(),
            opened,
            dev: st.map_or(0, |s| s.st_dev),
            ino: st.map_or(0, |s| s.st_ino),
            size: st.map_or(0, |s| s.st_size as u64),
            mode: st.map_or(0, |s| s.st_mode),
            uid: st.map_or(0, |s| s.st_uid),
            gid: st.map_or(0, |s| s.st_gid),
            nlink: st.map_or(0, |s| s.st_nlink),
            mask: PermMask::from_mask(ev.mask),
            received,
        };
        let id = self.next_id;
        self.next_id += 1;
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(Job { id, req }).is_ok());
        if !sent {
            return fail(self, &fd, path);
        }
        self.pending.insert(id, Pending { fd, deadline: received + self.opts.deadline, pid, path });
    }

    /// Directory tracking: marks directories created in or moved into the trees.
    fn read_track(&mut self, buf: &mut [u64]) {
        let bytes = sys::as_bytes(buf);
        let mut overflow = false;
        loop {
            let n = match sys::read(self.tree.groups[TRACK].fd.as_fd(), bytes) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    self.notice(Notice::Error { message: format!("read directory events: {e}") });
                    break;
                }
            };
            for ev in record::events(&bytes[..n]) {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        self.notice(Notice::Error { message: e.to_string() });
                        continue;
                    }
                };
                if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
                    overflow = true;
                    continue;
                }
                match record::fid_info(ev.info) {
                    Ok(info) => {
                        for path in self.tree.update(ev.mask, &info) {
                            self.notice(Notice::Unwatched { path });
                        }
                    }
                    Err(e) => self.notice(Notice::Error { message: e.to_string() }),
                }
            }
        }
        if overflow {
            self.notice(Notice::QueueOverflow);
            for path in self.tree.rescan() {
                self.notice(Notice::Unwatched { path });
            }
        }
    }

    /// Shutdown: stop new events (remove marks), allow everything queued and pending, and
    /// let the caller close the groups by dropping the state.
    fn finish(&mut self, buf: &mut [u64]) {
        // No more work for the workers: they exit after their current callback.
        self.jobs = None;
        self.tree.unmark_all();
        let bytes = sys::as_bytes(buf);
        let group = self.tree.groups[PERM].fd.as_fd();
        while let Ok(Some(n)) = sys::read(group, bytes) {
            for ev in record::events(&bytes[..n]).flatten() {
                if ev.fd >= 0 {
                    // SAFETY: as in `perm_event`.
                    let fd = unsafe { sys::adopt(ev.fd) };
                    self.answer(&fd, Verdict::Allow);
                    self.shared.counters.shutdown.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for (_, p) in std::mem::take(&mut self.pending) {
            self.answer(&p.fd, Verdict::Allow);
            self.shared.counters.shutdown.fetch_add(1, Ordering::Relaxed);
        }
        // Dropping `self.tree` (with the state) closes both groups; the kernel allows any
        // event that raced in after the drain.
    }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}
