//! Taint: which processes and objects carry protected data (wire types:
//! `sensor_common::event::egress`; user half: `sensor/src/egress/`).
//!
//! - A read of a protected file (`io.rs` counts it) taints the reader's tgid in `TAINT`.
//! - A fork copies the parent's taint to the child; exec keeps the tgid, so the taint stays.
//! - A tainted process that writes to a pipe or a regular file marks its inode in
//!   `TAINTED_OBJECTS`; a regular file outside the protected set written this way is a
//!   *derived file*, reported once as a [`Derived`] record with its path and provenance.
//! - A process that reads a marked inode becomes tainted (one hop more).
//! - Sockets: a tainted send on a unix socket marks the peer's receive side; a tainted send
//!   on a loopback TCP (or connected UDP) socket marks the connection's direction, keyed by
//!   its ports and addresses, and is not counted as a flow: the data has not left the host.
//!   The receiver's read of that socket taints it with the same origin (a *relay*).
//! - A tainted process's sends on an IPv4/IPv6 socket (write, writev, sendfile, splice,
//!   send, sendto, sendmsg) are added to `FLOWS` per (tgid, destination); `egress.rs` adds
//!   the connects and refuses them when the policy says deny.
//!
//! Maps are plain hash maps: when one is full the new entry is not stored and
//! `EXFIL_STATS[STAT_*_FULL]` counts it; the daemon reports the counters and removes the
//! entries of exited processes (docs/detections.md, "Taint state").
#![allow(
    clippy::needless_borrows_for_generic_args,
    reason = "map values are passed by reference: a copy on the 512-byte BPF stack does not fit in the inlined transfer programs"
)]
use core::mem::offset_of;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use sensor_common::event::{
    egress::{
        AF_UNIX, Derived, Flow, FlowKey, IPPROTO_UDP, ObjKey, REC_DERIVED, STAT_FLOW_FULL, STAT_OBJECT_FULL,
        STAT_RING_LOST, STAT_SLOTS, STAT_TAINT_FULL, Taint,
    },
    file::Tracked,
    net::{AF_INET, AF_INET6},
};

use crate::{
    emit::now,
    io::{Arg, TRACKED, arg, moved},
    kread::{config, current_task, file_of_fd, fill_task, off, path_of, ptr, read},
    path::write_record_path,
};

/// Tainted processes by tgid.
#[map]
pub static TAINT: HashMap<u32, Taint> = HashMap::with_max_entries(16384, 0);

/// Tainted pipes and regular files by inode.
#[map]
static TAINTED_OBJECTS: HashMap<ObjKey, Taint> = HashMap::with_max_entries(65536, 0);

/// `[0]` is 1 when the daemon runs the egress module (a policy has an `egress` section):
/// until then nothing is tainted, so no map fills without a reader.
#[map]
static TAINT_ON: Array<u32> = Array::with_max_entries(1, 0);

#[inline(always)]
fn enabled() -> bool {
    TAINT_ON.get(0).copied().unwrap_or(0) != 0
}

/// `[0]` is 1 once an object was marked: until then reads skip the descriptor lookup.
#[map]
static OBJECTS_PRESENT: Array<u32> = Array::with_max_entries(1, 0);

/// Tainted traffic per (tgid, destination).
#[map]
pub static FLOWS: HashMap<FlowKey, Flow> = HashMap::with_max_entries(16384, 0);

/// Derived-file and raw-socket records for the egress module.
#[map]
pub static EXFIL_EVENTS: RingBuf = RingBuf::with_byte_size(256 << 10, 0);

/// Per-CPU counters, indexed by `STAT_*`.
#[map]
static EXFIL_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_SLOTS, 0);

#[map]
static DERIVED_SCRATCH: PerCpuArray<Derived> = PerCpuArray::with_max_entries(1, 0);

/// `ObjKey::dev` of a unix socket's receive side (`ino` is its `struct sock` address,
/// `extra` its inode number: [`unix_key`]): no block device has this number.
const UNIX_SOCK_DEV: u32 = u32::MAX;

/// `ObjKey::dev` of one direction of a loopback connection: `ino` is the sender's port
/// (bits 48..64), the receiver's port (32..48) and the sender's address (low 32 bits of it:
/// 127.x.y.z, or 1 for `::1`); `extra` is the receiver's address the same way.
const LOOPBACK_DEV: u32 = u32::MAX - 1;

/// File type bits of `i_mode` (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/stat.h#L9>).
pub const S_IFMT: u16 = 0o170000;
pub const S_IFSOCK: u16 = 0o140000;
const S_IFREG: u16 = 0o100000;
const S_IFIFO: u16 = 0o010000;

/// Counts an event in `EXFIL_STATS[slot]`.
#[inline(always)]
pub fn count(slot: u32) {
    if let Some(c) = EXFIL_STATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// The current process's taint: the map value itself, not a copy (a `Taint` on the stack of
/// each inlined caller made the send and transfer programs exceed the 6.1 verifier's
/// 512-byte combined stack). A counter another CPU updates meanwhile is only stale.
#[inline(always)]
pub fn current() -> Option<&'static Taint> {
    // SAFETY: a map value stays valid for the rest of the program's run.
    TAINT.get_ptr(current_tgid()).map(|p| unsafe { &*p })
}

/// `io.rs`: the current process read `bytes` from the protected file `t`.
#[inline(always)]
pub fn protected_read(t: *const Tracked, bytes: u64) {
    // SAFETY: `t` points into a TRACKED value.
    let t = unsafe { &*t };
    if !enabled() || current_tgid() == config!(self_tgid) {
        return; // the sensor's own reads (hashing, scans) are not data leaving
    }
    let first_read = t.bytes_read == bytes;
    let time = now();
    if let Some(x) = TAINT.get_ptr_mut(current_tgid()) {
        // SAFETY: points into a TAINT value; a lost update between CPUs only under-counts.
        let x = unsafe { &mut *x };
        x.bytes += bytes;
        x.files += u64::from(first_read);
        x.hops = 0;
        x.last_ns = time;
        return;
    }
    let mut taint = Taint {
        src_ino: t.ino,
        src_dev: t.dev,
        bytes,
        files: 1,
        first_ns: time,
        last_ns: time,
        ..Taint::default()
    };
    fill_task(current_task(), &mut taint.origin);
    if TAINT.insert(current_tgid(), &taint, 0).is_err() {
        count(STAT_TAINT_FULL);
    }
}

/// `process.rs`: a forked child carries its parent's taint.
#[inline(always)]
pub fn fork(parent_tgid: u32, child_tgid: u32) {
    if !enabled() {
        return;
    }
    // SAFETY: copied before the map can change.
    if let Some(t) = unsafe { TAINT.get(parent_tgid) }.copied() {
        let child = Taint { bytes: 0, files: 0, ..t };
        if TAINT.insert(child_tgid, &child, 0).is_err() {
            count(STAT_TAINT_FULL);
        }
    }
}

/// `io.rs`: a read or write syscall returned, or one end of a sendfile, splice or
/// copy_file_range; the descriptor is in register `fd_reg`. An untainted writer or, while no
/// object is marked, any reader pays one map lookup.
#[inline(always)]
pub fn rw_exit(ctx: &TracePointContext, fd_reg: Arg, write: bool) {
    let wanted = if write {
        // SAFETY: presence check only.
        unsafe { TAINT.get(current_tgid()) }.is_some()
    } else {
        OBJECTS_PRESENT.get(0).copied().unwrap_or(0) != 0
    };
    if !wanted {
        return;
    }
    let Some(n) = moved(ctx) else { return };
    let Ok(fd) = arg(fd_reg) else { return };
    moved_through(fd as i64, n, write);
}

/// `n` bytes moved through descriptor `fd` of the current process (read or write).
#[inline(always)]
fn moved_through(fd: i64, n: u64, write: bool) {
    if write {
        let Some(taint) = current() else { return };
        let Ok(file) = file_of_fd(current_task(), fd) else { return };
        written(file, n, taint);
    } else {
        let Ok(file) = file_of_fd(current_task(), fd) else { return };
        let Ok(inode) = ptr(file, off!(file_f_inode)) else { return };
        let Ok(mode) = read::<u16>(inode, off!(inode_i_mode)) else { return };
        let key = if mode & S_IFMT == S_IFSOCK {
            // A unix socket's receive side is keyed by its `struct sock`, a loopback
            // connection by its direction towards this end (see `written`).
            let Ok(sk) = ptr(file, off!(file_private_data)).and_then(|s| ptr(s, off!(socket_sk))) else {
                return;
            };
            if read::<u16>(sk, off!(sock_common_skc_family)) == Ok(AF_UNIX) {
                // This file's inode is the socket's (`SOCK_INODE`), as in [`unix_key`].
                ObjKey { ino: sk, dev: UNIX_SOCK_DEV, extra: read(inode, off!(inode_i_ino)).unwrap_or(0) }
            } else {
                let Some(key) = loopback_key(sk, false) else { return };
                key
            }
        } else {
            let Ok(key) = obj_key(inode) else { return };
            key
        };
        let Some(obj) = TAINTED_OBJECTS.get_ptr(&key) else { return };
        let tgid = current_tgid();
        // SAFETY: presence check only.
        if unsafe { TAINT.get(tgid) }.is_some() {
            return;
        }
        // The object's taint is copied map to map and then adjusted in place (no `Taint` on
        // the stack, see [`current`]); the daemon polls once a second, so it does not see
        // the copy before the adjustment.
        // SAFETY: points into a TAINTED_OBJECTS value.
        if TAINT.insert(tgid, unsafe { &*obj }, 0).is_err() {
            count(STAT_TAINT_FULL);
            return;
        }
        if let Some(t) = TAINT.get_ptr_mut(tgid) {
            // SAFETY: points into the TAINT value just inserted.
            let t = unsafe { &mut *t };
            t.bytes = 0;
            t.files = 0;
            t.hops += 1;
            t.last_ns = now();
        }
    }
}

#[inline(always)]
fn obj_key(inode: u64) -> Result<ObjKey, i32> {
    let ino = read(inode, off!(inode_i_ino))?;
    let dev = ptr(inode, off!(inode_i_sb)).and_then(|sb| read(sb, off!(super_block_s_dev)))?;
    Ok(ObjKey { ino, dev, extra: 0 })
}

/// A tainted process wrote `n` bytes to `file`.
#[inline(always)]
fn written(file: u64, n: u64, taint: &Taint) {
    // SAFETY: presence check only: a protected file's own writes are not derived data.
    if unsafe { TRACKED.get(file) }.is_some() {
        return;
    }
    let Ok(inode) = ptr(file, off!(file_f_inode)) else { return };
    let Ok(mode) = read::<u16>(inode, off!(inode_i_mode)) else { return };
    match mode & S_IFMT {
        S_IFSOCK => {
            let Ok(sk) = ptr(file, off!(file_private_data)).and_then(|s| ptr(s, off!(socket_sk))) else {
                return;
            };
            let family: u16 = read(sk, off!(sock_common_skc_family)).unwrap_or(0);
            if family != AF_UNIX {
                sent_on(sk, n, taint);
                return;
            }
            // Unix stream and connected datagram sockets: mark the peer's receive side.
            let Ok(peer) = ptr(sk, off!(unix_sock_peer)) else { return };
            mark(&unix_key(peer), taint);
        }
        S_IFIFO | S_IFREG => {
            let Ok(key) = obj_key(inode) else { return };
            // SAFETY: presence check only.
            if unsafe { TAINTED_OBJECTS.get(&key) }.is_some() {
                return;
            }
            if TAINTED_OBJECTS.insert(&key, taint, 0).is_err() {
                count(STAT_OBJECT_FULL);
                return;
            }
            let _ = OBJECTS_PRESENT.set(0, &1, 0);
            if mode & S_IFMT == S_IFREG {
                derived(file, key, taint);
            }
        }
        _ => {}
    }
}

/// The key of the receive side of the unix socket `sk`: its address and its inode number.
/// The address alone outlives the socket: the slab gives it to the next socket, which then
/// looked tainted (a receiver's first `recv` took a finished transfer's origin).
#[inline(always)]
fn unix_key(sk: u64) -> ObjKey {
    let ino = ptr(sk, off!(sock_sk_socket))
        .and_then(|socket| read(socket + u64::from(off!(socket_alloc_vfs_inode)), off!(inode_i_ino)))
        .unwrap_or(0);
    ObjKey { ino: sk, dev: UNIX_SOCK_DEV, extra: ino }
}

/// Marks a socket's receive side (or a loopback direction) as carrying `taint`.
#[inline(always)]
fn mark(key: &ObjKey, taint: &Taint) {
    // SAFETY: presence check only.
    if unsafe { TAINTED_OBJECTS.get(key) }.is_some() {
        return;
    }
    if TAINTED_OBJECTS.insert(key, taint, 0).is_err() {
        count(STAT_OBJECT_FULL);
        return;
    }
    let _ = OBJECTS_PRESENT.set(0, &1, 0);
}

/// The key of one direction of the loopback IPv4/IPv6 connection of `sk`: towards the peer
/// when `sending`, towards `sk` otherwise. `None` when `sk` is not connected over loopback.
/// Only the low 32 bits of the addresses count: `::ffff:127.0.0.1` (a dual-stack listener's
/// accepted socket) then meets `127.0.0.1` (its IPv4 client).
#[inline(always)]
fn loopback_key(sk: u64, sending: bool) -> Option<ObjKey> {
    // Addresses are read as the integers of their bytes in memory (network order, BPF is
    // little-endian): only what is compared, to keep the stack of the transfer programs small.
    const V6_LOOPBACK_LO: u32 = u32::from_ne_bytes([0, 0, 0, 1]);
    const V6_MAPPED_MID: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
    let family: u16 = read(sk, off!(sock_common_skc_family)).ok()?;
    let (local, remote) = if family == AF_INET {
        let r: u32 = read(sk, off!(sock_common_skc_daddr)).ok()?;
        if r & 0xff != 127 {
            return None;
        }
        (read::<u32>(sk, off!(sock_common_skc_rcv_saddr)).ok()?, r)
    } else if family == AF_INET6 {
        let d = off!(sock_common_skc_v6_daddr);
        if read::<u64>(sk, d).ok()? != 0 {
            return None;
        }
        let mid: u32 = read(sk, d + 8).ok()?;
        let r: u32 = read(sk, d + 12).ok()?;
        let v6_loopback = mid == 0 && r == V6_LOOPBACK_LO;
        let mapped = mid == V6_MAPPED_MID && r & 0xff == 127;
        if !v6_loopback && !mapped {
            return None;
        }
        (read::<u32>(sk, off!(sock_common_skc_v6_rcv_saddr) + 12).ok()?, r)
    } else {
        return None;
    };
    let lport = u64::from(read::<u16>(sk, off!(sock_common_skc_num)).ok()?);
    let rport = u64::from(u16::from_be(read(sk, off!(sock_common_skc_dport)).ok()?));
    if rport == 0 {
        return None; // not connected
    }
    Some(if sending {
        ObjKey { ino: lport << 48 | rport << 32 | u64::from(local), dev: LOOPBACK_DEV, extra: remote }
    } else {
        ObjKey { ino: rport << 48 | lport << 32 | u64::from(remote), dev: LOOPBACK_DEV, extra: local }
    })
}

/// Reports a derived file.
#[inline(always)]
fn derived(file: u64, key: ObjKey, taint: &Taint) {
    let Some(ev) = DERIVED_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU scratch.
    let ev = unsafe { &mut *ev };
    ev.header.kind = REC_DERIVED;
    ev.header.time_ns = now();
    ev.header.flags = fill_task(current_task(), &mut ev.header.task);
    ev.taint = *taint;
    ev.ino = key.ino;
    ev.dev = key.dev;
    let n = match path_of(file, off!(file_f_path)) {
        Ok((mnt, dentry)) => {
            let (flags, n) = write_record_path(ev.data.as_mut_ptr(), &raw mut ev.cursor, mnt, dentry);
            ev.header.flags |= flags;
            n
        }
        Err(_) => 0,
    };
    ev.path_len = n as u16;
    let len = (offset_of!(Derived, data) + n as usize).min(size_of::<Derived>());
    // SAFETY: `len` is within the scratch value.
    let bytes = unsafe { core::slice::from_raw_parts((ev as *const Derived).cast::<u8>(), len) };
    if EXFIL_EVENTS.output::<[u8]>(bytes, 0).is_err() {
        count(STAT_RING_LOST);
    }
}

/// Adds `n` bytes sent on the IPv4/IPv6 socket `sk` to the current process's flow, or on a
/// loopback connection marks the direction towards the receiver.
#[inline(always)]
fn sent_on(sk: u64, n: u64, taint: &Taint) {
    if let Some(key) = loopback_key(sk, true) {
        mark(&key, taint);
        return;
    }
    let family: u16 = read(sk, off!(sock_common_skc_family)).unwrap_or(0);
    let mut key = FlowKey { tgid: current_tgid(), family, ..FlowKey::default() };
    if family == AF_INET {
        let d: [u8; 4] = read(sk, off!(sock_common_skc_daddr)).unwrap_or_default();
        key.daddr[..4].copy_from_slice(&d);
    } else if family == AF_INET6 {
        key.daddr = read(sk, off!(sock_common_skc_v6_daddr)).unwrap_or_default();
    } else {
        return;
    }
    key.dport = u16::from_be(read(sk, off!(sock_common_skc_dport)).unwrap_or(0));
    key.protocol = read(sk, off!(sock_sk_protocol)).unwrap_or(0);
    normalise(&mut key);
    add_flow(&key, n, 0, 0, taint);
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4.
#[inline(always)]
pub fn normalise(key: &mut FlowKey) {
    let d = key.daddr;
    if key.family == AF_INET6 && d[..10] == [0; 10] && d[10] == 0xff && d[11] == 0xff {
        key.family = AF_INET;
        key.daddr = [d[12], d[13], d[14], d[15], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    }
}

/// Adds to (or starts) a flow.
#[inline(always)]
pub fn add_flow(key: &FlowKey, bytes: u64, connects: u32, denied: u32, taint: &Taint) {
    let time = now();
    if let Some(f) = FLOWS.get_ptr_mut(key) {
        // SAFETY: points into a FLOWS value; a lost update between CPUs only under-counts.
        let f = unsafe { &mut *f };
        f.bytes += bytes;
        f.sends += u64::from(bytes > 0);
        f.connects += connects;
        f.denied += denied;
        f.last_ns = time;
        return;
    }
    let mut flow = Flow {
        taint: *taint,
        bytes,
        sends: u64::from(bytes > 0),
        connects,
        denied,
        first_ns: time,
        last_ns: time,
        ..Flow::default()
    };
    flow.task.tgid = key.tgid;
    let ids = aya_ebpf::helpers::bpf_get_current_uid_gid();
    flow.task.uid = ids as u32;
    flow.task.gid = (ids >> 32) as u32;
    flow.task.comm = aya_ebpf::helpers::bpf_get_current_comm().unwrap_or_default();
    if FLOWS.insert(key, &flow, 0).is_err() {
        count(STAT_FLOW_FULL);
    }
}

/// send/sendto/sendmsg of a tainted process: the destination is the socket's peer, or for an
/// unconnected socket the address passed in the call (`sockaddr_user`, 0 when none).
#[inline(always)]
fn on_send_exit(ctx: &TracePointContext, sockaddr_user: u64) -> u32 {
    let Some(taint) = current() else { return 0 };
    let Some(n) = moved(ctx) else { return 0 };
    let Ok(fd) = arg(Arg::Di) else { return 0 };
    let Ok(file) = file_of_fd(current_task(), fd as i64) else { return 0 };
    let Ok(socket) = ptr(file, off!(file_private_data)) else { return 0 };
    let Ok(sk) = ptr(socket, off!(socket_sk)) else { return 0 };
    if read::<u16>(sk, off!(sock_common_skc_family)) == Ok(AF_UNIX) {
        written(file, n, taint);
        return 0;
    }
    let dport: u16 = read(sk, off!(sock_common_skc_dport)).unwrap_or(0);
    if dport != 0 || sockaddr_user == 0 {
        sent_on(sk, n, taint);
        return 0;
    }
    // sockaddr_in / sockaddr_in6 (uapi, stable): family at 0, port at 2, v4 at 4, v6 at 8.
    // SAFETY: the helper checks the user address.
    let Ok(family) = (unsafe { bpf_probe_read_user(sockaddr_user as *const u16) }) else { return 0 };
    let Ok(port) = (unsafe { bpf_probe_read_user((sockaddr_user + 2) as *const u16) }) else { return 0 };
    let mut key = FlowKey { tgid: current_tgid(), family, dport: u16::from_be(port), ..FlowKey::default() };
    key.protocol = read(sk, off!(sock_sk_protocol)).unwrap_or(IPPROTO_UDP);
    if family == AF_INET {
        let Ok(a) = (unsafe { bpf_probe_read_user((sockaddr_user + 4) as *const [u8; 4]) }) else { return 0 };
        key.daddr[..4].copy_from_slice(&a);
    } else if family == AF_INET6 {
        let Ok(a) = (unsafe { bpf_probe_read_user((sockaddr_user + 8) as *const [u8; 16]) }) else {
            return 0;
        };
        key.daddr = a;
    } else {
        return 0;
    }
    normalise(&mut key);
    add_flow(&key, n, 0, 0, taint);
    0
}

/// `sendto(fd, buf, len, flags, dest_addr, addrlen)`: dest_addr is the fifth argument (r8).
#[tracepoint(category = "syscalls", name = "sys_exit_sendto")]
pub fn sys_exit_sendto(ctx: TracePointContext) -> u32 {
    if current().is_none() {
        return 0;
    }
    let addr = arg(Arg::R8).unwrap_or(0);
    on_send_exit(&ctx, addr)
}

/// `sendmsg(fd, msg, flags)`: `msg->msg_name` is the first field of `struct user_msghdr`.
#[tracepoint(category = "syscalls", name = "sys_exit_sendmsg")]
pub fn sys_exit_sendmsg(ctx: TracePointContext) -> u32 {
    if current().is_none() {
        return 0;
    }
    let msg = arg(Arg::Si).unwrap_or(0);
    // SAFETY: the helper checks the user address.
    let name = unsafe { bpf_probe_read_user(msg as *const u64) }.unwrap_or(0);
    on_send_exit(&ctx, name)
}

/// `recvfrom(fd, …)` (also `recv`): a read of a tainted unix socket taints the reader.
#[tracepoint(category = "syscalls", name = "sys_exit_recvfrom")]
pub fn sys_exit_recvfrom(ctx: TracePointContext) -> u32 {
    rw_exit(&ctx, Arg::Di, false);
    0
}

/// `recvmsg(fd, …)`.
#[tracepoint(category = "syscalls", name = "sys_exit_recvmsg")]
pub fn sys_exit_recvmsg(ctx: TracePointContext) -> u32 {
    rw_exit(&ctx, Arg::Di, false);
    0
}
