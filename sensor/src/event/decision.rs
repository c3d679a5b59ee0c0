//! `policy.decision` records (the decisions come from `crate::enforce`).
use super::{Decoder, Record, attr, file::device};
use crate::{
    enforce::DecisionEvent,
    policy::{Op, Reason},
    protect::kernel_dev,
};

/// `policy.decision`.
pub fn record(d: &mut Decoder, ev: &DecisionEvent) -> Record {
    let mut rec = Record::new("policy.decision", ev.time_ns);
    match &ev.task {
        Some(task) => d.add_task(task, &mut rec),
        None => {
            rec.set(attr::PROCESS_PID, ev.pid);
        }
    }
    d.add_program(ev.pid, &mut rec);
    let path = ev.path.display().to_string();
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
    let ops: Vec<&str> = Op::ALL.iter().filter(|op| ev.ops.contains(**op)).map(|op| op.as_str()).collect();
    let dec = &ev.decision;
    rec.set(attr::FILE_PATH, path.as_str())
        .set(attr::FILE_NAME, name)
        .set(attr::FILE_DIRECTORY, if dir.is_empty() { "/" } else { dir })
        .set(attr::FILE_INODE, ev.ino)
        .set(attr::FILE_DEVICE, device(kernel_dev(ev.dev)))
        .set(attr::DECISION, dec.verdict.as_str())
        .set(attr::POLICY_OPERATIONS, ops)
        .set_opt(attr::POLICY_NAME, dec.policy.as_deref())
        .set_opt(attr::POLICY_ENTRY, dec.entry.as_deref())
        .set(attr::POLICY_REASON, reason(dec.reason))
        .set_opt(attr::POLICY_SEVERITY, dec.severity.map(|s| s.as_str()))
        .set_opt(attr::POLICY_MODE, dec.mode.map(|m| m.as_str()))
        .set(attr::POLICY_HASH, ev.hash.as_str())
        .set(attr::ENFORCEMENT, ev.enforcement);
    rec
}

fn reason(r: Reason) -> &'static str {
    match r {
        Reason::NotProtected => "not_protected",
        Reason::Allowed => "allowed",
        Reason::NoEntryMatched => "no_entry_matched",
    }
}

/// `policy.decision` from the BPF LSM program (a refusal it applied in the kernel).
pub fn from_kernel(d: &mut Decoder, bytes: &[u8], rec: &mut Record) -> Result<(), super::DecodeError> {
    use sensor_common::event::policy::{ACTION_KILL, LsmDecision};
    let ev: Box<LsmDecision> = super::read_struct_prefix(bytes, std::mem::offset_of!(LsmDecision, data))?;
    let avail = bytes.len() - std::mem::offset_of!(LsmDecision, data);
    let path = super::path::from_kernel(&ev.data[..avail.min(ev.data.len()).min(ev.path_len as usize)]);
    let set = d.policies.current();
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
    let ops = crate::enforce::lsm::ops_of_combo(ev.combo);
    let ops: Vec<&str> = Op::ALL.iter().filter(|op| ops.contains(**op)).map(|op| op.as_str()).collect();
    d.add_task(&ev.header.task, rec);
    d.add_program(ev.header.task.tgid, rec);
    let policy = crate::enforce::lsm::policy_name(&set, ev.policy);
    let severity =
        set.policies().iter().find(|p| Some(&*p.name) == policy.as_deref()).map(|p| p.default.severity);
    rec.set(attr::FILE_PATH, path.as_str())
        .set(attr::FILE_NAME, name)
        .set(attr::FILE_DIRECTORY, if dir.is_empty() { "/" } else { dir })
        .set(attr::FILE_INODE, ev.ino)
        .set(attr::FILE_DEVICE, device(ev.dev))
        .set(attr::DECISION, if ev.action == ACTION_KILL { "kill" } else { "deny" })
        .set(attr::POLICY_OPERATIONS, ops)
        .set_opt(attr::POLICY_NAME, policy)
        .set(attr::POLICY_REASON, "no_entry_matched")
        .set_opt(attr::POLICY_SEVERITY, severity.map(|s| s.as_str()))
        .set(attr::POLICY_MODE, "enforce")
        .set(attr::POLICY_HASH, set.hash())
        .set(attr::ENFORCEMENT, "bpf-lsm");
    Ok(())
}
