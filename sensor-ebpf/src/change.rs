//! Deletions, renames, hard links and truncations of protected files (wire type:
//! `sensor_common::event::file::Change`; user half: `sensor/src/event/change.rs`).
//!
//! fentry backend: the `security_path_*` hooks see the change with the directory's `struct
//! path` (so the full path, across mounts) before it happens. The record waits in [`PENDING`]
//! for the calling thread until the exit (fexit) of the VFS operation says whether it
//! happened; only done changes are reported. The hooks run in the syscall paths; the
//! in-kernel file servers call the `vfs_*` operations without them.
//!
//! Tracepoint backend: link(2) and linkat(2) cannot be resolved to an inode at a tracepoint,
//! so their new name (and the directory it is relative to, walked in the kernel while the
//! caller still exists) goes to userspace, which stats it.
use core::mem::offset_of;

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{
            bpf_get_current_task_btf, bpf_probe_read_kernel_str, bpf_probe_read_user_str, bpf_task_pt_regs,
        },
    },
    macros::{fentry, fexit, map, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::{FEntryContext, FExitContext, TracePointContext},
};
use sensor_common::{
    event::{
        Kind,
        file::{
            BACKEND_CHANGE, CHANGE_DELETE, CHANGE_LINK, CHANGE_LINK_NAMES, CHANGE_RENAME, CHANGE_TRUNCATE,
            Change, FILE_DATA,
        },
    },
    offsets::MISSING,
    path::{InodeKey, NAME_MAX, PATH_MAX, PROTECT_TREE, Protected},
};

use crate::{
    emit::{header_for_current, send},
    file::fentry_active,
    kread::{config, current_task, dentry_ino_dev, file_of_fd, off, path_of, ptr, read, sys_exit_ret},
    path::{PATH_MASK, PROTECTED, bump_generation, bump_renames, find_protected, write_record_path},
};

/// `AT_FDCWD` (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/fcntl.h#L98>).
const AT_FDCWD: i32 = -100;
/// `S_IFMT`, `S_IFREG` (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/stat.h#L9>).
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;

/// Changes seen at their security hook, waiting for the operation's result, by thread.
#[map]
static PENDING: HashMap<u64, Change> = HashMap::with_max_entries(256, 0);

#[map]
static CHANGE_SCRATCH: PerCpuArray<Change> = PerCpuArray::with_max_entries(1, 0);

/// link(2)/linkat(2) arguments between syscall entry and exit, by thread.
#[map]
static LINK_ARGS: HashMap<u64, LinkArgs> = HashMap::with_max_entries(1024, 0);

#[derive(Clone, Copy)]
struct LinkArgs {
    dirfd: i32,
    name: u64,
}

/// `security_path_unlink(const struct path *dir, struct dentry *dentry)`
/// (<https://github.com/torvalds/linux/blob/v6.12/security/security.c#L1956>).
#[fentry(function = "security_path_unlink")]
pub fn security_path_unlink(ctx: FEntryContext) -> u32 {
    let (dir, dentry) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1));
    match ptr(dir, off!(path_mnt)) {
        Ok(mnt) => begin(CHANGE_DELETE, mnt, dentry, None),
        Err(_) => 0,
    }
}

/// `security_path_rename(old_dir, old_dentry, new_dir, new_dentry, flags)` (a `RENAME_EXCHANGE`
/// is reported as one rename of the first file): the file moves
/// within one mount (rename(2) refuses others with EXDEV), out of or into a protected tree.
/// (<https://github.com/torvalds/linux/blob/v6.12/security/security.c#L2053>)
#[fentry(function = "security_path_rename")]
pub fn security_path_rename(ctx: FEntryContext) -> u32 {
    let (old_dir, old_dentry, new_dir, new_dentry) =
        (ctx.arg::<u64>(0), ctx.arg::<u64>(1), ctx.arg::<u64>(2), ctx.arg::<u64>(3));
    match (ptr(old_dir, off!(path_mnt)), ptr(new_dir, off!(path_mnt))) {
        (Ok(old_mnt), Ok(new_mnt)) => {
            let new_parent = ptr(new_dir, off!(path_dentry)).unwrap_or(0);
            begin(CHANGE_RENAME, old_mnt, old_dentry, Some((new_mnt, new_parent, new_dentry)))
        }
        _ => 0,
    }
}

/// `security_path_link(struct dentry *old_dentry, const struct path *new_dir, struct dentry
/// *new_dentry)`: both names are on the mount of `new_dir` (link(2) refuses others).
/// (<https://github.com/torvalds/linux/blob/v6.12/security/security.c#L2018>)
#[fentry(function = "security_path_link")]
pub fn security_path_link(ctx: FEntryContext) -> u32 {
    let (old_dentry, new_dir, new_dentry) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1), ctx.arg::<u64>(2));
    match path_of(new_dir, 0) {
        Ok((mnt, new_parent)) => begin(CHANGE_LINK, mnt, old_dentry, Some((mnt, new_parent, new_dentry))),
        Err(_) => 0,
    }
}

/// `security_path_truncate(const struct path *path)`: truncate(2), and before 6.2 also
/// ftruncate(2) and `O_TRUNC` opens.
/// (<https://github.com/torvalds/linux/blob/v6.12/security/security.c#L2070>)
#[fentry(function = "security_path_truncate")]
pub fn security_path_truncate(ctx: FEntryContext) -> u32 {
    match path_of(ctx.arg::<u64>(0), 0) {
        Ok((mnt, dentry)) => begin(CHANGE_TRUNCATE, mnt, dentry, None),
        Err(_) => 0,
    }
}

/// `security_file_truncate(struct file *file)` (6.2+): ftruncate(2) and `O_TRUNC` opens.
/// (<https://github.com/torvalds/linux/blob/v6.12/security/security.c#L2876>)
#[fentry(function = "security_file_truncate")]
pub fn security_file_truncate(ctx: FEntryContext) -> u32 {
    match path_of(ctx.arg::<u64>(0), off!(file_f_path)) {
        Ok((mnt, dentry)) => begin(CHANGE_TRUNCATE, mnt, dentry, None),
        Err(_) => 0,
    }
}

#[fexit(function = "vfs_unlink")]
pub fn vfs_unlink(ctx: FExitContext) -> u32 {
    finish(&ctx)
}

/// Every rename, the in-kernel file servers' too (with this backend the rename syscalls'
/// tracepoints are not attached). Only a directory's rename changes an ancestry or frees a
/// directory's identity (a directory it replaces): a file's keeps the caches
/// (`vfs_rename(struct renamedata *)`,
/// <https://github.com/torvalds/linux/blob/v6.12/fs/namei.c#L4876>). After a
/// `RENAME_EXCHANGE` both dentries hold an object, so both are tested.
#[fexit(function = "vfs_rename")]
pub fn vfs_rename(ctx: FExitContext) -> u32 {
    let rd = ctx.arg::<u64>(0);
    let moved = [off!(renamedata_old_dentry), off!(renamedata_new_dentry)];
    if moved.iter().any(|&o| ptr(rd, o).map_or(true, maybe_dir)) {
        bump_generation();
    } else {
        bump_renames();
    }
    finish(&ctx)
}

/// `S_IFDIR` (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/stat.h#L15>).
const S_IFDIR: u32 = 0o040_000;

/// Whether `dentry` may name a directory: a directory, or unreadable. A negative dentry
/// (no object) is not one.
#[inline(always)]
fn maybe_dir(dentry: u64) -> bool {
    match ptr(dentry, off!(dentry_d_inode)) {
        Ok(0) => false,
        Ok(inode) => {
            read::<u16>(inode, off!(inode_i_mode)).map_or(true, |m| u32::from(m) & S_IFMT == S_IFDIR)
        }
        Err(_) => true,
    }
}

/// A removed directory's dentry and inode number may be reused (the NFS server removes
/// directories without the syscalls).
#[fexit(function = "vfs_rmdir")]
pub fn vfs_rmdir(_ctx: FExitContext) -> u32 {
    bump_generation();
    0
}

/// Attached to the entry and exit tracepoints of the syscalls that remove directories or
/// change mounts (the daemon's list: `sensor/src/bpf.rs`): the directories known to be
/// outside the protected trees are forgotten, before the change (so no walk started earlier
/// is cached as current) and after it.
#[tracepoint]
pub fn namespace_change(_ctx: TracePointContext) -> u32 {
    bump_generation();
    0
}

/// `RENAME_EXCHANGE` (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/fs.h#L50>).
const RENAME_EXCHANGE: u64 = 2;

/// The user's new name and the name of the dentry found in its place, for [`rename_check`].
#[repr(C)]
struct RenameNames {
    user: [u8; NAME_MAX],
    dentry: [u8; NAME_MAX],
}

#[map]
static RENAME_SCRATCH: PerCpuArray<RenameNames> = PerCpuArray::with_max_entries(1, 0);

/// rename(2) exit: `rename(oldname, newname)`.
#[tracepoint]
pub fn rename_exit(ctx: TracePointContext) -> u32 {
    rename_check(&ctx, None, off!(pt_regs_si), None)
}

/// renameat(2) exit: `renameat(olddfd, oldname, newdfd, newname)`.
#[tracepoint]
pub fn renameat_exit(ctx: TracePointContext) -> u32 {
    rename_check(&ctx, Some(off!(pt_regs_dx)), off!(pt_regs_r10), None)
}

/// renameat2(2) exit: `renameat2(olddfd, oldname, newdfd, newname, flags)`.
#[tracepoint]
pub fn renameat2_exit(ctx: TracePointContext) -> u32 {
    rename_check(&ctx, Some(off!(pt_regs_dx)), off!(pt_regs_r10), Some(off!(pt_regs_r8)))
}

/// After a rename syscall (the tracepoint backend: the syscall tracepoints do not say what
/// was renamed): invalidates the directory caches unless the renamed object is provably not
/// a directory. A file's rename changes no directory's ancestry and frees no directory's
/// identity (only a directory can replace a directory), so it keeps the caches; one bump
/// at the exit suffices, as every cache entry carries the generation read before its walk.
///
/// The proof, for a new name of one component relative to a directory descriptor or the
/// working directory: the kernel puts a renamed dentry at the head of its new parent's
/// children (`__d_move`, <https://github.com/torvalds/linux/blob/v6.12/fs/dcache.c#L2816>);
/// if that head bears the new name and is not a directory, the object is a file. Anything
/// else (a longer name, `RENAME_EXCHANGE`, another dentry at the head after a concurrent
/// insertion, a read error) counts as a directory rename. The arguments come from the
/// registers saved at entry.
#[inline(always)]
fn rename_check(ctx: &TracePointContext, newdfd: Option<u32>, newname: u32, flags: Option<u32>) -> u32 {
    if sys_exit_ret(ctx).is_ok_and(|r| r != 0) {
        return 0;
    }
    // SAFETY: both helpers take the current task; pt_regs is read through probe-read.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    let flags = flags.map_or(Ok(0), |o| read::<u64>(regs, o));
    let dirfd = newdfd.map_or(Ok(i64::from(AT_FDCWD)), |o| read::<u64>(regs, o).map(|d| i64::from(d as i32)));
    let file = match (flags, dirfd, read::<u64>(regs, newname)) {
        (Ok(f), Ok(d), Ok(name)) if f & RENAME_EXCHANGE == 0 => renamed_file(d, name),
        _ => false,
    };
    if file {
        bump_renames();
    } else {
        bump_generation();
    }
    0
}

/// Whether the first child of directory `dirfd` is a non-directory named as the user's
/// string at `name` (see [`rename_check`]).
#[inline(always)]
fn renamed_file(dirfd: i64, name: u64) -> bool {
    let Some(names) = RENAME_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU scratch, exclusively ours while the program runs.
    let names = unsafe { &mut *names };
    // SAFETY: the helper writes at most NAME_MAX bytes into the buffer.
    let n =
        unsafe { bpf_probe_read_user_str(names.user.as_mut_ptr().cast(), NAME_MAX as u32, name as *const _) };
    // An absolute name (common: `mv /a/b /a/c`) is not one component.
    if n <= 1 || names.user[0] == b'/' {
        return false;
    }
    let task = current_task();
    let parent = match dirfd {
        d if d == i64::from(AT_FDCWD) => {
            ptr(task, off!(task_struct_fs)).and_then(|fs| path_of(fs, off!(fs_struct_pwd)))
        }
        fd => file_of_fd(task, fd).and_then(|f| path_of(f, off!(file_f_path))),
    };
    let (children, sib) = (off!(dentry_d_children), off!(dentry_d_sib));
    let Ok((_, parent)) = parent else {
        return false;
    };
    // An empty hlist is NULL; an empty list points at itself.
    let head = match ptr(parent, children) {
        Ok(h) if h != 0 && h != parent + u64::from(children) && sib != MISSING => h,
        _ => return false,
    };
    let child = head - u64::from(sib);
    if maybe_dir(child) {
        return false;
    }
    let Ok(dname) = ptr(child, off!(dentry_d_name) + off!(qstr_name)) else {
        return false;
    };
    // SAFETY: as above, for the kernel string.
    let m = unsafe {
        bpf_probe_read_kernel_str(names.dentry.as_mut_ptr().cast(), NAME_MAX as u32, dname as *const _)
    };
    if m != n {
        return false;
    }
    // Both strings end with their NUL at n - 1.
    for i in 0..NAME_MAX {
        if i >= n as usize {
            break;
        }
        if names.user[i] != names.dentry[i] {
            return false;
        }
    }
    true
}

/// `AT_REMOVEDIR` (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/fcntl.h#L104>).
const AT_REMOVEDIR: u64 = 0x200;

/// `unlinkat(dfd, name, flags)` entry and exit: only a directory removal (`AT_REMOVEDIR`) can
/// free a directory's identity; the far more frequent file deletions keep the cache. The
/// flags are the third argument in the saved registers (exit tracepoints have no arguments).
#[tracepoint]
pub fn unlinkat_change(_ctx: TracePointContext) -> u32 {
    // SAFETY: both helpers take the current task; pt_regs is read through probe-read.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    if read::<u64>(regs, off!(pt_regs_dx)).is_ok_and(|flags| flags & AT_REMOVEDIR != 0) {
        bump_generation();
    }
    0
}

#[fexit(function = "vfs_link")]
pub fn vfs_link(ctx: FExitContext) -> u32 {
    finish(&ctx)
}

#[fexit(function = "do_truncate")]
pub fn do_truncate(ctx: FExitContext) -> u32 {
    finish(&ctx)
}

/// Starts a change record when `(mnt, dentry)` (or, for renames and links, the directory of
/// the new name: `new` is its mount, that directory and the new name's dentry, which has no
/// inode yet) lies in a protected tree. Otherwise forgets any record the thread left pending
/// (a change another security module refused never reaches its fexit).
#[inline(always)]
fn begin(op: u32, mnt: u64, dentry: u64, new: Option<(u64, u64, u64)>) -> u32 {
    let tid = bpf_get_current_pid_tgid();
    if config!(file_events) == 0 || !fentry_active(BACKEND_CHANGE) {
        return 0;
    }
    let found = match find_protected(mnt, dentry) {
        Some(f) => Some(f),
        None => match new {
            Some((new_mnt, new_parent, _)) => find_protected(new_mnt, new_parent),
            None => None,
        },
    };
    let Some((_, rule)) = found else {
        let _ = PENDING.remove(tid);
        return 0;
    };
    let Some(ev) = scratch(op) else {
        return 0;
    };
    ev.rule = rule.rule;
    let (ino, dev) = dentry_ino_dev(dentry).unwrap_or((0, 0));
    ev.ino = ino;
    ev.dev = dev;
    ev.inode = ptr(dentry, off!(dentry_d_inode)).unwrap_or(0);
    ev.size = read(ev.inode, off!(inode_i_size)).unwrap_or(0);
    ev.new_size = ev.size;
    ev.nlink = read(ev.inode, off!(inode_i_nlink)).unwrap_or(0);
    ev.mode = u32::from(read::<u16>(ev.inode, off!(inode_i_mode)).unwrap_or(0));
    let (flags, n) = write_record_path(ev.data.as_mut_ptr(), &raw mut ev.cursor, mnt, dentry);
    ev.header.flags |= flags;
    ev.path_len = n as u16;
    ev.new_path_len = 0;
    if let Some((new_mnt, _, new_dentry)) = new {
        // SAFETY: the second path area starts at FILE_DATA; write_path stays within its
        // PATH_MASK + 1 + NAME_MAX bytes, which is FILE_DATA.
        let second = unsafe { ev.data.as_mut_ptr().add(FILE_DATA) };
        let (flags, n) = write_record_path(second, &raw mut ev.new_cursor, new_mnt, new_dentry);
        ev.header.flags |= flags;
        ev.new_path_len = n as u16;
    }
    let _ = PENDING.insert(tid, ev, 0);
    0
}

/// The per-CPU change record with its header for the current task and the operation set,
/// the other fixed fields zero; `None` for the daemon's own activity.
#[inline(always)]
fn scratch(op: u32) -> Option<&'static mut Change> {
    // SAFETY: per-CPU scratch, exclusively ours while the program runs.
    let ev = unsafe { &mut *CHANGE_SCRATCH.get_ptr_mut(0)? };
    if !header_for_current(Kind::FileChange, &mut ev.header) {
        return None;
    }
    ev.op = op;
    ev.ino = 0;
    ev.dev = 0;
    ev.inode = 0;
    ev.size = 0;
    ev.new_size = 0;
    ev.nlink = 0;
    ev.mode = 0;
    ev.rule = 0;
    Some(ev)
}

/// Reports the thread's pending change when the operation returned 0, and keeps the
/// protected set right: a renamed or linked file is protected by its inode (so it stays
/// protected outside the tree), the last name of a deleted one is forgotten (inode numbers
/// are reused).
#[inline(always)]
fn finish(ctx: &FExitContext) -> u32 {
    let tid = bpf_get_current_pid_tgid();
    let Some(ev) = PENDING.get_ptr_mut(tid) else {
        return 0;
    };
    // SAFETY: the thread's own entry; only this thread inserts or removes it.
    let ev = unsafe { &mut *ev };
    // `bpf_get_func_ret` (5.17+): the operation's `int` result.
    let Ok(ret) = ctx.ret::<i64>() else {
        let _ = PENDING.remove(tid);
        return 0;
    };
    if ret as i32 == 0 {
        let key = InodeKey { ino: ev.ino, dev: ev.dev, _pad: 0 };
        let regular = ev.mode & S_IFMT == S_IFREG;
        match ev.op {
            // SAFETY (both guards): the values are only tested.
            CHANGE_DELETE
                if ev.nlink <= 1
                    && unsafe { PROTECTED.get(key) }.is_some_and(|p| p.flags & PROTECT_TREE == 0) =>
            {
                let _ = PROTECTED.remove(key);
            }
            CHANGE_RENAME | CHANGE_LINK if regular && unsafe { PROTECTED.get(key) }.is_none() => {
                let _ = PROTECTED.insert(key, Protected { rule: ev.rule, flags: 0 }, 0);
            }
            CHANGE_TRUNCATE => ev.new_size = read(ev.inode, off!(inode_i_size)).unwrap_or(0),
            _ => {}
        }
        let skip = ev.op == CHANGE_TRUNCATE && ev.size == 0 && ev.new_size == 0;
        if !skip {
            let len = match ev.op {
                CHANGE_RENAME | CHANGE_LINK => FILE_DATA + (u32::from(ev.new_path_len) & PATH_MASK) as usize,
                _ => (u32::from(ev.path_len) & PATH_MASK) as usize,
            };
            send(Kind::FileChange, (ev as *const Change).cast(), offset_of!(Change, data) + len);
        }
    }
    let _ = PENDING.remove(tid);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_link")]
pub fn sys_enter_link(ctx: TracePointContext) -> u32 {
    // SAFETY: reads the tracepoint record through the probe-read helper.
    let name = unsafe { ctx.read_at::<u64>(off!(tp_sys_enter_link_newname) as usize) };
    link_enter(AT_FDCWD, name.unwrap_or(0))
}

#[tracepoint(category = "syscalls", name = "sys_enter_linkat")]
pub fn sys_enter_linkat(ctx: TracePointContext) -> u32 {
    // SAFETY: as above.
    let (dirfd, name) = unsafe {
        (
            ctx.read_at::<i64>(off!(tp_sys_enter_linkat_newdfd) as usize),
            ctx.read_at::<u64>(off!(tp_sys_enter_linkat_newname) as usize),
        )
    };
    link_enter(dirfd.unwrap_or(0) as i32, name.unwrap_or(0))
}

#[inline(always)]
fn link_enter(dirfd: i32, name: u64) -> u32 {
    if config!(file_events) == 0 || name == 0 {
        return 0;
    }
    let _ = LINK_ARGS.insert(bpf_get_current_pid_tgid(), LinkArgs { dirfd, name }, 0);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_link")]
pub fn sys_exit_link(ctx: TracePointContext) -> u32 {
    link_exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_linkat")]
pub fn sys_exit_linkat(ctx: TracePointContext) -> u32 {
    link_exit(&ctx)
}

/// Sends the new name of a successful link with the directory it is relative to.
#[inline(always)]
fn link_exit(ctx: &TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the map can change.
    let Some(args) = (unsafe { LINK_ARGS.get(tid) }).copied() else {
        return 0;
    };
    let _ = LINK_ARGS.remove(tid);
    if sys_exit_ret(ctx).unwrap_or(-1) != 0 {
        return 0;
    }
    let Some(ev) = scratch(CHANGE_LINK_NAMES) else {
        return 0;
    };
    // SAFETY: the second path area has FILE_DATA > PATH_MAX bytes; the helper stops there.
    let n = unsafe {
        bpf_probe_read_user_str(
            ev.data.as_mut_ptr().add(FILE_DATA).cast(),
            PATH_MAX as u32,
            args.name as *const _,
        )
    };
    if n <= 1 {
        return 0;
    }
    ev.new_path_len = ((n - 1) as u32 & PATH_MASK) as u16;
    ev.cursor = 0;
    ev.path_len = 0;
    // A relative name: the directory it starts from, while the caller still has it.
    if ev.data[FILE_DATA] != b'/' {
        let base = match args.dirfd {
            AT_FDCWD => {
                ptr(current_task(), off!(task_struct_fs)).and_then(|fs| path_of(fs, off!(fs_struct_pwd)))
            }
            fd => file_of_fd(current_task(), i64::from(fd)).and_then(|f| path_of(f, off!(file_f_path))),
        };
        if let Ok((mnt, dentry)) = base {
            let (flags, n) = write_record_path(ev.data.as_mut_ptr(), &raw mut ev.cursor, mnt, dentry);
            ev.header.flags |= flags;
            ev.path_len = n as u16;
        }
    }
    let len = FILE_DATA + (u32::from(ev.new_path_len) & PATH_MASK) as usize;
    send(Kind::FileChange, (ev as *const Change).cast(), offset_of!(Change, data) + len);
    0
}
