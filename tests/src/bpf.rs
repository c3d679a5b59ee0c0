//! Queries about kernel BPF objects through the raw `bpf(2)` syscall.

use std::{io, mem::size_of};

/// `BPF_PROG_GET_FD_BY_ID` from `include/uapi/linux/bpf.h`.
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;

/// The part of `union bpf_attr` used by the `*_GET_FD_BY_ID` commands (the rest must be 0).
#[repr(C)]
#[derive(Default)]
struct GetFdById {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
    _pad: u32,
}

/// Whether a BPF program with this id is loaded in the kernel right now.
///
/// Uses `BPF_PROG_GET_FD_BY_ID`: `ENOENT` means the program is gone. Any fd obtained is
/// closed at once. Panics on other errors (e.g. `EPERM` when not root).
pub fn prog_loaded(id: u32) -> bool {
    let attr = GetFdById { prog_id: id, ..Default::default() };
    // SAFETY: `attr` is a valid, fully initialized buffer of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            &raw const attr,
            size_of::<GetFdById>() as libc::c_uint,
        )
    };
    if fd >= 0 {
        // SAFETY: we own this fd.
        unsafe { libc::close(fd as libc::c_int) };
        return true;
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => false,
        _ => panic!("bpf(BPF_PROG_GET_FD_BY_ID, {id}): {e}"),
    }
}
