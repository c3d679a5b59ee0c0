//! Egress control: cgroup v2 socket-address programs (user half: `sensor/src/egress/`).
//!
//! `connect4/6` see every connect, io_uring's included (the hook runs in the kernel's
//! connect path, not at the syscall); `sendmsg4/6` see each send with an explicit
//! destination on an unconnected UDP socket. For a tainted process the destination is
//! added to `FLOWS` (`taint.rs`) and, when `EGRESS_CONFIG` says deny and the destination is
//! not in `EGRESS_ALLOW`, refused: returning 0 makes the syscall fail with EPERM.
//! Loopback destinations are neither counted nor refused: what a local receiver reads from a
//! tainted sender taints the receiver (`taint.rs`), whose own sends are then checked.
//! `sock_create` reports raw, packet and ICMP sockets opened by a tainted process.
//! A socket a tainted process connects is remembered by its cookie in `TAINTED_SOCKETS`;
//! `egress_skb` (cgroup_skb egress) adds the payload of each of its packets to the flow's
//! `wire_bytes`: sends no syscall exit sees (io_uring, sendmmsg) are counted there. The
//! start of each packet such a socket sends to port 53 goes to the ring as a [`DnsPacket`].
//! It also drops the packets of connections `cut.rs` cut (opened before the taint).
//!
//! Context layout: `struct bpf_sock_addr` and `struct bpf_sock` are UAPI
//! (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/bpf.h#L6477>), so these
//! programs read their fields directly (the kernel rewrites the accesses).
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_get_socket_cookie,
        bpf_skb_load_bytes,
    },
    macros::{cgroup_skb, cgroup_sock, cgroup_sock_addr, map},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::{SkBuffContext, SockAddrContext, SockContext},
};
use sensor_common::event::{
    egress::{
        ACTION_DENY, AF_PACKET, AllowAddr, AllowPorts, DNS_DATA, DnsPacket, EgressConfig, FlowKey,
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_UDP, REC_DNS, REC_SOCKET, RawSocket, SOCK_RAW, STAT_DENIED,
        STAT_RING_LOST, STAT_SOCKET_FULL,
    },
    net::{AF_INET, AF_INET6, IPPROTO_TCP},
};

use crate::{
    emit::now,
    taint::{EXFIL_EVENTS, FLOWS, add_flow, count, current, normalise},
};

#[map]
static DNS_SCRATCH: PerCpuArray<DnsPacket> = PerCpuArray::with_max_entries(1, 0);

/// Sockets connected by a tainted process, by socket cookie: the flow their packets count
/// into. The daemon removes the entries of exited processes.
#[map]
static TAINTED_SOCKETS: HashMap<u64, FlowKey> = HashMap::with_max_entries(16384, 0);

/// Allowed destinations (filled by the daemon from the policy's `egress` section).
#[map]
static EGRESS_ALLOW: LpmTrie<AllowAddr, AllowPorts> = LpmTrie::with_max_entries(4096, 0);

/// `[0]`: the action for tainted traffic to destinations not allowed.
#[map]
pub static EGRESS_CONFIG: Array<EgressConfig> = Array::with_max_entries(1, 0);

/// Whether `key` (normalised) may be reached: an allow-list prefix covers it and, when the
/// prefix names ports, the port is one of them.
#[inline(always)]
pub fn allowed(key: &FlowKey) -> bool {
    let mut addr = [0u8; 16];
    if key.family == AF_INET {
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12..].copy_from_slice(&key.daddr[..4]);
    } else {
        addr = key.daddr;
    }
    let Some(ports) = EGRESS_ALLOW.get(Key::new(128, addr)) else { return false };
    let ports = ports.ports;
    if ports == [0; 8] {
        return true;
    }
    let mut i = 0;
    while i < ports.len() {
        if ports[i] == key.dport {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether a (normalised) destination is 127.0.0.0/8 or `::1`.
#[inline(always)]
pub fn loopback(family: u16, d: &[u8; 16]) -> bool {
    (family == AF_INET && d[0] == 127) || (family == AF_INET6 && d[..15] == [0; 15] && d[15] == 1)
}

/// 1 lets the call through, 0 refuses it with EPERM. A call that goes through remembers its
/// socket for `egress_skb`.
#[inline(always)]
fn on_addr(ctx: &SockAddrContext, v6: bool) -> i32 {
    let Some(taint) = current() else { return 1 };
    // SAFETY: the context pointer is valid for the program run; fields are UAPI.
    let sa = unsafe { &*ctx.sock_addr };
    let mut key = FlowKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        protocol: sa.protocol as u16,
        dport: u16::from_be(sa.user_port as u16),
        ..FlowKey::default()
    };
    if v6 {
        key.family = AF_INET6;
        let ip = sa.user_ip6;
        let mut i = 0;
        while i < 4 {
            key.daddr[i * 4..i * 4 + 4].copy_from_slice(&ip[i].to_ne_bytes());
            i += 1;
        }
    } else {
        key.family = AF_INET;
        key.daddr[..4].copy_from_slice(&sa.user_ip4.to_ne_bytes());
    }
    normalise(&mut key);
    if loopback(key.family, &key.daddr) {
        return 1; // loopback stays on the host: a receiver becomes tainted instead (`taint.rs`)
    }
    let deny = EGRESS_CONFIG.get(0).is_some_and(|c| c.action == ACTION_DENY) && !allowed(&key);
    add_flow(&key, 0, 1, u32::from(deny), taint);
    if deny {
        count(STAT_DENIED);
        return 0;
    }
    // An unconnected UDP socket is remembered with this datagram's destination: the hook
    // runs before the datagram leaves.
    // SAFETY: the helper takes the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    if TAINTED_SOCKETS.insert(cookie, key, 0).is_err() {
        count(STAT_SOCKET_FULL);
    }
    1
}

/// Payload bytes of an outgoing IPv4/IPv6 TCP or UDP packet of a remembered socket are added
/// to its flow's `wire_bytes` (retransmissions included). Drops the packets of a cut
/// connection (`cut.rs`), lets every other packet through.
#[cgroup_skb(egress)]
pub fn egress_skb(ctx: SkBuffContext) -> i32 {
    if crate::cut::dropped(&ctx) {
        return 0;
    }
    // SAFETY: the helper takes the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    // SAFETY: copied before the map can change.
    let Some(key) = (unsafe { TAINTED_SOCKETS.get(cookie) }).copied() else { return 1 };
    let Some((start, n, proto)) = payload(&ctx) else { return 1 };
    if let Some(f) = FLOWS.get_ptr_mut(key) {
        // SAFETY: points into a FLOWS value; a lost update between CPUs only under-counts.
        unsafe { (*f).wire_bytes += n };
    }
    if n > 0 && key.dport == 53 {
        dns(&ctx, &key, start, n, proto);
    }
    1
}

/// Copies the start of a packet to port 53 into a [`DnsPacket`] record.
#[inline(always)]
fn dns(ctx: &SkBuffContext, key: &FlowKey, start: u64, n: u64, proto: u16) {
    let Some(rec) = DNS_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU scratch.
    let rec = unsafe { &mut *rec };
    // `n` is at least 1, so this is `min(n, DNS_DATA - 1)`; written as `(m - 1) & mask + 1`
    // the verifier sees 1..=DNS_DATA without a zero check (6.1 does not learn a lower bound
    // from `!= 0`). `m` is opaque to the compiler, so it cannot fold the expression back.
    let m = core::hint::black_box(n.min(DNS_DATA as u64 - 1) as u32);
    let want = (m.wrapping_sub(1) & (DNS_DATA as u32 - 1)) + 1;
    // SAFETY: `want` is within 1..=DNS_DATA, the size of `data`.
    let ok =
        unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), start as u32, rec.data.as_mut_ptr().cast(), want) }
            == 0;
    if !ok {
        return;
    }
    rec.header_kind = REC_DNS;
    rec.protocol = proto;
    rec.len = n as u32;
    rec.copied = want;
    rec.time_ns = now();
    rec.key = *key;
    if EXFIL_EVENTS.output::<DnsPacket>(rec, 0).is_err() {
        count(STAT_RING_LOST);
    }
}

/// Where the payload starts, its length and the transport protocol of an outgoing TCP or UDP
/// packet (the packet starts at the IP header here).
#[inline(always)]
pub fn payload(ctx: &SkBuffContext) -> Option<(u64, u64, u16)> {
    let len = u64::from(ctx.len());
    let first: u8 = ctx.load(0).ok()?;
    let (ip_len, proto) = match first >> 4 {
        4 => (u64::from(first & 0x0f) * 4, ctx.load::<u8>(9).ok()?),
        6 => (40, ctx.load::<u8>(6).ok()?), // extension headers are not walked
        _ => return None,
    };
    let l4 = match u16::from(proto) {
        IPPROTO_TCP => u64::from(ctx.load::<u8>(ip_len as usize + 12).ok()? >> 4) * 4,
        IPPROTO_UDP => 8,
        _ => return None,
    };
    let n = len.checked_sub(ip_len + l4)?;
    Some((ip_len + l4, n, u16::from(proto)))
}

#[cgroup_sock_addr(connect4)]
pub fn egress_connect4(ctx: SockAddrContext) -> i32 {
    on_addr(&ctx, false)
}

#[cgroup_sock_addr(connect6)]
pub fn egress_connect6(ctx: SockAddrContext) -> i32 {
    on_addr(&ctx, true)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn egress_sendmsg4(ctx: SockAddrContext) -> i32 {
    on_addr(&ctx, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn egress_sendmsg6(ctx: SockAddrContext) -> i32 {
    on_addr(&ctx, true)
}

/// Raw (`SOCK_RAW`), packet (`AF_PACKET`) and ICMP datagram sockets of a tainted process.
#[cgroup_sock(sock_create)]
pub fn egress_sock_create(ctx: SockContext) -> i32 {
    let Some(taint) = current() else { return 1 };
    // SAFETY: the context pointer is valid for the program run; fields are UAPI.
    let sk = unsafe { &*ctx.sock };
    let (family, ty, protocol) = (sk.family, sk.type_, sk.protocol);
    let icmp = (family == u32::from(AF_INET) && protocol == u32::from(IPPROTO_ICMP))
        || (family == u32::from(AF_INET6) && protocol == u32::from(IPPROTO_ICMPV6));
    if ty != SOCK_RAW && family != u32::from(AF_PACKET) && !icmp {
        return 1;
    }
    let ids = bpf_get_current_uid_gid();
    let rec = RawSocket {
        header_kind: REC_SOCKET,
        family,
        sock_type: ty,
        protocol,
        time_ns: now(),
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        uid: ids as u32,
        comm: bpf_get_current_comm().unwrap_or_default(),
        taint: *taint,
    };
    if EXFIL_EVENTS.output::<RawSocket>(&rec, 0).is_err() {
        count(STAT_RING_LOST);
    }
    1
}
