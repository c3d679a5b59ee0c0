//! The OTLP exporter against a real receiver (rotel), over gRPC and HTTP/protobuf, plain and
//! TLS (socat with OpenSSL in front of rotel), with a wrong certificate and an outage.
//!
//! The exporter is driven directly with sealed records, the way the delivery driver calls it
//! (retry on `Retryable`, from the same batch).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use mnsensor_tests::{
    TempDir,
    receivers::{Pki, Received, Rotel, TlsFront, deliver, free_port, sealed_records},
};
use sensor::deliver::{
    ExportError, Exporter as _,
    otlp::{Otlp, OtlpConfig},
    tls::TlsFiles,
};

const DELIVER_TIMEOUT: Duration = Duration::from_secs(30);

fn config(tls: TlsFiles) -> OtlpConfig {
    OtlpConfig { timeout_ms: Some(3000), tls, ..OtlpConfig::default() }
}

/// Waits until rotel printed `n` records.
fn wait_received(rotel: &Rotel, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + mnsensor_tests::scaled(Duration::from_secs(20));
    loop {
        let got = rotel.received();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Every record of `seqs` arrived, each exactly as the exporter maps it.
fn check(received: &[Received], seqs: std::ops::Range<u64>) {
    let mut by_seq: BTreeMap<u64, &Received> = BTreeMap::new();
    for r in received {
        by_seq.insert(r.seq(), r);
    }
    let sent = sealed_records(seqs);
    for s in &sent {
        let r = by_seq.get(&s.seq).unwrap_or_else(|| panic!("seq {} did not arrive", s.seq));
        let decision = s.seq % 3 == 0;
        assert_eq!(r.event_name, if decision { "policy.decision" } else { "file.open" }, "{r:?}");
        assert_eq!(r.time, u64::try_from(s.time_ns).unwrap(), "Timestamp: {r:?}");
        assert!(r.observed > r.time, "ObservedTimestamp: {r:?}");
        assert!(r.severity.contains(if decision { "(13)" } else { "(9)" }), "severity: {r:?}");
        assert_eq!(r.attr("process.pid"), Some("Int(4242)"));
        assert_eq!(r.attr("host.name"), Some("Str(fs1.example)"));
        assert_eq!(r.attr("event.name"), None, "event.name is the EventName field, not an attribute");
        assert_eq!(r.attr("time"), None);
        if decision {
            assert_eq!(r.attr("mnsensor.policy.operations"), Some("Slice(Str(read), Str(write))"));
            assert_eq!(r.attr("file.path"), Some("Str(/srv/share/マイナンバー/給与 2026.csv)"));
        } else {
            assert_eq!(r.attr("file.inode"), Some("Int(1234567)"));
            assert_eq!(r.attr("mnsensor.file.created"), Some("Bool(true)"));
            assert_eq!(r.attr("mnsensor.file.flags"), Some("Slice(Str(O_WRONLY), Str(O_APPEND))"));
        }
        assert_eq!(r.scope, "mnsensor 2", "scope name and schema version");
        assert_eq!(r.resource("service.name"), Some("Str(mnsensor)"));
        assert_eq!(r.resource("service.version"), Some(concat!("Str(", env!("CARGO_PKG_VERSION"), ")")));
        assert_eq!(r.resource("os.type"), Some("Str(linux)"));
        for key in ["service.instance.id", "host.name", "os.version"] {
            assert!(r.resource(key).is_some_and(|v| v.len() > 5), "resource {key} missing: {r:?}");
        }
        if std::path::Path::new("/etc/machine-id").exists() {
            assert!(r.resource("host.id").is_some(), "resource host.id missing: {r:?}");
        }
    }
}

#[test]
fn grpc_and_http_deliver_every_record_typed() {
    if mnsensor_tests::receivers::skipped_in_vm() {
        return;
    }
    let dir = TempDir::new("otlp-plain");
    let rotel = Rotel::start(dir.path(), "rotel.txt");
    let mut grpc =
        Otlp::open(&format!("otlp+grpc://127.0.0.1:{}", rotel.grpc), &config(TlsFiles::default())).unwrap();
    let mut http =
        Otlp::open(&format!("otlp+http://127.0.0.1:{}/v1/logs", rotel.http), &config(TlsFiles::default()))
            .unwrap();
    for chunk in sealed_records(1..301).chunks(100) {
        assert_eq!(deliver(&mut grpc, chunk, DELIVER_TIMEOUT), Vec::<String>::new());
    }
    for chunk in sealed_records(1001..1301).chunks(100) {
        assert_eq!(deliver(&mut http, chunk, DELIVER_TIMEOUT), Vec::<String>::new());
    }
    let got = wait_received(&rotel, 600);
    assert_eq!(got.len(), 600, "records received");
    check(&got, 1..301);
    check(&got, 1001..1301);
    rotel.stop();
}

#[test]
fn tls_with_ca_and_client_certificate() {
    if mnsensor_tests::receivers::skipped_in_vm() {
        return;
    }
    let dir = TempDir::new("otlp-tls");
    let pki = Pki::new(dir.path());
    let rotel = Rotel::start(dir.path(), "rotel.txt");
    // The receivers require a client certificate signed by the CA (mutual TLS).
    let grpcs = TlsFront::start(free_port(), rotel.grpc, &pki.server_cert, &pki.server_key, Some(&pki.ca));
    let https = TlsFront::start(free_port(), rotel.http, &pki.server_cert, &pki.server_key, Some(&pki.ca));
    let tls = TlsFiles {
        ca_file: Some(pki.ca.clone()),
        client_cert: Some(pki.client_cert.clone()),
        client_key: Some(pki.client_key.clone()),
    };
    let grpc_spec = format!("otlp+grpcs://127.0.0.1:{}", grpcs.port);
    let http_spec = format!("otlp+https://127.0.0.1:{}/v1/logs", https.port);

    // Without the client certificate the receiver refuses the handshake: retryable.
    let no_client = TlsFiles { ca_file: Some(pki.ca), ..TlsFiles::default() };
    let batch = sealed_records(1..11);
    for spec in [&grpc_spec, &http_spec] {
        let mut exp = Otlp::open(spec, &config(no_client.clone())).unwrap();
        match exp.send(&batch) {
            Err(ExportError::Retryable(_)) => {}
            other => panic!("{spec} without a client certificate: {other:?}"),
        }
    }
    assert_eq!(rotel.received().len(), 0, "nothing may arrive without the client certificate");

    let mut grpc = Otlp::open(&grpc_spec, &config(tls.clone())).unwrap();
    let mut http = Otlp::open(&http_spec, &config(tls)).unwrap();
    for chunk in sealed_records(1..201).chunks(50) {
        deliver(&mut grpc, chunk, DELIVER_TIMEOUT);
    }
    for chunk in sealed_records(1001..1201).chunks(50) {
        deliver(&mut http, chunk, DELIVER_TIMEOUT);
    }
    let got = wait_received(&rotel, 400);
    assert_eq!(got.len(), 400, "records received");
    check(&got, 1..201);
    check(&got, 1001..1201);
    grpcs.stop();
    https.stop();
    rotel.stop();
}

#[test]
fn wrong_certificate_gets_nothing_and_records_wait() {
    if mnsensor_tests::receivers::skipped_in_vm() {
        return;
    }
    let dir = TempDir::new("otlp-wrong-cert");
    let pki = Pki::new(dir.path());
    let rotel = Rotel::start(dir.path(), "rotel.txt");
    let (grpc_port, http_port) = (free_port(), free_port());
    // Receivers whose certificates the configured CA did not sign.
    let rogue_grpc = TlsFront::start(grpc_port, rotel.grpc, &pki.rogue_cert, &pki.rogue_key, None);
    let rogue_http = TlsFront::start(http_port, rotel.http, &pki.rogue_cert, &pki.rogue_key, None);
    let tls = TlsFiles { ca_file: Some(pki.ca.clone()), ..TlsFiles::default() };
    let mut grpc = Otlp::open(&format!("otlp+grpcs://127.0.0.1:{grpc_port}"), &config(tls.clone())).unwrap();
    let mut http = Otlp::open(&format!("otlp+https://127.0.0.1:{http_port}/v1/logs"), &config(tls)).unwrap();
    let (batch_g, batch_h) = (sealed_records(1..51), sealed_records(1001..1051));
    for (exp, batch) in [(&mut grpc, &batch_g), (&mut http, &batch_h)] {
        for _ in 0..3 {
            match exp.send(batch) {
                Err(ExportError::Retryable(e)) => {
                    assert!(e.to_lowercase().contains("certificate"), "the error names the certificate: {e}")
                }
                other => panic!("{}: a wrong certificate must be retryable: {other:?}", exp.spec()),
            }
        }
    }
    assert_eq!(rotel.received().len(), 0, "a receiver with a wrong certificate got records");
    rogue_grpc.stop();
    rogue_http.stop();
    // The right receivers come back on the same ports: the waiting batches go through.
    let good_grpc = TlsFront::start(grpc_port, rotel.grpc, &pki.server_cert, &pki.server_key, None);
    let good_http = TlsFront::start(http_port, rotel.http, &pki.server_cert, &pki.server_key, None);
    deliver(&mut grpc, &batch_g, DELIVER_TIMEOUT);
    deliver(&mut http, &batch_h, DELIVER_TIMEOUT);
    let got = wait_received(&rotel, 100);
    assert_eq!(got.len(), 100);
    check(&got, 1..51);
    check(&got, 1001..1051);
    good_grpc.stop();
    good_http.stop();
    rotel.stop();
}

/// The receiver stops for [`OUTAGE`] while a stream of batches is being delivered, then
/// comes back on the same ports: every record arrives, at most duplicated (same seq).
const OUTAGE: Duration = Duration::from_secs(3);

#[test]
fn receiver_outage_loses_nothing() {
    if mnsensor_tests::receivers::skipped_in_vm() {
        return;
    }
    for protocol in ["grpc", "http"] {
        let dir = TempDir::new(&format!("otlp-outage-{protocol}"));
        let rotel = Rotel::start(dir.path(), "before.txt");
        let (gp, hp) = (rotel.grpc, rotel.http);
        let spec = match protocol {
            "grpc" => format!("otlp+grpc://127.0.0.1:{gp}"),
            _ => format!("otlp+http://127.0.0.1:{hp}/v1/logs"),
        };
        let mut exp = Otlp::open(&spec, &config(TlsFiles::default())).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let sender = {
            let done = done.clone();
            thread::spawn(move || {
                // 40 batches of 25 records, one every 150 ms (6 s of stream).
                let mut failures = 0;
                for chunk in sealed_records(1..1001).chunks(25) {
                    failures += deliver(&mut exp, chunk, Duration::from_secs(60)).len();
                    thread::sleep(Duration::from_millis(150));
                }
                done.store(true, Ordering::SeqCst);
                failures
            })
        };
        thread::sleep(Duration::from_millis(1200));
        rotel.stop();
        let stopped = Instant::now();
        thread::sleep(OUTAGE);
        let rotel2 = Rotel::start_on(dir.path(), "after.txt", gp, hp);
        let outage = stopped.elapsed();
        let failures = sender.join().expect("sender thread");
        assert!(done.load(Ordering::SeqCst));
        assert!(failures > 0, "{protocol}: the outage ({outage:?}) caused no retry: it did not happen");
        let mut got = mnsensor_tests::receivers::parse_rotel(&dir.join("before.txt"));
        let deadline = Instant::now() + mnsensor_tests::scaled(Duration::from_secs(20));
        while rotel2.received().iter().map(Received::seq).max() < Some(1000) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        got.extend(rotel2.received());
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for r in &got {
            *counts.entry(r.seq()).or_default() += 1;
        }
        let missing: Vec<u64> = (1..1001).filter(|s| !counts.contains_key(s)).collect();
        assert!(missing.is_empty(), "{protocol}: lost across a {outage:?} outage: {missing:?}");
        let dups = counts.values().filter(|&&n| n > 1).count();
        // A duplicate is a whole batch resent after a reply was lost: at most one batch.
        assert!(dups <= 25, "{protocol}: {dups} duplicated records");
        println!("{protocol}: outage {outage:?}, {failures} failed attempts, {dups} duplicates");
        check(&got, 1..1001);
        rotel2.stop();
    }
}
