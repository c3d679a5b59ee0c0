//! Bytes moved through open protected files (wire types: `sensor_common::event::file`;
//! user half: `sensor/src/event/file.rs`).
//!
//! An open of a protected file (`file.rs`) puts its `struct file *` in `TRACKED` and counts
//! it for the opener in `TRACKED_TGIDS` (see "Holders" below). The exit tracepoints of the
//! read, write, sendfile, splice, copy_file_range and mmap syscalls first test the current
//! tgid (one inlined array load is all an unrelated process pays, a hash lookup when its
//! slot is shared with a holder), then take the file descriptor from the syscall's saved
//! registers (`bpf_task_pt_regs`) and add the result to the file's counters. So reading
//! 1 GB is one record, written at the last close.
//!
//! Syscall argument registers: <https://github.com/torvalds/linux/blob/v6.12/arch/x86/entry/entry_64.S#L89>.
use core::mem::offset_of;

use aya_ebpf::{
    helpers::bpf_probe_read_user,
    helpers::generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    macros::{fentry, map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray},
    programs::{FEntryContext, RawTracePointContext, TracePointContext},
};
use sensor_common::{
    event::{
        Kind,
        file::{
            CLOSE_EXIT, CLOSE_RELEASE, CLOSE_SYSCALL, Close, IO_AIO, IO_COPY_FILE_RANGE, IO_MMAP, IO_READ,
            IO_SENDFILE, IO_SPLICE, IO_URING, IO_WRITE, OPEN_IO_URING, Received, ReceivedKey, SCOPE_OPEN,
            SCOPE_RECEIVER, Tracked,
        },
    },
    offsets::MISSING,
};

use crate::{
    emit::{count_loss, count_loss_of, header_for_current, responsible_uid, send, send_to_ring},
    kread::{config, current_task, file_of_fd, fill_task, off, path_of, ptr, read, sys_exit_ret, tp_word},
    path::write_record_path,
};

/// Open protected files by `struct file *`.
#[map]
pub static TRACKED: HashMap<u64, Tracked> = HashMap::with_max_entries(65536, 0);

/// Processes that may hold a tracked file (openers, receivers, their forked children): the
/// number of tracked descriptors each holds, as the programs saw them (see "Holders").
#[map]
static TRACKED_TGIDS: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

/// How many [`TRACKED_TGIDS`] entries fall in each slot (`tgid & SLOT_MASK`): the pre-check
/// of every read and write. Array lookups are inlined by the verifier, so a process whose
/// slot is 0 pays one load.
#[map]
static TGID_SLOTS: Array<u32> = Array::with_max_entries(SLOTS, 0);
const SLOTS: u32 = 1 << 16;
const SLOT_MASK: u32 = SLOTS - 1;

/// The own bytes of each process that took a tracked file's descriptor with pidfd_getfd or
/// received it over SCM_RIGHTS, per (open file, receiver) (see "Receivers").
#[map]
pub static RECEIVED: HashMap<ReceivedKey, Received> = HashMap::with_max_entries(RECEIVED_MAX, 0);
const RECEIVED_MAX: u32 = 4096;

#[map]
static RECEIVED_SCRATCH: PerCpuArray<Received> = PerCpuArray::with_max_entries(1, 0);

#[map]
static CLOSE_SCRATCH: PerCpuArray<Close> = PerCpuArray::with_max_entries(1, 0);

/// Which saved register holds a file descriptor (or, `R8`, a syscall's fifth argument).
#[derive(Clone, Copy)]
pub(crate) enum Arg {
    /// First argument.
    Di,
    /// Second argument.
    Si,
    /// Third argument.
    Dx,
    /// Fourth argument.
    R10,
    /// Fifth argument.
    R8,
}

/// Whether the current process may hold a tracked file.
#[inline(always)]
fn tracked_tgid() -> bool {
    holder_count(current_tgid() as u32).is_some()
}

/// A syscall argument of the current task, read from its saved registers.
#[inline(always)]
pub(crate) fn arg(which: Arg) -> Result<u64, i32> {
    // SAFETY: both helpers take the current task; pt_regs is read through probe-read.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    let off = match which {
        Arg::Di => off!(pt_regs_di),
        Arg::Si => off!(pt_regs_si),
        Arg::Dx => off!(pt_regs_dx),
        Arg::R10 => off!(pt_regs_r10),
        Arg::R8 => off!(pt_regs_r8),
    };
    read(regs, off)
}

/// The file and tracked entry of the current task's descriptor in register `which`.
#[inline(always)]
fn tracked_fd(which: Arg) -> Option<(u64, *mut Tracked)> {
    let fd = arg(which).ok()? as i64;
    let file = file_of_fd(current_task(), fd).ok()?;
    Some((file, TRACKED.get_ptr_mut(file)?))
}

/// `*counter += n` as one BPF atomic add (`lock *(u64 *)(r + 0) += n`), so two CPUs moving
/// bytes through the same open file never lose an update. (`AtomicU64::fetch_add` is not
/// available: the BPF target declares no compare-and-swap.)
#[inline(always)]
pub(crate) fn add(counter: &mut u64, n: u64) {
    // SAFETY: `counter` points into a map value for the duration of the program.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({p} + 0) += {n}",
            p = in(reg) counter as *mut u64,
            n = in(reg) n,
        );
    }
}

#[inline(always)]
fn account(t: *mut Tracked, bytes: u64, write: bool, io: u32) {
    // SAFETY: `t` points into a TRACKED value; concurrent updaters only add.
    let t = unsafe { &mut *t };
    add_io(t, bytes, write, io);
    if !write {
        crate::taint::protected_read(t, bytes);
    }
}

/// Adds one call that moved `bytes` to `t`'s counters.
#[inline(always)]
fn add_io(t: &mut Tracked, bytes: u64, write: bool, io: u32) {
    if write {
        add(&mut t.bytes_written, bytes);
        add(&mut t.write_calls, 1);
    } else {
        add(&mut t.bytes_read, bytes);
        add(&mut t.read_calls, 1);
    }
    t.io |= io;
}

/// Also adds the call to the current process's own totals for `file` when it is a receiver
/// of it (`count` is its [`TRACKED_TGIDS`] count, already loaded: other holders pay one
/// comparison).
#[inline(always)]
fn account_received(count: u32, file: u64, bytes: u64, write: bool, io: u32) {
    if count < RECEIVER {
        return;
    }
    let key = ReceivedKey { file, tgid: current_tgid() as u32, _pad: 0 };
    if let Some(r) = RECEIVED.get_ptr_mut(key) {
        // SAFETY: points into a RECEIVED value; concurrent updaters only add.
        add_io(unsafe { &mut (*r).stats }, bytes, write, io);
    }
}

/// The syscall's return value (bytes moved), when positive.
#[inline(always)]
pub(crate) fn moved(ctx: &TracePointContext) -> Option<u64> {
    let ret = sys_exit_ret(ctx).ok()?;
    (ret > 0).then_some(ret as u64)
}

#[inline(always)]
fn on_rw_exit(ctx: &TracePointContext, write: bool) -> u32 {
    crate::taint::rw_exit(ctx, Arg::Di, write);
    let Some(count) = holder_count(current_tgid() as u32) else { return 0 };
    let Some(n) = moved(ctx) else { return 0 };
    if let Some((file, t)) = tracked_fd(Arg::Di) {
        let io = if write { IO_WRITE } else { IO_READ };
        account(t, n, write, io);
        account_received(count, file, n, write, io);
    }
    settle_if_idle(ctx, count);
    0
}

/// Both ends of sendfile, splice and copy_file_range: `in_reg` is read, `out_reg` written.
#[inline(always)]
fn on_transfer_exit(ctx: &TracePointContext, in_reg: Arg, out_reg: Arg, io: u32) -> u32 {
    if let Some(count) = holder_count(current_tgid() as u32)
        && let Some(n) = moved(ctx)
    {
        if let Some((file, t)) = tracked_fd(in_reg) {
            account(t, n, false, io);
            account_received(count, file, n, false, io);
        }
        if let Some((file, t)) = tracked_fd(out_reg) {
            account(t, n, true, io);
            account_received(count, file, n, true, io);
        }
    }
    // After the accounting (a first read of a protected file taints its own transfer), and
    // before `settle_if_idle`, which may end this program with a tail call.
    crate::taint::rw_exit(ctx, in_reg, false);
    crate::taint::rw_exit(ctx, out_reg, true);
    // Looked up again rather than kept across the taint calls (a value live across them
    // made the compiler's output fail verification).
    if let Some(count) = holder_count(current_tgid() as u32) {
        settle_if_idle(ctx, count);
    }
    0
}

/// One program per syscall; the daemon attaches each to `syscalls/<name>`.
macro_rules! rw_exit {
    ($($name:ident => $write:expr,)*) => {$(
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            on_rw_exit(&ctx, $write)
        }
    )*};
}

rw_exit! {
    sys_exit_read => false,
    sys_exit_readv => false,
    sys_exit_pread64 => false,
    sys_exit_preadv => false,
    sys_exit_preadv2 => false,
    sys_exit_write => true,
    sys_exit_writev => true,
    sys_exit_pwrite64 => true,
    sys_exit_pwritev => true,
    sys_exit_pwritev2 => true,
}

/// `sendfile(out_fd, in_fd, …)`.
#[tracepoint(category = "syscalls", name = "sys_exit_sendfile64")]
pub fn sys_exit_sendfile64(ctx: TracePointContext) -> u32 {
    on_transfer_exit(&ctx, Arg::Si, Arg::Di, IO_SENDFILE)
}

/// `splice(fd_in, off_in, fd_out, …)`: fd_out is the third argument.
#[tracepoint(category = "syscalls", name = "sys_exit_splice")]
pub fn sys_exit_splice(ctx: TracePointContext) -> u32 {
    on_transfer_exit(&ctx, Arg::Di, Arg::Dx, IO_SPLICE)
}

/// `copy_file_range(fd_in, off_in, fd_out, …)`.
#[tracepoint(category = "syscalls", name = "sys_exit_copy_file_range")]
pub fn sys_exit_copy_file_range(ctx: TracePointContext) -> u32 {
    on_transfer_exit(&ctx, Arg::Di, Arg::Dx, IO_COPY_FILE_RANGE)
}

/// `mmap(addr, len, prot, flags, fd, off)`: counts the mapped length.
#[tracepoint(category = "syscalls", name = "sys_exit_mmap")]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    if !tracked_tgid() {
        return 0;
    }
    let Ok(ret) = sys_exit_ret(&ctx) else { return 0 };
    if ret < 0 && ret > -4096 {
        return 0;
    }
    // SAFETY: as in `arg`.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    let Ok(fd) = read::<i64>(regs, off!(pt_regs_r8)) else { return 0 };
    let Ok(len) = read::<u64>(regs, off!(pt_regs_si)) else { return 0 };
    let Ok(file) = file_of_fd(current_task(), fd) else { return 0 };
    if let Some(t) = TRACKED.get_ptr_mut(file) {
        // SAFETY: points into a TRACKED value.
        let t = unsafe { &mut *t };
        add(&mut t.mmap_bytes, len);
        t.io |= IO_MMAP;
    }
    0
}

/// `close(fd)`: at entry the file is still installed; if this is its last reference, the
/// totals become a `file.close` record.
#[tracepoint(category = "syscalls", name = "sys_enter_close")]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let Some(count) = holder_count(current_tgid() as u32) else { return 0 };
    let Ok(fd) = tp_word(&ctx, off!(tp_sys_enter_close_fd)) else { return 0 };
    let Ok(file) = file_of_fd(current_task(), fd as i64) else { return 0 };
    // SAFETY: the value is copied before the map can change.
    let Some(stats) = (unsafe { TRACKED.get(file) }).copied() else { return 0 };
    let_go(current_tgid() as u32);
    if count >= RECEIVER {
        received_close(fd, file);
    }
    close_record(fd, file, &stats);
    0
}

/// A receiver closes a descriptor of `file`: its own totals become a `file.close`
/// ([`SCOPE_RECEIVER`]; no path: the daemon names the file from its open record).
#[inline(always)]
fn received_close(fd: u64, file: u64) {
    let key = ReceivedKey { file, tgid: current_tgid() as u32, _pad: 0 };
    let Some(r) = RECEIVED.get_ptr(key) else { return };
    let Some(ev) = CLOSE_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU scratch; `r` points into a RECEIVED value, copied before the removal.
    let ev = unsafe { &mut *ev };
    ev.stats = unsafe { (*r).stats };
    let _ = RECEIVED.remove(key);
    if !header_for_current(Kind::FileClose, &mut ev.header) {
        return;
    }
    ev.file = file;
    ev.fd = fd as i32;
    ev.cursor = 0;
    ev.path_len = 0;
    ev.scope = SCOPE_RECEIVER;
    ev.reason = CLOSE_SYSCALL;
    send(Kind::FileClose, (ev as *const Close).cast(), offset_of!(Close, data));
}

/// The `file.close` record of `sys_enter_close`, when this is the file's last reference.
#[inline(always)]
fn close_record(fd: u64, file: u64, stats: &Tracked) {
    // A mapping holds a reference of its own, released at munmap, which no tracepoint shows;
    // closing the last descriptor of a mapped file ends the record (bytes read through the
    // mapping are never counted anyway).
    if !last_reference(file) && stats.io & IO_MMAP == 0 {
        return;
    }
    let _ = TRACKED.remove(file);
    if stats.fold_window != 0 && crate::fold::closed(stats) {
        return;
    }
    let Some(ev) = CLOSE_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU scratch.
    let ev = unsafe { &mut *ev };
    ev.stats = *stats;
    ev.file = file;
    ev.fd = fd as i32;
    ev.scope = SCOPE_OPEN;
    ev.reason = CLOSE_SYSCALL;
    if compact_header(file, stats, &mut ev.header) {
        ev.cursor = 0;
        ev.path_len = 0;
        send_close(ev, offset_of!(Close, data));
        return;
    }
    if !header_for_current(Kind::FileClose, &mut ev.header) {
        return;
    }
    let n = match path_of(file, off!(file_f_path)) {
        Ok((mnt, dentry)) => {
            let (flags, n) = write_record_path(ev.data.as_mut_ptr(), &raw mut ev.cursor, mnt, dentry);
            ev.header.flags |= flags;
            n
        }
        Err(_) => 0,
    };
    ev.path_len = n as u16;
    send_close(ev, offset_of!(Close, data) + n as usize);
}

// Compact closes
//
// A `file.close` by the opener's own process, of an open whose record was sent, at the same
// path generation (no rename, directory removal or mount change since the open's walk), and
// with the credentials the file was opened with (`task->cred == file->f_cred`: the same
// pointer is the same uids and gids, and the file's reference keeps it from being reused),
// walks no path and reads only what may differ from the opener's identity: the thread, its
// name, the parent (reparenting) and the audit login uid and session. The daemon names the
// file from its open record (`path_len` 0, as for a release). Every other close sends the
// full record.

/// Fills `header` for a compact close of `file` by the current task; `false` when the close
/// needs the full record.
#[inline(always)]
fn compact_header(file: u64, stats: &Tracked, header: &mut sensor_common::event::Header) -> bool {
    let id = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    if stats.close_key == 0
        || (id >> 32) as u32 != stats.opener.tgid
        || stats.close_key != sensor_common::event::file::close_key(crate::path::names_generation())
    {
        return false;
    }
    let task = current_task();
    match (ptr(task, off!(task_struct_cred)), ptr(file, off!(file_f_cred))) {
        (Ok(cred), Ok(f_cred)) if cred == f_cred => {}
        _ => return false,
    }
    header.kind = Kind::FileClose as u32;
    header.time_ns = crate::emit::now();
    header.task = stats.opener;
    header.task.tid = id as u32;
    header.flags = crate::kread::fill_task_rest(task, &mut header.task);
    true
}

/// Sends a `file.close` record (to the priority ring when its open went there), or counts
/// whose record was lost.
#[inline(always)]
fn send_close(ev: &Close, len: usize) {
    if !send_to_ring(ev.stats.priority != 0, (ev as *const Close).cast(), len) {
        count_loss_of(Kind::FileClose, responsible_uid(&ev.header.task), ev.stats.dev, ev.stats.ino, 0);
    }
}

/// Slot 0: [`holder_settle`], tail-called by the read and write programs (the table scan
/// does not fit their verifier budget, and it is rarely needed).
#[map]
static SETTLE: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Tail of a read or write program of a process whose count reached 0: its table decides.
#[tracepoint]
pub fn holder_settle(_ctx: TracePointContext) -> u32 {
    settle(current_task(), current_tgid() as u32);
    0
}

/// At the end of a read or write program that found the process counted with `count`: when
/// it is 0, continues in [`holder_settle`]. After the bytes were added, so a descriptor the
/// count missed (a duplicate) loses nothing.
#[inline(always)]
fn settle_if_idle<C: aya_ebpf::EbpfContext>(ctx: &C, count: u32) {
    if count as i32 <= 0 {
        // SAFETY: index 0 holds `holder_settle`, a tracepoint program like every caller
        // (the daemon puts it there before attaching them).
        unsafe { SETTLE.tail_call(ctx, 0) };
    }
}

/// `PF_EXITING` (<https://github.com/torvalds/linux/blob/v6.12/include/linux/sched.h#L1699>).
const PF_EXITING: u32 = 0x4;

/// `security_file_free(struct file *)`, where fentry programs load: the last reference to a
/// file is gone, however it went. close(2) of the last descriptor was reported at
/// `sys_enter_close` (with the descriptor) and is no longer tracked here; this catches the
/// rest: the process's exit, munmap of the last mapping, a descriptor passed to a process
/// the sensor does not track, and kernel users such as the NFS server's file cache (whose
/// files would otherwise stay in `TRACKED` for good). It runs in `__fput` after the dentry
/// reference was dropped, so the path is not walked: the daemon names the file from its
/// open record. <https://github.com/torvalds/linux/blob/v6.12/fs/file_table.c#L435>
#[fentry(function = "security_file_free")]
pub fn security_file_free(ctx: FEntryContext) -> u32 {
    let file = ctx.arg::<u64>(0);
    // SAFETY: the value is copied before the map can change.
    let Some(stats) = (unsafe { TRACKED.get(file) }).copied() else { return 0 };
    let _ = TRACKED.remove(file);
    if stats.fold_window != 0 && crate::fold::closed(&stats) {
        return 0;
    }
    let Some(ev) = CLOSE_SCRATCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: per-CPU scratch.
    let ev = unsafe { &mut *ev };
    if !header_for_current(Kind::FileClose, &mut ev.header) {
        return 0;
    }
    let exiting = read::<u32>(current_task(), off!(task_struct_flags)).is_ok_and(|f| f & PF_EXITING != 0);
    ev.reason = if exiting { CLOSE_EXIT } else { CLOSE_RELEASE };
    ev.stats = stats;
    ev.file = file;
    ev.fd = -1;
    ev.cursor = 0;
    ev.path_len = 0;
    ev.scope = SCOPE_OPEN;
    send_close(ev, offset_of!(Close, data));
    0
}

/// io_uring opcodes (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/io_uring.h#L206>).
const IORING_OP_READV: u8 = 1;
const IORING_OP_WRITEV: u8 = 2;
const IORING_OP_READ_FIXED: u8 = 4;
const IORING_OP_WRITE_FIXED: u8 = 5;
const IORING_OP_OPENAT: u8 = 18;
const IORING_OP_READ: u8 = 22;
const IORING_OP_WRITE: u8 = 23;
const IORING_OP_OPENAT2: u8 = 28;
const IORING_OP_RENAMEAT: u8 = 35;
const IORING_OP_UNLINKAT: u8 = 36;
const IORING_OP_READ_MULTISHOT: u8 = 49;

/// `io_uring:io_uring_complete`: reads and writes submitted through io_uring never pass the
/// read/write syscalls; the completion carries the request (`struct io_kiocb`) and its
/// result. Completions run in the submitter's thread group (task work or its io-wq
/// workers), so an io_uring open's descriptor is in the current task's table.
#[tracepoint]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    // SAFETY: probe-reads of the tracepoint record.
    let Ok(req) = (unsafe { ctx.read_at::<u64>(off!(tp_io_uring_complete_req) as usize) }) else { return 0 };
    let Ok(res) = (unsafe { ctx.read_at::<i32>(off!(tp_io_uring_complete_res) as usize) }) else { return 0 };
    let Ok(opcode) = read::<u8>(req, off!(io_kiocb_opcode)) else { return 0 };
    if opcode == IORING_OP_RENAMEAT || opcode == IORING_OP_UNLINKAT {
        crate::path::bump_generation();
        return 0;
    }
    if opcode == IORING_OP_OPENAT || opcode == IORING_OP_OPENAT2 {
        // With the fentry backend security_file_open has reported this open already.
        if config!(file_events) != 0 && !crate::file::fentry_active(sensor_common::event::file::BACKEND_OPEN)
        {
            crate::file::opened(i64::from(res), OPEN_IO_URING);
        }
        return 0;
    }
    if res <= 0 {
        return 0;
    }
    let write = match opcode {
        IORING_OP_READV | IORING_OP_READ_FIXED | IORING_OP_READ | IORING_OP_READ_MULTISHOT => false,
        IORING_OP_WRITEV | IORING_OP_WRITE_FIXED | IORING_OP_WRITE => true,
        _ => return 0,
    };
    let Ok(file) = read::<u64>(req, off!(io_kiocb_file)) else { return 0 };
    if let Some(t) = TRACKED.get_ptr_mut(file) {
        account(t, res as u64, write, IO_URING);
    }
    0
}

// ---------------------------------------------------------------------------------------
// Linux AIO
// ---------------------------------------------------------------------------------------

/// `struct iocb` opcodes (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/aio_abi.h#L38>).
const IOCB_CMD_PREAD: u16 = 0;
const IOCB_CMD_PWRITE: u16 = 1;
const IOCB_CMD_PREADV: u16 = 7;
const IOCB_CMD_PWRITEV: u16 = 8;
/// `struct iocb` (uapi, the same on every 64-bit architecture): `aio_lio_opcode` (u16) and
/// `aio_fildes` (u32) offsets (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/aio_abi.h#L79>).
const IOCB_OPCODE: u64 = 16;
const IOCB_FILDES: u64 = 20;
/// `struct io_event { u64 data, obj; s64 res, res2; }`: `obj` is the submitted iocb's
/// user address, `res` the bytes moved (or -errno).
const IO_EVENT_SIZE: u64 = 32;
const IO_EVENT_OBJ: u64 = 8;
const IO_EVENT_RES: u64 = 16;
/// Requests examined per `io_submit` call and completions per `io_getevents` call (the
/// verifier needs a bound; docs/architecture.md, "Coverage").
const AIO_MAX_SUBMIT: u64 = 16;
const AIO_MAX_EVENTS: u64 = 16;

/// A submitted AIO request: the submitting process and its iocb's user address.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AioKey {
    tgid: u64,
    iocb: u64,
}

/// The tracked file a request reads or writes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AioReq {
    file: u64,
    write: u64,
}

/// AIO requests on tracked files, from submission until their completion is reaped. LRU:
/// requests never reaped (the process exits, or reads the completion ring in user space)
/// are evicted.
#[map]
static AIO_PENDING: LruHashMap<AioKey, AioReq> = LruHashMap::with_max_entries(8192, 0);

#[inline(always)]
fn user<T>(addr: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_user checks the address and fails instead of faulting.
    unsafe { bpf_probe_read_user(addr as *const T) }.ok()
}

#[inline(always)]
fn current_tgid() -> u64 {
    aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32
}

/// `io_submit(ctx, nr, iocbpp)`: the read and write requests on tracked files are noted (at
/// entry: a completion may be reaped by another thread before this call returns).
#[tracepoint(category = "syscalls", name = "sys_enter_io_submit")]
pub fn sys_enter_io_submit(_ctx: TracePointContext) -> u32 {
    if !tracked_tgid() {
        return 0;
    }
    let (Ok(nr), Ok(iocbpp)) = (arg(Arg::Si), arg(Arg::Dx)) else { return 0 };
    let (task, tgid) = (current_task(), current_tgid());
    for i in 0..AIO_MAX_SUBMIT {
        if i as i64 >= nr as i64 {
            break;
        }
        let Some(iocb) = user::<u64>(iocbpp + i * 8) else { break };
        let write = match user::<u16>(iocb + IOCB_OPCODE) {
            Some(IOCB_CMD_PREAD | IOCB_CMD_PREADV) => 0,
            Some(IOCB_CMD_PWRITE | IOCB_CMD_PWRITEV) => 1,
            _ => continue,
        };
        let Some(fd) = user::<u32>(iocb + IOCB_FILDES) else { continue };
        let Ok(file) = file_of_fd(task, i64::from(fd)) else { continue };
        // SAFETY: presence check only.
        if unsafe { TRACKED.get(file) }.is_some() {
            let _ = AIO_PENDING.insert(AioKey { tgid, iocb }, AioReq { file, write }, 0);
            pin(tgid as u32);
        }
    }
    0
}

/// `io_submit` returns how many requests it queued: the ones after them never run.
#[tracepoint(category = "syscalls", name = "sys_exit_io_submit")]
pub fn sys_exit_io_submit(ctx: TracePointContext) -> u32 {
    if !tracked_tgid() {
        return 0;
    }
    let Ok(ret) = sys_exit_ret(&ctx) else { return 0 };
    let (Ok(nr), Ok(iocbpp)) = (arg(Arg::Si), arg(Arg::Dx)) else { return 0 };
    let tgid = current_tgid();
    let queued = ret.max(0);
    for i in 0..AIO_MAX_SUBMIT {
        let i = i as i64;
        if i >= nr as i64 {
            break;
        }
        if i < queued {
            continue;
        }
        let Some(iocb) = user::<u64>(iocbpp + i as u64 * 8) else { break };
        let _ = AIO_PENDING.remove(AioKey { tgid, iocb });
    }
    0
}

/// `io_getevents(ctx, min_nr, nr, events, timeout)` and `io_pgetevents(…, events, …)`:
/// each reaped completion of a noted request adds its result to the file's totals.
#[inline(always)]
fn on_getevents_exit(ctx: &TracePointContext) -> u32 {
    if !tracked_tgid() {
        return 0;
    }
    let Some(n) = moved(ctx) else { return 0 };
    let Ok(events) = arg(Arg::R10) else { return 0 };
    let tgid = current_tgid();
    for i in 0..AIO_MAX_EVENTS {
        if i >= n {
            break;
        }
        let ev = events + i * IO_EVENT_SIZE;
        let Some(iocb) = user::<u64>(ev + IO_EVENT_OBJ) else { break };
        let key = AioKey { tgid, iocb };
        // SAFETY: the value is copied before the map can change.
        let Some(req) = (unsafe { AIO_PENDING.get(key) }).copied() else { continue };
        let _ = AIO_PENDING.remove(key);
        match user::<i64>(ev + IO_EVENT_RES) {
            Some(res) if res > 0 => {
                if let Some(t) = TRACKED.get_ptr_mut(req.file) {
                    account(t, res as u64, req.write != 0, IO_AIO);
                }
            }
            _ => {}
        }
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_io_getevents")]
pub fn sys_exit_io_getevents(ctx: TracePointContext) -> u32 {
    on_getevents_exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_io_pgetevents")]
pub fn sys_exit_io_pgetevents(ctx: TracePointContext) -> u32 {
    on_getevents_exit(&ctx)
}

/// Whether the caller holds the only reference to `file`.
#[inline(always)]
fn last_reference(file: u64) -> bool {
    match off!(file_f_ref) {
        // file_ref_t counts references minus one.
        MISSING => read::<i64>(file, off!(file_f_count)).is_ok_and(|c| c == 1),
        f_ref => read::<i64>(file, f_ref).is_ok_and(|c| c == 0),
    }
}

/// Starts tracking an opened protected file (called by `file.rs`); `false` when the maps are
/// full (the caller counts it as a lost `file.close`).
#[inline(always)]
pub fn track(file: u64, stats: &Tracked) -> bool {
    TRACKED.insert(file, stats, 0).is_ok() && hold(stats.opener.tgid, 1)
}

/// The current process received `file`'s descriptor (pidfd_getfd, SCM_RIGHTS) at `now`: its
/// bytes are counted from now on, in the open's totals and in its own `RECEIVED` entry
/// (see "Receivers"). An entry that does not fit is a lost `file.close`.
#[inline(always)]
pub fn receive(file: u64, now: u64) {
    let tgid = current_tgid() as u32;
    if !hold(tgid, 1) {
        count_loss(Kind::FileClose);
        return;
    }
    if let Some(c) = TRACKED_TGIDS.get_ptr_mut(tgid)
        // SAFETY: map memory; a race adds the flag twice, which still reads as a receiver.
        && unsafe { *c } < RECEIVER
    {
        add32(c, RECEIVER);
    }
    let key = ReceivedKey { file, tgid, _pad: 0 };
    // SAFETY: presence check only.
    if unsafe { RECEIVED.get(key) }.is_some() {
        return;
    }
    let (Some(open), Some(r)) = (TRACKED.get_ptr(file), RECEIVED_SCRATCH.get_ptr_mut(0)) else { return };
    // SAFETY: per-CPU scratch; `open` points into a TRACKED value.
    let r = unsafe { &mut *r };
    let open = unsafe { &*open };
    fill_task(current_task(), &mut r.holder);
    r.stats =
        Tracked { opener: open.opener, ino: open.ino, dev: open.dev, opened_ns: now, ..Tracked::default() };
    let r: &Received = r;
    if RECEIVED.insert(key, r, u64::from(aya_ebpf::bindings::BPF_NOEXIST)).is_err()
        // SAFETY: presence check only (another CPU may have made it meanwhile).
        && unsafe { RECEIVED.get(key) }.is_none()
    {
        count_loss(Kind::FileClose);
    }
}

/// `pidfd_getfd(pidfd, targetfd, flags)`: the caller now holds another process's open file.
/// When that file is tracked, the caller is reported with a `file.open` (syscall
/// `pidfd_getfd`) and its reads and writes are counted in the open's totals.
#[tracepoint(category = "syscalls", name = "sys_exit_pidfd_getfd")]
pub fn sys_exit_pidfd_getfd(ctx: TracePointContext) -> u32 {
    let Ok(fd) = sys_exit_ret(&ctx) else { return 0 };
    let Ok(file) = file_of_fd(current_task(), fd) else { return 0 };
    // SAFETY: presence check only.
    if unsafe { TRACKED.get(file) }.is_none() {
        return 0;
    }
    crate::file::opened(fd, sensor_common::event::file::OPEN_PIDFD_GETFD)
}

/// Descriptors of one `SCM_RIGHTS` message looked at (the kernel allows 253).
const SCM_FDS: usize = 8;

/// `recvmsg(fd, msg, flags)` that received descriptors over a unix socket (`SCM_RIGHTS`):
/// the receiver now holds another process's open files. The control data the kernel wrote
/// back is read from the caller's `msghdr` (`msg_control`, and `msg_controllen` set to the
/// length written: <https://github.com/torvalds/linux/blob/v6.12/net/socket.c#L2812>); in the
/// first control message, when it is `SOL_SOCKET`/`SCM_RIGHTS`, the first [`SCM_FDS`]
/// descriptors are looked up. The first tracked one is reported with a `file.open` (syscall
/// `recvmsg`), every tracked one makes the receiver a holder, so its reads and writes are
/// counted in the open's totals, as for `pidfd_getfd`.
#[tracepoint(category = "syscalls", name = "sys_exit_recvmsg")]
pub fn scm_rights_recvmsg(ctx: TracePointContext) -> u32 {
    let ret = sys_exit_ret(&ctx);
    if config!(file_events) == 0 || ret.is_err() || ret.is_ok_and(|r| r < 0) {
        return 0;
    }
    let Some((fds, n)) = scm_rights() else { return 0 };
    let task = current_task();
    let mut first = -1i64;
    for i in 0..SCM_FDS as u64 {
        if i >= n {
            break;
        }
        // SAFETY: probe-read of the caller's memory.
        let Ok(fd) = (unsafe { bpf_probe_read_user((fds + 4 * i) as *const i32) }) else { break };
        let Ok(file) = file_of_fd(task, i64::from(fd)) else { continue };
        // SAFETY: presence check only.
        if unsafe { TRACKED.get(file) }.is_none() {
            continue;
        }
        if first < 0 {
            first = i64::from(fd);
        } else {
            receive(file, crate::emit::now());
        }
    }
    if first < 0 {
        return 0;
    }
    crate::file::opened(first, sensor_common::event::file::OPEN_SCM_RIGHTS)
}

/// Where the descriptors of the current `recvmsg`'s first control message are in the
/// caller's memory and how many there are, when that message is `SOL_SOCKET`/`SCM_RIGHTS`.
#[inline(always)]
fn scm_rights() -> Option<(u64, u64)> {
    /// `struct user_msghdr`: `msg_control`, then `msg_controllen`.
    const MSG_CONTROL: u64 = 32;
    /// `struct cmsghdr` is `{ size_t len; int level; int type; }`, then the data.
    const CMSG_HDR: u64 = 16;
    const SOL_SOCKET: u64 = 1;
    const SCM_RIGHTS: u64 = 1;
    let msg = arg(Arg::Si).ok()?;
    // SAFETY: probe-reads of the caller's memory.
    let [control, len] = unsafe { bpf_probe_read_user((msg + MSG_CONTROL) as *const [u64; 2]) }.ok()?;
    if control == 0 || len < CMSG_HDR + 4 {
        return None;
    }
    // SAFETY: as above.
    let [cmsg_len, kind] = unsafe { bpf_probe_read_user(control as *const [u64; 2]) }.ok()?;
    // `level` in the low half, `type` in the high half (little endian).
    if kind != SOL_SOCKET | SCM_RIGHTS << 32 || cmsg_len < CMSG_HDR + 4 {
        return None;
    }
    Some((control + CMSG_HDR, (cmsg_len.min(len) - CMSG_HDR) / 4))
}

// ---------------------------------------------------------------------------------------
// Holders
// ---------------------------------------------------------------------------------------
//
// `TRACKED_TGIDS[tgid]` counts the tracked descriptors of a process: +1 per tracked open or
// pidfd_getfd, the parent's count at fork, -1 per close of a tracked descriptor. Descriptors
// made by dup, SCM_RIGHTS or fcntl are not seen, and close_range, dup2 over a descriptor or
// exec's close-on-exec close some unseen; so at the first read or write after the count
// reached 0 (not at the close itself: a process that opens and closes protected files in a
// loop does not look through its table each time), and at every exec, the descriptor table
// decides: the entry goes only when no descriptor of the process refers to a tracked file. A process that closed its
// last protected file therefore pays nothing more on its reads and writes, and the totals
// of files it still holds stay exact. Kept when the table cannot be counted in full (more
// than `SCAN_CHUNKS * 64` descriptors) and, until exec or exit, once an AIO request on a
// tracked file was submitted (its completion may be reaped after the close).

// Receivers
//
// A process that takes a tracked file's descriptor with pidfd_getfd or receives it over
// SCM_RIGHTS (not one that inherited it by fork) gets [`RECEIVER`] added to its count and a
// `RECEIVED[(file, tgid)]` entry: its reads and writes through the read/write and transfer
// syscalls are added there as well as to the open's totals, and its close of a descriptor of
// the file writes its own `file.close` (`SCOPE_RECEIVER`) and removes the entry. The daemon
// writes the entries of a receiver that exits (or of all when it stops). A receiver stays
// counted until exec or exit.

/// Descriptors examined per table scan, in chunks of 64 (`max_fds` is a multiple of
/// `BITS_PER_LONG`: <https://github.com/torvalds/linux/blob/v6.12/fs/file.c#L130>).
const SCAN_CHUNKS: u32 = 16;
const CHUNK: usize = 64;
/// Added to a count once an AIO request is pending: the count never reaches 0 by closes.
const AIO_PIN: u32 = 1 << 24;
/// Added to the count of a receiver (see "Receivers"): its reads, writes and closes also
/// look up `RECEIVED`, and its count never reaches 0 by closes.
const RECEIVER: u32 = 1 << 28;

#[map]
static SCAN_SCRATCH: PerCpuArray<[u64; CHUNK]> = PerCpuArray::with_max_entries(1, 0);

/// Whether `tgid` is (probably) in [`TRACKED_TGIDS`]: its slot first, then the map.
#[inline(always)]
fn is_holder(tgid: u32) -> bool {
    holder_count(tgid).is_some()
}

/// `tgid`'s count when it is in [`TRACKED_TGIDS`]: its slot first, then the map.
#[inline(always)]
fn holder_count(tgid: u32) -> Option<u32> {
    if TGID_SLOTS.get(tgid & SLOT_MASK).is_none_or(|n| *n == 0) {
        return None;
    }
    // SAFETY: the value is copied.
    unsafe { TRACKED_TGIDS.get(tgid) }.copied()
}

/// `*v += n` as one BPF atomic add (u32).
#[inline(always)]
fn add32(v: *mut u32, n: u32) {
    // SAFETY: `v` points into map memory for the duration of the program.
    unsafe { core::arch::asm!("lock *(u32 *)({p} + 0) += {n}", p = in(reg) v, n = in(reg) u64::from(n)) };
}

#[inline(always)]
fn slot_add(tgid: u32, n: u32) {
    if let Some(s) = TGID_SLOTS.get_ptr_mut(tgid & SLOT_MASK) {
        add32(s, n);
    }
}

/// Adds `n` tracked descriptors to `tgid`'s count, creating its entry; `false` when the map
/// is full.
#[inline(always)]
fn hold(tgid: u32, n: u32) -> bool {
    if let Some(c) = TRACKED_TGIDS.get_ptr_mut(tgid) {
        add32(c, n);
        return true;
    }
    if TRACKED_TGIDS.insert(tgid, n, u64::from(aya_ebpf::bindings::BPF_NOEXIST)).is_ok() {
        slot_add(tgid, 1);
        return true;
    }
    // Another CPU created it meanwhile.
    match TRACKED_TGIDS.get_ptr_mut(tgid) {
        Some(c) => {
            add32(c, n);
            true
        }
        None => false,
    }
}

/// Removes `tgid`'s entry.
#[inline(always)]
pub fn release(tgid: u32) {
    if TRACKED_TGIDS.remove(tgid).is_ok() {
        slot_add(tgid, u32::MAX); // -1
    }
}

/// Keeps `tgid` counted until exec or exit: an AIO request on a tracked file is pending.
#[inline(always)]
fn pin(tgid: u32) {
    if let Some(c) = TRACKED_TGIDS.get_ptr_mut(tgid)
        // SAFETY: map memory; a race adds the pin twice, which is harmless.
        && unsafe { *c } & (RECEIVER - 1) < AIO_PIN
    {
        add32(c, AIO_PIN);
    }
}

/// Whether `task`'s table holds a tracked descriptor; `None` when the table is too large to
/// look through in full. (A yes/no answer keeps the verifier's state
/// count flat: the loop carries no counter.)
#[inline(always)]
fn holds_tracked(task: u64) -> Option<bool> {
    let files = ptr(task, off!(task_struct_files)).ok()?;
    let fdt = ptr(files, off!(files_struct_fdt)).ok()?;
    let max: u32 = read(fdt, off!(fdtable_max_fds)).ok()?;
    let array = ptr(fdt, off!(fdtable_fd)).ok()?;
    if max > SCAN_CHUNKS * CHUNK as u32 {
        return None;
    }
    let buf = SCAN_SCRATCH.get_ptr_mut(0)?;
    for c in 0..SCAN_CHUNKS {
        let base = c * CHUNK as u32;
        if base >= max {
            break;
        }
        // SAFETY: per-CPU scratch; the helper checks the kernel address.
        let ok = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                buf.cast(),
                (CHUNK * 8) as u32,
                (array + u64::from(base) * 8) as *const _,
            )
        };
        if ok != 0 {
            return None;
        }
        // SAFETY: per-CPU scratch.
        let fds = unsafe { &*buf };
        for &file in fds.iter() {
            // SAFETY: presence check only.
            if file != 0 && unsafe { TRACKED.get(file) }.is_some() {
                return Some(true);
            }
        }
    }
    Some(false)
}

/// Decides from `task`'s table whether `tgid`, whose count reached 0, still holds a tracked
/// file: then its count becomes at least 1,
/// else its entry goes. In a multi-threaded process the table is looked through again after
/// the removal, so a tracked open by another thread that raced with it is not lost.
#[inline(always)]
fn settle(task: u64, tgid: u32) {
    match holds_tracked(task) {
        // Too many descriptors to look through: stays counted (no scan at every read).
        None | Some(true) => {
            if let Some(c) = TRACKED_TGIDS.get_ptr_mut(tgid)
                // SAFETY: map memory.
                && (unsafe { *c }) as i32 <= 0
            {
                // SAFETY: as above; a racing add only raises it.
                unsafe { *c = 1 };
            }
        }
        Some(false) => {
            release(tgid);
            let alone = ptr(task, off!(task_struct_signal))
                .and_then(|signal| read::<i32>(signal, off!(signal_struct_live)))
                .is_ok_and(|live| live == 1);
            if !alone && holds_tracked(task) == Some(true) {
                hold(tgid, 1);
            }
        }
    }
}

/// A descriptor of a tracked file is being closed by `tgid`.
#[inline(always)]
fn let_go(tgid: u32) {
    if let Some(c) = TRACKED_TGIDS.get_ptr_mut(tgid) {
        add32(c, u32::MAX); // -1
    }
}

/// `sched_process_exec`, next to `process.rs`'s program (a program of its own keeps both
/// within the verifier's budget): close-on-exec descriptors are closed by now and AIO
/// contexts are gone, so a process left without a tracked file stops paying.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn holders_exec(_ctx: RawTracePointContext) -> i32 {
    let tgid = current_tgid() as u32;
    if is_holder(tgid) {
        settle(current_task(), tgid);
    }
    0
}

/// A forked child of a tracking process shares its descriptors (called by `process.rs`).
#[inline(always)]
pub fn inherit(parent_tgid: u32, child_tgid: u32) {
    if !is_holder(parent_tgid) {
        return;
    }
    // SAFETY: the value is copied.
    if let Some(n) = unsafe { TRACKED_TGIDS.get(parent_tgid) }.copied() {
        hold(child_tgid, n & (AIO_PIN - 1));
    }
}
