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
//!
//! Records of a Samba `smbd` process get the client it serves and the user it acts as
//! ([`smb`]).
pub mod files;
pub mod smb;

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    sync::Arc,
    time::{Duration, Instant},
};

use sensor_common::{
    event::{
        FLAG_PATH_TRUNCATED, Task,
        file::{Received, Tracked},
    },
    path::InodeKey,
};

use self::{
    files::{Files, MAX_OPEN_FILES, OpenFile},
    smb::SmbClients,
};
use crate::{
    enforce::Policies,
    event::{
        Envelope, Event, FileRef, Subject,
        change::{Change, ObservedBy},
        client::{Client, Served},
        decision::{Decision, LsmDecision},
        file::{CloseReason, FileClose, OpenHow},
        net::ConnOp,
        subject::{Attribution, CredKey, Creds, Id, Program, identity, same_identity},
    },
    policy::{Decision as Verdict, Mode, Reason},
    proctable::ProcTable,
    protect::{ProtectSet, kernel_dev},
    users::Names,
};

/// How long a credential block (its user and group names) is reused.
const NAMES_TTL: Duration = Duration::from_secs(60);
/// Most credential blocks cached.
const MAX_CREDS: usize = 4096;
/// Most identity blocks (threads) cached.
const MAX_IDENTS: usize = 4096;
/// Most file blocks cached.
const MAX_FILE_BLOCKS: usize = 8192;

/// A file's attribute block and the path it was written for.
type FileBlock = (String, Arc<[u8]>);

/// The enrich stage.
pub struct Enricher {
    pub procs: ProcTable,
    pub files: Files,
    pub protect: ProtectSet,
    names: Names,
    creds: HashMap<CredKey, (Arc<Creds>, Instant)>,
    /// Identity blocks by thread id, with the task they were written for.
    idents: HashMap<u32, (Task, Instant, Arc<[u8]>)>,
    /// File blocks (path and identity attributes) by kernel `(dev, ino)`, with their path.
    file_blocks: HashMap<(u32, u64), FileBlock>,
    /// Configured path of each protection rule.
    rules: Vec<Arc<str>>,
    policies: Arc<Policies>,
    /// The clients of `smbd` processes.
    smb: SmbClients,
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
            file_blocks: HashMap::new(),
            rules,
            policies,
            smb: SmbClients::default(),
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
            Event::Fork(e) => {
                self.smb.forked(self.now, e.subject.task.ppid, e.subject.task.tgid);
                self.procs.fork(e.subject.task.ppid, e.subject.task.tgid);
            }
            Event::FileOpen(e) => {
                if let OpenHow::Kernel { file, rule, .. } = e.how {
                    e.file.protected = self.rule(rule);
                    if e.created()
                        && let Some((dev, ino)) = e.file.id
                    {
                        self.protect.learn(InodeKey { ino, dev, _pad: 0 }, rule, MAX_OPEN_FILES);
                    }
                    self.file_block(&mut e.file);
                    let (dev, ino) = e.file.id.unwrap_or_default();
                    let f = OpenFile {
                        path: e.file.path.clone(),
                        protected: e.file.protected.clone(),
                        opener: e.subject.task.tgid,
                        dev,
                        ino,
                        path_flags: env.quality & FLAG_PATH_TRUNCATED,
                    };
                    self.files.opened(file, f);
                }
            }
            Event::FileClose(e) => {
                // Closes the daemon writes itself (`close_untracked`) took their entry already;
                // a receiver's own record leaves it to the open's.
                let known = match e.receiver {
                    true => self.files.open.get(&e.kernel_file).cloned(),
                    false => self.files.open.remove(&e.kernel_file),
                };
                if let Some(k) = known {
                    // A compact close or a release: named by the open's record.
                    if e.file.path.is_empty() {
                        e.file.path = k.path;
                        env.quality |= k.path_flags;
                    }
                    e.file.protected = k.protected;
                }
                let (dev, ino) = e.file.id.unwrap_or_default();
                if e.file.path.is_empty() {
                    // A fold record, or the close of a folded open: named by the last path
                    // seen for the file.
                    if let Some((path, protected)) = self.files.last_path(dev, ino) {
                        e.file.path = path.clone();
                        e.file.protected = protected.clone();
                    }
                } else if e.reason != CloseReason::Fold {
                    self.files.note_path(dev, ino, &e.file.path, e.file.protected.as_ref());
                }
                self.file_block(&mut e.file);
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
            | Event::Tamper(_)
            | Event::Decision(_)
            | Event::Sensor(_) => {}
        }
        if let Some(subject) = env.subject_mut() {
            self.subject(subject);
        }
        match &env.event {
            Event::Exit(e) => self.smb.exited(self.now, e.subject.task.tgid),
            Event::Conn(c)
                if matches!(c.op, ConnOp::Accept { .. })
                    && c.subject.program.as_deref().is_some_and(smb::is_smbd) =>
            {
                self.smb.accepted(c.subject.task.tgid, Client::new(c.peer, c.peer_port));
            }
            _ => {}
        }
        true
    }

    /// Adds the identity (with names) and program blocks to a subject, and the client an
    /// `smbd` serves.
    pub fn subject(&mut self, s: &mut Subject) {
        if s.known && s.ident.is_none() {
            s.ident = Some(self.ident(&s.task));
        }
        if s.program.is_none() {
            s.program = self.procs.get(s.task.tgid);
        }
        // The task name first: one compare for the records of every other process.
        if s.served.is_none()
            && (!s.known || s.task.comm.starts_with(b"smbd"))
            && s.program.as_deref().is_some_and(smb::is_smbd)
            && let Some(client) = self.smb.client(self.now, s.task.tgid)
        {
            let user = if s.known { self.names.user(s.task.euid) } else { None };
            s.served = Some(Served { client, user });
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

    /// Attaches the cached attribute block of a file seen before under the same path and
    /// identity (opens and closes of the same files repeat).
    fn file_block(&mut self, f: &mut FileRef) {
        let Some(id) = f.id else { return };
        if f.path.is_empty() {
            return;
        }
        if let Some((path, block)) = self.file_blocks.get(&id)
            && *path == f.path
        {
            f.block = Some(block.clone());
            return;
        }
        let block: Arc<[u8]> = f.block().into();
        if self.file_blocks.len() >= MAX_FILE_BLOCKS {
            self.file_blocks.clear();
        }
        self.file_blocks.insert(id, (f.path.clone(), block.clone()));
        f.block = Some(block);
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
                block: None,
            },
            kernel_file: file,
            reason,
            fd: None,
            stats: *stats,
            opened_ns: clock.wall_ns(stats.opened_ns),
            receiver: false,
        };
        self.subject(&mut close.subject);
        Envelope::new(time_ns, Event::FileClose(close))
    }

    /// The `file.close` of a receiver's own bytes the kernel will not report: the receiver
    /// exited with the descriptor (`Exit`) or the sensor is stopping (`SensorStop`).
    pub fn close_received(
        &mut self,
        file: u64,
        r: &Received,
        reason: CloseReason,
        time_ns: i128,
        clock: &crate::event::time::Clock,
    ) -> Envelope {
        let known = self.files.open.get(&file);
        let mut close = FileClose {
            subject: Subject::of(r.holder),
            file: FileRef {
                path: known.map(|k| k.path.clone()).unwrap_or_default(),
                id: Some((r.stats.dev, r.stats.ino)),
                rule: None,
                protected: known.and_then(|k| k.protected.clone()),
                block: None,
            },
            kernel_file: file,
            reason,
            fd: None,
            stats: r.stats,
            opened_ns: clock.wall_ns(r.stats.opened_ns),
            receiver: true,
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
        let p = crate::event::path::to_path(&path);
        let p = match (p.parent().and_then(|dir| std::fs::canonicalize(dir).ok()), p.file_name()) {
            (Some(dir), Some(file)) => dir.join(file),
            _ => p.into_owned(),
        };
        let path = crate::event::path::of_os(&p);
        let meta = std::fs::symlink_metadata(&p).ok()?;
        let dev = kernel_dev(meta.dev());
        let key = InodeKey { ino: meta.ino(), dev, _pad: 0 };
        let rule = self.protect.rule_for(key, &p)?;
        let protected = self.rule(rule);
        let file = FileRef { path, id: Some((dev, meta.ino())), rule: Some(rule), protected, block: None };
        Some((file, meta.nlink()))
    }

    /// Names the policy of a BPF LSM decision.
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
                verdict: e.verdict,
                policy: policy.map(Into::into),
                entry: None,
                reason: Reason::NoEntryMatched,
                severity,
                mode: Some(Mode::Enforce),
            },
            hash: set.hash().into(),
            enforcement: e.enforcement,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sensor_common::event::Task;

    use super::Enricher;
    use crate::{
        enforce::Policies,
        event::{
            Envelope, Event, FileRef, Subject,
            file::{CloseReason, FileClose, FileOpen, OpenHow},
            process::Exec,
        },
        policy::PolicySet,
        proctable::ProcTable,
        protect::ProtectSet,
    };

    fn enricher() -> Enricher {
        let policies = Arc::new(Policies::new(PolicySet::embedded().unwrap()));
        Enricher::new(ProcTable::default(), ProtectSet::default(), policies)
    }

    fn task(euid: u32) -> Task {
        Task {
            tgid: u32::MAX - 7,
            tid: u32::MAX - 7,
            euid,
            auid: u32::MAX,
            sessionid: u32::MAX,
            ..Task::default()
        }
    }

    fn json(ev: &Envelope) -> serde_json::Value {
        serde_json::from_str(&ev.record().to_json(1, "h")).unwrap()
    }

    fn open(task: Task, file: u64) -> Envelope {
        let how = OpenHow::Kernel { flags: 0, fmode: 0, syscall: 257, file, rule: 0 };
        let file =
            FileRef { path: "/srv/a/b.txt".into(), id: Some((1, 2)), rule: Some(0), ..FileRef::default() };
        Envelope::new(0, Event::FileOpen(FileOpen { subject: Subject::of(task), file, fd: Some(3), how }))
    }

    #[test]
    fn names_programs_and_follows_exec_and_credential_changes() {
        let mut e = enricher();
        let exec = Exec {
            subject: Subject::of(task(0)),
            exe: "/usr/bin/cat".into(),
            args: vec!["cat".to_owned(), "b.txt".to_owned()].into(),
            cwd: "/srv".into(),
            exe_dev: 1,
            exe_ino: 9,
            old_pid: u32::MAX - 7,
        };
        let mut ev = Envelope::new(0, Event::Exec(exec));
        assert!(e.enrich(&mut ev));
        let mut ev = open(task(0), 77);
        assert!(e.enrich(&mut ev));
        let v = json(&ev);
        assert_eq!(v["process.user.name"], "root");
        assert_eq!(v["process.executable.path"], "/usr/bin/cat");
        assert_eq!(v["process.command_line"], "cat b.txt");
        assert_eq!(v["mnsensor.process.attribution"], "exec");
        assert_eq!(v["file.name"], "b.txt");

        // A credential change is seen at once (the identity block is per identity).
        let mut ev = open(task(3_999_999_999), 78);
        assert!(e.enrich(&mut ev));
        let v = json(&ev);
        assert_eq!(v["process.user.id"], 3_999_999_999u64);
        assert!(v.get("process.user.name").is_none());

        // A close that names no path gets the open's.
        let close = FileClose {
            subject: Subject::of(task(0)),
            file: FileRef { id: Some((1, 2)), ..FileRef::default() },
            kernel_file: 77,
            reason: CloseReason::Release,
            fd: None,
            stats: Default::default(),
            opened_ns: 0,
            receiver: false,
        };
        let mut ev = Envelope::new(0, Event::FileClose(close));
        assert!(e.enrich(&mut ev));
        let v = json(&ev);
        assert_eq!(v["file.path"], "/srv/a/b.txt");
        assert_eq!(v["mnsensor.close.reason"], "release");
        assert!(e.files.open.contains_key(&78) && !e.files.open.contains_key(&77));
    }
}
