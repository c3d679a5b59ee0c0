//! Disconnecting a cut connection (kernel half: `sensor-ebpf/src/cut.rs`).
//!
//! The kernel already drops every packet of the connection; without more, a TCP sender only
//! stalls (its segments are never acknowledged) and a blocked write or read waits for the
//! retransmission timeout. The daemon takes a copy of the sender's descriptor
//! (`pidfd_open` + `pidfd_getfd`, Linux 5.6+), checks that it still is the same connection
//! (descriptor numbers are reused), and disconnects it with `connect(AF_UNSPEC)`: for an
//! established TCP socket the kernel's `tcp_disconnect` sends a reset and sets ECONNRESET,
//! which the process's next (or blocked) read or write returns
//! (<https://github.com/torvalds/linux/blob/v6.12/net/ipv4/tcp.c#L3022>). A connected UDP
//! socket is left alone: each of its sends already fails with EPERM.
use std::{
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use sensor_common::event::{
    egress::CutKey,
    net::{AF_INET, IPPROTO_TCP},
};

/// Disconnecting a cut connection failed.
#[derive(Debug, thiserror::Error)]
pub enum CutError {
    /// pidfd_open or pidfd_getfd failed (the process exited, or the descriptor was closed).
    #[error("cannot take descriptor {fd} of process {tgid}: {source}")]
    Take { tgid: u32, fd: u32, source: std::io::Error },
    /// The descriptor is another socket now.
    #[error("descriptor {fd} of process {tgid} is no longer the cut connection")]
    Reused { tgid: u32, fd: u32 },
    /// connect(AF_UNSPEC) failed.
    #[error("cannot disconnect descriptor {fd} of process {tgid}: {source}")]
    Disconnect { tgid: u32, fd: u32, source: std::io::Error },
}

/// What [`disconnect`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A TCP connection was disconnected.
    Disconnected,
    /// Not TCP: nothing to do.
    Untouched,
}

/// Disconnects descriptor `fd` of process `tgid` if it still is the connection `key`.
pub fn disconnect(tgid: u32, fd: u32, key: &CutKey) -> Result<Outcome, CutError> {
    if key.protocol != IPPROTO_TCP {
        return Ok(Outcome::Untouched);
    }
    let sock = take(tgid, fd).map_err(|source| CutError::Take { tgid, fd, source })?;
    let (local, peer) = endpoints(key);
    let raw = sock.as_raw_fd();
    if name(raw, libc::getsockname) != Some(local) || name(raw, libc::getpeername) != Some(peer) {
        return Err(CutError::Reused { tgid, fd });
    }
    // SAFETY: a zeroed sockaddr with family AF_UNSPEC, its size passed.
    let rc = unsafe {
        let mut sa: libc::sockaddr = zeroed();
        sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        libc::connect(raw, &raw const sa, size_of::<libc::sockaddr>() as libc::socklen_t)
    };
    if rc != 0 {
        return Err(CutError::Disconnect { tgid, fd, source: std::io::Error::last_os_error() });
    }
    Ok(Outcome::Disconnected)
}

/// A copy of another process's descriptor.
fn take(tgid: u32, fd: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscalls; each result is checked and owned once.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, tgid as libc::pid_t, 0);
        if pidfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as i32);
        let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd as i32, 0);
        if copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(copy as i32))
    }
}

/// The local and remote ends of `key` as socket addresses.
fn endpoints(key: &CutKey) -> (SocketAddr, SocketAddr) {
    let ip = |a: [u8; 16]| {
        if key.family == AF_INET {
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(a))
        }
    };
    (SocketAddr::new(ip(key.saddr), key.sport), SocketAddr::new(ip(key.daddr), key.dport))
}

type NameFn = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// getsockname/getpeername of `fd`; an IPv4-mapped IPv6 address as IPv4 (as the kernel
/// half keys such a socket).
fn name(fd: i32, f: NameFn) -> Option<SocketAddr> {
    // SAFETY: a sockaddr_storage and its size; the kernel writes at most that.
    let (ss, rc) = unsafe {
        let mut ss: libc::sockaddr_storage = zeroed();
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let rc = f(fd, (&raw mut ss).cast(), &raw mut len);
        (ss, rc)
    };
    if rc != 0 {
        return None;
    }
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says sockaddr_in.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read((&raw const ss).cast()) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says sockaddr_in6.
            let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read((&raw const ss).cast()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
            Some(SocketAddr::new(ip, u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    /// A loopback connection of this process, disconnected through its own descriptor
    /// number: the other end sees the reset, this end ECONNRESET; a key with another port
    /// is refused as reused.
    #[test]
    fn disconnects_only_the_named_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let (local, peer) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let mut key = CutKey {
            family: AF_INET,
            protocol: IPPROTO_TCP,
            sport: local.port(),
            dport: peer.port(),
            ..CutKey::default()
        };
        key.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        key.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let fd = client.as_raw_fd() as u32;
        let tgid = std::process::id();
        let other = CutKey { dport: peer.port().wrapping_add(1), ..key };
        assert!(matches!(disconnect(tgid, fd, &other), Err(CutError::Reused { .. })));
        assert_eq!(disconnect(tgid, fd, &key).unwrap(), Outcome::Disconnected);
        let err = client.write_all(b"x").and_then(|()| client.read(&mut [0; 1]).map(drop));
        assert!(err.is_err(), "the client's socket is disconnected");
        let got = server.read(&mut [0; 1]);
        let reset = matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
        assert!(reset, "the server saw the reset: {got:?}");
    }
}
