//! `policy.decision` events: from the enforcement responder and the audit analyzer
//! (`crate::enforce`, `crate::analyze`), and from the BPF LSM program (kernel half:
//! `sensor-ebpf/src/lsm.rs`; decoded in `crate::decode`, named in `crate::enrich`).
use std::sync::Arc;

use crate::policy::{Decision as Verdict, Op, OpSet, Reason};

use super::{FileRef, Record, Subject, attr, json};

/// A decision worth a record.
#[derive(Clone, Debug)]
pub struct Decision {
    pub subject: Subject,
    pub file: FileRef,
    pub ops: OpSet,
    pub decision: Verdict,
    /// Hash of the policy set that decided.
    pub hash: Arc<str>,
    /// `fanotify`, `kernel` (judged from the kernel's record), `bpf-lsm` or `fmod_ret`.
    pub enforcement: &'static str,
}

impl Decision {
    pub fn write(&self, rec: &mut Record) {
        self.subject.write(rec);
        self.file.write(rec);
        let dec = &self.decision;
        let out = rec.body();
        json::pair(out, attr::DECISION, dec.verdict.as_str());
        json::key(out, attr::POLICY_OPERATIONS);
        write_ops(out, self.ops);
        json::opt(out, attr::POLICY_NAME, dec.policy.as_deref());
        json::opt(out, attr::POLICY_ENTRY, dec.entry.as_deref());
        json::pair(out, attr::POLICY_REASON, reason(dec.reason));
        json::opt(out, attr::POLICY_SEVERITY, dec.severity.map(|s| s.as_str()));
        json::opt(out, attr::POLICY_MODE, dec.mode.map(|m| m.as_str()));
        json::pair(out, attr::POLICY_HASH, &*self.hash);
        json::pair(out, attr::ENFORCEMENT, self.enforcement);
    }
}

/// A decision the kernel's enforcement program (BPF LSM or `fmod_ret`) made (a refusal, or an `alert`/`audit` record
/// of an access let through), as decoded (enrich names the policy
/// and turns it into a [`Decision`]).
#[derive(Clone, Debug)]
pub struct LsmDecision {
    pub subject: Subject,
    pub file: FileRef,
    /// Policy index in the kernel's tables (1-based).
    pub policy: u32,
    /// Operation combination (`crate::enforce::lsm::ops_of_combo`).
    pub combo: u32,
    /// `deny`, `kill`, `alert` or `audit`.
    pub verdict: crate::policy::Verdict,
    /// The program that decided: `bpf-lsm` or `fmod_ret` (`mnsensor.enforcement`).
    pub enforcement: &'static str,
}

impl LsmDecision {
    /// Without the policy set (enrich did not name it): the facts the kernel sent.
    pub fn write(&self, rec: &mut Record) {
        self.subject.write(rec);
        self.file.write(rec);
        rec.set(attr::DECISION, self.verdict.as_str())
            .set(attr::POLICY_REASON, "no_entry_matched")
            .set(attr::POLICY_MODE, "enforce")
            .set(attr::ENFORCEMENT, self.enforcement);
    }
}

/// Writes an operation set as an array of names.
pub fn write_ops(out: &mut Vec<u8>, ops: OpSet) {
    json::strings(out, Op::ALL.iter().filter(|op| ops.contains(**op)).map(|op| op.as_str()));
}

fn reason(r: Reason) -> &'static str {
    match r {
        Reason::NotProtected => "not_protected",
        Reason::Allowed => "allowed",
        Reason::NoEntryMatched => "no_entry_matched",
    }
}
