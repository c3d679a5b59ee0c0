//! The ledger: tampering is named by `mnsensor ledger verify`, a SIGKILLed sensor's torn
//! tail is repaired and its gap recorded, a full disk drops what the documented rule says
//! (with a record), outputs that fail catch up from their cursors, and My Numbers never reach
//! the ledger or any output.
//!
//! The frame format used to tamper is the documented one (docs/ledger.md), written here
//! independently of the sensor's code.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use mnsensor_tests::{
    Sensor, TempDir, get_str, get_str_array, get_u64, is, path_str, scaled, sensor_bin, show,
    util::{COMMAND_TIMEOUT, run_capture},
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const SEGMENT_HEAD: usize = 48;
const FRAME_HEAD: usize = 57;

/// `mnsensor ledger ARGS…`: (exit code, stdout, stderr).
fn ledger(args: &[&str]) -> (i32, String, String) {
    let o = run_capture(Command::new(sensor_bin()).arg("ledger").args(args), scaled(COMMAND_TIMEOUT));
    (o.status.code().unwrap_or(-1), o.stdout, o.stderr)
}

fn verify(state: &Path, key: &str) -> (i32, String) {
    let (code, out, err) = ledger(&["verify", "--state-dir", path_str(state), "--key", key]);
    (code, format!("{out}{err}"))
}

/// Segment files, oldest first.
fn segments(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(state.join("ledger"))
        .expect("ledger dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// One frame of a segment: offset, total length, kind, seq, time, body.
#[derive(Clone, Debug)]
struct Frame {
    at: usize,
    len: usize,
    kind: u8,
    seq: u64,
    time: [u8; 8],
    body: Vec<u8>,
}

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut at = SEGMENT_HEAD;
    while at + FRAME_HEAD <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if at + FRAME_HEAD + len > bytes.len() {
            break;
        }
        out.push(Frame {
            at,
            len: FRAME_HEAD + len,
            kind: bytes[at + 8],
            seq: u64::from_le_bytes(bytes[at + 9..at + 17].try_into().unwrap()),
            time: bytes[at + 17..at + 25].try_into().unwrap(),
            body: bytes[at + FRAME_HEAD..at + FRAME_HEAD + len].to_vec(),
        });
        at += FRAME_HEAD + len;
    }
    out
}

/// Encodes a frame after chain hash `prev`; returns its hash.
fn encode(out: &mut Vec<u8>, prev: &[u8; 32], f: &Frame) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update([f.kind]);
    h.update(f.seq.to_le_bytes());
    h.update(f.time);
    h.update(&f.body);
    let hash: [u8; 32] = h.finalize().into();
    let mut rest = vec![f.kind];
    rest.extend_from_slice(&f.seq.to_le_bytes());
    rest.extend_from_slice(&f.time);
    rest.extend_from_slice(&hash);
    rest.extend_from_slice(&f.body);
    out.extend_from_slice(&(f.body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&rest).to_le_bytes());
    out.extend_from_slice(&rest);
    hash
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A configuration file with small segments and frequent checkpoints.
fn small_ledger_config(dir: &TempDir, extra: &str) -> PathBuf {
    dir.write(
        "config.yaml",
        format!(
            "ledger:\n  segment_bytes: 65536\n  checkpoint_records: 8\n  checkpoint_interval_ms: 200\n{extra}"
        ),
    )
}

/// Runs `n` short processes (each an exec and exit record).
fn exec_storm(n: usize) {
    let script = format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done");
    let status = Command::new("/bin/sh").args(["-c", &script]).status().expect("run sh");
    assert!(status.success());
}

#[test]
fn verify_names_each_kind_of_tampering() {
    let work = TempDir::new("ledger-tamper");
    let config = small_ledger_config(&work, "");
    let state = work.join("state");
    let mut sensor = Sensor::start(&["--config", path_str(&config), "--state-dir", path_str(&state)]);
    exec_storm(40);
    sensor.wait_until("records of the storm", scaled(Duration::from_secs(10)), |evs| evs.len() > 60);
    sensor.stop();
    let (code, out, err) = ledger(&["pubkey", "--state-dir", path_str(&state)]);
    assert_eq!(code, 0, "pubkey: {out}{err}");
    let key = out.trim().to_owned();
    assert_eq!(key.len(), 64, "{out}");
    let (code, out) = verify(&state, &key);
    assert_eq!(code, 0, "intact ledger: {out}");
    let n = sensor.events().len();
    assert!(out.starts_with(&format!("OK: {n} records")), "{out}");
    assert!(out.contains("clean stop"), "{out}");
    // A different key: the checkpoints do not verify.
    let other = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let (code, out) = verify(&state, other);
    assert_eq!(code, 2, "wrong key: {out}");

    let seg = segments(&state)[0].file_name().unwrap().to_owned();
    let bytes = fs::read(state.join("ledger").join(&seg)).unwrap();
    let fr = frames(&bytes);
    let records: Vec<&Frame> = fr.iter().filter(|f| f.kind == 1).collect();
    let (r3, r4, r5) = (records[3], records[4], records[5]);
    type Tamper = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: Vec<(&str, String, i32, Tamper)> = vec![
        ("flip a byte", format!("modified: record seq {}", r3.seq), 2, {
            let at = r3.at + FRAME_HEAD + 10;
            Box::new(move |b| {
                let mut b = b.to_vec();
                b[at] ^= 0x01;
                b
            })
        }),
        ("delete a record", format!("deleted: record seq {} is missing", r4.seq), 2, {
            let (at, len) = (r4.at, r4.len);
            Box::new(move |b| {
                let mut b = b.to_vec();
                b.drain(at..at + len);
                b
            })
        }),
        ("swap two records", format!("reordered: record seq {} comes before seq {}", r5.seq, r4.seq), 2, {
            let (a, b_) = (r4.clone(), r5.clone());
            Box::new(move |b| {
                assert_eq!(a.at + a.len, b_.at, "records 4 and 5 are neighbours");
                let mut out = b[..a.at].to_vec();
                out.extend_from_slice(&b[b_.at..b_.at + b_.len]);
                out.extend_from_slice(&b[a.at..a.at + a.len]);
                out.extend_from_slice(&b[b_.at + b_.len..]);
                out
            })
        }),
        ("forge with a recomputed chain", "forged: the signed checkpoint".to_owned(), 2, {
            let target = r3.seq;
            Box::new(move |b| {
                // Insert a forged record after record 3, renumber the rest, recompute every
                // hash and CRC: only the signed checkpoints can tell.
                let mut prev: [u8; 32] = b[16..48].try_into().unwrap();
                let mut out = b[..SEGMENT_HEAD].to_vec();
                let mut shift = 0;
                for f in frames(b) {
                    let mut f = f.clone();
                    f.seq += shift;
                    prev = encode(&mut out, &prev, &f);
                    if f.kind == 1 && f.seq == target {
                        let forged = Frame {
                            seq: target + 1,
                            body: br#"{"event.name":"file.open","file.path":"/nothing/to/see"}"#.to_vec(),
                            ..f.clone()
                        };
                        prev = encode(&mut out, &prev, &forged);
                        shift = 1;
                    }
                }
                out
            })
        }),
    ];
    for (what, expect, want_code, tamper) in cases {
        let copy = work.join(format!("copy-{}", what.replace(' ', "-")));
        copy_dir(&state, &copy);
        let path = copy.join("ledger").join(&seg);
        fs::write(&path, tamper(&fs::read(&path).unwrap())).unwrap();
        let (code, out) = verify(&copy, &key);
        assert_eq!(code, want_code, "{what}: {out}");
        assert!(
            out.lines().next().is_some_and(|l| l.starts_with(&expect)),
            "{what}: expected {expect:?} first in:\n{out}"
        );
    }
    // Truncate the last segment inside a frame.
    let copy = work.join("copy-truncate");
    copy_dir(&state, &copy);
    let last = segments(&copy).pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len - 20).unwrap();
    let (code, out) = verify(&copy, &key);
    assert_eq!(code, 3, "truncated: {out}");
    assert!(
        out.starts_with("truncated:") && out.contains(last.file_name().unwrap().to_str().unwrap()),
        "{out}"
    );
}

#[test]
fn sigkill_during_a_storm_then_restart_repairs_and_records_the_gap() {
    let work = TempDir::new("ledger-crash");
    let config = small_ledger_config(&work, "");
    let state = work.join("state");
    let args = ["--config", path_str(&config), "--state-dir", path_str(&state)];
    let mut first = Sensor::start(&args);
    let storm = std::thread::spawn(|| exec_storm(3000));
    first.wait_until("the storm is being recorded", scaled(Duration::from_secs(20)), |evs| evs.len() > 500);
    mnsensor_tests::util::send_signal(first.pid(), libc::SIGKILL);
    storm.join().unwrap();
    let killed_last = first.events().last().map(|e| get_u64(e, "mnsensor.seq")).unwrap();
    drop(first);
    // A torn tail, as a power loss mid-write leaves it: half a frame at the end.
    let last = segments(&state).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    // (Should the SIGKILL have torn a write itself, that part goes first: the test knows
    // exactly what it cut.)
    let whole = frames(&bytes).last().map_or(SEGMENT_HEAD, |f| f.at + f.len);
    bytes.truncate(whole);
    let torn = [200u8, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9];
    bytes.extend_from_slice(&torn);
    fs::write(&last, &bytes).unwrap();
    let (_, out, _) = ledger(&["pubkey", "--state-dir", path_str(&state)]);
    let key = out.trim().to_owned();
    let (code, out) = verify(&state, &key);
    assert_eq!(code, 3, "torn tail before the restart: {out}");

    let mut second = Sensor::start(&args);
    let gap = second.wait_for("sensor.gap", |e| is(e, "sensor.gap"));
    assert_eq!(get_u64(&gap, "mnsensor.ledger.cut_bytes"), torn.len() as u64, "{}", show(&gap));
    assert_eq!(get_str(&gap, "mnsensor.ledger.cut_segment"), path_str(&last), "{}", show(&gap));
    let last_seq = get_u64(&gap, "mnsensor.gap.last_seq");
    assert!(last_seq >= killed_last, "gap.last_seq {last_seq} below the last delivered {killed_last}");
    assert!(get_str(&gap, "mnsensor.gap.start") <= get_str(&gap, "mnsensor.gap.end"), "{}", show(&gap));
    let start = second.start_event().clone();
    assert_eq!(get_u64(&start, "mnsensor.seq"), last_seq + 1, "sequence continues: {}", show(&start));
    second.stop();
    let (code, out) = verify(&state, &key);
    assert_eq!(code, 0, "after the repair: {out}");
    // `ledger show` prints every record once, in order, with no gap.
    let (code, shown, err) = ledger(&["show", "--state-dir", path_str(&state)]);
    assert_eq!(code, 0, "{err}");
    let seqs: Vec<u64> = shown
        .lines()
        .map(|l| get_u64(&serde_json::from_str::<Value>(l).expect("JSON line"), "mnsensor.seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "contiguous sequence numbers");
    let (_, from, _) = ledger(&["show", "--state-dir", path_str(&state), "--from", &last_seq.to_string()]);
    assert_eq!(from.lines().count() as u64, seqs.last().unwrap() - last_seq + 1);
}

/// A tmpfs the test mounts and unmounts.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Self {
        fs::create_dir_all(&dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&dir)
            .status();
        assert!(st.is_ok_and(|s| s.success()), "mount tmpfs on {}", dir.display());
        Self(dir)
    }

    /// Fills it with a file until writes fail.
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", filler.display()))
            .stderr(std::process::Stdio::null())
            .status();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Sequence numbers in a JSON-lines file.
fn seqs_in(path: &Path) -> Vec<u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| get_u64(&e, "mnsensor.seq"))
        .collect()
}

#[test]
fn a_failing_output_loses_nothing_and_catches_up() {
    let work = TempDir::new("ledger-failing-output");
    let fs_ = Tmpfs::mount(work.join("small"), "32m");
    let out = fs_.0.join("out.jsonl");
    let spec = format!("jsonl:{}", path_str(&out));
    let mut sensor = Sensor::start(&["--output", &spec]);
    sensor.wait_until("sensor.start in the second output", scaled(Duration::from_secs(5)), |_| {
        !seqs_in(&out).is_empty()
    });
    // Counted before the storm: a slow machine (the TCG guest) delivers much of it to the
    // working output while it is still running.
    let n = sensor.events().len();
    let filler = fs_.fill();
    exec_storm(300);
    sensor.wait_until("the storm in the working output", scaled(Duration::from_secs(10)), |evs| {
        evs.len() >= n + 300
    });
    let behind = sensor.events().last().map(|e| get_u64(e, "mnsensor.seq")).unwrap();
    assert!(seqs_in(&out).last().copied().unwrap_or(0) < behind, "the full output cannot have everything");
    assert!(sensor.stderr().contains("Output failing"), "the failure is logged: {}", sensor.stderr());
    fs::remove_file(filler).unwrap();
    sensor.wait_until("the failing output caught up", scaled(Duration::from_secs(15)), |_| {
        seqs_in(&out).last().copied().unwrap_or(0) >= behind
    });
    sensor.stop();
    let all: Vec<u64> = sensor.events().iter().map(|e| get_u64(e, "mnsensor.seq")).collect();
    assert_eq!(seqs_in(&out), all, "the caught-up output holds every record once, in order");
}

#[test]
fn a_full_disk_drops_the_oldest_undelivered_records_and_says_which() {
    let work = TempDir::new("ledger-full");
    let state_fs = Tmpfs::mount(work.join("state"), "1m");
    let stalled_fs = Tmpfs::mount(work.join("stalled"), "64k");
    stalled_fs.fill();
    let config = small_ledger_config(&work, "");
    let stalled = format!("jsonl:{}", path_str(&stalled_fs.0.join("out.jsonl")));
    let state = state_fs.0.join("s");
    let mut sensor = Sensor::start(&[
        "--config",
        path_str(&config),
        "--state-dir",
        path_str(&state),
        "--output",
        &stalled,
    ]);
    exec_storm(2500);
    let alert = sensor.wait_for_within("a ledger_full alert", scaled(Duration::from_secs(30)), |e| {
        is(e, "sensor.alert") && e.get("mnsensor.alert.kind").and_then(Value::as_str) == Some("ledger_full")
    });
    let ranges = get_str_array(&alert, "mnsensor.ledger.dropped_seq");
    let (a, b) = ranges[0].split_once('-').unwrap_or_else(|| panic!("range {}", show(&alert)));
    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
    assert!(a <= b && get_u64(&alert, "mnsensor.ledger.dropped_records") > b - a, "{}", show(&alert));
    // The working output got those records before they were dropped.
    let seen: Vec<u64> = sensor.events().iter().map(|e| get_u64(e, "mnsensor.seq")).collect();
    assert!(seen.contains(&a) && seen.contains(&b), "the working output has {a}..={b}");
    sensor.stop();
    let (_, key, _) = ledger(&["pubkey", "--state-dir", path_str(&state)]);
    let (code, out) = verify(&state, key.trim());
    assert_eq!(code, 0, "what is left verifies: {out}");
}

#[test]
fn my_numbers_are_masked_in_the_ledger_and_every_output() {
    let work = TempDir::new("ledger-redact");
    let protected = work.mkdir("1234-5678-9018 staff");
    let file = work.write("1234-5678-9018 staff/983205673214.csv", "x");
    let state = work.join("state");
    let mut sensor = Sensor::start(&[
        "--protect",
        path_str(&protected),
        "--output",
        "stdout",
        "--state-dir",
        path_str(&state),
    ]);
    let st = Command::new("/bin/sh")
        .args(["-c", "cat \"$1\" >/dev/null; true 111111111118 123456789012", "sh"])
        .arg(&file)
        .status();
    assert!(st.is_ok_and(|s| s.success()));
    sensor.wait_for("the exec with the wrong check digit", |e| {
        is(e, "process.exec") && get_str(e, "process.command_line").contains("123456789012")
    });
    let open = sensor.wait_for("file.open of the file", |e| {
        is(e, "file.open") && get_str(e, "file.path").ends_with(".csv")
    });
    assert_eq!(get_str(&open, "file.name"), "************.csv", "{}", show(&open));
    assert!(get_str(&open, "file.path").contains("/****-****-**** staff/"), "{}", show(&open));
    sensor.stop();
    let jsonl = fs::read_to_string(sensor.events_path()).unwrap();
    let stdout = fs::read_to_string(sensor.dir().join("stdout.txt")).unwrap();
    let (_, shown, _) = ledger(&["show", "--state-dir", path_str(&state)]);
    let raw: Vec<u8> = segments(&state).iter().flat_map(|p| fs::read(p).unwrap()).collect();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    for (name, text) in [("jsonl", &jsonl), ("stdout", &stdout), ("ledger show", &shown), ("segments", &raw)]
    {
        for secret in ["983205673214", "1234-5678-9018", "111111111118"] {
            assert!(!text.contains(secret), "{name} holds {secret}");
        }
        assert!(text.contains("123456789012"), "{name}: a wrong check digit is left");
        assert!(text.contains("true ************ 123456789012"), "{name}: the command line is masked");
    }
}
