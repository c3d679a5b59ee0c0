//! Byte accounting across fork (`sensor-ebpf/src/io.rs`, "Holders"): a forked child inherits
//! its parent's tracked descriptors and count. When the child closes its copy and does
//! unrelated I/O it stops being counted (its `TRACKED_TGIDS` entry goes), while the parent,
//! which still holds the file, stays counted, and the open's totals hold the bytes of both.
//!
//! In its own file: the processes here are forked children, but `holders.rs` asserts the
//! count of the test process itself.

use std::ffi::CString;

use mnsensor_tests::{
    Sensor, TempDir, bpf::map_lookup_u32, get_str, get_u64, is, path_str, show, util::c_path,
};
use serde_json::Value;

const MAP: &str = "TRACKED_TGIDS";
const SIZE: usize = 40_000;
const CHUNK: usize = 4096;

/// Reads `fd` at `off` (pread) until its end or `limit` bytes; the bytes read. Only
/// async-signal-safe calls: runs in forked children of a multi-threaded process.
fn pread_all(fd: i32, limit: usize) -> usize {
    let mut buf = [0u8; CHUNK];
    let mut total = 0;
    while total < limit {
        let want = CHUNK.min(limit - total);
        // SAFETY: valid buffer of CHUNK bytes.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), want, total as i64) };
        if n <= 0 {
            break;
        }
        total += n as usize;
    }
    total
}

/// Writes all of `bytes` to `fd`, or exits the (child) process.
fn put(fd: i32, bytes: &[u8]) {
    // SAFETY: valid buffer.
    if unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) } != bytes.len() as isize {
        // SAFETY: ends a forked child.
        unsafe { libc::_exit(3) };
    }
}

/// Reads one byte from `fd` (blocks).
fn take(fd: i32) -> u8 {
    let mut b = 0u8;
    // SAFETY: one-byte buffer.
    unsafe { libc::read(fd, (&raw mut b).cast(), 1) };
    b
}

/// The child: opens `protected`, forks the grandchild (which preads one chunk, closes its
/// copy, reads `plain`, reports its pid on `status` and waits for `go`), waits for it, then
/// reads the whole file and closes it. Never returns.
fn child(protected: &CString, plain: &CString, status: i32, go: i32) -> ! {
    // SAFETY: async-signal-safe calls only; every path ends in _exit.
    unsafe {
        let fd = libc::open(protected.as_ptr(), libc::O_RDONLY);
        if fd < 0 {
            libc::_exit(2);
        }
        let g = libc::fork();
        if g == 0 {
            let first = pread_all(fd, CHUNK);
            libc::close(fd);
            let p = libc::open(plain.as_ptr(), libc::O_RDONLY);
            pread_all(p, SIZE);
            libc::close(p);
            let pid = libc::getpid() as u32;
            put(status, &pid.to_ne_bytes());
            put(status, &(first as u32).to_ne_bytes());
            take(go);
            libc::_exit(0);
        }
        let mut st = 0;
        libc::waitpid(g, &raw mut st, 0);
        take(go);
        let n = pread_all(fd, SIZE);
        libc::close(fd);
        libc::_exit(if n == SIZE { 0 } else { 4 });
    }
}

fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: valid array of two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    (fds[0], fds[1])
}

#[test]
fn a_forked_child_stops_paying_after_closing_its_inherited_copy() {
    let dir = TempDir::new("holders-fork");
    let protected = dir.mkdir("protected");
    let a = dir.write("protected/a.dat", vec![b'a'; SIZE]);
    let plain = dir.write("plain.dat", vec![b'p'; SIZE]);
    let mut sensor = Sensor::start(&["--protect", path_str(&protected)]);
    let daemon = sensor.pid();
    let (ca, cp) = (c_path(&a), c_path(&plain));
    let (status_r, status_w) = pipe();
    let (go_r, go_w) = pipe();

    // SAFETY: the child only makes async-signal-safe calls and ends in _exit.
    let c = unsafe { libc::fork() };
    assert!(c >= 0, "fork");
    if c == 0 {
        child(&ca, &cp, status_w, go_r);
    }
    let c = c as u32;
    let word = || {
        let mut b = [0u8; 4];
        for x in &mut b {
            *x = take(status_r);
        }
        u32::from_ne_bytes(b)
    };
    let g = word();
    let first = u64::from(word());
    // The grandchild closed its copy and read an unrelated file: no longer counted. Its
    // parent still holds the file: counted.
    let g_held = map_lookup_u32(daemon, MAP, g);
    let c_held = map_lookup_u32(daemon, MAP, c);
    put(go_w, b"gc");
    let mut st = 0;
    // SAFETY: waits for the child this test forked.
    assert_eq!(unsafe { libc::waitpid(c as i32, &raw mut st, 0) }, c as i32, "waitpid");
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "child status {st}");
    assert_eq!(g_held, None, "the grandchild is still counted after closing its only tracked descriptor");
    assert!(c_held.is_some(), "the child, which holds the file, is not counted");

    let close = sensor.wait_for("file.close of a", |e: &Value| {
        is(e, "file.close") && e.get("file.path").and_then(Value::as_str) == Some(path_str(&a))
    });
    sensor.stop();
    assert_eq!(first, CHUNK as u64);
    assert_eq!(get_u64(&close, "process.pid"), u64::from(c), "{}", show(&close));
    assert_eq!(get_str(&close, "mnsensor.close.reason"), "close", "{}", show(&close));
    assert_eq!(get_u64(&close, "mnsensor.file.bytes_read"), first + SIZE as u64, "{}", show(&close));
}
