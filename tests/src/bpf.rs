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

/// `BPF_MAP_LOOKUP_ELEM`, `BPF_MAP_GET_FD_BY_ID`, `BPF_OBJ_GET_INFO_BY_FD`.
const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_MAP_GET_FD_BY_ID: libc::c_int = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;

#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

#[repr(C)]
struct LookupElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `struct bpf_map_info` up to its name.
#[repr(C)]
#[derive(Default)]
struct MapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; 16],
}

fn bpf(cmd: libc::c_int, attr: *const u8, size: usize) -> io::Result<libc::c_int> {
    // SAFETY: `attr` points to a valid buffer of `size` bytes for the command.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size as libc::c_uint) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r as libc::c_int) }
}

/// A descriptor of map `id` (closed on drop).
fn map_fd(id: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    let attr = GetFdById { prog_id: id, ..Default::default() };
    let fd = bpf(BPF_MAP_GET_FD_BY_ID, (&raw const attr).cast(), size_of::<GetFdById>()).ok()?;
    // SAFETY: a new descriptor we own.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// The id of the map named `name` held by process `pid` (found through the map ids in its
/// `/proc/PID/fdinfo`, so another sensor's map of the same name is never named); panics when
/// `pid` holds no such map.
pub fn map_id(pid: u32, name: &str) -> u32 {
    use std::os::fd::AsRawFd as _;
    let mut ids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("read fdinfo")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|t| t.lines().find_map(|l| l.strip_prefix("map_id:")?.trim().parse().ok()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let Some(fd) = map_fd(id) else { continue };
        let mut info = MapInfo::default();
        let q = InfoByFd {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: size_of::<MapInfo>() as u32,
            info: &raw mut info as u64,
        };
        if bpf(BPF_OBJ_GET_INFO_BY_FD, (&raw const q).cast(), size_of::<InfoByFd>()).is_ok()
            && info.name.split(|&b| b == 0).next() == Some(name.as_bytes())
        {
            return id;
        }
    }
    panic!("process {pid} holds no BPF map named {name}");
}

/// Looks `key` up in the map named `name` held by process `pid` ([`map_id`]). `None` when the
/// key is absent; panics when `pid` holds no such map.
pub fn map_lookup_u32(pid: u32, name: &str, key: u32) -> Option<u32> {
    map_lookup(pid, name, key)
}

/// [`map_lookup_u32`] for a map with 8-byte values (an `Array<u64>` slot, for example).
pub fn map_lookup_u64(pid: u32, name: &str, key: u32) -> Option<u64> {
    map_lookup(pid, name, key)
}

/// [`map_lookup_u32`] for values of type `V`, which must have the map's value size.
fn map_lookup<V: Default>(pid: u32, name: &str, key: u32) -> Option<V> {
    use std::os::fd::AsRawFd as _;
    let fd = map_fd(map_id(pid, name)).unwrap_or_else(|| panic!("map {name} of {pid} is gone"));
    let mut info = MapInfo::default();
    let q = InfoByFd {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<MapInfo>() as u32,
        info: &raw mut info as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, (&raw const q).cast(), size_of::<InfoByFd>()).expect("map info");
    assert_eq!(info.value_size as usize, size_of::<V>(), "map {name}: value size against the type read");
    let mut value = V::default();
    let l = LookupElem {
        map_fd: fd.as_raw_fd() as u32,
        _pad: 0,
        key: &raw const key as u64,
        value: &raw mut value as u64,
        flags: 0,
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, (&raw const l).cast(), size_of::<LookupElem>()) {
        Ok(_) => Some(value),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
        Err(e) => panic!("bpf(BPF_MAP_LOOKUP_ELEM, {name}): {e}"),
    }
}

const BPF_LINK_GET_FD_BY_ID: libc::c_int = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_int = 31;
const BPF_LINK_DETACH: libc::c_int = 34;
/// `BPF_LINK_TYPE_CGROUP` (`enum bpf_link_type`,
/// <https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/bpf.h#L1133>).
pub const LINK_TYPE_CGROUP: u32 = 3;
/// `BPF_LINK_TYPE_RAW_TRACEPOINT`.
pub const LINK_TYPE_RAW_TRACEPOINT: u32 = 1;
/// `BPF_LINK_TYPE_PERF_EVENT`: a program on a tracepoint through its perf event.
pub const LINK_TYPE_PERF_EVENT: u32 = 7;

/// One link: `struct bpf_link_info`'s type, id, program id and, for cgroup links, the cgroup
/// id (0 once detached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub kind: u32,
    pub id: u32,
    pub prog_id: u32,
    pub cgroup_id: u64,
}

/// A descriptor of link `id` (closed on drop).
fn link_fd(id: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    let attr = GetFdById { prog_id: id, ..Default::default() };
    let fd = bpf(BPF_LINK_GET_FD_BY_ID, (&raw const attr).cast(), size_of::<GetFdById>()).ok()?;
    // SAFETY: a new descriptor we own.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Every link in the kernel right now.
pub fn links() -> Vec<Link> {
    use std::os::fd::AsRawFd as _;
    let mut out = Vec::new();
    let mut attr = GetFdById::default();
    loop {
        // The kernel writes `next_id` into `attr`, which outlives the call.
        if bpf(BPF_LINK_GET_NEXT_ID, (&raw mut attr).cast_const().cast(), size_of::<GetFdById>()).is_err() {
            return out;
        }
        let id = attr.next_id;
        attr = GetFdById { prog_id: id, ..Default::default() };
        let Some(fd) = link_fd(id) else { continue };
        // type, id, prog_id, pad, then the union (cgroup: cgroup_id, attach_type).
        let mut info = [0u32; 16];
        let q = InfoByFd { bpf_fd: fd.as_raw_fd() as u32, info_len: 64, info: info.as_mut_ptr() as u64 };
        if bpf(BPF_OBJ_GET_INFO_BY_FD, (&raw const q).cast(), size_of::<InfoByFd>()).is_ok() {
            let cgroup_id = u64::from(info[4]) | (u64::from(info[5]) << 32);
            out.push(Link { kind: info[0], id: info[1], prog_id: info[2], cgroup_id });
        }
    }
}

/// `BPF_LINK_DETACH` of link `id`, as another root process can do it.
pub fn detach_link(id: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let fd = link_fd(id).ok_or_else(|| io::Error::other(format!("link {id} is gone")))?;
    let attr = [fd.as_raw_fd() as u32, 0, 0, 0];
    bpf(BPF_LINK_DETACH, attr.as_ptr().cast(), size_of_val(&attr)).map(drop)
}

/// `enum bpf_attach_type` values (`include/uapi/linux/bpf.h`) of tracing links.
pub const BPF_MODIFY_RETURN: u32 = 26;
pub const BPF_LSM_MAC: u32 = 27;

/// The `attach_type` of every tracing link (fentry, fexit, `fmod_ret`, BPF LSM) process `pid`
/// holds, as the kernel shows it in `/proc/PID/fdinfo` (`link_type: tracing`, then
/// `attach_type: N`:
/// `bpf_tracing_link_show_fdinfo` in
/// <https://github.com/torvalds/linux/blob/v6.12/kernel/bpf/syscall.c>).
pub fn tracing_link_attach_types(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("read fdinfo")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|t| t.lines().any(|l| l.split_whitespace().eq(["link_type:", "tracing"])))
        .filter_map(|t| t.lines().find_map(|l| l.strip_prefix("attach_type:")?.trim().parse().ok()))
        .collect()
}
