//! In-kernel enforcement with BPF LSM (kernel half: `sensor-ebpf/src/lsm.rs`).
//!
//! The `enforce`-mode policies are compiled into allow tables by asking the policy set itself
//! (`PolicySet::evaluate_enforced`) at "now" for every user a policy names (directly or through a
//! group), every program it names and "any program", and every operation combination of an
//! open. So the kernel applies exactly the language's semantics, evaluated ahead of time; the
//! tables are compiled again every 30 seconds, when schedules open and close. Each table value
//! holds, per operation combination, the level of the verdict (refused, alerted, audited,
//! let through without a record: `sensor_common::event::policy::UNALERTED_SHIFT`). A user no
//! table names gets the policy's default.
use std::{
    collections::{BTreeSet, HashMap},
    ffi::CStr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use sensor_common::event::policy::{
    ACTION_ALERT, ACTION_AUDIT, ACTION_DENY, ACTION_KILL, AllowKey, AllowProgramKey, COMBO_CREATE_READ_WRITE,
    COMBO_CREATE_WRITE, COMBO_EXEC, COMBO_READ, COMBO_READ_WRITE, COMBO_WRITE, PolicyDefault,
    UNALERTED_SHIFT, UNRECORDED_SHIFT,
};

use crate::{
    policy::{
        AccessRequest, Action, Executable, Mode, Op, OpSet, PolicySet, ProtectTarget, Verdict, When,
        compile::TargetKind,
    },
    protect::{ProtectSet, kernel_dev},
};

/// Backend names (`mnsensor.policy.backends`, `mnsensor.enforcement`): the BPF LSM program,
/// where `bpf` is an active LSM.
pub const BACKEND_BPF_LSM: &str = "bpf-lsm";
/// The `fmod_ret` program on `security_file_open`, where fentry programs load but the BPF LSM
/// is not active (`sensor/src/bpf/fmod_ret.rs`).
pub const BACKEND_FMOD_RET: &str = "fmod_ret";

/// The backend of a kernel decision record's `hook`.
pub fn backend_of_hook(hook: u16) -> &'static str {
    if hook == sensor_common::event::policy::HOOK_FMOD_RET { BACKEND_FMOD_RET } else { BACKEND_BPF_LSM }
}

/// The compiled tables.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tables {
    /// (protection rule, policy id).
    pub rule_policy: Vec<(u32, u32)>,
    /// (policy id, default).
    pub defaults: Vec<(u32, PolicyDefault)>,
    pub any: HashMap<AllowKey, u32>,
    pub programs: HashMap<AllowProgramKey, u32>,
}

/// Policy ids: enforce-mode policies, by their index in the set plus one.
fn enforce_ids(set: &PolicySet) -> Vec<(u32, usize)> {
    set.policies()
        .iter()
        .enumerate()
        .filter(|(_, p)| p.mode == Mode::Enforce)
        .map(|(i, _)| (i as u32 + 1, i))
        .collect()
}

/// The name of policy `id`.
pub fn policy_name(set: &PolicySet, id: u32) -> Option<String> {
    let i = usize::try_from(id).ok()?.checked_sub(1)?;
    set.policies().get(i).map(|p| p.name.to_string())
}

/// The operations of a combination bit.
pub fn ops_of_combo(combo: u32) -> OpSet {
    let mut ops = OpSet::EMPTY;
    for (bit, list) in COMBOS {
        if combo == bit {
            for op in list {
                ops.insert(*op);
            }
        }
    }
    ops
}

const COMBOS: [(u32, &[Op]); 6] = [
    (COMBO_READ, &[Op::Read]),
    (COMBO_WRITE, &[Op::Write]),
    (COMBO_READ_WRITE, &[Op::Read, Op::Write]),
    (COMBO_CREATE_WRITE, &[Op::Create, Op::Write]),
    (COMBO_CREATE_READ_WRITE, &[Op::Create, Op::Read, Op::Write]),
    (COMBO_EXEC, &[Op::Exec]),
];

/// Compiles the tables for `set` at the current time.
pub fn compile(set: &PolicySet, protect: &ProtectSet) -> Tables {
    compile_at(set, protect, jiff::Timestamp::now().into())
}

/// Compiles the tables for `set` as they hold at `now`.
pub fn compile_at(set: &PolicySet, protect: &ProtectSet, now: When) -> Tables {
    let mut t = Tables::default();
    let ids = enforce_ids(set);
    for e in protect.entries() {
        // The policy of the innermost protected path (docs/policy.md): of the enforce-mode
        // policies covering the rule's path, the one whose covering path is the longest.
        let depth = |i: usize| match set.policies()[i].covering(&e.path).map(|t| &t.kind) {
            Some(TargetKind::Path(p)) => Some(p.as_os_str().len()),
            Some(TargetKind::Glob { .. }) => Some(0),
            None => None,
        };
        let id = ids
            .iter()
            .filter_map(|&(id, i)| Some((depth(i)?, std::cmp::Reverse(id))))
            .max()
            .map(|(_, std::cmp::Reverse(id))| id);
        if let Some(id) = id {
            t.rule_policy.push((e.value.rule, id));
        }
    }
    let action_of = |i: usize| match set.policies()[i].default.action {
        Action::Kill => ACTION_KILL,
        Action::Deny => ACTION_DENY,
        Action::Alert => ACTION_ALERT,
        Action::Audit => ACTION_AUDIT,
    };
    for &(id, i) in &ids {
        let policy = &set.policies()[i];
        let Some(path) = representative(set, &policy.name) else {
            t.defaults.push((id, PolicyDefault { action: action_of(i), _pad: 0 }));
            continue;
        };
        // Every enforce-mode policy covering the path takes part (an outer tree's policy
        // too): their users and programs get table entries, and a user none of them allows
        // gets the strictest of their defaults, as `evaluate` would decide.
        let covering: Vec<usize> =
            ids.iter().map(|&(_, j)| j).filter(|&j| set.policies()[j].covering(&path).is_some()).collect();
        let action = covering.iter().map(|&j| action_of(j)).max_by_key(|&a| strictness(a));
        t.defaults.push((id, PolicyDefault { action: action.unwrap_or(0), _pad: 0 }));
        let mut uids = BTreeSet::new();
        let mut programs = BTreeSet::new();
        for entry in covering.iter().flat_map(|&j| &set.policies()[j].allow) {
            uids.extend(entry.subjects.uids.iter().map(|(u, _)| *u));
            for (gid, _) in &entry.subjects.gids {
                uids.extend(group_members(*gid));
            }
            programs.extend(entry.programs.iter().flatten().map(|p| p.path.clone()));
        }
        for uid in uids {
            let allowed = |program: &Path| {
                COMBOS.iter().fold(0, |mask, (bit, ops)| {
                    let mut set_ops = OpSet::EMPTY;
                    for op in *ops {
                        set_ops.insert(*op);
                    }
                    let req = AccessRequest {
                        path: &path,
                        ops: set_ops,
                        uid,
                        auid: None,
                        program: Executable { path: program, sha256: None },
                        time: now,
                    };
                    mask | level_bits(set.evaluate_enforced(&req).verdict, *bit)
                })
            };
            let any = allowed(Path::new(""));
            if any != 0 {
                t.any.insert(AllowKey { policy: id, uid }, any);
            }
            for program in &programs {
                let mask = allowed(program) & !any;
                let Ok(meta) = std::fs::metadata(program) else { continue };
                if mask != 0 {
                    let key = AllowProgramKey {
                        policy: id,
                        uid,
                        dev: kernel_dev(meta.dev()),
                        _pad: 0,
                        ino: meta.ino(),
                    };
                    t.programs.insert(key, mask);
                }
            }
        }
    }
    t
}

/// The rank of a default action among covering policies: the strictest refusal first, then
/// `alert` before `audit` (the order of `Verdict`).
fn strictness(action: u32) -> u8 {
    match action {
        ACTION_KILL => 4,
        ACTION_DENY => 3,
        ACTION_ALERT => 2,
        ACTION_AUDIT => 1,
        _ => 0,
    }
}

/// The table bits of combination `bit` for a verdict of the `enforce`-mode policies: one per
/// level the access passes.
fn level_bits(verdict: Verdict, bit: u32) -> u32 {
    match verdict {
        Verdict::Deny | Verdict::Kill => 0,
        Verdict::Alert => bit,
        Verdict::Audit => bit | bit << UNALERTED_SHIFT,
        Verdict::Allow | Verdict::WouldDeny => bit | bit << UNALERTED_SHIFT | bit << UNRECORDED_SHIFT,
    }
}

/// A path the policy protects, to evaluate requests against.
fn representative(set: &PolicySet, policy: &str) -> Option<PathBuf> {
    set.protect_specs().into_iter().filter(|s| &*s.policy == policy).find_map(|s| match s.target {
        ProtectTarget::Path(p) => Some(p),
        ProtectTarget::Glob { .. } => None,
    })
}

/// Users whose primary group is `gid` or who are listed as its members (NSS).
pub(crate) fn group_members(gid: u32) -> Vec<u32> {
    let mut names = Vec::new();
    let mut uids = Vec::new();
    // SAFETY: getgrgid/getpwent return pointers into static storage that stay valid until the
    // next call of the same family; we copy out what we need at once. The daemon calls these
    // only from this function, on one thread.
    unsafe {
        let gr = libc::getgrgid(gid);
        if !gr.is_null() && !(*gr).gr_mem.is_null() {
            let mut m = (*gr).gr_mem;
            while !(*m).is_null() {
                names.push(CStr::from_ptr(*m).to_owned());
                m = m.add(1);
            }
        }
        libc::setpwent();
        loop {
            let pw = libc::getpwent();
            if pw.is_null() {
                break;
            }
            let name = CStr::from_ptr((*pw).pw_name);
            if (*pw).pw_gid == gid || names.iter().any(|n| n.as_c_str() == name) {
                uids.push((*pw).pw_uid);
            }
        }
        libc::endpwent();
    }
    uids
}

#[cfg(test)]
#[path = "lsm_tests.rs"]
mod tests;
