//! TCP connection events (kernel half: `sensor-ebpf/src/net.rs`).

use super::{Header, Task};

/// `network.connect`, `network.accept` and `network.close`.
///
/// Addresses are in network byte order; for `family == AF_INET` only the first four bytes
/// are used. `sport`/`dport` are host byte order. The header's task is the process that made
/// the connection (for `close`, as remembered at connect or accept time).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Conn {
    pub header: Header,
    /// Kernel address of the `struct sock` (joins connect/accept with close).
    pub sock: u64,
    /// `tcp_sock.bytes_sent - bytes_retrans` at close (payload bytes, each counted once).
    pub bytes_sent: u64,
    /// `tcp_sock.bytes_received` at close (payload bytes).
    pub bytes_received: u64,
    pub family: u16,
    pub protocol: u16,
    pub sport: u16,
    pub dport: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// TCP state before the transition that produced this record (`TCP_*`).
    pub oldstate: u16,
    pub newstate: u16,
    /// File descriptor returned by accept (-1 for connect and close).
    pub fd: i32,
}

/// What the kernel remembers about a tracked connection until it closes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnOwner {
    pub task: Task,
    /// [`crate::event::Kind`] that started tracking (connect or accept).
    pub kind: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
// SAFETY: plain repr(C) data.
unsafe impl aya::Pod for ConnOwner {}

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;
/// TCP states (<https://github.com/torvalds/linux/blob/v6.12/include/net/tcp_states.h>).
pub const TCP_ESTABLISHED: u16 = 1;
pub const TCP_SYN_SENT: u16 = 2;
pub const TCP_CLOSE: u16 = 7;
