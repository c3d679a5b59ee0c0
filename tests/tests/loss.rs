//! Loss accounting: with the smallest ring buffer, an open storm overflows it, and delivered
//! plus counted-lost `file.open` records of the file (`mnsensor.lost.who`) equal the opens
//! made; a fork storm is counted in the `process.fork` and `process.exit` counters.

use std::{io, time::Duration};

use mnsensor_tests::{
    Sensor, TempDir, get_str, get_u64, has, is, path_str, pid_of, scaled, show, test_pid, util::c_path,
};
use serde_json::Value;

/// Opens made by the storm: half with the consumer running, half with it stopped (SIGSTOP),
/// so the ring overflows for certain, on the host and under emulation alike.
fn storm_size() -> u64 {
    if mnsensor_tests::in_vm() { 2_000 } else { 40_000 }
}

/// (delivered file.open records of `path`, lost ones: `mnsensor.lost.who` entries of its
/// inode, which name the file whose records were dropped).
fn tally(events: &[Value], path: &str, inode: u64) -> (u64, u64) {
    let delivered = events
        .iter()
        .filter(|e| is(e, "file.open") && e.get("file.path").and_then(Value::as_str) == Some(path))
        .count() as u64;
    let lost = events
        .iter()
        .filter(|e| is(e, "sensor.event_loss"))
        .flat_map(|e| e.get("mnsensor.lost.who").and_then(Value::as_array).cloned().unwrap_or_default())
        .filter(|w| w["event"] == "file.open" && w["inode"] == inode)
        .map(|w| w["records"].as_u64().unwrap_or(0))
        .sum();
    (delivered, lost)
}

#[test]
fn delivered_plus_lost_equals_generated() {
    let tree = TempDir::new("loss");
    let p = tree.mkdir("protected");
    let storm = tree.write("protected/storm.txt", "storm\n");
    // Opened between two storm opens: a thread's opens of one file are folded after 16 a
    // second (docs/events.md, "Fold records"), opens that alternate between files never are.
    let breaker = c_path(&tree.write("protected/breaker.txt", "b\n"));
    let storm_str = path_str(&storm).to_owned();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&storm).expect("stat"));
    let mut sensor = Sensor::start(&["--ring-buffer-bytes", "4096", "--protect", path_str(&p)]);
    assert_eq!(
        get_u64(sensor.start_event(), "mnsensor.config.ring_buffer_bytes"),
        4096,
        "{}",
        show(sensor.start_event())
    );

    let c = c_path(&storm);
    let total = storm_size();
    let mut generated = 0u64;
    for i in 0..total {
        if i == total / 2 {
            // SAFETY: signals only the sensor this test started, by its pid.
            assert_eq!(unsafe { libc::kill(sensor.pid() as i32, libc::SIGSTOP) }, 0, "SIGSTOP the sensor");
        }
        for path in [&c, &breaker] {
            // SAFETY: valid NUL-terminated path; we close what we open.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            assert!(fd >= 0, "open {path:?}: {}", io::Error::last_os_error());
            // SAFETY: we own fd.
            unsafe { libc::close(fd) };
        }
        generated += 1;
    }
    assert_eq!(generated, total);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(sensor.pid() as i32, libc::SIGCONT) }, 0, "SIGCONT the sensor");

    // Loss records come within ~1 s and the output is flushed every second; allow a long
    // deadline for delivered records to drain under emulation.
    let reached = sensor.try_wait_until(scaled(Duration::from_secs(60)), |evs| {
        let (d, l) = tally(evs, &storm_str, inode);
        d + l >= generated
    });
    let (delivered, lost) = tally(sensor.events(), &storm_str, inode);
    if !reached || delivered + lost != generated {
        sensor.fail(&format!(
            "delivered {delivered} + lost {lost} = {} file.open records, generated {generated}",
            delivered + lost
        ));
    }
    // Nothing more may trickle in.
    std::thread::sleep(scaled(Duration::from_secs(3)));
    let (d2, l2) = tally(sensor.events(), &storm_str, inode);
    assert_eq!(
        (d2, l2),
        (delivered, lost),
        "records of the storm changed after delivered+lost reached {generated}"
    );
    assert!(
        lost > 0,
        "a {total}-open storm did not overflow a 4096-byte ring buffer (delivered {delivered})"
    );
    assert!(delivered > 0, "no storm record delivered at all");

    let me = test_pid();
    let foreign: Vec<String> = sensor
        .matching(|e| {
            is(e, "file.open")
                && e.get("file.path").and_then(Value::as_str) == Some(&storm_str)
                && pid_of(e) != Some(me)
        })
        .iter()
        .take(5)
        .map(show)
        .collect();
    assert!(foreign.is_empty(), "storm records not attributed to the test pid {me}:\n{}", foreign.join("\n"));

    let stop = sensor.stop();
    let events = sensor.events().to_vec();
    let mut total_lost = 0;
    for ev in events.iter().filter(|e| is(e, "sensor.event_loss")) {
        let count = get_u64(ev, "mnsensor.loss.count");
        // Per-kind counters: every `mnsensor.loss.<event.name>` (kinds added to the docs
        // later included).
        let kinds: Vec<(&String, &Value)> = ev
            .as_object()
            .expect("object")
            .iter()
            .filter(|(k, _)| {
                k.starts_with("mnsensor.loss.")
                    && !matches!(
                        k.as_str(),
                        "mnsensor.loss.count" | "mnsensor.loss.interval.start" | "mnsensor.loss.interval.end"
                    )
            })
            .collect();
        let per_kind: u64 = kinds.iter().map(|(_, v)| v.as_u64().unwrap_or(0)).sum();
        assert_eq!(count, per_kind, "loss.count is not the sum of the per-kind counts: {}", show(ev));
        assert!(count > 0, "a loss record with nothing lost: {}", show(ev));
        for (k, n) in &kinds {
            assert!(n.as_u64().is_some_and(|n| n > 0), "per-kind loss {k} present but not > 0: {}", show(ev));
        }
        get_str(ev, "mnsensor.loss.interval.start");
        get_str(ev, "mnsensor.loss.interval.end");
        total_lost += count;
    }
    assert_eq!(
        get_u64(&stop, "mnsensor.events.lost"),
        total_lost,
        "sensor.stop events.lost vs. the sum of sensor.event_loss counts: {}",
        show(&stop)
    );
    // Kernel records: those that came through the ring buffer.
    let kernel_records = events.iter().filter(|e| mnsensor_tests::event::from_ring(e)).count() as u64;
    assert!(has(&stop, "mnsensor.events.delivered"), "{}", show(&stop));
    assert_eq!(
        get_u64(&stop, "mnsensor.events.delivered"),
        kernel_records + get_u64(&stop, "mnsensor.events.filtered"),
        "sensor.stop events.delivered vs. kernel records in the output plus filtered: {}",
        show(&stop)
    );
}

/// docs/events.md, `sensor.event_loss`: every kernel record kind has its loss counter. A fork
/// storm while the consumer is stopped overflows the ring with `process.fork` and
/// `process.exit` records; for each kind, the lost count covers at least this test's children
/// that were not delivered (other processes of the machine may lose records too).
#[test]
fn process_records_lost_in_a_fork_storm_are_counted_per_kind() {
    let mut sensor = Sensor::start(&["--ring-buffer-bytes", "4096"]);
    let total: u64 = if mnsensor_tests::in_vm() { 500 } else { 5_000 };
    // SAFETY: signals only the sensor this test started, by its pid.
    assert_eq!(unsafe { libc::kill(sensor.pid() as i32, libc::SIGSTOP) }, 0, "SIGSTOP the sensor");
    let mut children = std::collections::BTreeSet::new();
    for _ in 0..total {
        let pid = mnsensor_tests::fork_and_exit(0);
        assert_eq!(mnsensor_tests::waitpid_status(pid), 0);
        children.insert(u64::from(pid));
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(sensor.pid() as i32, libc::SIGCONT) }, 0, "SIGCONT the sensor");
    let tally = |events: &[Value], kind: &str| {
        let delivered = events
            .iter()
            .filter(|e| is(e, kind) && pid_of(e).is_some_and(|p| children.contains(&u64::from(p))))
            .count() as u64;
        let key = format!("mnsensor.loss.{kind}");
        let lost: u64 = events
            .iter()
            .filter(|e| is(e, "sensor.event_loss"))
            .map(|e| e.get(&key).and_then(Value::as_u64).unwrap_or(0))
            .sum();
        (delivered, lost)
    };
    let covered = |events: &[Value]| {
        ["process.fork", "process.exit"].iter().all(|k| {
            let (d, l) = tally(events, k);
            d + l >= total
        })
    };
    let reached = sensor.try_wait_until(scaled(Duration::from_secs(60)), covered);
    for kind in ["process.fork", "process.exit"] {
        let (delivered, lost) = tally(sensor.events(), kind);
        if !reached || delivered + lost < total {
            sensor.fail(&format!("{kind}: delivered {delivered} + lost {lost} < {total} children"));
        }
        assert!(lost > 0, "{kind}: a {total}-fork storm into a stopped consumer lost nothing");
    }
    sensor.stop();
}
