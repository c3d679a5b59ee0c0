//! Kernel BPF objects by id, through the raw bpf(2) syscall: which links exist, which program
//! each runs and, for cgroup links, whether they are still attached. Used by the periodic
//! self-inventory (`crate::inventory`).
//!
//! Command numbers and layouts: `enum bpf_cmd`, `union bpf_attr` and `struct bpf_link_info`
//! (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/bpf.h#L898>,
//! <https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/bpf.h#L6635>).
use std::{
    io,
    os::fd::{FromRawFd as _, OwnedFd},
};

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
/// `BPF_LINK_TYPE_CGROUP` (`enum bpf_link_type`).
pub const LINK_TYPE_CGROUP: u32 = 3;

/// `union bpf_attr` for the `*_GET_NEXT_ID` and `*_GET_FD_BY_ID` commands: the id (start
/// id), the next id, open flags.
#[repr(C)]
#[derive(Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoAttr {
    fd: u32,
    info_len: u32,
    info: u64,
}

/// The leading part of `struct bpf_link_info`: type, id, program id, then the per-type union
/// (for cgroup links: the cgroup id, 0 once detached, then the attach type).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawLinkInfo {
    kind: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    cgroup_id: u64,
    attach_type: u32,
    _rest: [u32; 7],
}

/// One link as the kernel describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub id: u32,
    /// `enum bpf_link_type`.
    pub kind: u32,
    pub prog_id: u32,
    /// Cgroup links: the cgroup's id (its inode number), 0 when the link was detached.
    pub cgroup_id: u64,
}

/// bpf(2); the kernel may write into `attr` (next ids).
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, properly sized `union bpf_attr` prefix for `cmd`.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<T>()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn fd(r: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

/// Whether program `id` is still loaded.
pub fn prog_loaded(id: u32) -> bool {
    bpf(BPF_PROG_GET_FD_BY_ID, &mut IdAttr { id, ..IdAttr::default() }).map(fd).is_ok()
}

/// Link `id`, or `None` when it no longer exists.
pub fn link(id: u32) -> Option<LinkInfo> {
    let f = fd(bpf(BPF_LINK_GET_FD_BY_ID, &mut IdAttr { id, ..IdAttr::default() }).ok()?);
    let mut raw = RawLinkInfo::default();
    let mut attr = InfoAttr {
        fd: std::os::fd::AsRawFd::as_raw_fd(&f) as u32,
        info_len: size_of::<RawLinkInfo>() as u32,
        info: (&raw mut raw) as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).ok()?;
    Some(LinkInfo { id: raw.id, kind: raw.kind, prog_id: raw.prog_id, cgroup_id: raw.cgroup_id })
}

/// Every link in the kernel that runs one of `programs`.
pub fn links_of(programs: &[u32]) -> Vec<LinkInfo> {
    let mut out = Vec::new();
    let mut next = IdAttr::default();
    while bpf(BPF_LINK_GET_NEXT_ID, &mut next).is_ok() {
        let id = next.next_id;
        if let Some(l) = link(id)
            && programs.contains(&l.prog_id)
        {
            out.push(l);
        }
        next = IdAttr { id, ..IdAttr::default() };
    }
    out
}
