//! Folding repeated opens of one file by one thread (wire types:
//! `sensor_common::event::file::{FoldSlot, CLOSE_FOLD}`; user half: `sensor/src/event/file.rs`).
//!
//! Per thread, `FOLD` remembers the protected file it opened last and the start of a window of
//! [`FOLD_WINDOW_NS`]. In one window the first [`FOLD_AFTER`] opens of that file get their own
//! `file.open` and `file.close` records; later ones get none: the open is counted in the slot
//! and its close adds its totals there (`closed`). The slot becomes one `file.close` record
//! with reason [`CLOSE_FOLD`] (`flush`) when the thread opens a file after the window ended
//! or opens another file, and when the thread exits; the daemon writes the slots still
//! waiting when it stops. Priority opens (`crate::priority`), creating opens and received
//! descriptors are never folded.
use core::mem::offset_of;

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use sensor_common::event::{
    Kind, Task,
    file::{CLOSE_FOLD, Close, FOLD_AFTER, FOLD_WINDOW_NS, FoldSlot, Tracked},
};

use crate::{
    emit::{count_loss_of, now, responsible_uid, send_to_ring},
    io::add,
};

/// Fold state by thread id.
#[map]
pub static FOLD: HashMap<u32, FoldSlot> = HashMap::with_max_entries(8192, 0);
#[map]
static FOLD_SCRATCH: PerCpuArray<Close> = PerCpuArray::with_max_entries(1, 0);
#[map]
static FOLD_INIT: PerCpuArray<FoldSlot> = PerCpuArray::with_max_entries(1, 0);

/// An open of (`dev`, `ino`) by `task` at `time`: the window it is folded into (no records
/// for it), or 0 when it gets its own records.
#[inline(always)]
pub fn open(task: &Task, dev: u32, ino: u64, time: u64) -> u64 {
    let tid = task.tid;
    if let Some(slot) = FOLD.get_ptr_mut(tid) {
        // SAFETY: the slot of the current thread; only this thread rewrites it (closes by
        // other threads only add to its counters).
        let s = unsafe { &mut *slot };
        if s.dev == dev && s.ino == ino && time.wrapping_sub(s.window_ns) < FOLD_WINDOW_NS {
            if s.emitted < FOLD_AFTER {
                s.emitted += 1;
                return 0;
            }
            if s.stats.fold_count == 0 {
                s.stats.opener = *task;
                s.stats.fold_first_ns = time;
            }
            s.stats.fold_count += 1;
            s.stats.fold_last_ns = time;
            return s.window_ns;
        }
        flush(s);
        reset(s, dev, ino, time);
        return 0;
    }
    let Some(init) = FOLD_INIT.get_ptr_mut(0) else { return 0 };
    // SAFETY: per-CPU scratch.
    let init = unsafe { &mut *init };
    reset(init, dev, ino, time);
    #[allow(clippy::needless_borrows_for_generic_args, reason = "a copy would put the slot on the BPF stack")]
    let _ = FOLD.insert(tid, &*init, 0);
    0
}

/// Starts a new window for (`dev`, `ino`) at `time` with its first open counted.
#[inline(always)]
fn reset(s: &mut FoldSlot, dev: u32, ino: u64, time: u64) {
    s.dev = dev;
    s.ino = ino;
    s.emitted = 1;
    s.window_ns = time;
    let t = &mut s.stats;
    t.dev = dev;
    t.ino = ino;
    t.io = 0;
    t.opened_ns = time;
    t.bytes_read = 0;
    t.bytes_written = 0;
    t.read_calls = 0;
    t.write_calls = 0;
    t.mmap_bytes = 0;
    t.fold_window = time;
    t.fold_count = 0;
    t.fold_closes = 0;
    t.fold_first_ns = 0;
    t.fold_last_ns = 0;
    t.priority = 0;
}

/// The close of a folded open (`t.fold_window != 0`): `true` when its totals went into its
/// window's slot (no record); `false` when the window was written already (the caller then
/// writes an ordinary `file.close`).
#[inline(always)]
pub fn closed(t: &Tracked) -> bool {
    let Some(slot) = FOLD.get_ptr_mut(t.opener.tid) else { return false };
    // SAFETY: map value; only counters are added (atomically).
    let s = unsafe { &mut *slot };
    if s.window_ns != t.fold_window || s.dev != t.dev || s.ino != t.ino {
        return false;
    }
    add(&mut s.stats.bytes_read, t.bytes_read);
    add(&mut s.stats.bytes_written, t.bytes_written);
    add(&mut s.stats.read_calls, t.read_calls);
    add(&mut s.stats.write_calls, t.write_calls);
    add(&mut s.stats.mmap_bytes, t.mmap_bytes);
    add(&mut s.stats.fold_closes, 1);
    s.stats.io |= t.io;
    true
}

/// The exit of thread `tid`: its waiting fold is written.
#[inline(always)]
pub fn exit(tid: u32) {
    if let Some(slot) = FOLD.get_ptr_mut(tid) {
        // SAFETY: map value of the exiting thread.
        flush(unsafe { &*slot });
        let _ = FOLD.remove(tid);
    }
}

/// Writes the slot's fold record when opens were folded into it.
#[inline(always)]
fn flush(s: &FoldSlot) {
    if s.stats.fold_count == 0 {
        return;
    }
    let Some(ev) = FOLD_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU scratch.
    let ev = unsafe { &mut *ev };
    ev.header.kind = Kind::FileClose as u32;
    ev.header.flags = 0;
    ev.header.time_ns = now();
    ev.header.task = s.stats.opener;
    ev.stats = s.stats;
    ev.file = 0;
    ev.fd = -1;
    ev.cursor = 0;
    ev.path_len = 0;
    ev.reason = CLOSE_FOLD;
    if !send_to_ring(false, (ev as *const Close).cast(), offset_of!(Close, data)) {
        count_loss_of(Kind::FileClose, responsible_uid(&s.stats.opener), s.dev, s.ino, s.stats.fold_count);
    }
}
