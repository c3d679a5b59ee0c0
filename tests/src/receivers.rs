//! Third-party receivers for the delivery tests, installed by `cargo xtask setup`: rotel
//! (an OTLP collector from PyPI that prints what it receives), socat as its TLS front
//! (OpenSSL), rsyslog with its OpenSSL driver; test certificates made with the openssl CLI.
//!
//! Everything listens on 127.0.0.1, on ports picked when it starts, and is ended by its PID.

use std::{
    fs,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::util::{
    COMMAND_TIMEOUT, ChildGuard, POLL_INTERVAL, find_tool, path_str, run_capture, scaled, send_signal,
    workspace_root,
};

/// True inside the minimal test VM, which has none of the receivers (the delivery tests do
/// not depend on the kernel and run on the host): the caller returns.
pub fn skipped_in_vm() -> bool {
    if crate::util::in_vm() {
        eprintln!("skipped in the test VM: rotel, socat, rsyslog and openssl are host tools");
    }
    crate::util::in_vm()
}

/// How long a receiver may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);

/// A port nobody listens on right now (the kernel's pick for an ephemeral bind).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + scaled(LISTEN_TIMEOUT);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} does not listen on 127.0.0.1:{port}");
        thread::sleep(POLL_INTERVAL);
    }
}

/// Test certificates: a CA and a server certificate for 127.0.0.1/localhost signed by it,
/// a client certificate signed by it, and a "rogue" CA with its own server certificate.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_ca: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

impl Pki {
    /// Generates everything in `dir` with `openssl`.
    pub fn new(dir: &Path) -> Self {
        let openssl = find_tool("openssl");
        let run = |args: &[&str]| {
            let out =
                run_capture(Command::new(&openssl).args(args).current_dir(dir), scaled(COMMAND_TIMEOUT));
            assert!(out.status.success(), "openssl {args:?} failed: {}", out.stderr);
        };
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        for ca in ["ca", "rogue-ca"] {
            let (k, c, s) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN=mnsensor test {ca}"));
            let mut args = vec!["req", "-x509"];
            args.extend(key);
            args.extend(["-keyout", &k, "-out", &c, "-days", "2", "-subj", &s]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            run(&args);
        }
        fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("write client.ext");
        for (name, ca, ext) in [
            ("server", "ca", "server.ext"),
            ("rogue", "rogue-ca", "server.ext"),
            ("client", "ca", "client.ext"),
        ] {
            let (k, csr, c, s) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("/CN=mnsensor test {name}"),
            );
            let mut args = vec!["req"];
            args.extend(key);
            args.extend(["-keyout", &k, "-out", &csr, "-subj", &s]);
            run(&args);
            let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &c,
                "-days",
                "2",
                "-extfile",
                ext,
            ]);
        }
        Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            rogue_ca: dir.join("rogue-ca.pem"),
            rogue_cert: dir.join("rogue.pem"),
            rogue_key: dir.join("rogue.key"),
        }
    }
}

/// The rotel agent installed by `cargo xtask setup` (`MNSENSOR_ROTEL` overrides).
pub fn rotel_bin() -> PathBuf {
    let bin = std::env::var_os("MNSENSOR_ROTEL").map_or_else(
        || {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| workspace_root().join("target"), |t| workspace_root().join(t));
            target.join("receivers/bin/rotel-agent")
        },
        PathBuf::from,
    );
    assert!(bin.exists(), "rotel not found at {} (run `cargo xtask setup`)", bin.display());
    bin
}

/// A running rotel: OTLP gRPC and HTTP receivers; what it receives is printed to `dump`.
pub struct Rotel {
    child: ChildGuard,
    pub grpc: u16,
    pub http: u16,
    pub dump: PathBuf,
}

impl Rotel {
    /// Starts rotel on new ports, printing to `<dir>/<name>`.
    pub fn start(dir: &Path, name: &str) -> Self {
        Self::start_on(dir, name, free_port(), free_port())
    }

    /// Starts rotel on the given ports (a restart after an outage).
    pub fn start_on(dir: &Path, name: &str, grpc: u16, http: u16) -> Self {
        let dump = dir.join(name);
        let out = fs::File::create(&dump).expect("create rotel dump");
        let child = ChildGuard::spawn(
            Command::new(rotel_bin())
                .args(["start", "--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
                .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
                .args(["--exporter", "blackhole", "--debug-log", "logs", "--debug-log-verbosity", "detailed"])
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup"))
                .stderr(out),
        );
        wait_listening(grpc, "rotel (gRPC)");
        wait_listening(http, "rotel (HTTP)");
        Self { child, grpc, http, dump }
    }

    /// Stops rotel with SIGTERM (it prints what it received first) and waits for it.
    pub fn stop(mut self) {
        send_signal(self.child.pid(), libc::SIGTERM);
        self.child.wait_timeout(scaled(Duration::from_secs(20)));
    }

    /// The log records printed so far.
    pub fn received(&self) -> Vec<Received> {
        parse_rotel(&self.dump)
    }
}

/// One LogRecord as rotel printed it. Values keep rotel's type tags: `Int(42)`,
/// `Str(x)`, `Bool(true)`, `Slice(Str(a), Str(b))`.
#[derive(Clone, Debug, Default)]
pub struct Received {
    pub resource: Vec<(String, String)>,
    /// `NAME VERSION` of the instrumentation scope.
    pub scope: String,
    pub event_name: String,
    pub time: u64,
    pub observed: u64,
    pub severity: String,
    pub attrs: Vec<(String, String)>,
}

impl Received {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn resource(&self, key: &str) -> Option<&str> {
        self.resource.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `mnsensor.seq`, which must be an `Int`.
    pub fn seq(&self) -> u64 {
        let v = self.attr("mnsensor.seq").unwrap_or_else(|| panic!("no mnsensor.seq: {self:?}"));
        let n = v.strip_prefix("Int(").and_then(|v| v.strip_suffix(')'));
        n.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("mnsensor.seq is not an Int: {v}"))
    }
}

/// Parses rotel's `--debug-log-verbosity detailed` text (ANSI colours stripped).
pub fn parse_rotel(path: &Path) -> Vec<Received> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<Received> = Vec::new();
    let (mut resource, mut scope) = (Vec::new(), String::new());
    #[derive(PartialEq)]
    enum In {
        Nothing,
        Resource,
        Record,
    }
    let mut list = In::Nothing;
    for raw in text.lines() {
        let line = strip_ansi(raw);
        let header =
            ["LogRecord #", "ResourceLog #", "ScopeLogs", "InstrumentationScope ", "Resource SchemaURL"]
                .iter()
                .any(|h| line.starts_with(h))
                || line.trim_start().starts_with("Trace ID");
        let last = match list {
            In::Resource => resource.last_mut(),
            In::Record => out.last_mut().and_then(|r| r.attrs.last_mut()),
            In::Nothing => None,
        };
        if let (Some((_, value)), false, false) = (last, header, line.trim_start().starts_with("-> ")) {
            // A value with a newline (a command line, say) goes on over several lines.
            value.push('\n');
            value.push_str(&line);
            continue;
        }
        if let Some(kv) = line.trim_start().strip_prefix("-> ") {
            let (k, v) = kv.split_once(": ").unwrap_or((kv, ""));
            let pair = (k.to_owned(), v.to_owned());
            match list {
                In::Resource => resource.push(pair),
                In::Record => out.last_mut().expect("record").attrs.push(pair),
                In::Nothing => {}
            }
            continue;
        }
        list = In::Nothing;
        if line.starts_with("ResourceLog #") {
            resource = Vec::new();
        } else if line == "Resource attributes:" {
            list = In::Resource;
        } else if let Some(s) = line.strip_prefix("InstrumentationScope ") {
            scope = s.to_owned();
        } else if line.starts_with("LogRecord #") {
            out.push(Received { resource: resource.clone(), scope: scope.clone(), ..Received::default() });
        } else if let Some(r) = out.last_mut() {
            if line == "Attributes:" {
                list = In::Record;
            } else if let Some(v) = line.strip_prefix("Timestamp: ") {
                r.time = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("ObservedTimestamp: ") {
                r.observed = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("EventName: ") {
                r.event_name = v.to_owned();
            } else if let Some(v) = line.strip_prefix("SeverityNumber: ") {
                r.severity = v.to_owned();
            }
        }
    }
    out
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A TLS front (socat with OpenSSL): accepts TLS on 127.0.0.1:`port` with `cert`/`key`
/// (and requires a client certificate signed by `client_ca` when set), and forwards the
/// plain bytes to 127.0.0.1:`to`.
pub struct TlsFront {
    child: ChildGuard,
    pub port: u16,
}

impl TlsFront {
    pub fn start(port: u16, to: u16, cert: &Path, key: &Path, client_ca: Option<&Path>) -> Self {
        let verify = match client_ca {
            Some(ca) => format!("verify=1,cafile={}", path_str(ca)),
            None => "verify=0".to_owned(),
        };
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},{verify}",
            path_str(cert),
            path_str(key)
        );
        let child = ChildGuard::spawn(
            Command::new(find_tool("socat"))
                .args([listen, format!("TCP:127.0.0.1:{to}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_listening(port, "socat TLS front");
        Self { child, port }
    }

    /// Stops the front (SIGTERM; socat's per-connection children go with their sockets).
    pub fn stop(mut self) {
        send_signal(self.child.pid(), libc::SIGTERM);
        self.child.wait_timeout(scaled(Duration::from_secs(10)));
    }
}

/// rsyslog receiving RFC 5425 (syslog over TLS, octet counting) on 127.0.0.1:`port` and
/// plain syslog over TCP on 127.0.0.1:`tcp_port`, writing each message's raw text to
/// `raw.log` and its parsed fields to `fields.log`.
pub struct Rsyslog {
    child: ChildGuard,
    pub port: u16,
    pub tcp_port: u16,
    pub raw: PathBuf,
    pub fields: PathBuf,
}

/// Separator of the fields in `fields.log`.
pub const FIELD_SEP: &str = "\u{1f}";

impl Rsyslog {
    pub fn start(dir: &Path, pki: &Pki) -> Self {
        let (port, tcp_port) = (free_port(), free_port());
        let (raw, fields) = (dir.join("raw.log"), dir.join("fields.log"));
        let work = dir.join("rsyslog-work");
        fs::create_dir_all(&work).expect("mkdir rsyslog work dir");
        let conf = dir.join("rsyslog.conf");
        fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}" DefaultNetstreamDriver="ossl"
       DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}"
       DefaultNetstreamDriverKeyFile="{key}" maxMessageSize="64k")
module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
template(name="raw" type="string" string="%rawmsg%\n")
template(name="fields" type="string"
         string="%pri%{s}%hostname%{s}%app-name%{s}%procid%{s}%msgid%{s}%structured-data%{s}%timereported:::date-rfc3339%{s}%msg%\n")
ruleset(name="remote") {{
  action(type="omfile" file="{raw}" template="raw")
  action(type="omfile" file="{fields}" template="fields")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="remote")
input(type="imtcp" address="127.0.0.1" port="{tcp_port}" ruleset="remote"
      StreamDriver.Name="ptcp" StreamDriver.Mode="0")
"#,
                work = path_str(&work),
                ca = path_str(&pki.ca),
                cert = path_str(&pki.server_cert),
                key = path_str(&pki.server_key),
                raw = path_str(&raw),
                fields = path_str(&fields),
                s = FIELD_SEP,
            ),
        )
        .expect("write rsyslog.conf");
        let pid = dir.join("rsyslogd.pid");
        let log = fs::File::create(dir.join("rsyslogd.out")).expect("create rsyslogd.out");
        let child = ChildGuard::spawn(
            Command::new(find_tool("rsyslogd"))
                .args(["-n", "-f", path_str(&conf), "-i", path_str(&pid)])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup"))
                .stderr(log),
        );
        wait_listening(port, "rsyslogd");
        wait_listening(tcp_port, "rsyslogd (plain TCP)");
        Self { child, port, tcp_port, raw, fields }
    }

    /// Stops rsyslog (SIGTERM: it writes out what it holds) and waits for it.
    pub fn stop(mut self) {
        send_signal(self.child.pid(), libc::SIGTERM);
        self.child.wait_timeout(scaled(Duration::from_secs(20)));
    }
}

/// Sealed records with sequence numbers `seqs`, as the daemon writes them: every third a
/// `policy.decision` (deny, an array of operations, a Japanese file name), the others
/// `file.open` records (integers, a boolean, an array).
pub fn sealed_records(seqs: std::ops::Range<u64>) -> Vec<sensor::deliver::Sealed> {
    use sensor::event::{Record, attr};
    let base = 1_795_325_791_000_000_000_i128;
    seqs.map(|seq| {
        let time_ns = base + i128::from(seq) * 1_000_000;
        let rec = if seq % 3 == 0 {
            let mut r = Record::new(sensor::event::Name::PolicyDecision, time_ns);
            r.set(attr::PROCESS_PID, 4242)
                .set(attr::FILE_PATH, "/srv/share/マイナンバー/給与 2026.csv")
                .set(attr::DECISION, "deny")
                .set(attr::POLICY_OPERATIONS, vec!["read", "write"]);
            r
        } else {
            let mut r = Record::new(sensor::event::Name::FileOpen, time_ns);
            r.set(attr::PROCESS_PID, 4242)
                .set(attr::FILE_PATH, "/srv/share/list.csv")
                .set(attr::FILE_INODE, 1_234_567)
                .set(attr::FILE_CREATED, true)
                .set(attr::FILE_FLAGS, vec!["O_WRONLY", "O_APPEND"]);
            r
        };
        sensor::deliver::Sealed { seq, time_ns, line: rec.to_json(seq, "fs1.example").into_bytes() }
    })
    .collect()
}

/// Sends `batch` as the delivery driver does: again after every retryable failure (with a
/// short pause) until `timeout`; panics on a permanent failure or at the deadline. Returns
/// the failures seen before success.
pub fn deliver(
    exporter: &mut dyn sensor::deliver::Exporter,
    batch: &[sensor::deliver::Sealed],
    timeout: Duration,
) -> Vec<String> {
    use sensor::deliver::ExportError;
    let deadline = Instant::now() + scaled(timeout);
    let mut failures = Vec::new();
    loop {
        match exporter.send(batch) {
            Ok(()) => return failures,
            Err(ExportError::Retryable(e)) => failures.push(e),
            Err(ExportError::Permanent(e)) => panic!("{}: permanent failure: {e}", exporter.spec()),
        }
        assert!(Instant::now() < deadline, "{}: not delivered in time: {failures:?}", exporter.spec());
        thread::sleep(Duration::from_millis(100));
    }
}
