//! Process events: exec, fork, exit (wire types: `sensor_common::event::process`; user half:
//! `sensor/src/event/process.rs`).
//!
//! Raw tracepoints, because their arguments are stable pointers while the classic
//! tracepoint formats of these events changed between kernels:
//! <https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sched.h>.
use core::mem::offset_of;

use aya_ebpf::{
    helpers::bpf_probe_read_user_buf,
    macros::{map, raw_tracepoint},
    maps::PerCpuArray,
    programs::RawTracePointContext,
};
use sensor_common::event::{
    FLAG_ARGV_TRUNCATED, FLAG_READ_ERROR, Kind,
    process::{ARGV_MAX, EXEC_DATA, Exec, Exit, Fork},
};

use crate::{
    emit::{header_for_current, send},
    io::{inherit, release},
    kread::{current_task, off, path_of, ptr, read},
    path::write_path,
};

#[map]
static EXEC_SCRATCH: PerCpuArray<Exec> = PerCpuArray::with_max_entries(1, 0);
#[map]
static FORK_SCRATCH: PerCpuArray<Fork> = PerCpuArray::with_max_entries(1, 0);
#[map]
static EXIT_SCRATCH: PerCpuArray<Exit> = PerCpuArray::with_max_entries(1, 0);

const EXEC_MASK: u32 = EXEC_DATA as u32 - 1;

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    let Some(ev) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch, exclusively ours while the program runs.
    let ev = unsafe { &mut *ev };
    if !header_for_current(Kind::Exec, &mut ev.header) {
        return 0;
    }
    let task = current_task();
    ev.old_pid = ctx.arg::<u64>(1) as u32;
    let bprm: u64 = ctx.arg(2);
    let data = ev.data.as_mut_ptr();

    // Executable: resolved from the file the kernel is executing, not from the filename.
    ev.exe_len = 0;
    ev.exe_dev = 0;
    ev.exe_ino = 0;
    if let Ok(file) = ptr(bprm, off!(linux_binprm_file)) {
        if let Ok((mnt, dentry)) = path_of(file, off!(file_f_path)) {
            ev.cursor = 0;
            ev.header.flags |= write_path::<EXEC_MASK>(data, &raw mut ev.cursor, mnt, dentry);
            ev.exe_len = ev.cursor as u16;
        }
        if let Ok(inode) = ptr(file, off!(file_f_inode)) {
            ev.exe_ino = read(inode, off!(inode_i_ino)).unwrap_or(0);
            ev.exe_dev =
                ptr(inode, off!(inode_i_sb)).and_then(|sb| read(sb, off!(super_block_s_dev))).unwrap_or(0);
        }
    }

    crate::subject::exec(ev.header.task.tgid, ev.exe_dev, ev.exe_ino, ev.header.time_ns);

    // argv from the new image's stack: mm->arg_start .. mm->arg_end.
    ev.argv_len = 0;
    if let Ok(mm) = ptr(task, off!(task_struct_mm)) {
        let start: u64 = read(mm, off!(mm_struct_arg_start)).unwrap_or(0);
        let end: u64 = read(mm, off!(mm_struct_arg_end)).unwrap_or(0);
        let mut len = end.wrapping_sub(start);
        if len > ARGV_MAX as u64 {
            len = ARGV_MAX as u64;
            ev.header.flags |= FLAG_ARGV_TRUNCATED;
        }
        let at = u32::from(ev.exe_len) & EXEC_MASK;
        if start != 0 && len > 0 {
            // SAFETY: `at + ARGV_MAX` stays inside `data` (EXEC_DATA + EXEC_SLACK).
            let dst = unsafe { core::slice::from_raw_parts_mut(data.add(at as usize), len as usize) };
            // SAFETY: the helper checks the user address.
            match unsafe { bpf_probe_read_user_buf(start as *const u8, dst) } {
                Ok(()) => ev.argv_len = len as u16,
                Err(_) => ev.header.flags |= FLAG_READ_ERROR,
            }
        }
    }

    // Working directory: task->fs->pwd.
    ev.cwd_len = 0;
    if let Ok(fs) = ptr(task, off!(task_struct_fs))
        && let Ok((mnt, dentry)) = path_of(fs, off!(fs_struct_pwd))
    {
        let start = u32::from(ev.exe_len) + u32::from(ev.argv_len);
        ev.cursor = start;
        ev.header.flags |= write_path::<EXEC_MASK>(data, &raw mut ev.cursor, mnt, dentry);
        ev.cwd_len = ev.cursor.wrapping_sub(start) as u16;
    }

    let used = (u32::from(ev.exe_len) + u32::from(ev.argv_len) + u32::from(ev.cwd_len)) & EXEC_MASK;
    send(Kind::Exec, (ev as *const Exec).cast(), offset_of!(Exec, data) + used as usize);
    0
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let child: u64 = ctx.arg(1);
    let tid: u32 = read(child, off!(task_struct_pid)).unwrap_or(0);
    let tgid: u32 = read(child, off!(task_struct_tgid)).unwrap_or(0);
    if tid != tgid {
        return 0; // a new thread, not a new process
    }
    crate::subject::fork(child, tgid);
    let Some(ev) = FORK_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch.
    let ev = unsafe { &mut *ev };
    if !header_for_current(Kind::Fork, &mut ev.header) {
        return 0;
    }
    ev.child_tgid = tgid;
    ev.child_tid = tid;
    inherit(ev.header.task.tgid, tgid);
    crate::taint::fork(ev.header.task.tgid, tgid);
    send(Kind::Fork, (ev as *const Fork).cast(), size_of::<Fork>());
    0
}

/// `sched_process_exit(struct task_struct *p)`: reported when the last thread of a group
/// exits (`signal->live` already dropped to zero in `do_exit`).
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(_ctx: RawTracePointContext) -> i32 {
    // Every thread's exit passes here: its waiting fold is written.
    crate::fold::exit(aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32);
    let task = current_task();
    let live: i32 = ptr(task, off!(task_struct_signal))
        .and_then(|signal| read(signal, off!(signal_struct_live)))
        .unwrap_or(1);
    if live != 0 {
        return 0;
    }
    crate::subject::exit(read(task, off!(task_struct_tgid)).unwrap_or(0));
    let Some(ev) = EXIT_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch.
    let ev = unsafe { &mut *ev };
    if !header_for_current(Kind::Exit, &mut ev.header) {
        return 0;
    }
    ev.exit_code = read(task, off!(task_struct_exit_code)).unwrap_or(0);
    // Files it still held are closed by the kernel without a close(2); the daemon writes
    // their file.close records when it sees this exit.
    release(ev.header.task.tgid);
    send(Kind::Exit, (ev as *const Exit).cast(), size_of::<Exit>());
    0
}
