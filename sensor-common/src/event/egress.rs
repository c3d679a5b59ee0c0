//! Taint and egress wire types (kernel half: `sensor-ebpf/src/taint.rs` and
//! `sensor-ebpf/src/egress.rs`; user half: `sensor/src/egress/`).
//!
//! These records travel in their own ring buffer (`EXFIL_EVENTS`) and maps, read by the
//! egress module, so the main decoder never sees them. `Header::kind` of a record in that
//! ring is one of the `REC_*` numbers below, not a [`super::Kind`].

use super::{Header, Task};

/// Where a taint came from: the first protected read of the chain.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Taint {
    /// The process that read protected data first, as it was at that read.
    pub origin: Task,
    /// The first protected file read (inode and kernel device number).
    pub src_ino: u64,
    pub src_dev: u32,
    /// Hand-offs between the protected read and this holder: 0 = read the file itself,
    /// 1 = through one pipe or derived file, and so on.
    pub hops: u32,
    /// Protected bytes this process read itself (0 when the taint was inherited).
    pub bytes: u64,
    /// Protected files opened and read by this process itself.
    pub files: u64,
    /// First and last taint activity (boot-time ns).
    pub first_ns: u64,
    pub last_ns: u64,
}

/// A tainted pipe or regular file, by inode (or a socket's receive side, see `taint.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ObjKey {
    pub ino: u64,
    pub dev: u32,
    /// 0, or for a loopback connection the receiver's address.
    pub extra: u32,
}

/// One tainted process's traffic to one destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub tgid: u32,
    /// `AF_INET` (IPv4-mapped IPv6 addresses are normalised to it) or `AF_INET6`.
    pub family: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP` (0 when unknown).
    pub protocol: u16,
    /// Destination port, host byte order.
    pub dport: u16,
    pub _pad: [u16; 3],
    /// Destination address, network byte order; IPv4 in the first four bytes.
    pub daddr: [u8; 16],
}

/// Totals of a [`FlowKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Flow {
    /// The sending process: tgid, uid, gid and comm (the cgroup hooks see no more).
    pub task: Task,
    /// The sender's taint when the flow started.
    pub taint: Taint,
    /// Payload bytes the process handed to the socket (syscall results).
    pub bytes: u64,
    /// Payload bytes of the packets of sockets this process connected while tainted, as the
    /// cgroup_skb egress program saw them leave (retransmissions included).
    pub wire_bytes: u64,
    /// Send calls counted.
    pub sends: u64,
    /// connect() / unconnected sendmsg() calls seen by the cgroup programs.
    pub connects: u32,
    /// Of those, refused with EPERM; plus connections cut (below).
    pub denied: u32,
    /// Connections opened before the process was tainted whose packets `egress_skb` drops
    /// since the process's first send on them (`action: deny`; [`Cut`]).
    pub cut: u32,
    pub _pad: u32,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// One IPv4/IPv6 connection as its packets carry it (IPv4-mapped IPv6 sockets as IPv4):
/// the key of `CUT_CONNECTIONS`, which `egress_skb` looks packets up in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CutKey {
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u16,
    /// Local and remote ports, host byte order.
    pub sport: u16,
    pub dport: u16,
    /// Local and remote addresses, network byte order; IPv4 in the first four bytes.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

/// A connection whose packets are dropped: a tainted process sent on it (under
/// `action: deny`, to a destination not allowed) though it was connected before the taint.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Cut {
    /// The flow its sends count into (the sender's tgid and the destination).
    pub flow: FlowKey,
    /// The sender's descriptor of the socket at its first tainted send.
    pub fd: u32,
    pub _pad: u32,
    pub time_ns: u64,
}

/// Record kind [`REC_CUT`]: a connection was marked in `CUT_CONNECTIONS`; the daemon then
/// disconnects the socket so that the process sees an error.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CutRecord {
    pub header_kind: u32,
    pub _pad: u32,
    pub key: CutKey,
    pub cut: Cut,
}

/// Key of the destination allow list (an LPM trie over IPv6 addresses; IPv4 as
/// `::ffff:a.b.c.d`, prefix + 96).
pub type AllowAddr = [u8; 16];

/// Ports allowed for a destination prefix; all zero means every port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowPorts {
    pub ports: [u16; ALLOW_PORTS],
}

/// Most ports per allow-list prefix.
pub const ALLOW_PORTS: usize = 8;

/// The egress settings the daemon writes into `EGRESS_CONFIG[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EgressConfig {
    /// [`ACTION_ALERT`] or [`ACTION_DENY`].
    pub action: u32,
    /// The egress cgroup's depth below the cgroup v2 root (0: the root) and its id: the
    /// syscall-enter programs of `cut.rs` act only for tasks in it (the cgroup programs are
    /// attached to it).
    pub cgroup_level: u32,
    pub cgroup_id: u64,
}

/// Report only.
pub const ACTION_ALERT: u32 = 0;
/// Refuse a tainted process's connect/sendmsg to a destination not on the allow list.
pub const ACTION_DENY: u32 = 1;

/// Record kind: [`Derived`].
pub const REC_DERIVED: u32 = 1;
/// Record kind: [`RawSocket`].
pub const REC_SOCKET: u32 = 2;

/// Record kind: [`DnsPacket`].
pub const REC_DNS: u32 = 3;

/// Record kind: [`CutRecord`].
pub const REC_CUT: u32 = 4;

/// Bytes of DNS message copied into a [`DnsPacket`] (a query name is at most 255 bytes).
pub const DNS_DATA: usize = 256;

/// The start of a packet to port 53 on a socket of a tainted process (cgroup_skb egress).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DnsPacket {
    pub header_kind: u32,
    /// `IPPROTO_TCP` (the message then starts with its 2-byte length) or `IPPROTO_UDP`.
    pub protocol: u16,
    pub _pad: u16,
    /// Payload bytes of the packet, and how many of them are in `data`.
    pub len: u32,
    pub copied: u32,
    pub time_ns: u64,
    /// The flow the socket counts into (sender's tgid and destination).
    pub key: FlowKey,
    pub data: [u8; DNS_DATA],
}

/// Bytes of path in a [`Derived`] record (`PATH_MAX` plus `NAME_MAX` slack, as `file.rs`).
pub const DERIVED_DATA: usize = crate::event::file::FILE_DATA;

/// A regular file outside the protected set, written by a tainted process for the first time.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Derived {
    pub header: Header,
    pub taint: Taint,
    pub ino: u64,
    pub dev: u32,
    pub path_len: u16,
    pub _pad: u16,
    /// Path-walk cursor (map memory, see `sensor-ebpf/src/path.rs`).
    pub cursor: u32,
    pub _pad2: u32,
    pub data: [u8; DERIVED_DATA],
}

/// A raw, packet or ICMP socket created by a tainted process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawSocket {
    pub header_kind: u32,
    pub family: u32,
    pub sock_type: u32,
    pub protocol: u32,
    pub time_ns: u64,
    pub tgid: u32,
    pub uid: u32,
    pub comm: [u8; 16],
    pub taint: Taint,
}

/// Counter slots of `EXFIL_STATS` (per CPU).
pub const STAT_TAINT_FULL: u32 = 0;
/// A tainted object could not be remembered (map full).
pub const STAT_OBJECT_FULL: u32 = 1;
/// A flow could not be remembered (map full).
pub const STAT_FLOW_FULL: u32 = 2;
/// A record did not fit in `EXFIL_EVENTS`.
pub const STAT_RING_LOST: u32 = 3;
/// Connects/sendmsgs refused.
pub const STAT_DENIED: u32 = 4;
/// A tainted socket could not be remembered for byte counting (map full).
pub const STAT_SOCKET_FULL: u32 = 5;
/// A connection to cut could not be remembered (map full): its packets still leave.
pub const STAT_CUT_FULL: u32 = 6;
/// Number of counter slots.
pub const STAT_SLOTS: u32 = 7;

/// `AF_UNIX`, `AF_PACKET`.
pub const AF_UNIX: u16 = 1;
pub const AF_PACKET: u16 = 17;
/// `IPPROTO_UDP`, `IPPROTO_ICMP`, `IPPROTO_ICMPV6`.
pub const IPPROTO_UDP: u16 = 17;
pub const IPPROTO_ICMP: u16 = 1;
pub const IPPROTO_ICMPV6: u16 = 58;
/// `SOCK_RAW`.
pub const SOCK_RAW: u32 = 3;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain repr(C) data.
    unsafe impl aya::Pod for super::Taint {}
    // SAFETY: plain repr(C) data.
    unsafe impl aya::Pod for super::ObjKey {}
    // SAFETY: plain repr(C) data.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: plain repr(C) data.
    unsafe impl aya::Pod for super::Flow {}
    // SAFETY: plain repr(C) data.
    unsafe impl aya::Pod for super::CutKey {}
    // SAFETY: plain repr(C) data.
    unsafe impl aya::Pod for super::Cut {}
    // SAFETY: plain repr(C) data.
    unsafe impl aya::Pod for super::AllowPorts {}
    // SAFETY: plain repr(C) data.
    unsafe impl aya::Pod for super::EgressConfig {}
}
