//! The fake external host of the exfiltration tests: a network namespace the test creates,
//! joined by a veth pair with test addresses (10.200.N.1 here, 10.200.N.2 inside; IPv6
//! fd00:200:N::1 and fd00:200:N::2, unique local addresses), and sinks listening inside it
//! that count what they receive. Nothing else is a target. Everything (namespace, link,
//! sinks) is removed on drop, also on failure.

use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::Duration,
};

use crate::{ChildGuard, TempDir, path_str, test_pid};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The fake external host: a namespace, a veth pair and a TCP sink listening on `ports`.
pub struct FakeHost {
    ns: String,
    link: String,
    /// Its IPv4 address.
    pub ip: String,
    /// Its IPv6 address (no brackets).
    pub ip6: String,
    /// One file per sink: the byte count of each connection (or datagram) received, one per
    /// line.
    pub dir: TempDir,
    sinks: Vec<ChildGuard>,
}

/// `python3 -c SINK IP PORT OUT`: accepts TCP connections forever; appends each
/// connection's byte count to OUT and closes
/// it. IP may be IPv4 or IPv6.
pub const SINK: &str = r#"
import socket, sys, threading
ip, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6 if ':' in ip else socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((ip, port)); s.listen(16)
open(out + ".ready", "w").close()
def serve(c):
    n = 0
    while True:
        b = c.recv(65536)
        if not b: break
        n += len(b)
    with open(out, "a") as f: f.write(f"{n}\n")
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// `python3 -c UDP_SINK IP PORT OUT`: a UDP listener; appends each datagram's size to OUT.
pub const UDP_SINK: &str = "import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))
open(sys.argv[3] + '.ready', 'w').close()
while True:
    d, _ = s.recvfrom(65536)
    with open(sys.argv[3], 'a') as f: f.write(f'{len(d)}\\n')
";

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(st.success(), "ip {args:?}: {st}");
}

impl FakeHost {
    /// The host with a TCP [`SINK`] on each of `ports` (IPv4), its results under the port's
    /// number.
    pub fn new(ports: &[u16]) -> Self {
        let n = (test_pid() + NEXT.fetch_add(1, Ordering::Relaxed)) % 250 + 1;
        let ns = format!("mnsx{}-{n}", test_pid());
        let link = format!("mnsx{n}h");
        let mut host = Self {
            ns: ns.clone(),
            link: link.clone(),
            ip: format!("10.200.{n}.2"),
            ip6: format!("fd00:200:{n}::2"),
            dir: TempDir::new("fakehost"),
            sinks: Vec::new(),
        };
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &link, "type", "veth", "peer", "name", "mnsxpeer", "netns", &ns]);
        ip(&["addr", "add", &format!("10.200.{n}.1/24"), "dev", &link]);
        // nodad: the addresses are usable at once, without duplicate address detection.
        ip(&["-6", "addr", "add", &format!("fd00:200:{n}::1/64"), "dev", &link, "nodad"]);
        ip(&["link", "set", &link, "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("{}/24", host.ip), "dev", "mnsxpeer"]);
        ip(&["-n", &ns, "-6", "addr", "add", &format!("{}/64", host.ip6), "dev", "mnsxpeer", "nodad"]);
        ip(&["-n", &ns, "link", "set", "mnsxpeer", "up"]);
        for port in ports {
            let address = host.ip.clone();
            host.sink(SINK, &address, *port, &port.to_string());
        }
        host
    }

    /// Runs the python `script` (IP PORT OUT) in the namespace on `address`, writing to
    /// `<dir>/<name>`, and waits until it has created `<dir>/<name>.ready`.
    pub fn sink(&mut self, script: &str, address: &str, port: u16, name: &str) {
        let out = self.dir.join(name);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "python3", "-c", script, address, &port.to_string()])
            .arg(&out)
            .stdin(Stdio::null());
        self.sinks.push(ChildGuard::spawn(&mut cmd));
        let ready = PathBuf::from(format!("{}.ready", path_str(&out)));
        for _ in 0..100 {
            if ready.exists() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        assert!(ready.exists(), "sink {name} on {address} port {port} did not start");
    }

    /// Counts received by the sink `name`, once there are `n` of them (or after a few
    /// seconds).
    pub fn received_at(&self, name: &str, n: usize) -> Vec<u64> {
        for _ in 0..100 {
            let got = self.received_so_far(name);
            if got.len() >= n {
                return got;
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.received_so_far(name)
    }

    /// Counts received by the sink `name` so far.
    pub fn received_so_far(&self, name: &str) -> Vec<u64> {
        fs::read_to_string(self.dir.join(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }

    /// Bytes received per connection on `port` (the sink of [`FakeHost::new`]), once `n`
    /// connections have ended (or after a few seconds).
    pub fn received_n(&self, port: u16, n: usize) -> Vec<u64> {
        self.received_at(&port.to_string(), n)
    }

    /// Bytes received per connection on `port` so far.
    pub fn received(&self, port: u16) -> Vec<u64> {
        self.received_so_far(&port.to_string())
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        self.sinks.clear();
        let _ = Command::new("ip").args(["link", "del", &self.link]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// The `detection.exfiltration` record to destination port `port` (each test's sink has a
/// port of its own).
pub fn exfil_to(port: u16) -> impl Fn(&serde_json::Value) -> bool {
    move |e| {
        crate::is(e, "detection.exfiltration")
            && e.get("destination.port").and_then(serde_json::Value::as_u64) == Some(u64::from(port))
    }
}
