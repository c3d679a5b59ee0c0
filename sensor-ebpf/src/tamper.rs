//! Tamper signals: other processes acting on the sensor (wire type:
//! `sensor_common::event::tamper`; user half: `sensor/src/event/tamper.rs`).
//!
//! - signals: the raw tracepoint `signal_generate(sig, info, task, group, result)` sees every
//!   signal the kernel generates, whatever the syscall (kill, tgkill, pidfd_send_signal, a
//!   timer); it is kept when the target task belongs to the sensor and the sender does not
//!   (<https://github.com/torvalds/linux/blob/v6.12/include/trace/events/signal.h#L50>).
//! - ptrace, process_vm_readv/writev: the entry of the syscall naming the sensor's pid.
//! - bpf: the entry of bpf(2) by another process, for the commands that load, attach,
//!   detach or replace programs, and for the commands that change a map when the map is one
//!   of the sensor's (`map_fd` → `struct file` → `private_data`, the `struct bpf_map`, whose
//!   id is looked up in `SELF_MAPS`, filled by the daemon at load).
//! - `/proc/<sensor>/mem` and `/proc/<sensor>/environ` opened by another process: the open
//!   program (`file.rs`) checks every file it finds unprotected; when the sensor protects
//!   nothing and no open program runs, `tamper_proc_open` takes the `struct file` at the
//!   descriptor the open syscalls return. Only a file on procfs (superblock magic) goes on to
//!   the name compares (`sensor/src/kernel/procfs.rs`).
//!
//! Syscall entry records hold `args[]` from byte 16 (`struct syscall_trace_enter`: the
//! 8-byte common header, the syscall number, then the 8-byte arguments).
//! Each program is optional: the daemon lists those that do not load in `sensor.start`.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user},
    macros::{map, raw_tracepoint, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::{RawTracePointContext, TracePointContext},
};
use sensor_common::event::{
    Kind,
    tamper::{
        BPF_LINK_CREATE, BPF_LINK_DETACH, BPF_LINK_UPDATE, BPF_PROG_ATTACH, BPF_PROG_DETACH, BPF_PROG_LOAD,
        BPF_RAW_TRACEPOINT_OPEN, SIGCHLD, TAMPER_BPF, TAMPER_BPF_MAP, TAMPER_PROC_ENVIRON, TAMPER_PROC_MEM,
        TAMPER_PTRACE, TAMPER_SIGNAL, TAMPER_VM_READ, TAMPER_VM_WRITE, Tamper, TamperConfig, map_fd_offset,
    },
};

use crate::{
    emit::{header_for_current, send},
    kread::{config, current_task, file_of_fd, off, path_of, ptr, read, sys_exit_ret},
};

#[map]
static TAMPER_SCRATCH: PerCpuArray<Tamper> = PerCpuArray::with_max_entries(1, 0);

/// The ids of the sensor's own maps (value unused), filled by the daemon at load.
#[map]
static SELF_MAPS: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);

/// Set by the daemon at load (`sensor/src/kernel/procfs.rs`).
#[unsafe(no_mangle)]
static TAMPER_CONFIG: TamperConfig = TamperConfig { proc_magic: 0, tgid_name: [0; 16] };

/// Byte offset of syscall argument `n` in a `sys_enter_*` record.
const fn arg(n: usize) -> usize {
    16 + 8 * n
}

/// Sends a record about the current task, unless it is the sensor itself. `map` is the
/// `struct bpf_map` named by a `TAMPER_BPF_MAP` record (0 otherwise).
#[inline(always)]
fn report(op: u32, arg: u32, target: u32, result: u32, map: u64) {
    let Some(ev) = TAMPER_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU scratch, exclusively ours while the program runs.
    let ev = unsafe { &mut *ev };
    if !header_for_current(Kind::Tamper, &mut ev.header) {
        return;
    }
    ev.op = op;
    ev.arg = arg;
    ev.target = target;
    ev.result = result;
    ev.name = if map == 0 { [0; 16] } else { read(map, off!(bpf_map_name)).unwrap_or([0; 16]) };
    send(Kind::Tamper, (ev as *const Tamper).cast(), size_of::<Tamper>());
}

/// `signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task, int group,
/// int result)`.
#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn tamper_signal(ctx: RawTracePointContext) -> i32 {
    let sig = ctx.arg::<u64>(0) as u32;
    if sig == SIGCHLD {
        return 0;
    }
    let task: u64 = ctx.arg(2);
    let Ok(tgid) = read::<u32>(task, off!(task_struct_tgid)) else { return 0 };
    if tgid != config!(self_tgid) {
        return 0;
    }
    let tid = read::<u32>(task, off!(task_struct_pid)).unwrap_or(0);
    report(TAMPER_SIGNAL, sig, tid, ctx.arg::<u64>(4) as u32, 0);
    0
}

/// The syscall argument `n` of a `sys_enter_*` record.
#[inline(always)]
fn syscall_arg(ctx: &TracePointContext, n: usize) -> Option<u64> {
    // SAFETY: probe-read of the tracepoint record.
    unsafe { ctx.read_at::<u64>(arg(n)) }.ok()
}

/// `ptrace(long request, long pid, …)`.
#[tracepoint(category = "syscalls", name = "sys_enter_ptrace")]
pub fn tamper_ptrace(ctx: TracePointContext) -> u32 {
    let (Some(request), Some(pid)) = (syscall_arg(&ctx, 0), syscall_arg(&ctx, 1)) else { return 0 };
    if pid as u32 == config!(self_tgid) {
        report(TAMPER_PTRACE, request as u32, pid as u32, 0, 0);
    }
    0
}

/// `process_vm_readv/writev(pid_t pid, …)`.
#[inline(always)]
fn on_process_vm(ctx: &TracePointContext, op: u32) -> u32 {
    let Some(pid) = syscall_arg(ctx, 0) else { return 0 };
    if pid as u32 == config!(self_tgid) {
        report(op, 0, pid as u32, 0, 0);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_process_vm_readv")]
pub fn tamper_vm_read(ctx: TracePointContext) -> u32 {
    on_process_vm(&ctx, TAMPER_VM_READ)
}

#[tracepoint(category = "syscalls", name = "sys_enter_process_vm_writev")]
pub fn tamper_vm_write(ctx: TracePointContext) -> u32 {
    on_process_vm(&ctx, TAMPER_VM_WRITE)
}

/// `bpf(int cmd, union bpf_attr *attr, unsigned int size)`.
#[tracepoint(category = "syscalls", name = "sys_enter_bpf")]
pub fn tamper_bpf(ctx: TracePointContext) -> u32 {
    let Some(cmd) = syscall_arg(&ctx, 0) else { return 0 };
    let cmd = cmd as u32;
    if matches!(
        cmd,
        BPF_PROG_LOAD
            | BPF_PROG_ATTACH
            | BPF_PROG_DETACH
            | BPF_RAW_TRACEPOINT_OPEN
            | BPF_LINK_CREATE
            | BPF_LINK_UPDATE
            | BPF_LINK_DETACH
    ) {
        report(TAMPER_BPF, cmd, 0, 0, 0);
    } else if let Some(at) = map_fd_offset(cmd) {
        on_map_change(&ctx, cmd, at);
    }
    0
}

/// A map-changing bpf(2) command: reported when `attr.map_fd` (at byte `at`) is one of the
/// sensor's maps and the caller is not the sensor.
#[inline(always)]
fn on_map_change(ctx: &TracePointContext, cmd: u32, at: u64) {
    if (bpf_get_current_pid_tgid() >> 32) as u32 == config!(self_tgid) {
        return;
    }
    let Some(attr) = syscall_arg(ctx, 1) else { return };
    // SAFETY: probe-read of the caller's memory; fails instead of faulting.
    let Ok(fd) = (unsafe { bpf_probe_read_user((attr + at) as *const u32) }) else { return };
    let Ok(file) = file_of_fd(current_task(), i64::from(fd)) else { return };
    let Ok(map) = ptr(file, off!(file_private_data)) else { return };
    let Ok(id) = read::<u32>(map, off!(bpf_map_id)) else { return };
    // SAFETY: a plain lookup; the value is not used.
    if unsafe { SELF_MAPS.get(id) }.is_some() {
        report(TAMPER_BPF_MAP, cmd, id, 0, map);
    }
}

/// A `/proc` file's own name or its directory's, NUL-padded (longer names are cut, which
/// never matches: every name compared is shorter).
#[inline(always)]
fn dentry_name(dentry: u64) -> [u8; 16] {
    let mut buf = [0u8; 16];
    let Ok(name) = ptr(dentry, off!(dentry_d_name) + off!(qstr_name)) else { return buf };
    // SAFETY: probe-read of a kernel string into a stack buffer.
    let _ = unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut buf) };
    buf
}

/// Whether two names are equal, as two 8-byte compares (no `memcmp` in BPF).
#[inline(always)]
fn same(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let half = |n: &[u8; 16], i: usize| {
        u64::from_ne_bytes([n[i], n[i + 1], n[i + 2], n[i + 3], n[i + 4], n[i + 5], n[i + 6], n[i + 7]])
    };
    half(a, 0) == half(b, 0) && half(a, 8) == half(b, 8)
}

/// `d_parent` of `dentry`.
#[inline(always)]
fn parent(dentry: u64) -> u64 {
    ptr(dentry, off!(dentry_d_parent)).unwrap_or(0)
}

const MEM: [u8; 16] = *b"mem\0\0\0\0\0\0\0\0\0\0\0\0\0";
const ENVIRON: [u8; 16] = *b"environ\0\0\0\0\0\0\0\0\0";
const TASK: [u8; 16] = *b"task\0\0\0\0\0\0\0\0\0\0\0\0";

/// The exit of the open syscalls when no open program runs (the sensor protects nothing):
/// [`proc_opened`] for the file at the returned descriptor.
#[tracepoint(category = "syscalls", name = "sys_exit_openat")]
pub fn tamper_proc_open(ctx: TracePointContext) -> u32 {
    let Ok(fd) = sys_exit_ret(&ctx) else { return 0 };
    if fd < 0 {
        return 0;
    }
    let Ok(file) = file_of_fd(current_task(), fd) else { return 0 };
    let Ok((_, dentry)) = path_of(file, off!(file_f_path)) else { return 0 };
    let Ok(sb) = ptr(file, off!(file_f_inode)).and_then(|inode| ptr(inode, off!(inode_i_sb))) else {
        return 0;
    };
    proc_opened(file, dentry, sb);
    0
}

/// `/proc/<sensor>/mem`, `/proc/<sensor>/environ` or the same under
/// `/proc/<sensor>/task/<tid>/`, opened by another process: called for every open that is not
/// of a protected file, by the open program (`file.rs`) or by [`tamper_proc_open`]. `sb` is
/// the file's `struct super_block *`.
#[inline(always)]
pub fn proc_opened(file: u64, dentry: u64, sb: u64) {
    // SAFETY: TAMPER_CONFIG is a valid static; the volatile read keeps the load.
    let conf = unsafe { core::ptr::read_volatile(&raw const TAMPER_CONFIG) };
    // The one compare every open pays; everything below runs for `/proc` files only.
    if read::<u64>(sb, off!(super_block_s_magic)) != Ok(conf.proc_magic) {
        return;
    }
    let name = dentry_name(dentry);
    let op = if same(&name, &MEM) {
        TAMPER_PROC_MEM
    } else if same(&name, &ENVIRON) {
        TAMPER_PROC_ENVIRON
    } else {
        return;
    };
    let dir = parent(dentry);
    let ours = same(&dentry_name(dir), &conf.tgid_name) || {
        let up = parent(dir);
        same(&dentry_name(up), &TASK) && same(&dentry_name(parent(up)), &conf.tgid_name)
    };
    if ours {
        let mode = read::<u32>(file, off!(file_f_mode)).unwrap_or(0);
        report(op, 0, config!(self_tgid), mode & 3, 0);
    }
}
