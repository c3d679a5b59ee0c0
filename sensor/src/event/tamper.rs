//! `sensor.tamper`: another process acting on the sensor (kernel half:
//! `sensor-ebpf/src/tamper.rs`; decoded in `crate::decode`). Events, not prevention: the
//! record names the actor so that an attempt to blind the sensor is seen.
use sensor_common::event::tamper::{
    BPF_LINK_CREATE, BPF_LINK_DETACH, BPF_LINK_UPDATE, BPF_PROG_ATTACH, BPF_PROG_DETACH, BPF_PROG_LOAD,
    BPF_RAW_TRACEPOINT_OPEN,
};

use super::{Record, Subject, attr, json};

/// What the actor did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TamperOp {
    /// Sent signal `signal` to the sensor's thread `target`; `result` is the kernel's
    /// `TRACE_SIGNAL_*` delivery result.
    Signal { signal: u32, target: u32, result: u32 },
    /// ptrace(2) `request` on the sensor.
    Ptrace { request: u32, target: u32 },
    /// process_vm_readv(2) (`write == false`) or process_vm_writev(2) on the sensor.
    ProcessVm { write: bool, target: u32 },
    /// bpf(2) command `command`.
    Bpf { command: u32 },
    /// A change to one of the sensor's own files (`crate::selfwatch`).
    File(FileTamper),
}

/// A change another process made to one of the sensor's own files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileTamper {
    /// What the file is to the sensor: `binary`, `unit`, `config`, `policy` or `state`.
    pub role: &'static str,
    /// What was done: `write`, `truncate`, `create`, `delete`, `replace`, `rename`, `chmod`,
    /// `chown` or `attrib`.
    pub action: &'static str,
    pub path: String,
    /// For `rename`: where the file was.
    pub old_path: Option<String>,
}

/// `sensor.tamper`.
#[derive(Clone, Debug)]
pub struct Tamper {
    /// The actor.
    pub subject: Subject,
    pub op: TamperOp,
}

impl Tamper {
    pub fn write(&self, rec: &mut Record) {
        self.subject.write(rec);
        let out = rec.body();
        match &self.op {
            TamperOp::Signal { signal, target, result } => {
                json::pair(out, attr::TAMPER_KIND, "signal");
                json::pair(out, attr::TAMPER_SIGNAL, &signal);
                json::pair(out, attr::TAMPER_SIGNAL_RESULT, signal_result(*result));
                json::pair(out, attr::TAMPER_TARGET_PID, &target);
            }
            TamperOp::Ptrace { request, target } => {
                json::pair(out, attr::TAMPER_KIND, "ptrace");
                json::pair(out, attr::TAMPER_PTRACE_REQUEST, &request);
                json::pair(out, attr::TAMPER_TARGET_PID, &target);
            }
            TamperOp::ProcessVm { write, target } => {
                json::pair(
                    out,
                    attr::TAMPER_KIND,
                    if *write { "process_vm_write" } else { "process_vm_read" },
                );
                json::pair(out, attr::TAMPER_TARGET_PID, &target);
            }
            TamperOp::Bpf { command } => {
                json::pair(out, attr::TAMPER_KIND, "bpf");
                json::pair(out, attr::TAMPER_BPF_COMMAND, bpf_command(*command));
            }
            TamperOp::File(f) => {
                json::pair(out, attr::TAMPER_KIND, "file");
                json::pair(out, attr::TAMPER_FILE_ROLE, f.role);
                json::pair(out, attr::TAMPER_FILE_ACTION, f.action);
                json::pair(out, attr::FILE_PATH, f.path.as_str());
                json::opt(out, attr::FILE_OLD_PATH, f.old_path.as_deref());
            }
        }
    }
}

/// `enum trace_signal_result`
/// (<https://github.com/torvalds/linux/blob/v6.12/include/trace/events/signal.h#L24>).
fn signal_result(result: u32) -> &'static str {
    match result {
        0 => "delivered",
        1 => "ignored",
        2 => "already_pending",
        3 => "overflow",
        4 => "lost_info",
        _ => "unknown",
    }
}

/// The name of a reported bpf(2) command.
fn bpf_command(command: u32) -> &'static str {
    match command {
        BPF_PROG_LOAD => "BPF_PROG_LOAD",
        BPF_PROG_ATTACH => "BPF_PROG_ATTACH",
        BPF_PROG_DETACH => "BPF_PROG_DETACH",
        BPF_RAW_TRACEPOINT_OPEN => "BPF_RAW_TRACEPOINT_OPEN",
        BPF_LINK_CREATE => "BPF_LINK_CREATE",
        BPF_LINK_UPDATE => "BPF_LINK_UPDATE",
        BPF_LINK_DETACH => "BPF_LINK_DETACH",
        _ => "other",
    }
}
