//! Cutting a connection opened before its process was tainted (`action: deny`; user half:
//! `sensor/src/egress/cut.rs`).
//!
//! The socket-address programs (`egress.rs`) refuse a tainted process's connect, but a
//! process can connect first and read protected data after (`nc host port < file`). The
//! syscall-enter programs here run before a send puts bytes in a socket (write, writev,
//! send, sendto, sendmsg, sendmmsg, sendfile, splice into a socket): when the process is
//! tainted and the socket is an IPv4/IPv6 connection to a destination neither loopback nor
//! allowed, the connection's addresses and ports go into `CUT_CONNECTIONS`, before the
//! kernel queues the first byte. `egress_skb` drops every packet of such a connection (the
//! lookup is by the packet's own headers, so TCP segments sent later from softirq are
//! dropped too); a connected UDP send then fails with EPERM. The first time, a
//! [`CutRecord`] tells the daemon, which disconnects a TCP socket so that the process sees
//! ECONNRESET instead of a connection that only stalls.
//!
//! These programs are attached only when the policy's action is deny (they also check
//! `EGRESS_CONFIG`, so a reload to alert stops them cutting), and act only for tasks in the
//! egress cgroup, where the other egress programs are attached.
#![allow(
    clippy::needless_borrows_for_generic_args,
    reason = "map keys are passed by reference: the key lives in per-CPU scratch, and a copy on the 512-byte BPF stack beside add_flow's Flow does not fit"
)]
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_current_ancestor_cgroup_id},
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray},
    programs::{SkBuffContext, TracePointContext},
};
use sensor_common::event::{
    egress::{
        ACTION_DENY, Cut, CutKey, CutRecord, FlowKey, IPPROTO_UDP, REC_CUT, STAT_CUT_FULL, STAT_RING_LOST,
    },
    net::{AF_INET, AF_INET6, IPPROTO_TCP},
};

use crate::{
    egress::{EGRESS_CONFIG, allowed, loopback, payload},
    emit::now,
    io::{Arg, arg},
    kread::{current_task, file_of_fd, off, ptr, read},
    taint::{EXFIL_EVENTS, FLOWS, S_IFMT, S_IFSOCK, add_flow, count, current},
};

/// Connections whose packets `egress_skb` drops. The daemon removes the entries of exited
/// processes.
#[map]
static CUT_CONNECTIONS: HashMap<CutKey, Cut> = HashMap::with_max_entries(4096, 0);

/// `[0]` is 1 once a connection was cut: until then `egress_skb` skips the header parse.
#[map]
static CUT_PRESENT: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU scratch for the record, its key and value (off the 512-byte stack: `add_flow`
/// puts a `Flow` there).
#[map]
static CUT_SCRATCH: PerCpuArray<CutRecord> = PerCpuArray::with_max_entries(1, 0);

/// Fills `key` with the connection of the IPv4/IPv6 socket `sk`; `None` when it is not a
/// connected TCP/UDP socket. A socket of an IPv6 listener or client talking to an
/// IPv4-mapped address sends IPv4 packets: its key uses the IPv4 fields, which the kernel
/// keeps for such sockets.
#[inline(always)]
fn connection(sk: u64, key: &mut CutKey) -> Option<()> {
    let family: u16 = read(sk, off!(sock_common_skc_family)).ok()?;
    key.dport = u16::from_be(read(sk, off!(sock_common_skc_dport)).ok()?);
    key.protocol = read(sk, off!(sock_sk_protocol)).ok()?;
    if key.dport == 0 || (key.protocol != IPPROTO_TCP && key.protocol != IPPROTO_UDP) {
        return None;
    }
    key.sport = read(sk, off!(sock_common_skc_num)).ok()?;
    key.family = family;
    key.saddr = [0; 16];
    key.daddr = [0; 16];
    let mapped = if family == AF_INET6 {
        key.daddr = read(sk, off!(sock_common_skc_v6_daddr)).ok()?;
        key.daddr[..10] == [0; 10] && key.daddr[10] == 0xff && key.daddr[11] == 0xff
    } else {
        false
    };
    if family == AF_INET || mapped {
        key.family = AF_INET;
        key.daddr = [0; 16];
        key.daddr[..4].copy_from_slice(&read::<[u8; 4]>(sk, off!(sock_common_skc_daddr)).ok()?);
        key.saddr[..4].copy_from_slice(&read::<[u8; 4]>(sk, off!(sock_common_skc_rcv_saddr)).ok()?);
    } else if family == AF_INET6 {
        key.saddr = read(sk, off!(sock_common_skc_v6_rcv_saddr)).ok()?;
    } else {
        return None;
    }
    Some(())
}

/// A send on descriptor `fd_reg` is about to start: marks its connection when the caller is
/// tainted and the destination is not allowed.
#[inline(always)]
fn on_send_enter(fd_reg: Arg) -> u32 {
    let Some(taint) = current() else { return 0 };
    let Some(config) = EGRESS_CONFIG.get(0) else { return 0 };
    // SAFETY: the helper takes a level; an id of 0 (no such ancestor) never matches.
    let cgroup = unsafe { bpf_get_current_ancestor_cgroup_id(config.cgroup_level as i32) };
    if config.action != ACTION_DENY || cgroup != config.cgroup_id {
        return 0;
    }
    let Ok(fd) = arg(fd_reg) else { return 0 };
    let Ok(file) = file_of_fd(current_task(), fd as i64) else { return 0 };
    let Ok(inode) = ptr(file, off!(file_f_inode)) else { return 0 };
    if read::<u16>(inode, off!(inode_i_mode)).map(|m| m & S_IFMT) != Ok(S_IFSOCK) {
        return 0;
    }
    let Ok(sk) = ptr(file, off!(file_private_data)).and_then(|s| ptr(s, off!(socket_sk))) else {
        return 0;
    };
    let Some(rec) = CUT_SCRATCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: per-CPU scratch.
    let rec = unsafe { &mut *rec };
    if connection(sk, &mut rec.key).is_none() {
        return 0;
    }
    // SAFETY: presence check only.
    if loopback(rec.key.family, &rec.key.daddr) || unsafe { CUT_CONNECTIONS.get(&rec.key) }.is_some() {
        return 0;
    }
    rec.header_kind = REC_CUT;
    rec.cut.flow = FlowKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        family: rec.key.family,
        protocol: rec.key.protocol,
        dport: rec.key.dport,
        daddr: rec.key.daddr,
        ..FlowKey::default()
    };
    if allowed(&rec.cut.flow) {
        return 0;
    }
    rec.cut.fd = fd as u32;
    rec.cut.time_ns = now();
    if CUT_CONNECTIONS.insert(&rec.key, &rec.cut, 0).is_err() {
        count(STAT_CUT_FULL);
        return 0;
    }
    let _ = CUT_PRESENT.set(0, &1, 0);
    add_flow(&rec.cut.flow, 0, 0, 1, taint);
    if let Some(f) = FLOWS.get_ptr_mut(&rec.cut.flow) {
        // SAFETY: points into a FLOWS value.
        unsafe { (*f).cut += 1 };
    }
    if EXFIL_EVENTS.output::<CutRecord>(rec, 0).is_err() {
        count(STAT_RING_LOST);
    }
    0
}

/// Whether `egress_skb` drops this packet: it belongs to a cut connection. A TCP reset
/// without payload goes out (the daemon's disconnect sends one; it carries no data and
/// closes the remote end). A dropped UDP datagram's payload is added to its flow's
/// `wire_bytes`: the send failed, so no syscall exit counts it.
#[inline(always)]
pub fn dropped(ctx: &SkBuffContext) -> bool {
    if CUT_PRESENT.get(0).copied().unwrap_or(0) == 0 {
        return false;
    }
    let Some((_, n, proto)) = payload(ctx) else { return false };
    let Ok(first) = ctx.load::<u8>(0) else { return false };
    let mut key = CutKey { protocol: proto, ..CutKey::default() };
    let l4 = if first >> 4 == 4 {
        key.family = AF_INET;
        let (Ok(s), Ok(d)) = (ctx.load::<[u8; 4]>(12), ctx.load::<[u8; 4]>(16)) else { return false };
        key.saddr[..4].copy_from_slice(&s);
        key.daddr[..4].copy_from_slice(&d);
        usize::from(first & 0x0f) * 4
    } else {
        key.family = AF_INET6;
        let (Ok(s), Ok(d)) = (ctx.load::<[u8; 16]>(8), ctx.load::<[u8; 16]>(24)) else { return false };
        key.saddr = s;
        key.daddr = d;
        40
    };
    let (Ok(sport), Ok(dport)) = (ctx.load::<u16>(l4), ctx.load::<u16>(l4 + 2)) else { return false };
    key.sport = u16::from_be(sport);
    key.dport = u16::from_be(dport);
    // SAFETY: copied before the map can change.
    let Some(cut) = (unsafe { CUT_CONNECTIONS.get(&key) }).copied() else { return false };
    if proto == IPPROTO_TCP && n == 0 && ctx.load::<u8>(l4 + 13).is_ok_and(|flags| flags & 0x04 != 0) {
        return false; // RST
    }
    if proto == IPPROTO_UDP
        && let Some(f) = FLOWS.get_ptr_mut(&cut.flow)
    {
        // SAFETY: points into a FLOWS value; a lost update between CPUs only under-counts.
        unsafe { (*f).wire_bytes += n };
    }
    true
}

/// `write(fd, …)`, also `writev`, `send`/`sendto`, `sendmsg`, `sendmmsg`: fd first.
#[tracepoint(category = "syscalls", name = "sys_enter_write")]
pub fn cut_enter_write(_ctx: TracePointContext) -> u32 {
    on_send_enter(Arg::Di)
}

#[tracepoint(category = "syscalls", name = "sys_enter_writev")]
pub fn cut_enter_writev(_ctx: TracePointContext) -> u32 {
    on_send_enter(Arg::Di)
}

#[tracepoint(category = "syscalls", name = "sys_enter_sendto")]
pub fn cut_enter_sendto(_ctx: TracePointContext) -> u32 {
    on_send_enter(Arg::Di)
}

#[tracepoint(category = "syscalls", name = "sys_enter_sendmsg")]
pub fn cut_enter_sendmsg(_ctx: TracePointContext) -> u32 {
    on_send_enter(Arg::Di)
}

#[tracepoint(category = "syscalls", name = "sys_enter_sendmmsg")]
pub fn cut_enter_sendmmsg(_ctx: TracePointContext) -> u32 {
    on_send_enter(Arg::Di)
}

/// `sendfile(out_fd, in_fd, …)`.
#[tracepoint(category = "syscalls", name = "sys_enter_sendfile64")]
pub fn cut_enter_sendfile64(_ctx: TracePointContext) -> u32 {
    on_send_enter(Arg::Di)
}

/// `splice(fd_in, off_in, fd_out, …)`: fd_out is the third argument.
#[tracepoint(category = "syscalls", name = "sys_enter_splice")]
pub fn cut_enter_splice(_ctx: TracePointContext) -> u32 {
    on_send_enter(Arg::Dx)
}
