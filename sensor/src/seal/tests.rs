//! Ledger round trips: write, reopen after a torn tail, verify, and each kind of tampering.
use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    frame::{self, Kind, Parsed},
    key,
    ledger::{self, Ledger, Settings},
    reader::Reader,
    verify::{self, Finding, exit},
};

fn settings() -> Settings {
    Settings {
        segment_bytes: 4096,
        max_bytes: 1 << 30,
        fsync_interval: Duration::from_millis(50),
        checkpoint_records: 10,
        checkpoint_interval: Duration::from_secs(3600),
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mnsensor-ledger-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `n` records and stops cleanly.
fn write(dir: &Path, n: u64) {
    let (mut l, _) = Ledger::open(dir, settings(), key::load_or_create(dir).unwrap()).unwrap();
    for i in 0..n {
        let body = format!(
            "{{\"event.name\":\"t\",\"mnsensor.seq\":{},\"pad\":\"{}\"}}",
            l.next_seq(),
            "x".repeat(60)
        );
        l.append(1_000 + i as i64, body.as_bytes());
        if i % 7 == 0 {
            l.flush();
        }
    }
    l.close();
}

fn check(dir: &Path) -> verify::Report {
    let public = key::load(dir).unwrap().verifying_key();
    verify::verify(dir, &public).unwrap()
}

/// Frames of a segment: (offset, length, kind, seq).
fn frames(path: &Path) -> Vec<(usize, usize, Kind, u64)> {
    let b = fs::read(path).unwrap();
    let mut at = frame::SEGMENT_HEAD;
    let mut out = Vec::new();
    while let Parsed::Frame(f) = frame::parse(&b[at..]) {
        out.push((at, f.len, f.kind, f.seq));
        at += f.len;
    }
    out
}

fn first_segment(dir: &Path) -> PathBuf {
    ledger::segments(&ledger::dir_of(dir)).unwrap()[0].1.clone()
}

#[test]
fn intact_ledger_verifies_and_reads_back() {
    let dir = temp("ok");
    write(&dir, 100);
    let r = check(&dir);
    assert_eq!(r.exit_code(), exit::OK, "{r}");
    assert_eq!((r.records, r.first_seq, r.last_seq), (100, Some(0), Some(99)));
    assert!(matches!(r.last_checkpoint, Some((99, _, true))), "{r}");
    assert!(ledger::segments(&ledger::dir_of(&dir)).unwrap().len() > 1, "several segments");
    let mut reader = Reader::new(&ledger::dir_of(&dir), 42);
    let seqs: Vec<u64> = std::iter::from_fn(|| reader.next_entry().unwrap()).map(|e| e.seq).collect();
    assert_eq!(seqs, (42..100).collect::<Vec<_>>());
    // Sequence numbers continue across a restart.
    write(&dir, 5);
    let r = check(&dir);
    assert_eq!((r.exit_code(), r.last_seq), (exit::OK, Some(104)), "{r}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_reader_far_behind_holds_a_chunk_not_the_segment() {
    let dir = temp("behind");
    let s = Settings { segment_bytes: 64 << 20, ..settings() };
    let (mut l, _) = Ledger::open(&dir, s, key::load_or_create(&dir).unwrap()).unwrap();
    // 8 MiB of ordinary records, one record longer than a read chunk, then more.
    let body = |seq: u64, pad: usize| format!("{{\"mnsensor.seq\":{seq},\"pad\":\"{}\"}}", "y".repeat(pad));
    let mut want = Vec::new();
    for i in 0..4200u64 {
        let pad = if i == 2000 { 600 << 10 } else { 2000 };
        let b = body(l.next_seq(), pad);
        want.push(b.len());
        l.append(1, b.as_bytes());
    }
    l.flush();
    let mut reader = Reader::new(&ledger::dir_of(&dir), 0);
    let mut most = 0;
    let mut got = Vec::new();
    while let Some(e) = reader.next_entry().unwrap() {
        assert_eq!(e.seq, got.len() as u64);
        assert!(e.body.starts_with(format!("{{\"mnsensor.seq\":{}", e.seq).as_bytes()));
        got.push(e.body.len());
        most = most.max(reader.held());
    }
    l.close();
    assert_eq!(got, want, "every record, in order, whole");
    // One chunk plus the long record (which needs room for itself), never the 9 MiB segment.
    assert!(most < 2 << 20, "the reader held {most} bytes");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn torn_tail_is_cut_at_open_and_reported() {
    let dir = temp("torn");
    write(&dir, 3);
    let seg = first_segment(&dir);
    let len = fs::metadata(&seg).unwrap().len();
    let mut b = fs::read(&seg).unwrap();
    b.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
    fs::write(&seg, &b).unwrap();
    let r = check(&dir);
    assert_eq!(r.exit_code(), exit::TRUNCATED, "{r}");
    let (l, rec) = Ledger::open(&dir, settings(), key::load(&dir).unwrap()).unwrap();
    assert_eq!(rec.cut.as_ref().map(|c| c.0), Some(6));
    assert_eq!((rec.last_seq, rec.clean, l.next_seq()), (Some(2), true, 3));
    assert_eq!(fs::metadata(&seg).unwrap().len(), len);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn each_kind_of_tampering_is_named() {
    type Tamper = fn(&Path);
    let cases: [(&str, Tamper); 5] = [
        ("modified", |seg| {
            let f = frames(seg);
            let mut b = fs::read(seg).unwrap();
            b[f[3].0 + frame::FRAME_HEAD + 5] ^= 0x20;
            fs::write(seg, b).unwrap();
        }),
        ("deleted", |seg| {
            let f = frames(seg);
            let mut b = fs::read(seg).unwrap();
            b.drain(f[2].0..f[2].0 + f[2].1);
            fs::write(seg, b).unwrap();
        }),
        ("reordered", |seg| {
            let f = frames(seg);
            let b = fs::read(seg).unwrap();
            let mut out = b[..f[2].0].to_vec();
            out.extend_from_slice(&b[f[3].0..f[3].0 + f[3].1]);
            out.extend_from_slice(&b[f[2].0..f[2].0 + f[2].1]);
            out.extend_from_slice(&b[f[3].0 + f[3].1..]);
            fs::write(seg, out).unwrap();
        }),
        ("truncated", |seg| {
            let len = fs::metadata(seg).unwrap().len();
            fs::OpenOptions::new().write(true).open(seg).unwrap().set_len(len - 10).unwrap();
        }),
        ("forged", |seg| {
            // Replace record 1's body and recompute every CRC and hash after it.
            let b = fs::read(seg).unwrap();
            let (_, mut prev) = frame::parse_segment_head(&b).unwrap();
            let mut out = b[..frame::SEGMENT_HEAD].to_vec();
            let mut at = frame::SEGMENT_HEAD;
            while let Parsed::Frame(f) = frame::parse(&b[at..]) {
                let body = if f.kind == Kind::Record && f.seq == 1 {
                    b"{\"forged\":true}".to_vec()
                } else {
                    f.body.to_vec()
                };
                prev = frame::encode(&mut out, &prev, f.kind, f.seq, f.time_ns, &body);
                at += f.len;
            }
            fs::write(seg, out).unwrap();
        }),
    ];
    for (name, tamper) in cases {
        let dir = temp(name);
        write(&dir, 30);
        let segs = ledger::segments(&ledger::dir_of(&dir)).unwrap();
        // The last segment for truncation (a torn tail), the first otherwise.
        let seg = if name == "truncated" { segs.last().unwrap().1.clone() } else { segs[0].1.clone() };
        tamper(&seg);
        let r = check(&dir);
        let text = r.to_string();
        assert!(text.starts_with(name), "{name}: {text}");
        let want = if name == "truncated" { exit::TRUNCATED } else { exit::TAMPERED };
        assert_eq!(r.exit_code(), want, "{name}: {text}");
        match (name, &r.findings[0]) {
            ("modified", Finding::Modified { seq, .. }) => assert_eq!(*seq, 3),
            ("deleted", Finding::Deleted { first, last, .. }) => assert_eq!((*first, *last), (2, 2)),
            ("reordered", Finding::Reordered { first, second, .. }) => assert_eq!((*first, *second), (3, 2)),
            ("truncated", Finding::Truncated { last_segment, .. }) => assert!(last_segment),
            ("forged", Finding::Forged { after_seq, .. }) => assert_eq!(*after_seq, None),
            (_, other) => panic!("{name}: {other:?}"),
        }
        fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn full_ledger_removes_delivered_segments_first_then_names_what_it_drops() {
    let dir = temp("full");
    let s = Settings { max_bytes: 3 * 4096, ..settings() };
    let (mut l, _) = Ledger::open(&dir, s, key::load_or_create(&dir).unwrap()).unwrap();
    let cursor = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    l.shared().register(cursor.clone());
    let body = [b'x'; 200];
    for _ in 0..100 {
        l.append(1, &body);
        l.flush();
        // The output keeps up for the first 40 records, then stalls.
        cursor.store(l.next_seq().min(40), std::sync::atomic::Ordering::Release);
    }
    let dropped = l.take_dropped();
    assert!(!dropped.is_empty());
    for d in &dropped {
        let ledger::Dropped::Pruned { first, last } = d else { panic!("{d:?}") };
        assert!(*first >= 40 && first <= last, "{d:?}");
    }
    assert!(l.bytes() <= 3 * 4096 + 4096, "{}", l.bytes());
    l.close();
    let r = check(&dir);
    assert_eq!(r.exit_code(), exit::OK, "{r}");
    fs::remove_dir_all(dir).unwrap();
}
