//! Analyze: judges the enriched event stream. Analyzers subscribe to every event; today one
//! judges opens of protected files against `audit`-mode policies (the kernel does not hold
//! those opens, so they are judged after the fact); detectors join here. [`exfil`] (the
//! exfiltration detector) takes its own inputs from `sensor/src/egress/` for now.
pub mod dns;
pub mod drip;
pub mod evidence;
pub mod exfil;
pub mod media;
pub mod print;

use std::{path::PathBuf, sync::Arc};

use sensor_common::event::Task;

use crate::{
    enforce::{self, DecisionEvent, Enforcement, Policies},
    event::{Envelope, Event, FileRef, Subject, decision::Decision, file::OpenHow, path},
    policy::OpSet,
    protect::kernel_dev,
};

/// Most opens waiting for judgement (the kernel's `TRACKED` map holds 65,536).
const MAX_PENDING: usize = 65_536;

/// One subscriber to the event stream.
pub trait Analyzer {
    /// Sees one enriched event.
    fn observe(&mut self, ev: &Envelope);
}

/// An open of a protected file, waiting for judgement.
struct Seen {
    task: Task,
    exe: Option<PathBuf>,
    path: String,
    /// Userspace `dev_t` of the file.
    dev: u64,
    ino: u64,
    ops: OpSet,
}

/// Judges the kernel's opens of protected files against the `audit`-mode policies.
pub struct Audit {
    policies: Arc<Policies>,
    pending: Vec<Seen>,
}

impl Audit {
    pub fn new(policies: Arc<Policies>) -> Self {
        Self { policies, pending: Vec::new() }
    }

    /// Judges the opens seen since the last call; the decisions come back through
    /// `enforcement.take_decisions()`.
    pub fn judge(&mut self, enforcement: &Enforcement) {
        let set = enforcement.policies.current();
        for open in self.pending.drain(..) {
            let owned = path::to_path(&open.path);
            let path = &*owned;
            if set.protects(path) && !enforce::enforced(&set, path) {
                enforcement.decider.decide(enforce::Access {
                    pid: open.task.tgid,
                    path,
                    dev: open.dev,
                    ino: open.ino,
                    ops: open.ops,
                    enforcement: "kernel",
                    task: Some((open.task, open.exe)),
                });
            }
        }
    }
}

impl Analyzer for Audit {
    fn observe(&mut self, ev: &Envelope) {
        let Event::FileOpen(open) = &ev.event else { return };
        let OpenHow::Kernel { flags, .. } = open.how else { return };
        if !self.policies.audits() || self.pending.len() >= MAX_PENDING {
            return;
        }
        let (dev, ino) = open.file.id.unwrap_or_default();
        self.pending.push(Seen {
            task: open.subject.task,
            exe: open
                .subject
                .program
                .as_ref()
                .and_then(|p| p.exe.as_deref().map(|e| path::to_path(e).into_owned())),
            path: open.file.path.clone(),
            dev: libc::makedev(dev >> 20, dev & 0xf_ffff),
            ino,
            ops: crate::event::file::open_ops(flags, open.created()),
        });
    }
}

/// The event of a decision made by the responder or by [`Audit`].
pub fn decision(ev: DecisionEvent) -> Envelope {
    let subject = match ev.task {
        Some(task) => Subject::of(task),
        None => Subject::pid(ev.pid),
    };
    let file = FileRef {
        path: path::of_os(&ev.path),
        id: Some((kernel_dev(ev.dev), ev.ino)),
        rule: None,
        protected: None,
        block: None,
    };
    let decision = Decision {
        subject,
        file,
        ops: ev.ops,
        decision: ev.decision,
        hash: ev.hash.into(),
        enforcement: ev.enforcement,
    };
    Envelope::new(ev.time_ns, Event::Decision(decision))
}
