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
/// bpf(2) by another process writing to, deleting from or freezing one of the sensor's own
/// maps; `arg` is the command, `target` the map's id, `name` the map's name.
pub const TAMPER_BPF_MAP: u32 = 6;
/// `/proc/<sensor>/mem` (or `/proc/<sensor>/task/<tid>/mem`) opened by another process;
/// `target` is the sensor's pid, `result` the file's `FMODE_READ | FMODE_WRITE` bits.
pub const TAMPER_PROC_MEM: u32 = 7;
/// As [`TAMPER_PROC_MEM`] for `/proc/<sensor>/environ`.
pub const TAMPER_PROC_ENVIRON: u32 = 8;

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
    /// 2 already pending, 3 queue full, 4 delivered without its info). For `/proc` files: the
    /// open file's `FMODE_READ` (1) and `FMODE_WRITE` (2) bits.
    pub result: u32,
    /// For [`TAMPER_BPF_MAP`]: the map's name (`struct bpf_map.name`, NUL-padded).
    pub name: [u8; 16],
}

/// What the tamper programs need to know about the sensor, set by the daemon at load
/// (`sensor/src/kernel/procfs.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TamperConfig {
    /// `PROC_SUPER_MAGIC`: a `/proc` file's superblock magic.
    pub proc_magic: u64,
    /// The sensor's pid in decimal, NUL-padded: the name of its `/proc` directory.
    pub tgid_name: [u8; 16],
}

#[cfg(feature = "user")]
// SAFETY: repr(C), plain integers.
unsafe impl aya::Pod for TamperConfig {}

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

/// bpf(2) commands that change a map, reported when the map is one of the sensor's. The
/// element commands and `BPF_MAP_FREEZE` name the map at the start of `union bpf_attr`, the
/// batch commands after four pointers and the count (byte 36).
pub const BPF_MAP_UPDATE_ELEM: u32 = 2;
pub const BPF_MAP_DELETE_ELEM: u32 = 3;
pub const BPF_MAP_LOOKUP_AND_DELETE_ELEM: u32 = 21;
pub const BPF_MAP_FREEZE: u32 = 22;
pub const BPF_MAP_LOOKUP_AND_DELETE_BATCH: u32 = 25;
pub const BPF_MAP_UPDATE_BATCH: u32 = 26;
pub const BPF_MAP_DELETE_BATCH: u32 = 27;

/// Byte offset of `map_fd` in the `union bpf_attr` of a map-changing command, `None` for
/// other commands.
pub const fn map_fd_offset(cmd: u32) -> Option<u64> {
    match cmd {
        BPF_MAP_UPDATE_ELEM | BPF_MAP_DELETE_ELEM | BPF_MAP_LOOKUP_AND_DELETE_ELEM | BPF_MAP_FREEZE => {
            Some(0)
        }
        BPF_MAP_LOOKUP_AND_DELETE_BATCH | BPF_MAP_UPDATE_BATCH | BPF_MAP_DELETE_BATCH => Some(36),
        _ => None,
    }
}
