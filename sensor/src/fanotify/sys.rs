//! Thin, checked wrappers over the raw system calls this module uses. Every `unsafe` block of
//! the module lives here; callers get `io::Result`s and owned descriptors.
use std::{
    ffi::{CStr, CString},
    io,
    mem::MaybeUninit,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
};

use super::FileHandle;

/// `MAX_HANDLE_SZ` from `<linux/exportfs.h>`: the largest file handle any filesystem encodes.
pub(crate) const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct HandleBuf {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// The calling thread's last OS error.
fn last() -> io::Error {
    io::Error::last_os_error()
}

/// A path as a C string (paths with interior NUL bytes cannot name a file).
pub(crate) fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `fanotify_init(2)`.
pub(crate) fn fanotify_init(flags: u32, event_f_flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; a non-negative result is a new descriptor
    // that nothing else owns.
    let fd = unsafe { libc::fanotify_init(flags, event_f_flags) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fanotify_mark(2)` on `dirfd` + `path` (`path: None` marks the object `dirfd` refers to).
pub(crate) fn fanotify_mark(
    group: BorrowedFd<'_>,
    flags: u32,
    mask: u64,
    dirfd: RawFd,
    path: Option<&CStr>,
) -> io::Result<()> {
    let p = path.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: `group` is a live descriptor, `p` is NULL or a NUL-terminated string that
    // outlives the call.
    let rc = unsafe { libc::fanotify_mark(group.as_raw_fd(), flags, mask, dirfd, p) };
    if rc < 0 { Err(last()) } else { Ok(()) }
}

/// `read(2)`, retried on `EINTR`. `Ok(None)` means `EAGAIN` (queue empty).
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is a valid writable region of `buf.len()` bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = last();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Writes a `struct fanotify_response` for the permission event whose descriptor is `fd`.
pub(crate) fn respond(group: BorrowedFd<'_>, fd: RawFd, response: u32) -> io::Result<()> {
    let r = libc::fanotify_response { fd, response };
    let size = size_of::<libc::fanotify_response>();
    loop {
        // SAFETY: `r` is a plain repr(C) struct of `size` bytes that lives across the call.
        let n = unsafe { libc::write(group.as_raw_fd(), (&raw const r).cast(), size) };
        if n == size as isize {
            return Ok(());
        }
        if n >= 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short fanotify response"));
        }
        let e = last();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// `open(2)` of a directory for listing and marking: never follows a final symlink.
pub(crate) fn open_dir(path: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `path` is NUL-terminated; the result is a new descriptor owned by nobody else.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstat(2)`.
pub(crate) fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a writable `struct stat`.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } < 0 {
        return Err(last());
    }
    // SAFETY: initialised by the successful call.
    Ok(unsafe { st.assume_init() })
}

/// `lstat(2)`.
pub(crate) fn lstat(path: &CStr) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `path` is NUL-terminated, `st` is a writable `struct stat`.
    if unsafe { libc::lstat(path.as_ptr(), st.as_mut_ptr()) } < 0 {
        return Err(last());
    }
    // SAFETY: initialised by the successful call.
    Ok(unsafe { st.assume_init() })
}

/// The filesystem id (`statfs.f_fsid`, what fanotify reports in its FID records) of the
/// filesystem holding `path` when given, else `fd`.
pub(crate) fn fsid(fd: RawFd, path: Option<&CStr>) -> io::Result<[i32; 2]> {
    const _: () = assert!(size_of::<libc::fsid_t>() == 8);
    let mut st = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `st` is a writable `struct statfs`; `path` (if any) is NUL-terminated.
    let rc = unsafe {
        match path {
            Some(p) => libc::statfs(p.as_ptr(), st.as_mut_ptr()),
            None => libc::fstatfs(fd, st.as_mut_ptr()),
        }
    };
    if rc < 0 {
        return Err(last());
    }
    // SAFETY: initialised by the successful call.
    let st = unsafe { st.assume_init() };
    // SAFETY: `fsid_t` is `struct { int __val[2]; }` (checked size above); its fields are
    // private in the libc crate, so read it as the array it is.
    Ok(unsafe { std::ptr::read_unaligned((&raw const st.f_fsid).cast::<[i32; 2]>()) })
}

/// `name_to_handle_at(2)`: `dirfd` + `path`, with `AT_EMPTY_PATH` when `path` is empty.
/// Never follows a final symlink. `fsid` is filled in by the caller's knowledge.
pub(crate) fn name_to_handle(dirfd: RawFd, path: &CStr, fsid: [i32; 2]) -> io::Result<FileHandle> {
    let mut buf =
        HandleBuf { handle_bytes: MAX_HANDLE_SZ as u32, handle_type: 0, f_handle: [0; MAX_HANDLE_SZ] };
    let mut mount_id: libc::c_int = 0;
    let flags = if path.is_empty() { libc::AT_EMPTY_PATH } else { 0 };
    // SAFETY: `buf` is a `struct file_handle` with `handle_bytes` of room after the header;
    // `path` is NUL-terminated; `mount_id` is writable.
    let rc = unsafe {
        libc::name_to_handle_at(
            dirfd,
            path.as_ptr(),
            (&raw mut buf).cast::<libc::file_handle>(),
            &mut mount_id,
            flags,
        )
    };
    if rc < 0 {
        return Err(last());
    }
    let n = (buf.handle_bytes as usize).min(MAX_HANDLE_SZ);
    Ok(FileHandle { fsid, handle_type: buf.handle_type, bytes: buf.f_handle[..n].to_vec() })
}

/// `open_by_handle_at(2)` (needs `CAP_DAC_READ_SEARCH`). `mount_fd` is any descriptor on the
/// filesystem the handle belongs to.
pub(crate) fn open_by_handle(mount_fd: RawFd, handle: &FileHandle, flags: i32) -> io::Result<OwnedFd> {
    if handle.bytes.len() > MAX_HANDLE_SZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut buf = HandleBuf {
        handle_bytes: handle.bytes.len() as u32,
        handle_type: handle.handle_type,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    buf.f_handle[..handle.bytes.len()].copy_from_slice(&handle.bytes);
    // SAFETY: `buf` is a valid `struct file_handle`; the result is a fresh descriptor.
    let fd = unsafe { libc::open_by_handle_at(mount_fd, (&raw mut buf).cast::<libc::file_handle>(), flags) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The path the kernel reports for an open descriptor (`readlink /proc/self/fd/N`). Deleted
/// files end in `" (deleted)"`, as the kernel prints them.
pub(crate) fn fd_path(fd: RawFd) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
}

/// A non-blocking, close-on-exec `eventfd(2)` used to wake a poll loop.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a fresh descriptor.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd counter (wakes its poller). Errors cannot matter here: a full
/// counter is already readable.
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64.
    let _ = unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) };
}

/// Resets an eventfd counter.
pub(crate) fn eventfd_drain(fd: BorrowedFd<'_>) {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a live u64; EAGAIN (already zero) is fine.
    let _ = unsafe { libc::read(fd.as_raw_fd(), (&raw mut v).cast(), 8) };
}

/// `poll(2)`, retried on `EINTR` (with the same timeout: callers recompute deadlines anyway).
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    loop {
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = last();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// A new close-on-exec epoll instance.
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a fresh descriptor.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers `fd` for level-triggered readability in `epoll`.
pub(crate) fn epoll_add(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
    // SAFETY: both descriptors are live; `ev` is a valid epoll_event.
    let rc = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) };
    if rc < 0 { Err(last()) } else { Ok(()) }
}

/// Consumes an epoll instance's ready list without blocking (level-triggered entries that are
/// still ready come straight back). Keeps the epoll descriptor's own readiness honest.
pub(crate) fn epoll_flush(epoll: BorrowedFd<'_>) {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
    // SAFETY: `evs` has room for 4 events.
    let _ = unsafe { libc::epoll_wait(epoll.as_raw_fd(), evs.as_mut_ptr(), 4, 0) };
}

/// Takes ownership of the descriptor in a fanotify event.
///
/// # Safety
/// `fd` must be a descriptor the kernel just returned in an event read from a fanotify group
/// (it belongs to the reader and nothing else refers to it), and must be adopted only once.
pub(crate) unsafe fn adopt(fd: RawFd) -> OwnedFd {
    // SAFETY: guaranteed by the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Views a `u64` buffer (8-byte aligned, as `struct fanotify_event_metadata` wants) as bytes.
pub(crate) fn as_bytes(buf: &mut [u64]) -> &mut [u8] {
    let len = size_of_val(buf);
    // SAFETY: every byte pattern is valid for both types; same allocation, weaker alignment.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), len) }
}
