//! Tamper signals: other processes acting on the sensor (kernel half:
//! `sensor-ebpf/src/tamper.rs`; user half: `sensor/src/event/tamper.rs`).

use super::Header;

/// A signal sent to the sensor; `arg` is the signal number, `target` the thread it was sent to.
pub const TAMPER_SIGNAL: u32 = 1;
/// ptrace(2) aimed at the sensor; `arg` is the request, `target` the pid given.
pub const TAMPER_PTRACE: u32 = 2;
/// process_vm_readv(2) aimed at the sensor; `target` is the pid given.
pub const TAMPER_VM_READ: u32 = 3;
/// process_vm_writev(2) aimed at the sensor; `target` is the pid given.
pub const TAMPER_VM_WRITE: u32 = 4;
/// bpf(2) by another process with a command that loads, attaches or detaches programs;
/// `arg` is the command.
pub const TAMPER_BPF: u32 = 5;

/// `sensor.tamper` from the kernel. The header's task is the actor.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Tamper {
    pub header: Header,
    /// A `TAMPER_*` number.
    pub op: u32,
    /// Signal number, ptrace request or bpf command.
    pub arg: u32,
    /// The pid or thread id the actor named (0 for `bpf`).
    pub target: u32,
    /// For signals: the kernel's delivery result (`TRACE_SIGNAL_*`: 0 delivered, 1 ignored,
    /// 2 already pending, 3 queue full, 4 delivered without its info).
    pub result: u32,
}

/// `SIGCHLD`: the sensor's own children tell it they exited; never reported.
pub const SIGCHLD: u32 = 17;

/// bpf(2) commands reported: those that load, attach, detach or replace programs
/// (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/bpf.h#L896>).
pub const BPF_PROG_LOAD: u32 = 5;
pub const BPF_PROG_ATTACH: u32 = 8;
pub const BPF_PROG_DETACH: u32 = 9;
pub const BPF_RAW_TRACEPOINT_OPEN: u32 = 17;
pub const BPF_LINK_CREATE: u32 = 28;
pub const BPF_LINK_UPDATE: u32 = 29;
pub const BPF_LINK_DETACH: u32 = 34;
