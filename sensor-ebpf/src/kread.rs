//! Reads of kernel memory at offsets resolved by userspace.
//!
//! Every struct-field read of the programs goes through this module. The offsets come from
//! the read-only global `OFFSETS`, filled by the daemon from the running kernel's BTF
//! (`sensor/src/kernel/offsets.rs` lists the fields with links to the kernel source). The
//! global is frozen at load, so the verifier sees constants.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_current_comm, bpf_get_current_task, bpf_probe_read_kernel},
    programs::TracePointContext,
};
use sensor_common::{
    config::KernelConfig,
    event::{FLAG_READ_ERROR, Task},
    offsets::{KernelOffsets, MISSING},
};

#[unsafe(no_mangle)]
pub(crate) static OFFSETS: KernelOffsets = KernelOffsets::missing();

#[unsafe(no_mangle)]
pub(crate) static CONFIG: KernelConfig =
    KernelConfig { self_tgid: 0, file_events: 0, lsm_enforce: 0, _pad: 0, wakeup_bytes: 0 };

/// The offset of a field, read so that the compiler cannot fold the placeholder value.
macro_rules! off {
    ($field:ident) => {{
        // SAFETY: OFFSETS is a valid static; the volatile read keeps the load in the program.
        #[allow(unused_unsafe, reason = "the macro is also used inside unsafe blocks")]
        let v = unsafe { core::ptr::read_volatile(&raw const $crate::kread::OFFSETS.$field) };
        v
    }};
}
pub(crate) use off;

/// A runtime setting from the daemon.
macro_rules! config {
    ($field:ident) => {{
        // SAFETY: as for `off!`.
        #[allow(unused_unsafe, reason = "the macro is also used inside unsafe blocks")]
        let v = unsafe { core::ptr::read_volatile(&raw const $crate::kread::CONFIG.$field) };
        v
    }};
}
pub(crate) use config;

/// The `ret` field of a `sys_exit_*` tracepoint record (`offsets.rs` checks at startup that
/// every exit tracepoint the programs attach has it where the reference has it).
#[inline(always)]
pub fn sys_exit_ret(ctx: &TracePointContext) -> Result<i64, i32> {
    tp_word(ctx, off!(tp_sys_exit_ret)).map(|v| v as i64)
}

/// The 8-byte field at `off` of a syscall tracepoint record. Where it is 16 (the first field
/// after the common header and `__syscall_nr`: `ret` of every exit, the first argument of
/// every entry), loaded from the context directly, which saves a helper call (7 ns); the
/// verifier accepts context loads at constant offsets only, hence the one fixed offset.
#[inline(always)]
pub fn tp_word(ctx: &TracePointContext, off: u32) -> Result<u64, i32> {
    if off == 16 {
        // SAFETY: a tracepoint program may load from its record at a constant offset, and
        // every syscall record is longer than 24 bytes.
        Ok(unsafe { core::ptr::read_volatile(ctx.as_ptr().cast::<u8>().add(16).cast::<u64>()) })
    } else {
        // SAFETY: probe-read of the tracepoint record.
        unsafe { ctx.read_at::<u64>(off as usize) }.map_err(|_| -1)
    }
}

/// Reads a `T` at `base + off` in kernel memory.
#[inline(always)]
pub fn read<T>(base: u64, off: u32) -> Result<T, i32> {
    if off == MISSING || base == 0 {
        return Err(-1);
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const T) }
}

/// Reads a pointer field.
#[inline(always)]
pub fn ptr(base: u64, off: u32) -> Result<u64, i32> {
    read::<u64>(base, off)
}

/// The current task (`struct task_struct *`).
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_get_current_task() }
}

/// Fills `out` with the identity of `task`, which must be the current task (its `comm` is
/// taken from the current task). Returns `FLAG_READ_ERROR` when a read failed.
#[inline(always)]
pub fn fill_task(task: u64, out: &mut Task) -> u32 {
    let mut flags = 0;
    let mut ok = |r: Result<u32, i32>| match r {
        Ok(v) => v,
        Err(_) => {
            flags |= FLAG_READ_ERROR;
            0
        }
    };
    out.tgid = ok(read(task, off!(task_struct_tgid)));
    out.tid = ok(read(task, off!(task_struct_pid)));
    match ptr(task, off!(task_struct_cred)) {
        Ok(cred) => {
            out.uid = ok(read(cred, off!(cred_uid)));
            out.gid = ok(read(cred, off!(cred_gid)));
            out.euid = ok(read(cred, off!(cred_euid)));
            out.egid = ok(read(cred, off!(cred_egid)));
        }
        Err(_) => flags |= FLAG_READ_ERROR,
    }
    flags | fill_task_rest(task, out)
}

/// The part of [`fill_task`] that is not the process or its credentials: the parent, the
/// audit login uid and session, and the thread's name (`task` must be the current task).
/// For a task whose process and credentials are known (a compact `file.close`, `io.rs`).
#[inline(always)]
pub fn fill_task_rest(task: u64, out: &mut Task) -> u32 {
    let mut flags = 0;
    match ptr(task, off!(task_struct_real_parent)).and_then(|parent| read(parent, off!(task_struct_tgid))) {
        Ok(ppid) => out.ppid = ppid,
        Err(_) => {
            out.ppid = 0;
            flags |= FLAG_READ_ERROR;
        }
    }
    // Optional: only kernels built with CONFIG_AUDIT have them.
    out.auid = read(task, off!(task_struct_loginuid)).unwrap_or(u32::MAX);
    out.sessionid = read(task, off!(task_struct_sessionid)).unwrap_or(u32::MAX);
    out.comm = bpf_get_current_comm().unwrap_or_default();
    flags
}

/// `task->files->fdt->fd[fd]`: the `struct file *` behind a descriptor of `task`.
#[inline(always)]
pub fn file_of_fd(task: u64, fd: i64) -> Result<u64, i32> {
    let files = ptr(task, off!(task_struct_files))?;
    let fdt = ptr(files, off!(files_struct_fdt))?;
    let max: u32 = read(fdt, off!(fdtable_max_fds))?;
    if fd < 0 || fd >= i64::from(max) {
        return Err(-1);
    }
    let array = ptr(fdt, off!(fdtable_fd))?;
    ptr(array, (fd as u32) * 8)
}

/// `(vfsmount, dentry)` of a `struct path` at `base + path_off`.
#[inline(always)]
pub fn path_of(base: u64, path_off: u32) -> Result<(u64, u64), i32> {
    if path_off == MISSING {
        return Err(-1);
    }
    Ok((ptr(base, path_off + off!(path_mnt))?, ptr(base, path_off + off!(path_dentry))?))
}

/// Inode number of a dentry's inode.
#[inline(always)]
pub fn dentry_ino(dentry: u64) -> Result<u64, i32> {
    read(ptr(dentry, off!(dentry_d_inode))?, off!(inode_i_ino))
}

/// What the open path reads of a dentry's inode: its number, and its filesystem's device
/// number and `struct super_block *`.
#[derive(Clone, Copy)]
pub struct DentryId {
    pub ino: u64,
    pub dev: u32,
    pub sb: u64,
}

/// [`DentryId`] of a dentry.
#[inline(always)]
pub fn dentry_id(dentry: u64) -> Result<DentryId, i32> {
    let inode = ptr(dentry, off!(dentry_d_inode))?;
    let ino = read(inode, off!(inode_i_ino))?;
    let sb = ptr(inode, off!(inode_i_sb))?;
    let dev = read(sb, off!(super_block_s_dev))?;
    Ok(DentryId { ino, dev, sb })
}

/// Inode number and kernel device number of a dentry's inode.
#[inline(always)]
pub fn dentry_ino_dev(dentry: u64) -> Result<(u64, u32), i32> {
    dentry_id(dentry).map(|i| (i.ino, i.dev))
}
