//! The ring buffer to the daemon, with batched wakeups and per-kind loss counters.
//!
//! Waking the consumer for every record costs the traced process more than the record
//! itself (shared/reference/performance.md §4.3), so records are submitted with
//! `BPF_RB_NO_WAKEUP` and the daemon drains on a short timer; only when more than
//! `CONFIG.wakeup_bytes` wait is the consumer woken. A record that does not fit is counted
//! in `LOST[kind]`, which the daemon reports as `sensor.event_loss`.
//!
//! Records that matter most (policy decisions, opens by users outside a covering policy's
//! allow list, `crate::priority`) go to a second ring, `PRIORITY_EVENTS`, that bulk traffic
//! never writes to. Dropped file records also name who lost them (`LOSS_WHO`).
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::bpf_ktime_get_boot_ns,
    macros::map,
    maps::{LruHashMap, PerCpuArray, RingBuf},
};
use sensor_common::event::{
    Header, KIND_SLOTS, Kind, Task,
    file::{LossKey, LossWho},
};

use crate::kread::{config, current_task, fill_task};

/// Records for the daemon. Userspace sets the size at load (`--ring-buffer-bytes`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// The priority records (`crate::priority`). Userspace sets the size at load.
#[map]
pub static PRIORITY_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Dropped file records by (kind, uid, device, inode): who lost records, read by the daemon
/// with the loss counters.
#[map]
static LOSS_WHO: LruHashMap<LossKey, LossWho> = LruHashMap::with_max_entries(4096, 0);

/// Records dropped because `EVENTS` was full, per CPU, indexed by [`Kind`].
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_SLOTS, 0);

/// Nanoseconds since boot (CLOCK_BOOTTIME), the time base of every record.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_ktime_get_boot_ns() }
}

/// Fills a record header for the current task. Returns `false` for the daemon's own
/// activity, which is never reported.
#[inline(always)]
pub fn header_for_current(kind: Kind, header: &mut Header) -> bool {
    header.kind = kind as u32;
    header.time_ns = now();
    header.flags = fill_task(current_task(), &mut header.task);
    header.task.tgid != config!(self_tgid)
}

/// Fills a header for a task remembered earlier (the owner of a connection).
#[inline(always)]
pub fn header_for(kind: Kind, task: &Task, header: &mut Header) {
    header.kind = kind as u32;
    header.time_ns = now();
    header.flags = 0;
    header.task = *task;
}

/// Sends the first `len` bytes at `record` (`len` must be bounded by the caller) or counts
/// the loss.
#[inline(always)]
pub fn send(kind: Kind, record: *const u8, len: usize) {
    if !send_to(&EVENTS, record, len) {
        count_loss(kind);
    }
}

/// [`send`] on the priority ring (`priority`) or the bulk one; `false` when it did not fit
/// (the caller counts the loss).
#[inline(always)]
pub fn send_to_ring(priority: bool, record: *const u8, len: usize) -> bool {
    if priority { send_to(&PRIORITY_EVENTS, record, len) } else { send_to(&EVENTS, record, len) }
}

#[inline(always)]
fn send_to(ring: &RingBuf, record: *const u8, len: usize) -> bool {
    // SAFETY: the caller passes a pointer into a map value that holds at least `len` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(record, len) };
    // Wake the consumer once, when this record makes the backlog cross the threshold; while
    // it is behind it has been woken already, and a wakeup per record (an IPI each) would
    // multiply the cost of every traced syscall.
    let waiting = ring.query(u64::from(BPF_RB_AVAIL_DATA));
    let threshold = config!(wakeup_bytes);
    let crosses = waiting < threshold && waiting + len as u64 >= threshold;
    let flags = if crosses { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
    ring.output::<[u8]>(bytes, u64::from(flags)).is_ok()
}

/// Counts a dropped file record of `uid` about (`dev`, `ino`) standing for `opens` opens.
#[inline(always)]
pub fn count_loss_of(kind: Kind, uid: u32, dev: u32, ino: u64, opens: u64) {
    count_loss(kind);
    let key = LossKey { kind: kind as u32, uid, dev, _pad: 0, ino };
    match LOSS_WHO.get_ptr_mut(key) {
        Some(v) => {
            // SAFETY: points into the map value; only counters are added.
            let v = unsafe { &mut *v };
            crate::io::add(&mut v.records, 1);
            crate::io::add(&mut v.opens, opens);
        }
        None => {
            let _ = LOSS_WHO.insert(key, LossWho { records: 1, opens }, 0);
        }
    }
}

/// The responsible uid of a record's task: its login uid when set, else its effective uid.
#[inline(always)]
pub fn responsible_uid(task: &Task) -> u32 {
    if task.auid == u32::MAX { task.euid } else { task.auid }
}

/// Counts a record that could not be delivered.
#[inline(always)]
pub fn count_loss(kind: Kind) {
    if let Some(counter) = LOST.get_ptr_mut(kind as u32) {
        // SAFETY: per-CPU slot; no other writer on this CPU while we run.
        unsafe { *counter += 1 };
    }
}
