//! Decoder robustness: random and truncated ring records never panic the decoder, and
//! well-formed records decode to the documented events.
use std::mem::offset_of;

use sensor_common::event::{
    Header, Kind, Task,
    file::{CHANGE_LINK_NAMES, CHANGE_RENAME, Change, FILE_DATA, Open},
    process::Exec,
};

use super::{DecodeError, decode, replay::wire};
use crate::{
    event::{Event, Name, time::Clock},
    test_rng::Rng,
};

fn header(kind: Kind) -> Header {
    let mut comm = [0u8; 16];
    comm[..3].copy_from_slice(b"cat");
    let task = Task {
        tgid: 42,
        tid: 43,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        euid: 1000,
        egid: 1000,
        auid: 1000,
        sessionid: 2,
        _pad: 0,
        comm,
    };
    Header { kind: kind as u32, flags: 0, time_ns: 5, task }
}

/// A valid record of every kind, full length.
fn samples() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        // SAFETY: all-zero bytes are a valid value of every wire struct.
        let mut buf: Box<Change> = Box::new(unsafe { std::mem::zeroed() });
        buf.header = header(kind);
        buf.op = CHANGE_RENAME;
        buf.path_len = 8;
        buf.new_path_len = 8;
        buf.data[..8].copy_from_slice(b"a\0b\0c\0d\0");
        buf.data[FILE_DATA..FILE_DATA + 8].copy_from_slice(b"e\0f\0g\0h\0");
        out.push(wire(&*buf, offset_of!(Change, data) + FILE_DATA + 8));
    }
    out
}

#[test]
fn random_and_truncated_records_never_panic() {
    let clock = Clock::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let samples = samples();
    for case in 0..200_000 {
        let bytes: Vec<u8> = match case % 4 {
            // A valid record cut at any length.
            0 => {
                let s = &samples[rng.below(samples.len())];
                s[..rng.below(s.len() + 1)].to_vec()
            }
            // A valid record with random bytes flipped (lengths, ops, kinds).
            1 => {
                let mut s = samples[rng.below(samples.len())].clone();
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(s.len());
                    s[i] = rng.next() as u8;
                }
                s
            }
            // Random bytes behind a valid kind.
            2 => {
                let mut s: Vec<u8> = (0..rng.below(4096)).map(|_| rng.next() as u8).collect();
                if s.len() >= 4 {
                    let kind = 1 + rng.below(11) as u32;
                    s[..4].copy_from_slice(&kind.to_ne_bytes());
                }
                s
            }
            // Anything.
            _ => (0..rng.below(512)).map(|_| rng.next() as u8).collect(),
        };
        // Ok or Err; a panic fails the test (with the case in the backtrace's frame).
        if let Ok(ev) = decode(&bytes, &clock) {
            let _ = ev.record().to_json(case, "h");
        }
    }
}

#[test]
fn decodes_kinds_and_rejects_short_records() {
    let clock = Clock::now();
    // SAFETY: all-zero bytes are a valid value of every wire struct.
    let mut open: Box<Open> = Box::new(unsafe { std::mem::zeroed() });
    open.header = header(Kind::FileOpen);
    open.fd = 3;
    open.path_len = 16;
    open.data[..16].copy_from_slice(b"secret.dat\0srv\0\0");
    let bytes = wire(&*open, offset_of!(Open, data) + 16);
    let ev = decode(&bytes, &clock).unwrap();
    let Event::FileOpen(o) = &ev.event else { panic!("not an open: {ev:?}") };
    assert_eq!((o.file.path.as_str(), o.fd), ("/srv/secret.dat", Some(3)));
    assert_eq!(ev.name(), Name::FileOpen);
    let line = ev.record().to_json(1, "h");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["file.directory"], "/srv");
    assert_eq!(v["process.user.id"], 1000);
    assert_eq!(v["mnsensor.file.flags"], serde_json::json!(["O_RDONLY"]));

    assert!(matches!(
        decode(&bytes[..offset_of!(Open, data) - 1], &clock),
        Err(DecodeError::Short { kind: 4, .. })
    ));
    let mut bad = bytes;
    bad[..4].copy_from_slice(&99u32.to_ne_bytes());
    assert!(matches!(decode(&bad, &clock), Err(DecodeError::UnknownKind(99))));

    // SAFETY: as above.
    let mut exec: Box<Exec> = Box::new(unsafe { std::mem::zeroed() });
    exec.header = header(Kind::Exec);
    exec.old_pid = 42;
    exec.exe_len = 8;
    exec.argv_len = 7;
    exec.data[..15].copy_from_slice(b"cat\0bin\0cat\0-n\0");
    let ev = decode(&wire(&*exec, offset_of!(Exec, data) + 15), &clock).unwrap();
    let Event::Exec(e) = &ev.event else { panic!("not an exec") };
    assert_eq!((&*e.exe, &e.args[..]), ("/bin/cat", &["cat".to_owned(), "-n".to_owned()][..]));

    // SAFETY: as above.
    let mut link: Box<Change> = Box::new(unsafe { std::mem::zeroed() });
    link.header = header(Kind::FileChange);
    link.op = CHANGE_LINK_NAMES;
    link.path_len = 4;
    link.new_path_len = 3;
    link.data[..4].copy_from_slice(b"tmp\0");
    link.data[FILE_DATA..FILE_DATA + 3].copy_from_slice(b"new");
    let ev = decode(&wire(&*link, offset_of!(Change, data) + FILE_DATA + 3), &clock).unwrap();
    let Event::FileChange(c) = &ev.event else { panic!("not a change") };
    assert!(
        matches!(&c.change, crate::event::change::Change::LinkNames { base, name } if base == "/tmp" && name == "new")
    );
}

/// `golden.jsonl`: one line of each kind that `replay::synthesise` makes, as the encoder before
/// the typed events (`serde_json::Value` records, 135dca1) wrote them. The new encoder writes
/// the same bytes, apart from times (the clock offset differs per run) and the login user's
/// name (it depends on the machine's users).
#[test]
fn encodes_the_same_bytes_as_the_previous_encoder() {
    fn normalise(line: &str) -> String {
        let mut out = line.to_owned();
        for key in ["\"time\":\"", "\"mnsensor.file.opened_at\":\""] {
            if let Some(at) = out.find(key) {
                let start = at + key.len();
                let end = start + out[start..].find('"').unwrap();
                out.replace_range(start..end, "T");
            }
        }
        const LOGIN_NAME: &str = ",\"mnsensor.login_user.name\":\"";
        if let Some(at) = out.find(LOGIN_NAME) {
            let start = at + LOGIN_NAME.len();
            let end = start + out[start..].find('"').unwrap() + 1;
            out.replace_range(at..end, "");
        }
        out
    }
    let golden = include_str!("golden.jsonl");
    let records = super::replay::synthesise(1003);
    let clock = Clock::now();
    let policies =
        std::sync::Arc::new(crate::enforce::Policies::new(crate::policy::PolicySet::embedded().unwrap()));
    let mut enricher = crate::enrich::Enricher::new(Default::default(), Default::default(), policies);
    let mut lines = Vec::new();
    for (seq, r) in records.iter().enumerate() {
        let mut ev = decode(r, &clock).unwrap();
        assert!(enricher.enrich(&mut ev));
        if [0, 4, 5, 14, 15, 1000, 1001].contains(&seq) {
            lines.push(normalise(&ev.record().to_json(seq as u64, "bench-host")));
        }
    }
    let expected: Vec<String> = golden.lines().map(normalise).collect();
    assert_eq!(lines.len(), expected.len());
    for (got, want) in lines.iter().zip(&expected) {
        assert_eq!(got, want);
    }
}

/// A kernel decision record names the program that decided: the BPF LSM one or `fmod_ret`.
#[test]
fn kernel_decisions_name_their_program() {
    use sensor_common::event::policy::{ACTION_DENY, HOOK_BPF_LSM, HOOK_FMOD_RET, LsmDecision};
    let clock = Clock::now();
    for (hook, name) in [(HOOK_BPF_LSM, "bpf-lsm"), (HOOK_FMOD_RET, "fmod_ret")] {
        // SAFETY: all-zero bytes are a valid value of every wire struct.
        let mut d: Box<LsmDecision> = Box::new(unsafe { std::mem::zeroed() });
        d.header = header(Kind::PolicyDecision);
        d.action = ACTION_DENY;
        d.hook = hook;
        d.path_len = 8;
        d.data[..8].copy_from_slice(b"a.csv\0l\0");
        let ev = decode(&wire(&*d, offset_of!(LsmDecision, data) + 8), &clock).unwrap();
        let Event::LsmDecision(e) = &ev.event else { panic!("not a decision: {ev:?}") };
        assert_eq!(e.enforcement, name);
        let line = ev.record().to_json(1, "h");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["mnsensor.enforcement"], name, "{line}");
        assert_eq!(v["mnsensor.decision"], "deny", "{line}");
    }
}
