//! A protected file's descriptor passed over a Unix socket (`SCM_RIGHTS`) to a process that
//! did not open it: the receiver's `recvmsg` makes it a holder with a `file.open` of its own
//! (`mnsensor.syscall: recvmsg`), its bytes go into the open's totals and its close, when it
//! is the last, writes the `file.close`; its own bytes are a `file.close` of its own
//! (`mnsensor.file.scope: receiver`). Also: bytes read through a descriptor inherited by
//! fork.

use std::{
    io::{Read as _, Write as _},
    mem::size_of,
    os::{fd::AsRawFd as _, unix::net::UnixStream},
};

use mnsensor_tests::{
    Sensor, TempDir, get_str, get_u64, is, path_str, pid_of, show, test_pid, util::c_path, waitpid_status,
};
use serde_json::Value;

const SIZE: usize = 4096;
const PARENT_READ: usize = 1000;

/// A one-byte message over `iov` with room for one descriptor in `control` (u64s: aligned for
/// `cmsghdr`).
fn message(iov: &mut libc::iovec, control: &mut [u64; 8]) -> libc::msghdr {
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>();
    msg
}

/// Sends `fd` over `sock` with SCM_RIGHTS.
fn send_fd(sock: i32, fd: i32) {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut control = [0u64; 8];
    let mut msg = message(&mut iov, &mut control);
    // SAFETY: the message points at live buffers; CMSG_* stay inside `control`.
    unsafe {
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<i32>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<i32>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd);
        assert_eq!(libc::sendmsg(sock, &raw const msg, 0), 1, "sendmsg: {}", std::io::Error::last_os_error());
    }
}

/// Receives one descriptor (in the forked child: no allocation, only syscalls); -1 on error.
fn recv_fd(sock: i32) -> i32 {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut control = [0u64; 8];
    let mut msg = message(&mut iov, &mut control);
    // SAFETY: as in `send_fd`.
    unsafe {
        if libc::recvmsg(sock, &raw mut msg, 0) != 1 {
            return -1;
        }
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return -1;
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>())
    }
}

/// A protected file opened and read by this process, its descriptor passed to a receiver
/// process, which reads from it and closes it last.
struct Passed {
    _tree: TempDir,
    sensor: Sensor,
    file: std::path::PathBuf,
    receiver: u32,
}

/// The tests here fork: run one at a time, so that no child inherits the other test's
/// descriptors.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A protected file, a sensor, a socket pair and a forked child (`0` in the child) that will
/// receive the descriptor: forked before anything in the tree is opened, so it inherits no
/// tracked descriptor.
fn fork_receiver(label: &str) -> (TempDir, std::path::PathBuf, Sensor, UnixStream, UnixStream, i32) {
    let tree = TempDir::new(label);
    let protected = tree.mkdir("protected");
    let file = tree.write("protected/data.bin", vec![b'1'; SIZE]);
    let sensor = Sensor::start(&["--protect", path_str(&protected)]);
    let (mine, theirs) = UnixStream::pair().expect("socketpair");
    mine.set_read_timeout(Some(std::time::Duration::from_secs(60))).expect("socket timeout");
    // SAFETY: the child only makes syscalls and leaves with _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
    (tree, file, sensor, mine, theirs, child)
}

/// Opens `file`, reads [`PARENT_READ`] bytes and sends the descriptor over `sock`; returns it.
fn open_read_send(file: &std::path::Path, sock: &UnixStream) -> i32 {
    let c = c_path(file);
    // SAFETY: valid path; the buffer outlives the read.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
    let mut buf = vec![0u8; PARENT_READ];
    // SAFETY: as above.
    assert_eq!(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), PARENT_READ) }, PARENT_READ as isize);
    send_fd(sock.as_raw_fd(), fd);
    fd
}

/// Runs the hand-over. The receiver is forked before this process opens anything in the tree,
/// so the sensor does not count it as a holder; with `detach` it is a grandchild whose parent
/// has exited, so this process is not its ancestor either.
fn pass_descriptor(label: &str, detach: bool) -> Passed {
    let (tree, file, sensor, mut mine, theirs, child) = fork_receiver(label);
    if child == 0 {
        // SAFETY: plain syscalls on our own descriptors and buffers; no allocation.
        unsafe {
            if detach && libc::fork() != 0 {
                libc::_exit(0);
            }
            let sock = theirs.as_raw_fd();
            let pid = libc::getpid().to_ne_bytes();
            let told = libc::write(sock, pid.as_ptr().cast(), 4) == 4;
            let fd = recv_fd(sock);
            let mut buf = [0u8; 100];
            // Wait until the parent has closed its descriptor: this close is then the last.
            let go = libc::read(sock, buf.as_mut_ptr().cast(), 1) == 1;
            let ok = told && go && fd >= 0 && libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) == 100;
            libc::close(fd);
            let done = if ok { b"d" } else { b"x" };
            libc::write(sock, done.as_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    drop(theirs);
    if detach {
        assert_eq!(waitpid_status(child as u32), 0, "the receiver's parent failed");
    }
    let mut pid = [0u8; 4];
    mine.read_exact(&mut pid).expect("the receiver's pid");
    let receiver = u32::from_ne_bytes(pid);

    let fd = open_read_send(&file, &mine);
    // Not the last reference: the message holds one until the receiver takes it.
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    mine.write_all(b"g").expect("tell the receiver to go on");
    let mut done = [0u8; 1];
    mine.read_exact(&mut done).expect("the receiver's result");
    assert_eq!(&done, b"d", "the receiver failed to receive or read");
    if !detach {
        assert_eq!(waitpid_status(child as u32), 0, "the receiver failed");
    }
    Passed { _tree: tree, sensor, file, receiver }
}

/// The receiver is not the opener's descendant (its parent has exited): the receiver's
/// `recvmsg` makes it a holder, with a `file.open` of its own, and its close is the last.
#[test]
fn access_by_an_unrelated_process_is_reported() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Passed { _tree, mut sensor, file, receiver } = pass_descriptor("release-unrelated", true);
    assert_received(&mut sensor, &file, receiver);
}

#[test]
fn descriptor_passed_to_an_untracked_process() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Passed { _tree, mut sensor, file, receiver } = pass_descriptor("release-passed", false);
    assert_received(&mut sensor, &file, receiver);
}

/// The `file.close` of `opener`'s open with `scope` (`open`: the open's totals; `receiver`:
/// a receiver's own bytes).
fn close_of(sensor: &mut Sensor, opener: u32, scope: &str) -> Value {
    sensor.wait_for(&format!("file.close of {opener}'s open, scope {scope}"), |e| {
        is(e, "file.close")
            && e.get("mnsensor.file.opener.pid").and_then(Value::as_u64) == Some(u64::from(opener))
            && e.get("mnsensor.file.scope").and_then(Value::as_str) == Some(scope)
    })
}

/// The receiver's `file.open` (syscall `recvmsg`), its own `file.close` (its 100 bytes in one
/// call) and the `file.close` of this process's open written at the receiver's close, the
/// last: what both read (ground truth: both reads returned in full), in two calls.
fn assert_received(sensor: &mut Sensor, file: &std::path::Path, receiver: u32) {
    let by_receiver = |e: &Value| {
        pid_of(e) == Some(receiver) && e.get("file.path").and_then(Value::as_str) == Some(path_str(file))
    };
    let open = sensor.wait_for("the receiver's file.open", |e| is(e, "file.open") && by_receiver(e));
    assert_eq!(get_str(&open, "mnsensor.syscall"), "recvmsg", "{}", show(&open));
    let own = close_of(sensor, test_pid(), "receiver");
    let close = close_of(sensor, test_pid(), "open");
    sensor.stop();
    let ctx = show(&own);
    assert!(by_receiver(&own), "the receiver's own record: {ctx}");
    assert_eq!(get_str(&own, "mnsensor.close.reason"), "close", "{ctx}");
    assert_eq!(get_u64(&own, "mnsensor.file.bytes_read"), 100, "{ctx}");
    assert_eq!(get_u64(&own, "mnsensor.file.read_calls"), 1, "{ctx}");
    assert!(by_receiver(&close), "closed by the receiver: {}", show(&close));
    assert_eq!(get_str(&close, "mnsensor.close.reason"), "close", "{}", show(&close));
    assert_eq!(get_u64(&close, "mnsensor.file.bytes_read"), PARENT_READ as u64 + 100, "{}", show(&close));
    assert_eq!(get_u64(&close, "mnsensor.file.read_calls"), 2, "{}", show(&close));
}

/// A receiver running as another user: its records name it, its own `file.close` holds
/// exactly its bytes, and the open's totals hold them with the opener's (docs/events.md,
/// `file.close`; docs/architecture.md, "Coverage").
#[test]
fn a_descriptor_received_over_scm_rights_is_attributed_to_the_receiver() {
    const NOBODY: u32 = 65534;
    const RECEIVER_READ: usize = 3000;
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (_tree, file, mut sensor, mut mine, theirs, child) = fork_receiver("release-scm-user");
    let ino = std::fs::metadata(&file).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).expect("stat");
    if child == 0 {
        // SAFETY: plain syscalls on our own descriptors and buffers; no allocation.
        unsafe {
            libc::alarm(120);
            let sock = theirs.as_raw_fd();
            let dropped =
                libc::setresgid(NOBODY, NOBODY, NOBODY) == 0 && libc::setresuid(NOBODY, NOBODY, NOBODY) == 0;
            let fd = recv_fd(sock);
            let mut buf = [0u8; 1000];
            let mut calls = 0u8;
            let mut got = 0;
            while dropped && fd >= 0 && got < RECEIVER_READ {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len().min(RECEIVER_READ - got));
                if n <= 0 {
                    break;
                }
                got += n as usize;
                calls += 1;
            }
            libc::close(fd);
            let result = if got == RECEIVER_READ { calls } else { 0 };
            libc::write(sock, (&raw const result).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(theirs);
    let fd = open_read_send(&file, &mine);
    let mut calls = [0u8; 1];
    mine.read_exact(&mut calls).expect("the receiver's result");
    assert!(calls[0] > 0, "the receiver failed to drop to uid {NOBODY}, receive or read");
    assert_eq!(waitpid_status(child as u32), 0, "the receiver failed");
    // SAFETY: our descriptor; this close is the last.
    unsafe { libc::close(fd) };
    let receiver = child as u32;
    let open =
        sensor.wait_for("the receiver's file.open", |e| is(e, "file.open") && pid_of(e) == Some(receiver));
    let own = close_of(&mut sensor, test_pid(), "receiver");
    let close = close_of(&mut sensor, test_pid(), "open");
    sensor.stop();
    let ctx = show(&open);
    assert_eq!(get_u64(&open, "file.inode"), ino, "{ctx}");
    assert_eq!(get_str(&open, "mnsensor.syscall"), "recvmsg", "{ctx}");
    assert_eq!(get_u64(&open, "process.user.id"), u64::from(NOBODY), "{ctx}");
    assert_eq!(get_u64(&open, "mnsensor.process.group.id"), u64::from(NOBODY), "{ctx}");
    let ctx = show(&own);
    assert_eq!(pid_of(&own), Some(receiver), "{ctx}");
    assert_eq!(get_u64(&own, "process.user.id"), u64::from(NOBODY), "{ctx}");
    assert_eq!(get_u64(&own, "file.inode"), ino, "{ctx}");
    assert_eq!(get_str(&own, "file.path"), path_str(&file), "{ctx}");
    assert_eq!(get_u64(&own, "mnsensor.file.bytes_read"), RECEIVER_READ as u64, "{ctx}");
    assert_eq!(get_u64(&own, "mnsensor.file.read_calls"), u64::from(calls[0]), "{ctx}");
    assert_eq!(get_u64(&own, "mnsensor.file.opener.user.id"), 0, "{ctx}");
    let ctx = show(&close);
    assert_eq!(get_u64(&close, "file.inode"), ino, "{ctx}");
    assert_eq!(get_u64(&close, "mnsensor.file.bytes_read"), (PARENT_READ + RECEIVER_READ) as u64, "{ctx}");
    assert_eq!(get_u64(&close, "mnsensor.file.read_calls"), 1 + u64::from(calls[0]), "{ctx}");
    assert_eq!(get_u64(&close, "mnsensor.file.opener.user.id"), 0, "{ctx}");
}

/// A receiver that exits with the descriptor still open: the daemon writes its own record
/// (reason `exit`) at its `process.exit`, with exactly what its reads returned; the open's
/// record, at this process's close, holds both.
#[test]
fn a_receiver_that_exits_with_the_descriptor_gets_its_own_record() {
    const RECEIVER_READ: usize = 700;
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (_tree, file, mut sensor, mut mine, theirs, child) = fork_receiver("release-scm-exit");
    if child == 0 {
        // SAFETY: plain syscalls on our own descriptors and buffers; no allocation.
        unsafe {
            libc::alarm(120);
            let sock = theirs.as_raw_fd();
            let fd = recv_fd(sock);
            let mut buf = [0u8; RECEIVER_READ];
            let n = if fd >= 0 { libc::read(fd, buf.as_mut_ptr().cast(), RECEIVER_READ) } else { -1 };
            let result = (n as i32).to_ne_bytes();
            libc::write(sock, result.as_ptr().cast(), 4);
            // Leaves with the descriptor open.
            libc::_exit(0);
        }
    }
    drop(theirs);
    let fd = open_read_send(&file, &mine);
    let mut got = [0u8; 4];
    mine.read_exact(&mut got).expect("the receiver's result");
    let got = i32::from_ne_bytes(got);
    assert!(got > 0, "the receiver failed to receive or read: {got}");
    assert_eq!(waitpid_status(child as u32), 0, "the receiver failed");
    let receiver = child as u32;
    let own = close_of(&mut sensor, test_pid(), "receiver");
    // SAFETY: our descriptor; this close is the last.
    unsafe { libc::close(fd) };
    let close = close_of(&mut sensor, test_pid(), "open");
    sensor.stop();
    let ctx = show(&own);
    assert_eq!(pid_of(&own), Some(receiver), "{ctx}");
    assert_eq!(get_str(&own, "mnsensor.close.reason"), "exit", "{ctx}");
    assert_eq!(get_str(&own, "file.path"), path_str(&file), "{ctx}");
    assert_eq!(get_u64(&own, "mnsensor.file.bytes_read"), got as u64, "{ctx}");
    assert_eq!(get_u64(&own, "mnsensor.file.read_calls"), 1, "{ctx}");
    let ctx = show(&close);
    assert_eq!(get_u64(&close, "mnsensor.file.bytes_read"), (PARENT_READ as u64) + got as u64, "{ctx}");
    assert_eq!(get_u64(&close, "mnsensor.file.read_calls"), 2, "{ctx}");
}

/// docs/events.md: bytes are counted for the opener and the processes that inherited the
/// descriptor by fork after the open. Ground truth: what each process's read(2) returned.
#[test]
fn bytes_read_by_a_child_through_an_inherited_descriptor_are_counted() {
    const CHILD_READ: usize = 100;
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let tree = TempDir::new("release-inherited");
    let protected = tree.mkdir("protected");
    let file = tree.write("protected/data.bin", vec![b'1'; SIZE]);
    let mut sensor = Sensor::start(&["--protect", path_str(&protected)]);
    let c = c_path(&file);
    // SAFETY: valid path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
    let mut buf = vec![0u8; SIZE];
    // SAFETY: the buffer outlives the read.
    assert_eq!(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), PARENT_READ) }, PARENT_READ as isize);
    // SAFETY: the child only reads into a stack buffer and leaves with _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
    if child == 0 {
        let mut mine = [0u8; CHILD_READ];
        // SAFETY: plain read into a local buffer, then _exit.
        unsafe {
            let n = libc::read(fd, mine.as_mut_ptr().cast(), CHILD_READ);
            libc::_exit(if n == CHILD_READ as isize { 0 } else { 1 });
        }
    }
    assert_eq!(waitpid_status(child as u32), 0, "the child did not read {CHILD_READ} bytes");
    // The offset is shared: the rest of the file.
    let rest = SIZE - PARENT_READ - CHILD_READ;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), SIZE) }, rest as isize, "the rest");
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    let me = u64::from(test_pid());
    let close = sensor.wait_for("file.close of the shared descriptor", |e| {
        is(e, "file.close")
            && e.get("mnsensor.file.opener.pid").and_then(Value::as_u64) == Some(me)
            && e.get("file.path").and_then(Value::as_str) == Some(path_str(&file))
    });
    sensor.stop();
    assert_eq!(get_u64(&close, "mnsensor.file.bytes_read"), SIZE as u64, "all three reads: {}", show(&close));
    assert_eq!(get_u64(&close, "mnsensor.file.read_calls"), 3, "{}", show(&close));
}
