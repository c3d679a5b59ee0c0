//! Network events over loopback: connect, accept and close with byte counts, for IPv4, IPv6
//! and IPv4-mapped IPv6.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    thread,
};

use mnsensor_tests::{Sensor, get_bool, get_str, get_u64, has, is, pid_of, show, test_pid};
use serde_json::Value;

/// Payload bytes the client sends.
const SENT: usize = 123_457;
/// Payload bytes the server sends back.
const REPLIED: usize = 4_321;

/// What happened on one loopback connection.
struct Exchange {
    /// The listener's address (the client's peer).
    listener: SocketAddr,
    /// The client socket's local address (as `getsockname` reports it).
    client: SocketAddr,
    /// The accepted socket's local address and peer address.
    accepted_local: SocketAddr,
    accepted_peer: SocketAddr,
    accepted_fd: i32,
}

/// Connects to `listener` via `target`, sends [`SENT`] bytes and half-closes; the server reads
/// everything, replies [`REPLIED`] bytes and closes; the client reads to EOF and closes.
fn exchange(listener: TcpListener, target: SocketAddr) -> Exchange {
    let listener_addr = listener.local_addr().expect("listener addr");
    let server = thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        let fd = s.as_raw_fd();
        let local = s.local_addr().expect("accepted local addr");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("server read");
        assert_eq!(got.len(), SENT, "server received");
        s.write_all(&vec![0xa5; REPLIED]).expect("server write");
        drop(s);
        (fd, local, peer)
    });
    let mut c = TcpStream::connect(target).unwrap_or_else(|e| panic!("connect {target}: {e}"));
    let client = c.local_addr().expect("client local addr");
    c.write_all(&vec![0x5a; SENT]).expect("client write");
    c.shutdown(Shutdown::Write).expect("client shutdown");
    let mut back = Vec::new();
    c.read_to_end(&mut back).expect("client read");
    assert_eq!(back.len(), REPLIED, "client received");
    drop(c);
    let (accepted_fd, accepted_local, accepted_peer) = server.join().expect("server thread");
    Exchange { listener: listener_addr, client, accepted_local, accepted_peer, accepted_fd }
}

/// The textual address the sensor reports: IPv4-mapped IPv6 shown as plain IPv4.
fn reported_ip(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.ip().to_string(),
        },
    }
}

fn ports(ev: &Value) -> (u64, u64) {
    (
        ev.get("network.local.port").and_then(Value::as_u64).unwrap_or(0),
        ev.get("network.peer.port").and_then(Value::as_u64).unwrap_or(0),
    )
}

fn assert_endpoints(ev: &Value, local: &SocketAddr, peer: &SocketAddr, net_type: &str) {
    assert_eq!(get_str(ev, "network.transport"), "tcp", "{}", show(ev));
    assert_eq!(get_str(ev, "network.type"), net_type, "network.type: {}", show(ev));
    assert_eq!(get_str(ev, "network.local.address"), reported_ip(local), "local address: {}", show(ev));
    assert_eq!(get_u64(ev, "network.local.port"), u64::from(local.port()), "local port: {}", show(ev));
    assert_eq!(get_str(ev, "network.peer.address"), reported_ip(peer), "peer address: {}", show(ev));
    assert_eq!(get_u64(ev, "network.peer.port"), u64::from(peer.port()), "peer port: {}", show(ev));
}

/// Runs one exchange under a fresh sensor and checks connect, accept and both closes.
/// `client_type`/`client_mapped`: expected `network.type` and `ipv4_mapped` of the client's
/// records; `server_type`: of the accepting side's.
fn check_connection(
    listener: TcpListener,
    target: SocketAddr,
    client_type: &str,
    client_mapped: bool,
    server_type: &str,
) {
    let mut sensor = Sensor::start(&[]);
    let me = test_pid();
    let x = exchange(listener, target);
    let (cport, lport) = (u64::from(x.client.port()), u64::from(x.listener.port()));
    let mapped = |ev: &Value| get_bool(ev, "mnsensor.network.ipv4_mapped").unwrap_or(false);

    let connect = sensor.wait_for(&format!("network.connect {} -> {}", x.client, x.listener), |e| {
        is(e, "network.connect") && ports(e) == (cport, lport)
    });
    assert_endpoints(&connect, &x.client, &x.listener, client_type);
    assert_eq!(pid_of(&connect), Some(me), "connect pid: {}", show(&connect));
    assert_eq!(get_str(&connect, "network.io.direction"), "transmit", "{}", show(&connect));
    assert_eq!(mapped(&connect), client_mapped, "ipv4_mapped: {}", show(&connect));

    let accept = sensor
        .wait_for(&format!("network.accept {} <- {}", x.accepted_local, x.accepted_peer), |e| {
            is(e, "network.accept") && ports(e) == (lport, cport)
        });
    assert_endpoints(&accept, &x.accepted_local, &x.accepted_peer, server_type);
    assert_eq!(pid_of(&accept), Some(me), "accept pid: {}", show(&accept));
    assert_eq!(get_str(&accept, "network.io.direction"), "receive", "{}", show(&accept));
    assert_eq!(get_u64(&accept, "mnsensor.file.fd"), x.accepted_fd as u64, "accepted fd: {}", show(&accept));
    assert!(!mapped(&accept), "accept on an IPv4/IPv6 listener is not mapped: {}", show(&accept));

    let close = sensor.wait_for(&format!("network.close of the client {}", x.client), |e| {
        is(e, "network.close") && ports(e) == (cport, lport)
    });
    assert_endpoints(&close, &x.client, &x.listener, client_type);
    assert_eq!(get_u64(&close, "mnsensor.bytes_sent"), SENT as u64, "client bytes_sent: {}", show(&close));
    assert_eq!(
        get_u64(&close, "mnsensor.bytes_received"),
        REPLIED as u64,
        "client bytes_received: {}",
        show(&close)
    );
    assert!(has(&close, "mnsensor.network.tcp.previous_state"), "{}", show(&close));
    assert_eq!(mapped(&close), client_mapped, "ipv4_mapped: {}", show(&close));

    let close = sensor.wait_for(&format!("network.close of the accepted {}", x.accepted_local), |e| {
        is(e, "network.close") && ports(e) == (lport, cport)
    });
    assert_endpoints(&close, &x.accepted_local, &x.accepted_peer, server_type);
    assert_eq!(get_u64(&close, "mnsensor.bytes_sent"), REPLIED as u64, "server bytes_sent: {}", show(&close));
    assert_eq!(
        get_u64(&close, "mnsensor.bytes_received"),
        SENT as u64,
        "server bytes_received: {}",
        show(&close)
    );

    for (name, ports_) in [
        ("network.connect", (cport, lport)),
        ("network.accept", (lport, cport)),
        ("network.close", (cport, lport)),
        ("network.close", (lport, cport)),
    ] {
        let n = sensor.matching(|e| is(e, name) && ports(e) == ports_).len();
        assert_eq!(n, 1, "{name} records for ports {ports_:?}");
    }
    sensor.stop();
}

#[test]
fn ipv4_loopback_connection() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let target = listener.local_addr().unwrap();
    check_connection(listener, target, "ipv4", false, "ipv4");
}

#[test]
fn ipv6_loopback_connection() {
    let listener = match TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
        Ok(l) => l,
        Err(e) => mnsensor_tests::skip!("cannot bind [::1]:0 ({e}): no IPv6 loopback here"),
    };
    let target = listener.local_addr().unwrap();
    check_connection(listener, target, "ipv6", false, "ipv6");
}

#[test]
fn ipv4_mapped_connection_is_reported_as_ipv4() {
    // An AF_INET6 client connecting to ::ffff:127.0.0.1 reaches an IPv4 listener on
    // 127.0.0.1 over IPv4 loopback.
    // SAFETY: socket/close have no memory-safety preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        mnsensor_tests::skip!("no AF_INET6 sockets here ({})", std::io::Error::last_os_error());
    }
    // SAFETY: we own fd.
    unsafe { libc::close(fd) };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST.to_ipv6_mapped(), port));
    check_connection(listener, target, "ipv4", true, "ipv4");
}
