//! Tamper signals: other processes acting on the sensor (wire type:
//! `sensor_common::event::tamper`; user half: `sensor/src/event/tamper.rs`).
//!
//! - signals: the raw tracepoint `signal_generate(sig, info, task, group, result)` sees every
//!   signal the kernel generates, whatever the syscall (kill, tgkill, pidfd_send_signal, a
//!   timer); it is kept when the target task belongs to the sensor and the sender does not
//!   (<https://github.com/torvalds/linux/blob/v6.12/include/trace/events/signal.h#L50>).
//! - ptrace, process_vm_readv/writev: the entry of the syscall naming the sensor's pid.
//! - bpf: the entry of bpf(2) by another process, for the commands that load, attach,
//!   detach or replace programs.
//!
//! Syscall entry records hold `args[]` from byte 16 (`struct syscall_trace_enter`: the
//! 8-byte common header, the syscall number, then the 8-byte arguments).
//! Each program is optional: the daemon lists those that do not load in `sensor.start`.
use aya_ebpf::{
    macros::{map, raw_tracepoint, tracepoint},
    maps::PerCpuArray,
    programs::{RawTracePointContext, TracePointContext},
};
use sensor_common::event::{
    Kind,
    tamper::{
        BPF_LINK_CREATE, BPF_LINK_DETACH, BPF_LINK_UPDATE, BPF_PROG_ATTACH, BPF_PROG_DETACH, BPF_PROG_LOAD,
        BPF_RAW_TRACEPOINT_OPEN, SIGCHLD, TAMPER_BPF, TAMPER_PTRACE, TAMPER_SIGNAL, TAMPER_VM_READ,
        TAMPER_VM_WRITE, Tamper,
    },
};

use crate::{
    emit::{header_for_current, send},
    kread::{config, off, read},
};

#[map]
static TAMPER_SCRATCH: PerCpuArray<Tamper> = PerCpuArray::with_max_entries(1, 0);

/// Byte offset of syscall argument `n` in a `sys_enter_*` record.
const fn arg(n: usize) -> usize {
    16 + 8 * n
}

/// Sends a record about the current task, unless it is the sensor itself.
#[inline(always)]
fn report(op: u32, arg: u32, target: u32, result: u32) {
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
    report(TAMPER_SIGNAL, sig, tid, ctx.arg::<u64>(4) as u32);
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
        report(TAMPER_PTRACE, request as u32, pid as u32, 0);
    }
    0
}

/// `process_vm_readv/writev(pid_t pid, …)`.
#[inline(always)]
fn on_process_vm(ctx: &TracePointContext, op: u32) -> u32 {
    let Some(pid) = syscall_arg(ctx, 0) else { return 0 };
    if pid as u32 == config!(self_tgid) {
        report(op, 0, pid as u32, 0);
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
        report(TAMPER_BPF, cmd, 0, 0);
    }
    0
}
