//! Reads of kernel memory at offsets resolved by userspace.
//!
//! Every struct-field read of the programs goes through this module. The offsets come from
//! the read-only global `OFFSETS`, filled by the daemon from the running kernel's BTF
//! (`sensor/src/kernel/offsets.rs` lists the fields with links to the kernel source). The
//! global is frozen at load, so the verifier sees constants.
use aya_ebpf::helpers::{bpf_get_current_comm, bpf_get_current_task, bpf_probe_read_kernel};
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
    let mnt = ptr(base, path_off + off!(path_mnt))?;
    let dentry = ptr(base, path_off + off!(path_dentry))?;
    Ok((mnt, dentry))
}

/// Inode number of a dentry's inode.
#[inline(always)]
pub fn dentry_ino(dentry: u64) -> Result<u64, i32> {
    read(ptr(dentry, off!(dentry_d_inode))?, off!(inode_i_ino))
}

/// Inode number and kernel device number of a dentry's inode.
#[inline(always)]
pub fn dentry_ino_dev(dentry: u64) -> Result<(u64, u32), i32> {
    let inode = ptr(dentry, off!(dentry_d_inode))?;
    let ino = read(inode, off!(inode_i_ino))?;
    let sb = ptr(inode, off!(inode_i_sb))?;
    let dev = read(sb, off!(super_block_s_dev))?;
    Ok((ino, dev))
}
