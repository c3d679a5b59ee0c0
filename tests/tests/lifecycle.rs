//! Start and stop: the `sensor.start` record, program ids, and clean detach.

use mnsensor_tests::{
    Sensor, TempDir, bpf::prog_loaded, get_str, get_str_array, get_u64, is, kernel_release, path_str, show,
};
use serde_json::Value;

#[test]
fn start_record_describes_the_run_and_stop_detaches() {
    let tree = TempDir::new("lifecycle");
    let a = tree.mkdir("a");
    let b = tree.write("b/file.txt", "b\n");
    std::os::unix::fs::symlink(&a, tree.join("link-to-a")).expect("symlink");
    // Non-canonical spellings: through a symlink, and with `..`.
    let a_spelled = tree.join("link-to-a");
    let b_spelled = tree.join("a/../b/file.txt");
    let mut sensor = Sensor::start(&[
        "--protect",
        path_str(&a_spelled),
        "--protect",
        path_str(&b_spelled),
        "--ring-buffer-bytes",
        "65536",
    ]);
    let start = sensor.start_event().clone();
    assert_eq!(get_str(&start, "service.name"), "mnsensor", "{}", show(&start));
    assert_eq!(get_str(&start, "service.version"), env!("CARGO_PKG_VERSION"), "{}", show(&start));
    assert_eq!(get_u64(&start, "process.pid"), u64::from(sensor.pid()), "sensor pid: {}", show(&start));
    assert_eq!(get_str(&start, "mnsensor.kernel.release"), kernel_release(), "{}", show(&start));
    let mut protect = get_str_array(&start, "mnsensor.config.protect");
    protect.sort();
    let mut want = vec![path_str(&a).to_owned(), path_str(&b).to_owned()];
    want.sort();
    assert_eq!(protect, want, "canonical protected paths: {}", show(&start));
    assert_eq!(get_u64(&start, "mnsensor.config.ring_buffer_bytes"), 65536, "{}", show(&start));
    // fentry where the kernel loads it (the VM matrix), the syscall tracepoints otherwise.
    let backend = get_str(&start, "mnsensor.backend.file");
    assert!(backend == "tracepoint" || backend == "fentry", "{}", show(&start));
    assert_eq!(
        get_str_array(&start, "mnsensor.config.outputs"),
        vec![format!("jsonl:{}", path_str(sensor.events_path()))],
        "{}",
        show(&start)
    );
    assert!(!get_str_array(&start, "mnsensor.bpf.programs").is_empty(), "{}", show(&start));
    let ids = sensor.program_ids().to_vec();
    assert!(!ids.is_empty(), "no program ids: {}", show(&start));
    let mut dedup = ids.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(dedup.len(), ids.len(), "duplicate program ids: {}", show(&start));
    for id in &ids {
        assert!(
            prog_loaded(*id),
            "program id {id} of sensor.start is not loaded while running: {}",
            show(&start)
        );
    }
    let stop = sensor.stop();
    // stop() asserted the programs are gone; check once more explicitly.
    for id in &ids {
        assert!(!prog_loaded(*id), "program {id} still loaded after stop");
    }
    // Every ring record delivered is in the output, and every loss was reported.
    let ring = sensor.events().iter().filter(|e| mnsensor_tests::event::from_ring(e)).count() as u64;
    let reported: u64 = sensor
        .events()
        .iter()
        .filter(|e| is(e, "sensor.event_loss"))
        .map(|e| get_u64(e, "mnsensor.loss.count"))
        .sum();
    assert_eq!(stop.get("mnsensor.events.lost").and_then(Value::as_u64), Some(reported), "{}", show(&stop));
    // Hard links made anywhere on the machine reach the daemon on the tracepoint backend and
    // are filtered there unless they name a protected file.
    let filtered = stop.get("mnsensor.events.filtered").and_then(Value::as_u64).unwrap_or(0);
    assert_eq!(
        stop.get("mnsensor.events.delivered").and_then(Value::as_u64),
        Some(ring + filtered),
        "delivered vs. ring records in the output plus filtered: {}",
        show(&stop)
    );
}

#[test]
fn without_protect_file_backend_is_off() {
    let mut sensor = Sensor::start(&[]);
    let start = sensor.start_event().clone();
    assert_eq!(get_str(&start, "mnsensor.backend.file"), "off", "{}", show(&start));
    if start.get("mnsensor.config.protect").is_some() {
        assert!(get_str_array(&start, "mnsensor.config.protect").is_empty(), "{}", show(&start));
    }
    sensor.stop();
    sensor.assert_none("file.open without protected paths", |e| is(e, "file.open"));
}

#[test]
fn seq_increases_across_runs() {
    // Sequence numbers continue from the ledger in the state directory.
    let state = TempDir::new("state");
    let state_arg = state.path().to_str().expect("UTF-8 temp path").to_owned();
    let args = ["--state-dir", state_arg.as_str()];
    let mut first = Sensor::start(&args);
    let stop = first.stop();
    let last_seq = get_u64(&stop, "mnsensor.seq");
    drop(first);
    let mut second = Sensor::start(&args);
    let start = second.start_event().clone();
    assert!(
        get_u64(&start, "mnsensor.seq") > last_seq,
        "second run's sensor.start seq {} is not above the first run's last seq {last_seq}",
        get_u64(&start, "mnsensor.seq")
    );
    second.stop();
}
