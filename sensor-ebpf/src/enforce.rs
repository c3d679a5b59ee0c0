//! The `kill` action: a process the policy says to kill is marked in `KILL_PENDING` by the
//! daemon while its open waits in a fanotify permission event (which the daemon then
//! denies); when the open returns, this program sends SIGKILL from the kernel, so the process
//! dies before it is back in user space — it never holds a descriptor or data.
//! `bpf_send_signal`: <https://github.com/torvalds/linux/blob/v6.12/kernel/trace/bpf_trace.c#L826>.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_send_signal},
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};

/// Processes to kill at their next open or exec return, by tgid.
#[map]
pub static KILL_PENDING: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);

const SIGKILL: u32 = 9;

/// Attached to the exits of the open and exec syscalls when a policy uses `kill`.
#[tracepoint]
pub fn kill_pending(_ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: presence check only.
    if unsafe { KILL_PENDING.get(tgid) }.is_some() {
        // SAFETY: the helper signals the current task.
        unsafe { bpf_send_signal(SIGKILL) };
        let _ = KILL_PENDING.remove(tgid);
    }
    0
}
