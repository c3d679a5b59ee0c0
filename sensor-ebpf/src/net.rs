//! TCP connections (wire type: `sensor_common::event::net`; user half:
//! `sensor/src/event/net.rs`).
//!
//! - connect: `sock:inet_sock_set_state` CLOSE→SYN_SENT runs in the connecting process; we
//!   remember it as the owner. The local port is only chosen after that transition
//!   (`tcp_v4_connect`), so `network.connect` is sent when the socket leaves SYN_SENT
//!   (handshake done or failed), with the full 4-tuple.
//! - accept: the exit of accept/accept4 runs in the accepting process; the tuple is read
//!   from the accepted socket.
//! - close: the transition to TCP_CLOSE of a remembered socket, with the byte counters of
//!   `struct tcp_sock`.
//!
//! Tracepoint format: <https://github.com/torvalds/linux/blob/v6.12/include/trace/events/sock.h#L141>.
use aya_ebpf::{
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use sensor_common::{
    event::{
        Kind,
        net::{AF_INET, AF_INET6, Conn, ConnOwner, IPPROTO_TCP, TCP_CLOSE, TCP_SYN_SENT},
    },
    offsets::MISSING,
};

use crate::{
    emit::{header_for, header_for_current, send},
    kread::{config, current_task, file_of_fd, fill_task, off, ptr, read, sys_exit_ret},
};

/// Sockets whose close we report, with the process that opened them.
/// `SOCK_DONE` in `enum sock_flags`
/// (<https://github.com/torvalds/linux/blob/v6.12/include/net/sock.h#L932>).
const SOCK_DONE: u64 = 1;

#[map]
static CONNS: LruHashMap<u64, ConnOwner> = LruHashMap::with_max_entries(65536, 0);

#[map]
static CONN_SCRATCH: PerCpuArray<Conn> = PerCpuArray::with_max_entries(1, 0);

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    // SAFETY (all reads below): probe-reads of the tracepoint record.
    let field = |o: u32| -> Result<u16, i32> { unsafe { ctx.read_at::<u16>(o as usize) } };
    let Ok(protocol) = field(off!(tp_inet_sock_set_state_protocol)) else {
        return 0;
    };
    if protocol != IPPROTO_TCP {
        return 0;
    }
    let Ok(sk) = (unsafe { ctx.read_at::<u64>(off!(tp_inet_sock_set_state_skaddr) as usize) }) else {
        return 0;
    };
    let old = read_state(&ctx, off!(tp_inet_sock_set_state_oldstate));
    let new = read_state(&ctx, off!(tp_inet_sock_set_state_newstate));

    if new == TCP_SYN_SENT {
        let mut owner = ConnOwner { kind: Kind::NetConnect as u32, ..ConnOwner::default() };
        fill_task(current_task(), &mut owner.task);
        if owner.task.tgid != config!(self_tgid) {
            let _ = CONNS.insert(sk, owner, 0);
        }
        return 0;
    }
    if old != TCP_SYN_SENT && new != TCP_CLOSE {
        return 0;
    }
    // SAFETY: the value is copied before the map can change.
    let Some(owner) = (unsafe { CONNS.get(sk) }).copied() else {
        return 0;
    };
    let Some(ev) = CONN_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch.
    let ev = unsafe { &mut *ev };
    ev.sock = sk;
    ev.fd = -1;
    ev.oldstate = old;
    ev.newstate = new;
    ev.protocol = protocol;
    ev.family = field(off!(tp_inet_sock_set_state_family)).unwrap_or(0);
    ev.sport = field(off!(tp_inet_sock_set_state_sport)).unwrap_or(0);
    ev.dport = field(off!(tp_inet_sock_set_state_dport)).unwrap_or(0);
    ev.saddr = [0; 16];
    ev.daddr = [0; 16];
    unsafe {
        if ev.family == AF_INET {
            let s = ctx.read_at::<[u8; 4]>(off!(tp_inet_sock_set_state_saddr) as usize).unwrap_or_default();
            let d = ctx.read_at::<[u8; 4]>(off!(tp_inet_sock_set_state_daddr) as usize).unwrap_or_default();
            ev.saddr[..4].copy_from_slice(&s);
            ev.daddr[..4].copy_from_slice(&d);
        } else {
            ev.saddr = ctx.read_at(off!(tp_inet_sock_set_state_saddr_v6) as usize).unwrap_or_default();
            ev.daddr = ctx.read_at(off!(tp_inet_sock_set_state_daddr_v6) as usize).unwrap_or_default();
        }
    }
    ev.bytes_sent = 0;
    ev.bytes_received = 0;
    if old == TCP_SYN_SENT && owner.kind == Kind::NetConnect as u32 {
        header_for(Kind::NetConnect, &owner.task, &mut ev.header);
        send(Kind::NetConnect, (ev as *const Conn).cast(), size_of::<Conn>());
    }
    if new == TCP_CLOSE {
        // bytes_sent counts retransmissions again; bytes_retrans says how many.
        let sent: u64 = read(sk, off!(tcp_sock_bytes_sent)).unwrap_or(0);
        let retrans: u64 = read(sk, off!(tcp_sock_bytes_retrans)).unwrap_or(0);
        ev.bytes_sent = sent.saturating_sub(retrans);
        // bytes_received counts the peer's FIN as one byte; SOCK_DONE says it arrived.
        let received: u64 = read(sk, off!(tcp_sock_bytes_received)).unwrap_or(0);
        let flags_off = match off!(sock_sk_flags) {
            MISSING => off!(sock_common_skc_flags),
            o => o,
        };
        let fin = read::<u64>(sk, flags_off).map_or(0, |f| (f >> SOCK_DONE) & 1);
        ev.bytes_received = received.saturating_sub(fin);
        header_for(Kind::NetClose, &owner.task, &mut ev.header);
        send(Kind::NetClose, (ev as *const Conn).cast(), size_of::<Conn>());
        let _ = CONNS.remove(sk);
    }
    0
}

#[inline(always)]
fn read_state(ctx: &TracePointContext, off: u32) -> u16 {
    // The state fields are `int` in the format.
    // SAFETY: probe-read of the tracepoint record.
    unsafe { ctx.read_at::<i32>(off as usize) }.map_or(0, |s| s as u16)
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    on_accept_exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    on_accept_exit(&ctx)
}

#[inline(always)]
fn on_accept_exit(ctx: &TracePointContext) -> u32 {
    let Ok(fd) = sys_exit_ret(ctx) else {
        return 0;
    };
    if fd < 0 {
        return 0;
    }
    let Ok(file) = file_of_fd(current_task(), fd) else {
        return 0;
    };
    let Ok(socket) = ptr(file, off!(file_private_data)) else {
        return 0;
    };
    let Ok(sk) = ptr(socket, off!(socket_sk)) else {
        return 0;
    };
    let protocol: u16 = read(sk, off!(sock_sk_protocol)).unwrap_or(0);
    let family: u16 = read(sk, off!(sock_common_skc_family)).unwrap_or(0);
    if protocol != IPPROTO_TCP || (family != AF_INET && family != AF_INET6) {
        return 0;
    }
    let Some(ev) = CONN_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch.
    let ev = unsafe { &mut *ev };
    if !header_for_current(Kind::NetAccept, &mut ev.header) {
        return 0;
    }
    ev.sock = sk;
    ev.fd = fd as i32;
    ev.family = family;
    ev.protocol = protocol;
    ev.oldstate = 0;
    ev.newstate = 0;
    ev.bytes_sent = 0;
    ev.bytes_received = 0;
    ev.sport = read(sk, off!(sock_common_skc_num)).unwrap_or(0);
    ev.dport = u16::from_be(read(sk, off!(sock_common_skc_dport)).unwrap_or(0));
    ev.saddr = [0; 16];
    ev.daddr = [0; 16];
    if family == AF_INET {
        let s: [u8; 4] = read(sk, off!(sock_common_skc_rcv_saddr)).unwrap_or_default();
        let d: [u8; 4] = read(sk, off!(sock_common_skc_daddr)).unwrap_or_default();
        ev.saddr[..4].copy_from_slice(&s);
        ev.daddr[..4].copy_from_slice(&d);
    } else {
        ev.saddr = read(sk, off!(sock_common_skc_v6_rcv_saddr)).unwrap_or_default();
        ev.daddr = read(sk, off!(sock_common_skc_v6_daddr)).unwrap_or_default();
    }
    let owner = ConnOwner { task: ev.header.task, kind: Kind::NetAccept as u32, _pad: 0 };
    let _ = CONNS.insert(sk, owner, 0);
    send(Kind::NetAccept, (ev as *const Conn).cast(), size_of::<Conn>());
    0
}
