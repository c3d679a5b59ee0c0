//! Enrich: fills in what the kernel record does not carry, and keeps the state that needs.
//!
//! * the subject's credential block with user and group names ([`Creds`], cached per
//!   credential tuple for the name TTL) and program block (the process table's pre-serialised
//!   [`crate::proctable::Program`], replaced on exec);
//! * the protected path of the file's rule; the path of a close that names none (from the
//!   open, [`files::Files`]); new hard links resolved to a protected inode (file system reads)
//!   or dropped; the name of the policy behind a BPF LSM refusal.
//!
//! It also keeps the process table, the tracked open files, recent closes and changes, and the
//! inodes learned to be protected current from the events that pass.
pub mod files;

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use sensor_common::{
    event::{Task, file::Tracked},
    path::InodeKey,
};

use self::files::{Files, MAX_OPEN_FILES, OpenFile};
use crate::{
    enforce::Policies,
    event::{
        Envelope, Event, FileRef, Subject,
        change::{Change, ObservedBy},
        decision::{Decision, LsmDecision},
        file::{CloseReason, FileClose, OpenHow},
        subject::{Attribution, CredKey, Creds, Id, Program, identity, same_identity},
    },
    policy::{Decision as Verdict, Mode, Reason, Verdict as Kind},
    proctable::ProcTable,
    protect::{ProtectSet, kernel_dev},
    users::Names,
};

/// How long a credential block (its user and group names) is reused.
const NAMES_TTL: Duration = Duration::from_secs(60);
/// Most credential blocks cached.
const MAX_CREDS: usize = 4096;
/// Most identity blocks (threads) cached.
const MAX_IDENTS: usize = 16_384;

/// The enrich stage.
pub struct Enricher {
    pub procs: ProcTable,
    pub files: Files,
    pub protect: ProtectSet,
    names: Names,
    creds: HashMap<CredKey, (Arc<Creds>, Instant)>,
    /// Identity blocks by thread id, with the task they were written for.
    idents: HashMap<u32, (Task, Instant, Arc<[u8]>)>,
    /// Configured path of each protection rule.
    rules: Vec<Arc<str>>,
    policies: Arc<Policies>,
    /// Coarse clock for the TTLs, advanced by [`Self::tick`].
    now: Instant,
}

impl Enricher {
    pub fn new(procs: ProcTable, protect: ProtectSet, policies: Arc<Policies>) -> Self {
        let rules = protect.paths().into_iter().map(Arc::from).collect();
        Self {
            procs,
            files: Files::default(),
            protect,
            names: Names::default(),
            creds: HashMap::new(),
            idents: HashMap::new(),
            rules,
            policies,
            now: Instant::now(),
        }
    }

    /// Advances the coarse clock (once per drain).
    pub fn tick(&mut self) {
        self.now = Instant::now();
    }

    /// Enriches one event; `false` when it is to be dropped (a hard link found not protected).
    pub fn enrich(&mut self, env: &mut Envelope) -> bool {
        match &mut env.event {
            Event::Exec(e) => {
                let program = Arc::new(Program::new(Some(e.exe.clone()), e.args.clone(), Attribution::Exec));
                self.procs.exec(e.subject.task.tgid, program.clone());
                e.subject.program = Some(program);
            }
            Event::Fork(e) => self.procs.fork(e.subject.task.ppid, e.subject.task.tgid),
            Event::FileOpen(e) => {
                if let OpenHow::Kernel { file, rule, .. } = e.how {
                    e.file.protected = self.rule(rule);
                    if e.created()
                        && let Some((dev, ino)) = e.file.id
                    {
                        self.protect.learn(InodeKey { ino, dev, _pad: 0 }, rule, MAX_OPEN_FILES);
                    }
                    let (dev, ino) = e.file.id.unwrap_or_default();
                    let f = OpenFile {
                        path: e.file.path.clone(),
                        protected: e.file.protected.clone(),
                        opener: e.subject.task.tgid,
                        dev,
                        ino,
                    };
                    self.files.opened(file, f);
                }
            }
            Event::FileClose(e) => {
                // Closes the daemon writes itself (`close_untracked`) took their entry already.
                if let Some(k) = self.files.open.remove(&e.kernel_file) {
                    if e.file.path.is_empty() {
                        e.file.path = k.path;
                    }
                    e.file.protected = k.protected;
                }
                let (dev, ino) = e.file.id.unwrap_or_default();
                self.files.note_closed(self.now, e.subject.task.tgid, dev, ino);
            }
            Event::FileChange(e) => {
                if let Change::LinkNames { base, name } = &e.change {
                    let Some((file, links)) = self.linked(base, name) else { return false };
                    e.file = file;
                    e.change = Change::Link { old_path: None, links };
                } else if e.observed_by == ObservedBy::Kernel
                    && let Some(rule) = e.file.rule
                {
                    e.file.protected = self.rule(rule);
                    let name = e.name();
                    self.files.note_change(self.now, name, &e.file.path);
                }
            }
            Event::LsmDecision(e) => {
                let decision = self.lsm(e);
                env.event = Event::Decision(decision);
            }
            Event::Exit(_)
            | Event::FileAccess(_)
            | Event::Conn(_)
            | Event::Decision(_)
            | Event::Sensor(_) => {}
        }
        if let Some(subject) = env.subject_mut() {
            self.subject(subject);
        }
        true
    }

    /// Adds the identity (with names) and program blocks to a subject.
    pub fn subject(&mut self, s: &mut Subject) {
        if s.known && s.ident.is_none() {
            s.ident = Some(self.ident(&s.task));
        }
        if s.program.is_none() {
            s.program = self.procs.get(s.task.tgid);
        }
    }

    /// The identity block of `task`: reused while the thread's identity is unchanged and its
    /// names are fresh.
    fn ident(&mut self, task: &Task) -> Arc<[u8]> {
        if let Some((t, at, block)) = self.idents.get(&task.tid)
            && same_identity(t, task)
            && self.now.duration_since(*at) < NAMES_TTL
        {
            return block.clone();
        }
        let creds = self.creds(task);
        let block: Arc<[u8]> = identity(task, &creds).into();
        if self.idents.len() >= MAX_IDENTS {
            self.idents.clear();
        }
        self.idents.insert(task.tid, (*task, self.now, block.clone()));
        block
    }

    fn creds(&mut self, task: &Task) -> Arc<Creds> {
        let key = Creds::key(task);
        if let Some((c, at)) = self.creds.get(&key)
            && self.now.duration_since(*at) < NAMES_TTL
        {
            return c.clone();
        }
        let names = &mut self.names;
        let creds = Arc::new(Creds::build(task, |id| match id {
            Id::User(uid) => names.user(uid),
            Id::Group(gid) => names.group(gid),
        }));
        if self.creds.len() >= MAX_CREDS {
            self.creds.clear();
        }
        self.creds.insert(key, (creds.clone(), self.now));
        creds
    }

    /// The configured path of protection rule `rule`.
    fn rule(&self, rule: u32) -> Option<Arc<str>> {
        self.rules.get(rule as usize).cloned()
    }

    /// The `file.close` of a tracked file the kernel will not report: its opener exited
    /// (`Exit`) or the sensor is stopping (`SensorStop`).
    pub fn close_untracked(
        &mut self,
        file: u64,
        stats: &Tracked,
        reason: CloseReason,
        time_ns: i128,
        clock: &crate::event::time::Clock,
    ) -> Envelope {
        let known = self.files.open.remove(&file);
        let mut close = FileClose {
            subject: Subject::of(stats.opener),
            file: FileRef {
                path: known.as_ref().map(|k| k.path.clone()).unwrap_or_default(),
                id: Some((stats.dev, stats.ino)),
                rule: None,
                protected: known.and_then(|k| k.protected),
            },
            kernel_file: file,
            reason,
            fd: None,
            stats: *stats,
            opened_ns: clock.wall_ns(stats.opened_ns),
        };
        self.subject(&mut close.subject);
        Envelope::new(time_ns, Event::FileClose(close))
    }

    /// Resolves a new hard link's name (absolute, or relative to the directory the kernel
    /// walked while the caller existed); the file and its link count when its inode is
    /// protected. The name is looked up after the fact: a link removed again within
    /// milliseconds is not reported.
    fn linked(&mut self, base: &str, name: &str) -> Option<(FileRef, u64)> {
        let path = match name.starts_with('/') {
            true => name.to_owned(),
            false => format!("{}/{name}", base.trim_end_matches('/')),
        };
        // The directory canonical (`..`, symlinks), the last component as linked.
        let p = Path::new(&path);
        let path = match (p.parent().and_then(|dir| std::fs::canonicalize(dir).ok()), p.file_name()) {
            (Some(dir), Some(file)) => dir.join(file).display().to_string(),
            _ => path,
        };
        let meta = std::fs::symlink_metadata(&path).ok()?;
        let dev = kernel_dev(meta.dev());
        let key = InodeKey { ino: meta.ino(), dev, _pad: 0 };
        let rule = self.protect.rule_for(key, Path::new(&path))?;
        let protected = self.rule(rule);
        Some((FileRef { path, id: Some((dev, meta.ino())), rule: Some(rule), protected }, meta.nlink()))
    }

    /// Names the policy of a BPF LSM refusal.
    fn lsm(&self, e: &LsmDecision) -> Decision {
        let set = self.policies.current();
        let policy = crate::enforce::lsm::policy_name(&set, e.policy);
        let severity =
            set.policies().iter().find(|p| Some(&*p.name) == policy.as_deref()).map(|p| p.default.severity);
        Decision {
            subject: e.subject.clone(),
            file: e.file.clone(),
            ops: crate::enforce::lsm::ops_of_combo(e.combo),
            decision: Verdict {
                verdict: if e.kill { Kind::Kill } else { Kind::Deny },
                policy: policy.map(Into::into),
                entry: None,
                reason: Reason::NoEntryMatched,
                severity,
                mode: Some(Mode::Enforce),
            },
            hash: set.hash().into(),
            enforcement: "bpf-lsm",
        }
    }
}
