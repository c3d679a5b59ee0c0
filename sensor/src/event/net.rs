//! TCP connection records (kernel half: `sensor-ebpf/src/net.rs`).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sensor_common::event::{
    Kind,
    net::{AF_INET, Conn},
};

use super::{DecodeError, Decoder, Record, attr, read_struct};

/// `network.connect`, `network.accept`, `network.close`.
pub fn conn(d: &mut Decoder, kind: Kind, bytes: &[u8], rec: &mut Record) -> Result<(), DecodeError> {
    let ev: Conn = read_struct(bytes, 0)?;
    d.add_task(&ev.header.task, rec);
    d.add_program(ev.header.task.tgid, rec);
    let (local, mapped_l) = address(ev.family, ev.saddr);
    let (peer, mapped_p) = address(ev.family, ev.daddr);
    rec.set(attr::NETWORK_TRANSPORT, "tcp")
        .set(attr::NETWORK_TYPE, if local.is_ipv4() { "ipv4" } else { "ipv6" })
        .set(attr::NETWORK_LOCAL_ADDRESS, local.to_string())
        .set(attr::NETWORK_LOCAL_PORT, ev.sport)
        .set(attr::NETWORK_PEER_ADDRESS, peer.to_string())
        .set(attr::NETWORK_PEER_PORT, ev.dport)
        .flag(attr::NETWORK_IPV4_MAPPED, mapped_l || mapped_p);
    match kind {
        Kind::NetConnect => {
            rec.set(attr::NETWORK_IO_DIRECTION, "transmit");
        }
        Kind::NetAccept => {
            rec.set(attr::NETWORK_IO_DIRECTION, "receive").set(attr::FILE_FD, ev.fd);
        }
        _ => {
            rec.set(attr::NETWORK_TCP_PREVIOUS_STATE, tcp_state(ev.oldstate))
                .set(attr::BYTES_SENT, ev.bytes_sent)
                .set(attr::BYTES_RECEIVED, ev.bytes_received);
        }
    }
    Ok(())
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
