//! Opens of protected files (wire type: `sensor_common::event::file`; user half:
//! `sensor/src/event/file.rs`).
//!
//! One program per open syscall's exit tracepoint. The decision and the path come from the
//! `struct file` the syscall installed at the returned descriptor, never from the
//! user-supplied name: `task->files->fdt->fd[ret]`.
use core::mem::offset_of;

use aya_ebpf::{
    macros::{fentry, map, tracepoint},
    maps::{Array, PerCpuArray},
    programs::{FEntryContext, TracePointContext},
};
use sensor_common::{
    event::{
        Kind,
        file::{FMODE_CREATED, OPEN_FENTRY, OPEN_PIDFD_GETFD, OPEN_SCM_RIGHTS, Open, Tracked},
    },
    path::{InodeKey, Protected},
};

use crate::{
    emit::{count_loss, count_loss_of, header_for_current, responsible_uid, send_to_ring},
    io::{receive, track},
    kread::{config, current_task, dentry_id, file_of_fd, off, path_of, read, sys_exit_ret},
    path::{PROTECTED, find_protected_of, remember_lookup, write_record_path},
};

/// Which event families the fentry programs report, set by the daemon once all of a
/// family's programs are attached: slot `BACKEND_OPEN` (`security_file_open`; other open
/// paths then stay quiet so an open is reported once) and `BACKEND_CHANGE` (the
/// `security_path_*` hooks in `change.rs`).
#[map]
pub static BACKEND: Array<u32> = Array::with_max_entries(2, 0);

/// Whether the fentry programs report the family in `slot`.
#[inline(always)]
pub fn fentry_active(slot: u32) -> bool {
    BACKEND.get(slot).is_some_and(|v| *v == 1)
}

#[map]
static OPEN_SCRATCH: PerCpuArray<Open> = PerCpuArray::with_max_entries(1, 0);

/// `O_PATH` (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/asm-generic/fcntl.h#L94>).
const O_PATH: u32 = 0o10_000_000;

/// Syscall numbers reported in `Open::syscall` (x86_64 numbering,
/// <https://github.com/torvalds/linux/blob/v6.12/arch/x86/entry/syscalls/syscall_64.tbl>).
const NR_OPEN: u32 = 2;
const NR_CREAT: u32 = 85;
const NR_OPENAT: u32 = 257;
const NR_OPEN_BY_HANDLE_AT: u32 = 304;
const NR_OPENAT2: u32 = 437;

#[tracepoint(category = "syscalls", name = "sys_exit_open")]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx, NR_OPEN)
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat")]
pub fn sys_exit_openat(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx, NR_OPENAT)
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat2")]
pub fn sys_exit_openat2(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx, NR_OPENAT2)
}

#[tracepoint(category = "syscalls", name = "sys_exit_creat")]
pub fn sys_exit_creat(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx, NR_CREAT)
}

#[tracepoint(category = "syscalls", name = "sys_exit_open_by_handle_at")]
pub fn sys_exit_open_by_handle_at(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx, NR_OPEN_BY_HANDLE_AT)
}

#[inline(always)]
fn on_open_exit(ctx: &TracePointContext, syscall: u32) -> u32 {
    if config!(file_events) == 0 {
        return 0;
    }
    let Ok(fd) = sys_exit_ret(ctx) else {
        return 0;
    };
    opened(fd, syscall)
}

/// Reports and starts tracking the file at descriptor `fd` of the current task when it is
/// protected. Also called for io_uring open requests (`io.rs`).
#[inline(always)]
pub fn opened(fd: i64, syscall: u32) -> u32 {
    if fd < 0 {
        return 0;
    }
    let Ok(file) = file_of_fd(current_task(), fd) else {
        return 0;
    };
    opened_file(file, fd, syscall)
}

/// `security_file_open(struct file *)`, where fentry programs load (not on every kernel; the
/// daemon falls back to the syscall exit tracepoints): sees every open the kernel performs,
/// including io_uring, open_by_handle_at and the in-kernel NFS server, before a descriptor
/// exists (`fd` -1). <https://github.com/torvalds/linux/blob/v6.12/security/security.c#L3020>
#[fentry(function = "security_file_open")]
pub fn security_file_open(ctx: FEntryContext) -> u32 {
    if config!(file_events) == 0 {
        return 0;
    }
    opened_file(ctx.arg::<u64>(0), -1, OPEN_FENTRY)
}

/// Reports and tracks `file` when it is protected.
#[inline(always)]
fn opened_file(file: u64, fd: i64, syscall: u32) -> u32 {
    let flags = read::<u32>(file, off!(file_f_flags)).unwrap_or(0);
    // O_PATH descriptors cannot read or write; security_file_open never sees them either.
    if flags & O_PATH != 0 {
        return 0;
    }
    let Ok((mnt, dentry)) = path_of(file, off!(file_f_path)) else {
        return 0;
    };
    let Ok(id) = dentry_id(dentry) else {
        return 0;
    };
    let found = find_protected_of(mnt, dentry, &id);
    if syscall == OPEN_FENTRY && config!(lsm_enforce) != 0 {
        remember_lookup(mnt, dentry, found.map(|(_, p)| p));
    }
    let Some((_, rule)) = found else {
        crate::tamper::proc_opened(file, dentry, id.sb);
        return 0;
    };

    let Some(ev) = OPEN_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch, exclusively ours while the program runs.
    let ev = unsafe { &mut *ev };
    if !header_for_current(Kind::FileOpen, &mut ev.header) {
        return 0;
    }
    ev.fmode = read(file, off!(file_f_mode)).unwrap_or(0);
    let (ino, dev) = (id.ino, id.dev);
    ev.ino = ino;
    ev.dev = dev;
    let priority = crate::priority::outsider(rule.rule, &ev.header.task);
    let received = syscall == OPEN_PIDFD_GETFD || syscall == OPEN_SCM_RIGHTS;
    let fold_window = if priority || received || ev.fmode & FMODE_CREATED != 0 {
        0
    } else {
        crate::fold::open(&ev.header.task, dev, ino, ev.header.time_ns)
    };
    // Read before the path walk: a rename during it makes the close walk again.
    let mut close_key = sensor_common::event::file::close_key(crate::path::names_generation());
    if fold_window == 0 {
        ev.fd = fd as i32;
        ev.syscall = syscall;
        ev.file = file;
        ev.rule = rule.rule;
        ev.flags = flags;
        let (path_flags, n) = write_record_path(ev.data.as_mut_ptr(), &raw mut ev.cursor, mnt, dentry);
        ev.header.flags |= path_flags;
        ev.path_len = n as u16;
        let len = offset_of!(Open, data) + n as usize;
        if !send_to_ring(priority, (ev as *const Open).cast(), len) {
            count_loss_of(Kind::FileOpen, responsible_uid(&ev.header.task), dev, ino, 1);
            close_key = 0;
        }
    } else {
        close_key = 0;
    }
    if received {
        // Already tracked: its totals go on and count the receiver's bytes too, which are
        // also kept apart for the receiver's own `file.close`.
        receive(file, ev.header.time_ns);
        return 0;
    }

    // A file created in a protected tree is protected itself: it stays protected when it is
    // renamed out of the tree or linked from elsewhere.
    if ev.fmode & FMODE_CREATED != 0 {
        let own = InodeKey { ino, dev, _pad: 0 };
        let _ = PROTECTED.insert(own, Protected { rule: rule.rule, flags: 0 }, 0);
    }
    let stats = Tracked {
        opener: ev.header.task,
        ino,
        dev,
        opened_ns: ev.header.time_ns,
        fold_window,
        priority: u32::from(priority),
        close_key,
        ..Tracked::default()
    };
    if !track(file, &stats) {
        count_loss(Kind::FileClose);
    }
    0
}
