//! Which records go to the priority ring (`emit::PRIORITY_EVENTS`; user half:
//! `sensor/src/enforce/priority.rs`).
//!
//! An open of a protected file is a priority record when a policy covers the file and the
//! opener's responsible uid (login uid, else effective uid) is not named in that policy's
//! allow list (directly or through a group), whatever the policy's mode and the backend.
//! Bulk traffic of allowed users cannot consume the ring these records use. Policy
//! decisions of the BPF LSM program always go there (`lsm.rs`).
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap},
};
use sensor_common::event::{Task, policy::AllowKey};

use crate::emit::responsible_uid;

/// Guard id (0: none) of each protection rule: the covering policy (its index + 1).
#[map]
static GUARD_RULE: Array<u32> = Array::with_max_entries(4096, 0);
/// (guard id, uid) pairs the guard's allow list names.
#[map]
static GUARD_ALLOWED: HashMap<AllowKey, u8> = HashMap::with_max_entries(65536, 0);

/// Whether an open by `task` of a file protected by `rule` is a priority record.
#[inline(always)]
pub fn outsider(rule: u32, task: &Task) -> bool {
    let Some(&guard) = GUARD_RULE.get(rule) else { return false };
    if guard == 0 {
        return false;
    }
    let key = AllowKey { policy: guard, uid: responsible_uid(task) };
    // SAFETY: only presence is tested.
    unsafe { GUARD_ALLOWED.get(key) }.is_none()
}
