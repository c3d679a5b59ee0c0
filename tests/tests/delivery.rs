//! Delivery through the real sensor: OTLP to rotel across a receiver outage during which the
//! sensor is SIGKILLed and restarted; the heartbeat record and the metrics endpoint.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use mnsensor_tests::{
    Sensor, TempDir, get_str, get_u64, is, path_str,
    receivers::{Pki, Received, Rotel, Rsyslog, TlsFront, free_port},
    scaled,
    util::send_signal,
};
use serde_json::Value;

/// Opens and closes `file` for `how_long`, about `per_second` times a second (each open of a
/// protected file makes a `file.open` and a `file.close` record).
fn load(file: &Path, how_long: Duration, per_second: u32) {
    // Alternating between two protected files: the kernel folds a thread's repeated opens of
    // one file (docs/events.md, `reason: fold`), and this load is about record volume.
    let mut name = file.file_name().expect("a file name").to_os_string();
    name.push(".2");
    let other = file.with_file_name(name);
    fs::write(&other, "x").expect("create the second protected file");
    let files = [file, other.as_path()];
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < how_long {
        drop(fs::File::open(files[n as usize % 2]).expect("open protected file"));
        n += 1;
        let due = Duration::from_secs(1) * n / per_second;
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
    }
}

/// A test's directory: `state/`, `protected/<file>` (one byte) and `config.yaml` with `config`.
struct Setup {
    dir: TempDir,
    file: std::path::PathBuf,
    /// `--config`, `--state-dir`, `--protect` arguments.
    args: Vec<String>,
}

impl Setup {
    fn new(label: &str, file: &str, config: &str) -> Self {
        let dir = TempDir::new(label);
        let state = dir.mkdir("state");
        let protected = dir.mkdir("protected");
        let file = protected.join(file);
        fs::write(&file, "x").unwrap();
        let cfg = dir.join("config.yaml");
        fs::write(&cfg, config).unwrap();
        let args = [("--config", &cfg), ("--state-dir", &state), ("--protect", &protected)]
            .iter()
            .flat_map(|(flag, p)| [(*flag).to_owned(), path_str(p).to_owned()])
            .collect();
        Self { dir, file, args }
    }

    /// [`Self::args`] and `extra`, for [`Sensor::start`].
    fn start(&self, extra: &[&str]) -> Sensor {
        let args: Vec<&str> = self.args.iter().map(String::as_str).chain(extra.iter().copied()).collect();
        Sensor::start(&args)
    }
}

/// How long rotel is down while the sensor keeps writing (and is killed and restarted).
const OUTAGE: Duration = Duration::from_secs(6);

#[test]
fn otlp_survives_an_outage_and_a_sigkill() {
    if mnsensor_tests::receivers::skipped_in_vm() {
        return;
    }
    let setup = Setup::new(
        "delivery-outage",
        "マイナンバー一覧.csv",
        "heartbeat: {interval_s: 1}\notlp: {timeout_ms: 2000}\n",
    );
    let (dir, file) = (&setup.dir, &setup.file);
    let rotel = Rotel::start(dir.path(), "rotel-1.txt");
    let (gp, hp) = (rotel.grpc, rotel.http);
    let otlp = format!("otlp+grpc://127.0.0.1:{gp}");
    let args = ["--output", otlp.as_str()];

    let mut first = setup.start(&args);
    let start_seq = get_u64(first.start_event(), "mnsensor.seq");
    load(file, Duration::from_secs(1), 200);
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    while !rotel.received().iter().any(|r| r.event_name == "file.open") {
        assert!(Instant::now() < deadline, "no file.open reached rotel");
        thread::sleep(Duration::from_millis(50));
    }

    rotel.stop();
    let down = Instant::now();
    load(file, OUTAGE / 3, 200);
    // Killed during the outage: what it sealed waits in the ledger with the output's cursor.
    send_signal(first.pid(), libc::SIGKILL);
    let _ = first.events();
    drop(first);
    let mut second = setup.start(&args);
    load(file, OUTAGE / 3, 200);
    thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    // The backlog: everything sealed until the receiver returns.
    let backlog_end = second.events().last().map_or(0, |e| get_u64(e, "mnsensor.seq"));
    let delivered_before = mnsensor_tests::receivers::parse_rotel(&dir.join("rotel-1.txt"))
        .iter()
        .map(Received::seq)
        .max()
        .unwrap_or(0);
    let rotel = Rotel::start_on(dir.path(), "rotel-2.txt", gp, hp);
    let outage = down.elapsed();
    let back = Instant::now();
    let more = {
        let file = file.clone();
        thread::spawn(move || load(&file, Duration::from_secs(1), 200))
    };
    let deadline = Instant::now() + scaled(Duration::from_secs(30));
    let mut first_arrival = None;
    loop {
        let got = rotel.received();
        if first_arrival.is_none() && !got.is_empty() {
            first_arrival = Some(back.elapsed());
        }
        if got.iter().any(|r| r.seq() >= backlog_end) {
            break;
        }
        assert!(Instant::now() < deadline, "the backlog did not drain");
        thread::sleep(Duration::from_millis(100));
    }
    let backlog_time = back.elapsed();
    // The first retry after the receiver's return comes after the driver's backoff (≤ 5 s).
    let retry_wait = first_arrival.unwrap_or_default();
    more.join().expect("load thread");
    let stop = second.stop();
    let stop_seq = get_u64(&stop, "mnsensor.seq");

    let deadline = Instant::now() + scaled(Duration::from_secs(30));
    let received = loop {
        let mut all = mnsensor_tests::receivers::parse_rotel(&dir.join("rotel-1.txt"));
        all.extend(rotel.received());
        if all.iter().any(|r| r.seq() == stop_seq) || Instant::now() > deadline {
            break all;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let drained = back.elapsed();
    rotel.stop();

    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &received {
        *counts.entry(r.seq()).or_default() += 1;
    }
    let missing: Vec<u64> = (start_seq..=stop_seq).filter(|s| !counts.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records lost across a {outage:?} outage with a SIGKILL: {:?}",
        missing.len(),
        stop_seq - start_seq + 1,
        &missing[..missing.len().min(20)]
    );
    let dups: usize = counts.values().map(|n| n - 1).sum();
    let by_name = |name: &str| received.iter().filter(|r| r.event_name == name).count();
    assert_eq!(by_name("sensor.start"), 2, "both runs' sensor.start arrived");
    assert!(by_name("sensor.heartbeat") >= 3, "heartbeats arrived");
    assert!(by_name("file.open") > 200, "the load arrived");
    let starts: Vec<&Received> = received.iter().filter(|r| r.event_name == "sensor.start").collect();
    assert!(starts.iter().all(|r| r.attr("mnsensor.schema.version") == Some("Str(2)")), "{starts:?}");
    let backlog = backlog_end.saturating_sub(delivered_before);
    println!(
        "{} records (seq {start_seq}..={stop_seq}), outage {outage:?} with a SIGKILL, {dups} duplicates; \
         backlog of {backlog} records delivered {backlog_time:?} after the receiver came back: \
         first retry after {retry_wait:?}, then {:.0} records/s while 400 records/s kept coming; \
         everything by {drained:?}",
        stop_seq - start_seq + 1,
        backlog as f64 / (backlog_time - retry_wait).as_secs_f64().max(0.001)
    );
}

/// GET /metrics from 127.0.0.1:`port`.
fn scrape(port: u16) -> String {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics endpoint");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn heartbeat_at_its_interval_with_counters_and_metrics() {
    if mnsensor_tests::receivers::skipped_in_vm() {
        return;
    }
    let port = free_port();
    let config = format!("heartbeat: {{interval_s: 2}}\nmetrics: {{listen: \"127.0.0.1:{port}\"}}\n");
    let setup = Setup::new("delivery-heartbeat", "list.csv", &config);
    let mut sensor = setup.start(&[]);
    load(&setup.file, Duration::from_millis(500), 100);
    sensor.wait_until("three heartbeats", Duration::from_secs(15), |evs| {
        evs.iter().filter(|e| is(e, "sensor.heartbeat")).count() >= 3
    });
    let events = sensor.events().to_vec();
    let metrics = scrape(port);
    sensor.stop();

    let beats: Vec<(usize, &Value)> =
        events.iter().enumerate().filter(|(_, e)| is(e, "sensor.heartbeat")).collect();
    let time =
        |e: &Value| sensor_common::time::parse_rfc3339_ns(get_str(e, "time")).expect("time") as f64 / 1e9;
    for pair in beats.windows(2) {
        let gap = time(pair[1].1) - time(pair[0].1);
        assert!((1.5..=3.5).contains(&gap), "heartbeats {gap:.2} s apart, interval 2 s");
    }
    for (i, hb) in &beats {
        // Every record before the heartbeat, by name: what the heartbeat counted.
        let mut want: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &events[..*i] {
            *want.entry(get_str(e, "event.name")).or_default() += 1;
        }
        let want: Vec<String> = want.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let got: Vec<&str> =
            hb["mnsensor.heartbeat.counts"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(got, want, "heartbeat counts vs the records before it: {hb}");
        assert_eq!(get_u64(hb, "mnsensor.heartbeat.records"), *i as u64);
        assert_eq!(get_u64(hb, "mnsensor.events.lost"), 0);
        assert!(get_u64(hb, "mnsensor.ledger.bytes") > 0, "{hb}");
        assert_eq!(get_str(hb, "mnsensor.policy.hash"), get_str(&events[0], "mnsensor.policy.hash"));
        let outputs = hb["mnsensor.outputs"].as_array().expect("mnsensor.outputs");
        assert!(outputs.iter().any(|o| o.as_str().is_some_and(|o| o.starts_with("jsonl:"))), "{hb}");
        assert_eq!(hb["mnsensor.lag.records"].as_array().map(Vec::len), Some(outputs.len()));
        let backends = hb["mnsensor.heartbeat.backends"].as_array().expect("backends");
        assert!(backends.iter().any(|b| b.as_str().is_some_and(|b| b.starts_with("file="))), "{hb}");
    }
    assert!(beats.len() >= 3);
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    assert!(metrics.contains("mnsensor_records_total{event=\"sensor.start\"} 1\n"), "{metrics}");
    assert!(metrics.contains("mnsensor_records_total{event=\"file.open\"}"), "{metrics}");
    assert!(metrics.contains("\nmnsensor_ledger_bytes "), "{metrics}");
    assert!(metrics.contains("mnsensor_output_lag_records{output=\"jsonl:"), "{metrics}");
    assert!(metrics.contains("\nmnsensor_decision_latency_seconds_bucket{le=\"+Inf\"} "), "{metrics}");
}

#[test]
fn wrong_certificate_keeps_records_in_the_ledger_until_the_right_receiver() {
    if mnsensor_tests::receivers::skipped_in_vm() {
        return;
    }
    let pki_dir = TempDir::new("delivery-pki");
    let pki = Pki::new(pki_dir.path());
    let config = format!(
        "heartbeat: {{interval_s: 1}}\notlp: {{timeout_ms: 2000, tls: {{ca_file: {}}}}}\n",
        path_str(&pki.ca)
    );
    let setup = Setup::new("delivery-wrong-cert", "list.csv", &config);
    let rotel = Rotel::start(setup.dir.path(), "rotel.txt");
    let port = free_port();
    let rogue = TlsFront::start(port, rotel.grpc, &pki.rogue_cert, &pki.rogue_key, None);
    let otlp = format!("otlp+grpcs://127.0.0.1:{port}");
    let mut sensor = setup.start(&["--output", &otlp]);
    let start_seq = get_u64(sensor.start_event(), "mnsensor.seq");
    load(&setup.file, Duration::from_secs(1), 100);
    // The sensor says why the output fails, and the receiver behind the wrong certificate
    // gets nothing.
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    while !sensor.stderr().contains("Output failing") {
        assert!(Instant::now() < deadline, "no error about the failing output: {}", sensor.stderr());
        thread::sleep(Duration::from_millis(50));
    }
    let stderr = sensor.stderr();
    assert!(stderr.to_lowercase().contains("certificate"), "the error names the certificate: {stderr}");
    thread::sleep(Duration::from_secs(2));
    assert_eq!(rotel.received().len(), 0, "records went through a receiver the CA did not sign");
    rogue.stop();
    let good = TlsFront::start(port, rotel.grpc, &pki.server_cert, &pki.server_key, None);
    load(&setup.file, Duration::from_millis(500), 100);
    let stop = sensor.stop();
    let stop_seq = get_u64(&stop, "mnsensor.seq");
    let deadline = Instant::now() + scaled(Duration::from_secs(30));
    while !rotel.received().iter().any(|r| r.seq() == stop_seq) {
        assert!(
            Instant::now() < deadline,
            "the waiting records did not arrive after the right receiver came back"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let seqs: std::collections::BTreeSet<u64> = rotel.received().iter().map(Received::seq).collect();
    let missing: Vec<u64> = (start_seq..=stop_seq).filter(|s| !seqs.contains(s)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    good.stop();
    rotel.stop();
}

#[test]
fn syslog_over_tls_through_the_sensor() {
    if mnsensor_tests::receivers::skipped_in_vm() {
        return;
    }
    let pki_dir = TempDir::new("delivery-syslog-pki");
    let pki = Pki::new(pki_dir.path());
    let config = format!("syslog: {{tls: {{ca_file: {}}}}}\n", path_str(&pki.ca));
    let setup = Setup::new("delivery-syslog", "list.csv", &config);
    let rsyslog = Rsyslog::start(setup.dir.path(), &pki);
    let spec = format!("syslog+tls://127.0.0.1:{}", rsyslog.port);
    let mut sensor = setup.start(&["--output", &spec]);
    load(&setup.file, Duration::from_millis(500), 100);
    sensor.stop();
    let written: Vec<Value> = sensor.events().to_vec();
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    let raw = loop {
        let raw = fs::read_to_string(&rsyslog.raw).unwrap_or_default();
        if raw.lines().count() >= written.len() || Instant::now() > deadline {
            break raw;
        }
        thread::sleep(Duration::from_millis(100));
    };
    rsyslog.stop();
    // Every record the sensor wrote to its file arrived, in order, as the message of one
    // RFC 5424 message whose MSGID is the event name.
    let lines: Vec<&str> = raw.lines().collect();
    assert_eq!(lines.len(), written.len(), "messages received: {raw}");
    for (line, rec) in lines.iter().zip(&written) {
        let name = get_str(rec, "event.name");
        let json = &line[line.find('{').expect("JSON message")..];
        assert_eq!(&serde_json::from_str::<Value>(json).unwrap(), rec, "{line}");
        let head: Vec<&str> = line[..line.find('{').unwrap()].split(' ').collect();
        assert_eq!(head[3..7], ["mnsensor", &sensor.pid().to_string(), name, "-"], "{line}");
    }
}
