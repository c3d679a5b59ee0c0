//! In-kernel enforcement of `enforce`-mode policies (wire types:
//! `sensor_common::event::policy`; user half: `sensor/src/enforce/lsm.rs`): the BPF LSM
//! program `file_open` where `bpf` is an active LSM, else the `fmod_ret` program
//! `file_open_modret` on `security_file_open` where fentry programs load (Ubuntu and RHEL
//! kernels). Both are thin entry points to one decision ([`enforce_open`]); the daemon loads
//! at most one of them.
//!
//! `file_open` is the LSM hook every open passes, in every path into the VFS:
//! <https://github.com/torvalds/linux/blob/v6.12/include/linux/lsm_hook_defs.h#L196>. The
//! program finds the protecting rule (the lookup the fentry program of `file.rs` made of the
//! same open a moment before, else the same ancestry walk), the policy of the rule
//! (`RULE_POLICY`), the responsible uid (login uid, else fsuid) and the executable, and
//! returns `-EPERM` when the compiled allow tables refuse the access. `kill` also sends
//! SIGKILL. Every refusal, and every access the tables mark for `alert` or `audit` (let
//! through), is sent to the daemon as a decision record.
use core::mem::offset_of;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_send_signal},
    macros::{lsm, map},
    maps::{Array, HashMap, PerCpuArray},
    programs::{FEntryContext, LsmContext},
};
use sensor_common::event::{
    Kind,
    file::FMODE_CREATED,
    policy::{
        ACTION_ALERT, ACTION_AUDIT, ACTION_DENY, ACTION_KILL, AllowKey, AllowProgramKey,
        COMBO_CREATE_READ_WRITE, COMBO_CREATE_WRITE, COMBO_EXEC, COMBO_READ, COMBO_READ_WRITE, COMBO_WRITE,
        HOOK_BPF_LSM, HOOK_FMOD_RET, LsmDecision, PolicyDefault, UNALERTED_SHIFT, UNRECORDED_SHIFT,
    },
};

use crate::{
    emit::{count_loss_of, header_for_current, responsible_uid, send_to_ring},
    kread::{config, current_task, dentry_ino_dev, off, path_of, ptr, read},
    path::{find_protected, recall_lookup, write_record_path},
};

/// Policy id (0: none) of each protection rule.
#[map]
static RULE_POLICY: Array<u32> = Array::with_max_entries(4096, 0);
/// Default action per policy id.
#[map]
static POLICY_DEFAULT: Array<PolicyDefault> = Array::with_max_entries(4096, 0);
/// Allowed operation combinations per (policy, uid), any program.
#[map]
static ALLOW_ANY: HashMap<AllowKey, u32> = HashMap::with_max_entries(65536, 0);
/// Allowed operation combinations per (policy, uid, executable).
#[map]
static ALLOW_PROGRAM: HashMap<AllowProgramKey, u32> = HashMap::with_max_entries(65536, 0);
#[map]
static DECISION_SCRATCH: PerCpuArray<LsmDecision> = PerCpuArray::with_max_entries(1, 0);

const EPERM: i32 = 1;
const SIGKILL: u32 = 9;
/// `FMODE_READ`, `FMODE_WRITE`, `FMODE_EXEC`
/// (<https://github.com/torvalds/linux/blob/v6.12/include/linux/fs.h#L110>).
const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;
const FMODE_EXEC: u32 = 0x20;

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    enforce_open(ctx.arg(0), HOOK_BPF_LSM)
}

/// `int security_file_open(struct file *file)` as a `BPF_MODIFY_RETURN` program: the verifier
/// lets `fmod_ret` programs change the return value of every `security_*` function
/// (`check_attach_modify_return` and `SECURITY_PREFIX` in
/// <https://github.com/torvalds/linux/blob/v6.12/kernel/bpf/verifier.c>). Arguments: the file,
/// then the return value so far (that of an earlier `fmod_ret` program, 0 at first); a
/// non-zero value makes the kernel skip `security_file_open` and return it.
///
/// Placed in an `fentry/` section so that aya 0.14, which has no `fmod_ret` program type,
/// parses the object; aya never loads it: `sensor/src/bpf/fmod_ret.rs` loads it as
/// `BPF_MODIFY_RETURN`.
#[unsafe(no_mangle)]
#[unsafe(link_section = "fentry/security_file_open")]
pub fn file_open_modret(ctx: *mut core::ffi::c_void) -> i32 {
    let ctx = FEntryContext::new(ctx);
    let ret = ctx.arg::<u64>(1) as i32;
    if ret != 0 {
        return ret;
    }
    enforce_open(ctx.arg(0), HOOK_FMOD_RET)
}

/// The verdict on an open of `file`: 0 or `-EPERM`. The sensor itself is never refused (as
/// with fanotify, where its own opens are never asked): it reads the protected trees to
/// resolve them and to report open files.
#[inline(always)]
fn enforce_open(file: u64, hook: u16) -> i32 {
    if config!(lsm_enforce) == 0 || (bpf_get_current_pid_tgid() >> 32) as u32 == config!(self_tgid) {
        return 0;
    }
    match decide(file, hook) {
        Some(action) => {
            if action == ACTION_KILL {
                // SAFETY: signals the current task.
                unsafe { bpf_send_signal(SIGKILL) };
            }
            -EPERM
        }
        None => 0,
    }
}

/// `Some(action)` when the open must be refused; accesses recorded for `alert` or `audit`
/// are reported here and let through.
#[inline(always)]
fn decide(file: u64, hook: u16) -> Option<u32> {
    let (mnt, dentry) = path_of(file, off!(file_f_path)).ok()?;
    // The fentry program on `security_file_open` has looked this open up already.
    let prot = match recall_lookup(mnt, dentry) {
        Some(found) => found?,
        None => find_protected(mnt, dentry)?.1,
    };
    let policy = *RULE_POLICY.get(prot.rule)?;
    if policy == 0 {
        return None;
    }
    let task = current_task();
    let cred = ptr(task, off!(task_struct_cred)).ok()?;
    let fsuid: u32 = read(cred, off!(cred_fsuid)).ok()?;
    let auid: u32 = read(task, off!(task_struct_loginuid)).unwrap_or(u32::MAX);
    let uid = if auid == u32::MAX { fsuid } else { auid };
    let fmode: u32 = read(file, off!(file_f_mode)).unwrap_or(0);
    let combo = combo_of(fmode);

    // SAFETY (map reads): values are copied out at once.
    let mut allowed = unsafe { ALLOW_ANY.get(AllowKey { policy, uid }) }.copied().unwrap_or(0);
    if allowed & (combo << UNRECORDED_SHIFT) == 0
        && let Some((dev, ino)) = executable(task)
    {
        let key = AllowProgramKey { policy, uid, dev, _pad: 0, ino };
        allowed |= unsafe { ALLOW_PROGRAM.get(key) }.copied().unwrap_or(0);
    }
    let action = if allowed & combo == 0 {
        POLICY_DEFAULT.get(policy).map_or(0, |d| d.action)
    } else if allowed & (combo << UNALERTED_SHIFT) == 0 {
        ACTION_ALERT
    } else if allowed & (combo << UNRECORDED_SHIFT) == 0 {
        ACTION_AUDIT
    } else {
        0
    };
    if action == 0 {
        return None;
    }
    report(mnt, dentry, policy, action, combo, hook);
    (action == ACTION_DENY || action == ACTION_KILL).then_some(action)
}

/// The operation combination of an open.
#[inline(always)]
fn combo_of(fmode: u32) -> u32 {
    let read = fmode & FMODE_READ != 0;
    let write = fmode & FMODE_WRITE != 0;
    if fmode & FMODE_EXEC != 0 {
        COMBO_EXEC
    } else if fmode & FMODE_CREATED != 0 {
        if read { COMBO_CREATE_READ_WRITE } else { COMBO_CREATE_WRITE }
    } else if read && write {
        COMBO_READ_WRITE
    } else if write {
        COMBO_WRITE
    } else {
        COMBO_READ
    }
}

/// (device, inode) of the current process's executable.
#[inline(always)]
fn executable(task: u64) -> Option<(u32, u64)> {
    let mm = ptr(task, off!(task_struct_mm)).ok()?;
    let exe = ptr(mm, off!(mm_struct_exe_file)).ok()?;
    let (_, dentry) = path_of(exe, off!(file_f_path)).ok()?;
    let (ino, dev) = dentry_ino_dev(dentry).ok()?;
    Some((dev, ino))
}

#[inline(always)]
fn report(mnt: u64, dentry: u64, policy: u32, action: u32, combo: u32, hook: u16) {
    let Some(ev) = DECISION_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU scratch.
    let ev = unsafe { &mut *ev };
    if !header_for_current(Kind::PolicyDecision, &mut ev.header) {
        return;
    }
    ev.policy = policy;
    ev.action = action;
    ev.combo = combo;
    ev.hook = hook;
    let (ino, dev) = dentry_ino_dev(dentry).unwrap_or((0, 0));
    ev.ino = ino;
    ev.dev = dev;
    let (flags, n) = write_record_path(ev.data.as_mut_ptr(), &raw mut ev.cursor, mnt, dentry);
    ev.header.flags |= flags;
    ev.path_len = n as u16;
    let len = offset_of!(LsmDecision, data) + n as usize;
    if !send_to_ring(true, (ev as *const LsmDecision).cast(), len) {
        count_loss_of(Kind::PolicyDecision, responsible_uid(&ev.header.task), dev, ino, 0);
    }
}
