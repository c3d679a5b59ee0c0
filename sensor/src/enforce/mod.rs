//! Access decisions: the policy set applied to accesses of protected files.
//!
//! Two places ask for decisions:
//! - the fanotify permission responder, for trees of `enforce`-mode policies: the opening
//!   process waits until [`Decider::decide`] answers; `deny` and `kill` become `EPERM`, and
//!   `kill` also marks the process in the kernel's `KILL_PENDING` map so it is killed when
//!   its open returns;
//! - the daemon, for `audit`-mode policies, from the kernel's `file.open` records (nothing
//!   waits on them).
//!
//! Every verdict other than `allow` becomes a [`DecisionEvent`] and a `policy.decision`
//! record. Decisions are cached per (subject, program, file, operations) for
//! `enforcement.decision_cache_ms` (1 s by default) and
//! dropped whenever the policy set changes.
pub mod lsm;
pub mod priority;
pub mod subject;

use std::{
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use lru::LruCache;
use sensor_common::event::Task;

use crate::{
    fanotify::{Notice, PermissionRequest, QuickRequest, Responder, ResponderOptions, Verdict as FanVerdict},
    policy::{
        AccessRequest, Action, Decision, Executable, Mode, Op, OpSet, PolicyErrors, PolicySet, ProtectTarget,
        Verdict,
    },
};

/// Decisions cached.
const CACHE_SIZE: NonZeroUsize = NonZeroUsize::new(16_384).unwrap();

/// The policy set in force, swapped whole on reload.
pub struct Policies {
    set: RwLock<Arc<PolicySet>>,
    generation: AtomicU64,
    /// Whether an `audit`-mode policy protects anything: only then are the kernel's open
    /// records kept for judging (per record, so it is a flag, not a scan of the set).
    audits: AtomicBool,
}

/// Whether an `audit`-mode policy of `set` protects a path.
fn audits(set: &PolicySet) -> bool {
    set.protect_specs().iter().any(|s| s.mode == Mode::Audit)
}

impl Policies {
    pub fn new(set: PolicySet) -> Self {
        let audits = AtomicBool::new(audits(&set));
        Self { set: RwLock::new(Arc::new(set)), generation: AtomicU64::new(0), audits }
    }

    /// Whether opens must be judged against `audit`-mode policies.
    pub fn audits(&self) -> bool {
        self.audits.load(Ordering::Relaxed)
    }

    /// The set in force.
    pub fn current(&self) -> Arc<PolicySet> {
        self.set.read().map_or_else(|p| p.into_inner().clone(), |s| s.clone())
    }

    /// Replaces the set; no decision is made without a set during the swap.
    pub fn replace(&self, set: PolicySet) {
        self.audits.store(audits(&set), Ordering::Relaxed);
        let new = Arc::new(set);
        match self.set.write() {
            Ok(mut s) => *s = new,
            Err(p) => *p.into_inner() = new,
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

/// A decision worth a record.
#[derive(Clone, Debug)]
pub struct DecisionEvent {
    /// Wall-clock time of the decision (ns since the epoch).
    pub time_ns: i128,
    /// The process, as `/proc` showed it.
    pub task: Option<Task>,
    pub pid: u32,
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub ops: OpSet,
    pub decision: Decision,
    /// Hash of the policy set that decided.
    pub hash: String,
    /// `fanotify` (the access waited for the decision) or `kernel` (judged from the kernel's
    /// record; the access was not held).
    pub enforcement: &'static str,
}

/// Who acts, from the kernel's subject map or read from `/proc` (the process is blocked in
/// the open while we read).
pub struct Subject {
    task: Task,
    fsuid: u32,
    exe: Option<PathBuf>,
}

fn subject(pid: u32) -> Option<Subject> {
    let proc = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    let status = proc.status().ok()?;
    let task = crate::proctable::task_of_pid(pid)?;
    Some(Subject { task, fsuid: status.fuid, exe: proc.exe().ok() })
}

type CacheKey = (u32, Option<u32>, Option<PathBuf>, u64, u64, u8);

/// One access to decide.
pub struct Access<'a> {
    pub pid: u32,
    /// Canonical path of the file.
    pub path: &'a Path,
    /// Userspace `dev_t` and inode of the file.
    pub dev: u64,
    pub ino: u64,
    pub ops: OpSet,
    /// How the decision takes effect (`mnsensor.enforcement`).
    pub enforcement: &'static str,
    /// The acting task and its executable when the caller has them from the kernel;
    /// otherwise they are read from `/proc`.
    pub task: Option<(Task, Option<PathBuf>)>,
}

/// Decides accesses with the policy set in force.
pub struct Decider {
    policies: Arc<Policies>,
    cache: Mutex<LruCache<CacheKey, (Decision, Instant, u64)>>,
    events: mpsc::SyncSender<DecisionEvent>,
    kill: Option<Mutex<BpfHashMap<MapData, u32, u32>>>,
    /// The responder's deadline: a verdict reached later was not applied.
    deadline: Duration,
    /// How long a cached decision is trusted (`enforcement.decision_cache_ms`).
    cache_ttl: Duration,
    /// Decision events dropped because the daemon fell behind.
    pub dropped: AtomicU64,
    /// The kernel's subject map, when it loaded.
    subjects: Option<subject::Subjects>,
}

impl Decider {
    pub fn new(
        policies: Arc<Policies>,
        events: mpsc::SyncSender<DecisionEvent>,
        kill: Option<BpfHashMap<MapData, u32, u32>>,
        deadline: Duration,
        cache_ttl: Duration,
        subjects: Option<subject::Subjects>,
    ) -> Self {
        Self {
            subjects,
            deadline,
            cache_ttl,
            policies,
            cache: Mutex::new(LruCache::new(CACHE_SIZE)),
            events,
            kill: kill.map(Mutex::new),
            dropped: AtomicU64::new(0),
        }
    }

    /// The fanotify permission callback: `deny` and `kill` refuse the open.
    pub fn on_permission(&self, req: &PermissionRequest) -> FanVerdict {
        let mut ops = OpSet::EMPTY;
        if req.mask.exec {
            ops.insert(Op::Exec);
        }
        if req.mask.open || req.mask.access {
            ops = ops_of_open(req.pid, ops);
        }
        let access = Access {
            pid: req.pid,
            path: &req.path,
            dev: req.dev,
            ino: req.ino,
            ops,
            enforcement: "fanotify",
            task: None,
        };
        let (d, event) = self.judge(access);
        crate::health::DECISION_LATENCY.observe(req.received.elapsed());
        // After the deadline the responder has already answered with the fail mode (and
        // alerted); a record of this verdict would claim an effect it did not have.
        if req.received.elapsed() < self.deadline {
            self.record(event);
        }
        match d.verdict {
            Verdict::Deny => FanVerdict::Deny,
            Verdict::Kill => {
                self.mark_kill(req.pid);
                FanVerdict::Deny
            }
            _ => FanVerdict::Allow,
        }
    }

    /// The reader thread's answer to an open, from what is already known: the subject from
    /// the kernel's map and a cached verdict that is `allow` whatever the open's flags (so
    /// neither the flags nor the file's name are read). Anything else goes to a worker and
    /// [`Self::on_permission`], which also writes the records.
    pub fn quick(&self, q: &QuickRequest) -> Option<FanVerdict> {
        if q.mask.exec || !(q.mask.open || q.mask.access) {
            return None;
        }
        let s = self.subjects.as_ref()?.get(q.pid)?;
        let auid = Some(s.task.auid).filter(|a| *a != u32::MAX);
        let key: CacheKey = (s.fsuid, auid, s.exe, q.dev, q.ino, ANY_OPEN);
        let d = self.cached(&key)?;
        crate::health::DECISION_LATENCY.observe(q.received.elapsed());
        (d.verdict == Verdict::Allow).then_some(FanVerdict::Allow)
    }

    /// A cached decision that is still valid.
    fn cached(&self, key: &CacheKey) -> Option<Decision> {
        let generation = self.policies.generation();
        self.cache.lock().ok().and_then(|mut c| {
            c.get(key)
                .filter(|(_, at, g)| *g == generation && at.elapsed() < self.cache_ttl)
                .map(|(d, ..)| d.clone())
        })
    }

    /// Decides one access, records it when it is not a plain allow, and returns it.
    pub fn decide(&self, access: Access<'_>) -> Decision {
        let (d, event) = self.judge(access);
        self.record(event);
        d
    }

    fn record(&self, event: Option<DecisionEvent>) {
        if let Some(ev) = event
            && self.events.try_send(ev).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// [`Self::decide`] without recording: the decision and, unless it is a plain allow, its
    /// event.
    fn judge(&self, access: Access<'_>) -> (Decision, Option<DecisionEvent>) {
        let Access { pid, path, dev, ino, ops, enforcement, task } = access;
        let (task, fsuid, exe) = match task {
            Some((t, exe)) => (Some(t), t.euid, exe),
            None => match self.subjects.as_ref().and_then(|s| s.get(pid)).or_else(|| subject(pid)) {
                Some(s) => (Some(s.task), s.fsuid, s.exe),
                None => (None, u32::MAX, None),
            },
        };
        let auid = task.map(|t| t.auid).filter(|a| *a != u32::MAX);
        let generation = self.policies.generation();
        let key: CacheKey = (fsuid, auid, exe.clone(), dev, ino, ops_bits(ops));
        let cached = self.cached(&key);
        let set = self.policies.current();
        let decision = cached.unwrap_or_else(|| {
            let program = exe.as_deref().unwrap_or_else(|| Path::new(""));
            let mut req = AccessRequest {
                path,
                ops,
                uid: fsuid,
                auid,
                program: Executable { path: program, sha256: None },
                time: jiff::Timestamp::now().into(),
            };
            let d = set.evaluate(&req);
            // Whether every way of opening the file gets the same verdict: then the reader
            // thread may answer later opens without reading their flags (`Self::quick`).
            let any_open = open_ops().all(|ops| {
                req.ops = ops;
                set.evaluate(&req).verdict == d.verdict
            });
            if let Ok(mut c) = self.cache.lock() {
                let now = Instant::now();
                if any_open {
                    c.put((fsuid, auid, exe.clone(), dev, ino, ANY_OPEN), (d.clone(), now, generation));
                }
                c.put(key, (d.clone(), now, generation));
            }
            d
        });
        let event = (decision.verdict != Verdict::Allow).then(|| DecisionEvent {
            time_ns: crate::event::time::Clock::realtime_ns(),
            task,
            pid,
            path: path.to_owned(),
            dev,
            ino,
            ops,
            decision: decision.clone(),
            hash: set.hash().to_owned(),
            enforcement,
        });
        (decision, event)
    }

    fn mark_kill(&self, pid: u32) {
        if let Some(map) = &self.kill
            && let Ok(mut map) = map.lock()
            && let Err(e) = map.insert(pid, 1, 0)
        {
            tracing::error!(pid, error = %e, "Could not mark a process for the kill action; its open is denied.");
        }
    }
}

/// Whether an `enforce`-mode policy uses the `kill` action.
pub fn uses_kill(set: &PolicySet) -> bool {
    set.policies().iter().any(|p| p.mode == Mode::Enforce && p.default.action == Action::Kill)
}

/// Files and directories the policies protect: path targets as given, glob targets
/// expanded below their base directory (files that exist now).
pub fn protected_paths(set: &PolicySet) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in set.policies() {
        for spec in set.protect_specs().iter().filter(|s| *s.policy == *p.name) {
            match &spec.target {
                ProtectTarget::Path(path) => out.push(path.clone()),
                ProtectTarget::Glob { base, .. } => glob_files(p, base, &mut out),
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn glob_files(policy: &crate::policy::compile::Policy, dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => glob_files(policy, &path, out),
            Ok(t) if t.is_file() && policy.covering(&path).is_some() => out.push(path),
            _ => {}
        }
    }
}

/// Trees the permission responder must watch: those of `enforce`-mode policies (a glob
/// target's base directory; its decisions check the pattern).
pub fn enforced_trees(set: &PolicySet) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = set
        .protect_specs()
        .into_iter()
        .filter(|s| s.mode == Mode::Enforce)
        .map(|s| match s.target {
            ProtectTarget::Path(p) => p,
            ProtectTarget::Glob { base, .. } => base,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether an `enforce`-mode policy covers `path` (its accesses are decided by the
/// responder; the daemon judges the others from the kernel records).
pub fn enforced(set: &PolicySet, path: &Path) -> bool {
    set.policies().iter().any(|p| p.mode == Mode::Enforce && p.covering(path).is_some())
}

/// Cache-key operations of a verdict that holds for every [`open_ops`] (no [`Op`] has this bit).
const ANY_OPEN: u8 = 1 << 7;

/// Every operation set an open can ask for ([`ops_of_open`]): read, write or both, with or
/// without create.
fn open_ops() -> impl Iterator<Item = OpSet> {
    [(true, false), (true, true), (false, true)].into_iter().flat_map(|(read, write)| {
        [false, true].into_iter().map(move |create| {
            let mut o = OpSet::EMPTY;
            for (on, op) in [(read, Op::Read), (write, Op::Write), (create, Op::Create)] {
                if on {
                    o.insert(op);
                }
            }
            o
        })
    })
}

fn ops_bits(ops: OpSet) -> u8 {
    Op::ALL.iter().enumerate().filter(|(_, op)| ops.contains(**op)).fold(0, |b, (i, _)| b | (1 << i))
}

/// The open flags of a thread blocked in an open syscall (`nr` and its arguments, as
/// `/proc/<pid>/task/<tid>/syscall` shows them); the numbers come from libc for the target
/// architecture (arm64 has no `open` or `creat`, only `openat` and `openat2`).
fn open_flags(nr: i64, args: &[u64]) -> Option<u64> {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    match nr {
        libc::SYS_open => return args.get(1).copied(),
        libc::SYS_creat => return Some((libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u64),
        _ => {}
    }
    match nr {
        // openat(dfd, path, flags, mode)
        libc::SYS_openat => args.get(2).copied(),
        // openat2(dfd, path, struct open_how *, size): the flags are behind a pointer.
        _ => None,
    }
}

/// The operations of an open that waits in a permission event: fanotify does not say how
/// the file is opened, so the flags are read from the waiting thread's syscall arguments
/// (`/proc/<pid>/task/<tid>/syscall`). Read when they cannot be found.
fn ops_of_open(pid: u32, mut ops: OpSet) -> OpSet {
    ops.insert(Op::Read);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return ops };
    for t in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(t.path().join("syscall")) else { continue };
        let mut words = text.split_whitespace();
        let nr: i64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(-1);
        let args: Vec<u64> =
            words.take(6).filter_map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok()).collect();
        let flags = open_flags(nr, &args);
        if let Some(flags) = flags {
            let flags = flags as i32;
            if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
                ops.insert(Op::Write);
            }
            if flags & libc::O_ACCMODE == libc::O_WRONLY {
                ops = ops.minus(read_only());
            }
            if flags & libc::O_CREAT != 0 {
                ops.insert(Op::Create);
            }
            break;
        }
    }
    ops
}

fn read_only() -> OpSet {
    let mut r = OpSet::EMPTY;
    r.insert(Op::Read);
    r
}

/// Enforcement as the daemon runs it: the policy set, the decider, the permission responder
/// and the reload state.
pub struct Enforcement {
    pub policies: Arc<Policies>,
    pub decider: Arc<Decider>,
    decisions: mpsc::Receiver<DecisionEvent>,
    responder: Option<Responder>,
    notices: Option<tokio::sync::mpsc::Receiver<Notice>>,
    /// The policy files or directories, for reloads.
    sources: Vec<PathBuf>,
    fingerprint: Vec<(PathBuf, i64, u64, u64)>,
    /// `policy=backend` for each policy, for `sensor.start`.
    pub backends: Vec<String>,
    /// The BPF LSM program's tables and the protected set they are compiled for, when the
    /// kernel enforces.
    lsm: Option<(crate::bpf::LsmMaps, crate::protect::ProtectSet)>,
    lsm_compiled: Instant,
}

impl Enforcement {
    /// Starts the responder on the trees of `enforce`-mode policies. A policy that asks for
    /// enforcement on a machine that cannot enforce is reported loudly and listed with
    /// backend `none`, never downgraded in silence.
    pub fn start(
        set: PolicySet,
        sources: Vec<PathBuf>,
        kill: Option<BpfHashMap<MapData, u32, u32>>,
        subjects: Option<subject::Subjects>,
        opts: ResponderOptions,
        mut lsm: Option<(crate::bpf::LsmMaps, crate::protect::ProtectSet)>,
    ) -> Self {
        if let Some((maps, protect)) = lsm.as_mut()
            && let Err(e) = maps.update(&lsm::compile(&set, protect))
        {
            tracing::error!(error = %e, "Could not fill the BPF LSM tables; enforcing with fanotify instead.");
            lsm = None;
        }
        log_warnings(&set);
        // With the BPF LSM program the kernel decides; the responder is not needed.
        let trees = if lsm.is_some() { Vec::new() } else { enforced_trees(&set) };
        let names: Vec<(String, Mode)> =
            set.policies().iter().map(|p| (p.name.to_string(), p.mode)).collect();
        let policies = Arc::new(Policies::new(set));
        let (tx, decisions) = mpsc::sync_channel(4096);
        let decider =
            Arc::new(Decider::new(policies.clone(), tx, kill, opts.deadline, opts.decision_cache, subjects));
        let mut responder = None;
        if !trees.is_empty() {
            let d = decider.clone();
            let q = decider.clone();
            let quick: crate::fanotify::Quick = Arc::new(move |req| q.quick(req));
            match Responder::start_with_quick(
                &trees,
                opts,
                Arc::new(move |req| d.on_permission(req)),
                Some(quick),
            ) {
                Ok(r) => responder = Some(r),
                Err(e) => tracing::error!(
                    error = %e,
                    "Policies in enforce mode cannot be enforced here: accesses are only recorded."
                ),
            }
        }
        let notices = responder.as_mut().and_then(Responder::notices);
        let backends = names
            .iter()
            .map(|(name, mode)| match (mode, &responder, &lsm) {
                (Mode::Audit, ..) => format!("{name}=audit"),
                (Mode::Enforce, _, Some((maps, _))) => format!("{name}={}", maps.backend),
                (Mode::Enforce, Some(_), None) => format!("{name}=fanotify"),
                (Mode::Enforce, None, None) => format!("{name}=none"),
            })
            .collect();
        let fingerprint = fingerprint(&sources);
        Self {
            policies,
            decider,
            decisions,
            responder,
            notices,
            sources,
            fingerprint,
            backends,
            lsm,
            lsm_compiled: Instant::now(),
        }
    }

    /// Compiles the BPF LSM tables again (schedules open and close with time); every 30 s,
    /// or at once with `force` (after a reload).
    pub fn refresh_lsm(&mut self, force: bool) {
        if !force && self.lsm_compiled.elapsed() < Duration::from_secs(30) {
            return;
        }
        self.lsm_compiled = Instant::now();
        let set = self.policies.current();
        if let Some((maps, protect)) = self.lsm.as_mut()
            && let Err(e) = maps.update(&lsm::compile(&set, protect))
        {
            tracing::error!(error = %e, "Could not update the BPF LSM tables; the previous ones stay in force.");
        }
    }

    /// Decisions made since the last call.
    pub fn take_decisions(&mut self) -> Vec<DecisionEvent> {
        self.decisions.try_iter().collect()
    }

    /// Responder notices (late decisions, overload, unwatched directories) since the last call.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        let mut out = Vec::new();
        if let Some(rx) = self.notices.as_mut() {
            while let Ok(n) = rx.try_recv() {
                out.push(n);
            }
        }
        out
    }

    /// Whether the policy files changed since the last load.
    pub fn changed(&self) -> bool {
        !self.sources.is_empty() && fingerprint(&self.sources) != self.fingerprint
    }

    /// Loads the policy files again and swaps the set in when the whole new set is valid;
    /// otherwise keeps the set in force. Returns the new hash.
    pub fn reload(&mut self) -> Result<String, PolicyErrors> {
        self.fingerprint = fingerprint(&self.sources);
        if self.sources.is_empty() {
            return Ok(self.policies.current().hash().to_owned());
        }
        let set = PolicySet::load(&self.sources)?;
        log_warnings(&set);
        if enforced_trees(&set) != enforced_trees(&self.policies.current()) {
            tracing::warn!("The reloaded policies protect other trees; restart the sensor to watch them.");
        }
        let hash = set.hash().to_owned();
        self.policies.replace(set);
        self.refresh_lsm(true);
        Ok(hash)
    }

    /// Stops the responder (pending opens are allowed).
    pub fn stop(&mut self) {
        if let Some(r) = self.responder.take() {
            r.stop();
        }
    }

    /// The policy files, for `sensor.start`.
    pub fn files(&self) -> Vec<String> {
        self.policies.current().files().iter().map(|p| p.display().to_string()).collect()
    }
}

/// Logs the set's warnings (conflicting policies, unused lists) as the loader found them.
fn log_warnings(set: &PolicySet) {
    for w in set.warnings() {
        tracing::warn!(file = %w.file.display(), line = w.pos.line, "{}", w.problem);
    }
}

/// (path, mtime, size, inode) of every policy file below `sources`.
fn fingerprint(sources: &[PathBuf]) -> Vec<(PathBuf, i64, u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out = Vec::new();
    for s in sources {
        let mut paths = vec![s.clone()];
        if let Ok(dir) = std::fs::read_dir(s) {
            paths.extend(dir.flatten().map(|e| e.path()));
        }
        for p in paths {
            if let Ok(m) = std::fs::metadata(&p) {
                out.push((p, m.mtime_nsec() + m.mtime() * 1_000_000_000, m.size(), m.ino()));
            }
        }
    }
    out.sort();
    out
}
