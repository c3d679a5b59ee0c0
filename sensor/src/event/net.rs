//! TCP connection events (kernel half: `sensor-ebpf/src/net.rs`; decoded in
//! `crate::decode`).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sensor_common::event::net::AF_INET;

use super::{Name, Record, Subject, attr, json};

/// What happened to the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnOp {
    Connect,
    /// Accepted, on descriptor `fd`.
    Accept {
        fd: i32,
    },
    /// Closed, from TCP state `previous_state`, with the byte counts.
    Close {
        previous_state: u16,
        sent: u64,
        received: u64,
    },
}

/// `network.connect`, `network.accept`, `network.close`.
#[derive(Clone, Debug)]
pub struct Conn {
    pub subject: Subject,
    pub op: ConnOp,
    pub local: IpAddr,
    pub local_port: u16,
    pub peer: IpAddr,
    pub peer_port: u16,
    /// Either address was IPv4-mapped IPv6.
    pub ipv4_mapped: bool,
}

impl Conn {
    pub fn name(&self) -> Name {
        match self.op {
            ConnOp::Connect => Name::NetworkConnect,
            ConnOp::Accept { .. } => Name::NetworkAccept,
            ConnOp::Close { .. } => Name::NetworkClose,
        }
    }

    pub fn write(&self, rec: &mut Record) {
        self.subject.write(rec);
        let out = rec.body();
        json::pair(out, attr::NETWORK_TRANSPORT, "tcp");
        json::pair(out, attr::NETWORK_TYPE, if self.local.is_ipv4() { "ipv4" } else { "ipv6" });
        json::pair(out, attr::NETWORK_LOCAL_ADDRESS, &self.local.to_string());
        json::pair(out, attr::NETWORK_LOCAL_PORT, &self.local_port);
        json::pair(out, attr::NETWORK_PEER_ADDRESS, &self.peer.to_string());
        json::pair(out, attr::NETWORK_PEER_PORT, &self.peer_port);
        json::flag(out, attr::NETWORK_IPV4_MAPPED, self.ipv4_mapped);
        match self.op {
            ConnOp::Connect => json::pair(out, attr::NETWORK_IO_DIRECTION, "transmit"),
            ConnOp::Accept { fd } => {
                json::pair(out, attr::NETWORK_IO_DIRECTION, "receive");
                json::pair(out, attr::FILE_FD, &fd);
            }
            ConnOp::Close { previous_state, sent, received } => {
                json::pair(out, attr::NETWORK_TCP_PREVIOUS_STATE, tcp_state(previous_state));
                json::pair(out, attr::BYTES_SENT, &sent);
                json::pair(out, attr::BYTES_RECEIVED, &received);
            }
        }
    }
}

/// The address of a socket; IPv4-mapped IPv6 addresses become IPv4 (second value `true`).
pub fn address(family: u16, raw: [u8; 16]) -> (IpAddr, bool) {
    if family == AF_INET {
        return (IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])), false);
    }
    let v6 = Ipv6Addr::from(raw);
    match v6.to_ipv4_mapped() {
        Some(v4) => (IpAddr::V4(v4), true),
        None => (IpAddr::V6(v6), false),
    }
}

/// TCP state names (<https://github.com/torvalds/linux/blob/v6.12/include/net/tcp_states.h>).
pub fn tcp_state(state: u16) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::address;

    #[test]
    fn maps_ipv4_mapped_addresses() {
        let mut raw = [0u8; 16];
        raw[10] = 0xff;
        raw[11] = 0xff;
        raw[12..].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(address(10, raw), ("127.0.0.1".parse().unwrap(), true));
        assert_eq!(
            address(2, [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            ("127.0.0.1".parse().unwrap(), false)
        );
        let mut lo6 = [0u8; 16];
        lo6[15] = 1;
        assert_eq!(address(10, lo6), ("::1".parse().unwrap(), false));
    }
}
