//! Byte accounting per process (`sensor-ebpf/src/io.rs`, "Holders"): a process pays the
//! read/write accounting only while it holds a descriptor of a protected file (until its
//! first read or write after the last such close). This test
//! reads the kernel state itself (the daemon's `TRACKED_TGIDS` map, by the ids of the maps
//! the daemon holds) while this process opens, duplicates, reads and closes protected files,
//! and checks that the totals of the files still open stay exact.
//!
//! One test in this file: the map is keyed by this process's tgid, so no other test may
//! open protected files from it at the same time.

use std::{
    fs,
    io::Read as _,
    os::fd::{AsRawFd as _, FromRawFd as _},
};

use mnsensor_tests::{Sensor, TempDir, bpf::map_lookup_u32, get_u64, is, path_str, show};
use serde_json::Value;

const MAP: &str = "TRACKED_TGIDS";
const SIZE: usize = 40_000;
const CHUNK: usize = 4096;

fn read_all(f: &mut fs::File) -> u64 {
    let mut buf = [0u8; CHUNK];
    let mut total = 0;
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            return total;
        }
        total += n as u64;
    }
}

#[test]
fn a_process_stops_paying_after_its_last_protected_close() {
    let dir = TempDir::new("holders");
    let protected = dir.mkdir("protected");
    let a = dir.write("protected/a.dat", vec![b'a'; SIZE]);
    let b = dir.write("protected/b.dat", vec![b'b'; SIZE]);
    let plain = dir.write("plain.dat", vec![b'p'; SIZE]);
    let mut sensor = Sensor::start(&["--protect", path_str(&protected)]);
    let daemon = sensor.pid();
    let me = std::process::id();
    let held = || map_lookup_u32(daemon, MAP, me);

    // An unrelated open makes no holder.
    drop(fs::File::open(&plain).expect("open plain"));
    assert_eq!(held(), None, "an unrelated open made this process a holder");

    let mut fa = fs::File::open(&a).expect("open a");
    let fb = fs::File::open(&b).expect("open b");
    assert_eq!(held(), Some(2), "two protected opens");
    // A duplicate the programs do not see, then the original's close: the table still holds
    // b through the duplicate, so the process stays a holder and b's bytes are counted.
    // SAFETY: dup of a descriptor we own; the result is owned by the new File.
    let mut fb2 = unsafe { fs::File::from_raw_fd(libc::dup(fb.as_raw_fd())) };
    drop(fb);
    assert!(held().is_some(), "closing b while a and b's duplicate are open dropped the holder");
    assert_eq!(read_all(&mut fa), SIZE as u64);
    drop(fa);
    assert!(held().is_some(), "closing a while b's duplicate is open dropped the holder");
    let b_read = read_all(&mut fb2);
    assert_eq!(b_read, SIZE as u64);
    drop(fb2);
    // The first read after the last protected close looks through the descriptor table;
    // then the entry is gone, so later reads and writes no longer reach the accounting.
    let mut p = fs::File::open(&plain).expect("open plain");
    read_all(&mut p);
    assert_eq!(held(), None, "the process is still a holder after its last protected close");
    read_all(&mut p);
    assert_eq!(held(), None);

    let closes = |path: &str| {
        let path = path.to_owned();
        move |e: &Value| {
            is(e, "file.close")
                && e.get("process.pid").and_then(Value::as_u64) == Some(u64::from(me))
                && e.get("file.path").and_then(Value::as_str) == Some(path.as_str())
        }
    };
    let close_a = sensor.wait_for("file.close of a", closes(path_str(&a)));
    let close_b = sensor.wait_for("file.close of b", closes(path_str(&b)));
    sensor.stop();
    assert_eq!(get_u64(&close_a, "mnsensor.file.bytes_read"), SIZE as u64, "{}", show(&close_a));
    assert_eq!(get_u64(&close_b, "mnsensor.file.bytes_read"), b_read, "{}", show(&close_b));
}
