//! The syslog exporter against rsyslog receiving RFC 5425 (syslog over TLS with octet
//! counting), verifying rsyslog's certificate against the configured CA, and over plain TCP.

use std::{
    fs, thread,
    time::{Duration, Instant},
};

use mnsensor_tests::{
    TempDir,
    receivers::{FIELD_SEP, Pki, Rsyslog, deliver, sealed_records},
    scaled,
};
use sensor::deliver::{
    ExportError, Exporter as _,
    syslog::{Syslog, SyslogConfig},
    tls::TlsFiles,
};
use serde_json::Value;

fn lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rsyslog_receives_rfc5425_over_tls_and_octet_counted_tcp() {
    if mnsensor_tests::receivers::skipped_in_vm() {
        return;
    }
    let dir = TempDir::new("syslog-tls");
    let pki = Pki::new(dir.path());
    let rsyslog = Rsyslog::start(dir.path(), &pki);
    let spec = format!("syslog+tls://127.0.0.1:{}", rsyslog.port);

    // A CA that did not sign rsyslog's certificate: nothing is sent, and the error says why.
    let rogue = SyslogConfig {
        tls: TlsFiles { ca_file: Some(pki.rogue_ca.clone()), ..TlsFiles::default() },
        timeout_ms: 3000,
        ..SyslogConfig::default()
    };
    let mut wrong = Syslog::open(&spec, &rogue).unwrap();
    match wrong.send(&sealed_records(1..4)) {
        Err(ExportError::Retryable(e)) => assert!(e.to_lowercase().contains("certificate"), "{e}"),
        other => panic!("a receiver the CA did not sign must be retryable: {other:?}"),
    }

    let config = SyslogConfig {
        tls: TlsFiles { ca_file: Some(pki.ca), ..TlsFiles::default() },
        timeout_ms: 3000,
        ..SyslogConfig::default()
    };
    let mut exp = Syslog::open(&spec, &config).unwrap();
    let sent = sealed_records(1..301);
    for chunk in sent.chunks(60) {
        assert!(deliver(&mut exp, chunk, Duration::from_secs(30)).is_empty());
    }
    let raw = lines(&rsyslog.raw, sent.len());
    assert_eq!(raw.len(), sent.len(), "messages received (the wrong-CA batch must not be among them)");
    // Plain TCP (RFC 6587 octet counting) to the same rsyslog.
    let mut tcp = Syslog::open(&format!("syslog+tcp://127.0.0.1:{}", rsyslog.tcp_port), &config).unwrap();
    let sent_tcp = sealed_records(1001..1101);
    assert!(deliver(&mut tcp, &sent_tcp, Duration::from_secs(30)).is_empty());
    let all: Vec<_> = sent.iter().chain(&sent_tcp).collect();
    let raw = lines(&rsyslog.raw, all.len());
    let fields = lines(&rsyslog.fields, all.len());
    rsyslog.stop();
    assert_eq!(raw.len(), all.len(), "messages received over TLS then TCP");
    let pid = std::process::id().to_string();
    for ((rec, raw), fields) in all.iter().zip(&raw).zip(&fields) {
        let json = std::str::from_utf8(&rec.line).unwrap();
        let v: Value = serde_json::from_str(json).unwrap();
        let name = v["event.name"].as_str().unwrap();
        // Octet counting delimited every message exactly: the raw message is the whole
        // RFC 5424 message, no count prefix and nothing of the next message.
        let pri = if name == "policy.decision" { 84 } else { 86 };
        assert!(raw.starts_with(&format!("<{pri}>1 2026-11-22T")), "{raw}");
        assert!(raw.ends_with(json), "the message is the record's JSON: {raw}");
        let f: Vec<&str> = fields.split(FIELD_SEP).collect();
        assert_eq!(f.len(), 8, "{fields}");
        assert_eq!(f[..6], [&pri.to_string(), "fs1.example", "mnsensor", &pid, name, "-"], "{fields}");
        let msg: Value = serde_json::from_str(f[7].trim_start()).unwrap_or_else(|e| panic!("{e}: {}", f[7]));
        assert_eq!(msg, v, "rsyslog's MSG is the record");
    }
}

/// A receiver that closed the connection (a restart, an idle timeout) is noticed before the
/// next batch, which then goes over a new connection instead of into the closed one.
#[test]
fn a_closed_connection_is_replaced_before_the_next_batch() {
    use std::{io::Read as _, net::TcpListener};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let accept = || {
        let deadline = Instant::now() + scaled(Duration::from_secs(10));
        loop {
            match listener.accept() {
                Ok((s, _)) => return Some(s),
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Err(_) => return None,
            }
        }
    };
    let read_all = |mut s: std::net::TcpStream| {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        String::from_utf8(got).unwrap()
    };
    let mut exp = Syslog::open(&format!("syslog+tcp://127.0.0.1:{port}"), &SyslogConfig::default()).unwrap();
    exp.send(&sealed_records(1..6)).unwrap();
    let first = accept().expect("first connection");
    let text = read_all(first.try_clone().unwrap());
    assert!(text.contains("\"mnsensor.seq\":5,"), "{text}");
    drop(first);
    thread::sleep(Duration::from_millis(100));
    exp.send(&sealed_records(6..11)).unwrap();
    let second = accept().expect("the batch after the close went over a new connection");
    let text = read_all(second);
    for seq in 6..11 {
        assert!(text.contains(&format!("\"mnsensor.seq\":{seq},")), "seq {seq} missing: {text}");
    }
}
