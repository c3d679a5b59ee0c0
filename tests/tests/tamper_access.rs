//! `sensor.tamper` for access to the sensor's memory and maps from outside: `/proc/<pid>/mem`
//! and `environ` opened by another process, and bpf(2) writes to the sensor's own maps. Each
//! actor is a child this test forks that switches to a user of its own (keeping its
//! capabilities, as a root attacker would) and only ever acts on the sensor this test started.

use std::{ffi::CString, io};

use mnsensor_tests::{Sensor, get_str, get_str_array, get_u64, is, pid_of, show, test_pid, waitpid_status};
use serde_json::Value;

/// The actors' user: not root, not the test's.
const ACTOR_UID: u32 = 40_123;

/// `_LINUX_CAPABILITY_VERSION_3` and `struct __user_cap_data_struct`
/// (<https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/capability.h#L39>).
const CAP_V3: u32 = 0x2008_0522;
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// In the child: becomes `ACTOR_UID` with the capabilities it had (raw syscalls only).
fn become_actor() -> bool {
    let mut head = [CAP_V3, 0];
    let mut data = [CapData::default(); 2];
    // SAFETY: raw syscalls on local buffers of the sizes the kernel expects.
    unsafe {
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0
            || libc::setresuid(ACTOR_UID, ACTOR_UID, ACTOR_UID) != 0
            || libc::syscall(libc::SYS_capget, head.as_mut_ptr(), data.as_mut_ptr()) != 0
        {
            return false;
        }
        for d in &mut data {
            d.effective = d.permitted;
        }
        libc::syscall(libc::SYS_capset, head.as_mut_ptr(), data.as_ptr()) == 0
    }
}

/// Forks a child that becomes the actor's user and runs `act` (raw syscalls only); returns
/// its pid once it exited, and asserts that `act` succeeded.
fn actor(act: impl FnOnce() -> bool) -> u32 {
    // SAFETY: the child only makes raw syscalls and `_exit`.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", io::Error::last_os_error()),
        0 => {
            let code = if !become_actor() {
                2
            } else if act() {
                0
            } else {
                1
            };
            // SAFETY: `_exit` is async-signal-safe.
            unsafe { libc::_exit(code) }
        }
        pid => {
            let pid = u32::try_from(pid).expect("positive pid");
            let status = waitpid_status(pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "actor {pid} failed (2: could not change user, 1: its syscall failed): {status:#x}"
            );
            pid
        }
    }
}

/// Starts a sensor and checks that it watches `kind` (every supported kernel has the
/// tracepoints these kinds use).
fn sensor_watching(kind: &str) -> Sensor {
    sensor_with(kind, &[])
}

/// [`sensor_watching`] with the sensor's arguments.
fn sensor_with(kind: &str, args: &[&str]) -> Sensor {
    let sensor = Sensor::start(args);
    let off = get_str_array(sensor.start_event(), "mnsensor.tamper.off");
    assert!(!off.iter().any(|k| k == kind), "{kind} is not watched: {}", show(sensor.start_event()));
    sensor
}

/// The `sensor.tamper` record of `kind` by `pid` for which `extra` holds; checks the actor.
fn wait_tamper(sensor: &mut Sensor, kind: &str, pid: u32, extra: impl Fn(&Value) -> bool) -> Value {
    let ev = sensor.wait_for(&format!("sensor.tamper {kind} by pid {pid}"), |e| {
        is(e, "sensor.tamper")
            && pid_of(e) == Some(pid)
            && e.get("mnsensor.tamper.kind").and_then(Value::as_str) == Some(kind)
            && extra(e)
    });
    assert_eq!(get_u64(&ev, "process.parent_pid"), u64::from(test_pid()), "actor's parent: {}", show(&ev));
    assert_eq!(get_u64(&ev, "process.user.id"), u64::from(ACTOR_UID), "actor's uid: {}", show(&ev));
    let exe = std::fs::read_link("/proc/self/exe").expect("own exe");
    assert_eq!(
        get_str(&ev, "process.executable.path"),
        mnsensor_tests::path_str(&exe),
        "actor's exe: {}",
        show(&ev)
    );
    ev
}

/// Every `sensor.tamper` record of `kind` by `pid`.
fn all_of(sensor: &mut Sensor, kind: &str, pid: u32) -> Vec<Value> {
    sensor.matching(|e| {
        is(e, "sensor.tamper")
            && e.get("mnsensor.tamper.kind").and_then(Value::as_str) == Some(kind)
            && pid_of(e) == Some(pid)
    })
}

/// In the child: opens `path` with `flags` and closes it.
fn open_close(path: &CString, flags: i32) -> bool {
    // SAFETY: open/close on a prepared path.
    unsafe {
        let fd = libc::open(path.as_ptr(), flags);
        fd >= 0 && libc::close(fd) == 0
    }
}

/// A sensor that protects nothing: a program of its own watches the open syscalls.
#[test]
fn opening_the_sensors_proc_mem_and_environ_names_the_actor() {
    proc_files_name_the_actor(sensor_watching("proc_mem"));
}

/// A sensor that protects a directory: the open program checks `/proc` opens itself.
#[test]
fn with_protected_files_the_open_program_sees_proc_mem() {
    let dir = mnsensor_tests::TempDir::new("tamper-protect");
    let sensor = sensor_with("proc_mem", &["--protect", mnsensor_tests::path_str(dir.path())]);
    let attached = get_str_array(sensor.start_event(), "mnsensor.bpf.programs");
    assert!(
        !attached.iter().any(|p| p.starts_with("tamper_proc_open@")),
        "the open program does the check: {attached:?}"
    );
    proc_files_name_the_actor(sensor);
}

fn proc_files_name_the_actor(mut sensor: Sensor) {
    let pid = sensor.pid();
    let c = |p: String| CString::new(p).expect("no NUL");
    let mem = c(format!("/proc/{pid}/mem"));
    let environ = c(format!("/proc/{pid}/environ"));
    let task_mem = c(format!("/proc/{pid}/task/{pid}/mem"));
    let own_mem = c("/proc/self/mem".to_owned());

    let reader = actor(|| open_close(&mem, libc::O_RDWR));
    let ev = wait_tamper(&mut sensor, "proc_mem", reader, |_| true);
    assert_eq!(get_u64(&ev, "mnsensor.tamper.target_pid"), u64::from(pid), "{}", show(&ev));
    assert_eq!(get_str(&ev, "mnsensor.tamper.access"), "read_write", "{}", show(&ev));

    let env_reader = actor(|| open_close(&environ, libc::O_RDONLY));
    let ev = wait_tamper(&mut sensor, "proc_environ", env_reader, |_| true);
    assert_eq!(get_str(&ev, "mnsensor.tamper.access"), "read", "{}", show(&ev));

    // The same file under the thread's directory; the actor's own /proc/self/mem first, which
    // is not the sensor's and must not be reported.
    let thread_reader =
        actor(|| open_close(&own_mem, libc::O_RDONLY) && open_close(&task_mem, libc::O_RDONLY));
    let ev = wait_tamper(&mut sensor, "proc_mem", thread_reader, |_| true);
    assert_eq!(get_str(&ev, "mnsensor.tamper.access"), "read", "{}", show(&ev));
    sensor.stop();
    let records = all_of(&mut sensor, "proc_mem", thread_reader);
    assert_eq!(records.len(), 1, "only the sensor's mem is reported: {records:?}");
}

/// `union bpf_attr` for the element commands: map_fd, key, value, flags.
#[repr(C)]
struct Elem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
/// `BPF_EXIST`: update an existing element only.
const BPF_EXIST: u64 = 2;

/// In the child: bpf(2) with `attr`.
fn sys_bpf<T>(cmd: libc::c_long, attr: &T) -> libc::c_long {
    // SAFETY: `attr` is a live `union bpf_attr` prefix for `cmd`.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_ref(attr), size_of::<T>()) }
}

/// In the child: element 0 of the u32 array `fd` written back with the value it has.
fn rewrite_first(fd: u32) -> bool {
    let key = 0u32;
    let mut value = 0u32;
    let mut elem =
        Elem { map_fd: fd, _pad: 0, key: &raw const key as u64, value: &raw mut value as u64, flags: 0 };
    if sys_bpf(BPF_MAP_LOOKUP_ELEM, &elem) != 0 {
        return false;
    }
    elem.flags = BPF_EXIST;
    sys_bpf(BPF_MAP_UPDATE_ELEM, &elem) == 0
}

#[test]
fn writes_to_the_sensors_maps_name_the_map_and_the_actor() {
    let mut sensor = sensor_watching("bpf_map");
    // `BACKEND`: a two-slot array the daemon sets once at start; the actor writes back the
    // value it reads, and a delete from an array always fails (EINVAL), so the sensor runs on
    // unchanged.
    let id = mnsensor_tests::bpf::map_id(sensor.pid(), "BACKEND");
    let writer = actor(|| {
        // A map of its own first: writes to it are not the sensor's business.
        let create: [u32; 4] = [2, 4, 4, 1]; // BPF_MAP_TYPE_ARRAY, key 4, value 4, 1 entry
        let own = sys_bpf(BPF_MAP_CREATE, &create);
        let theirs = sys_bpf(BPF_MAP_GET_FD_BY_ID, &[id, 0, 0, 0]);
        if own < 0 || theirs < 0 || !rewrite_first(own as u32) || !rewrite_first(theirs as u32) {
            return false;
        }
        let key = 0u32;
        let delete = Elem { map_fd: theirs as u32, _pad: 0, key: &raw const key as u64, value: 0, flags: 0 };
        sys_bpf(BPF_MAP_DELETE_ELEM, &delete) != 0
    });
    for command in ["BPF_MAP_UPDATE_ELEM", "BPF_MAP_DELETE_ELEM"] {
        let ev = wait_tamper(&mut sensor, "bpf_map", writer, |e| {
            e.get("mnsensor.tamper.bpf_command").and_then(Value::as_str) == Some(command)
        });
        assert_eq!(get_u64(&ev, "mnsensor.tamper.map_id"), u64::from(id), "{}", show(&ev));
        assert_eq!(get_str(&ev, "mnsensor.tamper.map_name"), "BACKEND", "{}", show(&ev));
    }
    sensor.stop();
    let records = all_of(&mut sensor, "bpf_map", writer);
    assert_eq!(records.len(), 2, "the actor's own map is not reported: {records:?}");
}

/// A sensor with a self-inventory every second.
fn sensor_with_inventory() -> (Sensor, mnsensor_tests::TempDir) {
    let dir = mnsensor_tests::TempDir::new("tamper-links");
    let config = dir.write("config.yaml", "inventory_interval_s: 1\n");
    (Sensor::start(&["--config", mnsensor_tests::path_str(&config)]), dir)
}

#[test]
fn tracepoint_links_cannot_be_detached_from_outside() {
    use mnsensor_tests::bpf::{LINK_TYPE_PERF_EVENT, LINK_TYPE_RAW_TRACEPOINT, links};
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
    const BPF_LINK_DETACH: libc::c_long = 34;
    let (mut sensor, _dir) = sensor_with_inventory();
    let programs = sensor.program_ids().to_vec();
    let ours = || {
        let mut l: Vec<_> = links()
            .into_iter()
            .filter(|l| {
                programs.contains(&l.prog_id)
                    && matches!(l.kind, LINK_TYPE_PERF_EVENT | LINK_TYPE_RAW_TRACEPOINT)
            })
            .collect();
        l.sort_by_key(|l| l.id);
        l
    };
    let before = ours();
    for kind in [LINK_TYPE_PERF_EVENT, LINK_TYPE_RAW_TRACEPOINT] {
        assert!(before.iter().any(|l| l.kind == kind), "no link of type {kind} of the sensor's: {before:?}");
    }
    // A copy of a perf event descriptor (pidfd_getfd) could be disabled with
    // PERF_EVENT_IOC_DISABLE; the sensor keeps only the links, which hold their perf events.
    let perf_fds: Vec<_> = std::fs::read_dir(format!("/proc/{}/fd", sensor.pid()))
        .expect("the sensor's fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().contains("perf_event"))
        .collect();
    assert!(perf_fds.is_empty(), "the sensor holds perf event descriptors: {perf_fds:?}");
    // Another root process tries BPF_LINK_DETACH on every tracepoint and raw tracepoint link
    // of the sensor's; the kernel has no detach operation for them (EOPNOTSUPP). The exit
    // code names the first link where anything else happened.
    let ids: Vec<u32> = before.iter().map(|l| l.id).collect();
    let detacher = actor(|| {
        for id in &ids {
            let fd = sys_bpf(BPF_LINK_GET_FD_BY_ID, &[*id, 0, 0, 0]);
            if fd < 0 {
                return false;
            }
            let refused = sys_bpf(BPF_LINK_DETACH, &[fd as u32, 0, 0, 0]) != 0
                // SAFETY: reads this thread's errno.
                && unsafe { *libc::__errno_location() } == libc::EOPNOTSUPP;
            if !refused {
                return false;
            }
        }
        true
    });
    // The attempt is a `bpf` record naming the actor.
    wait_tamper(&mut sensor, "bpf", detacher, |e| {
        e.get("mnsensor.tamper.bpf_command").and_then(Value::as_str) == Some("BPF_LINK_DETACH")
    });
    // Every link is still there, and after two inventories nothing is reported missing.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(ours(), before, "the sensor's tracepoint links changed");
    // The programs still run: a signal (raw tracepoint) and process_vm_readv (tracepoint).
    let target = libc::pid_t::try_from(sensor.pid()).expect("pid fits");
    let mut buf = [0u8; 8];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: buf.len() };
    let prober = actor(|| {
        // SAFETY: kill(2) with an ignored signal; process_vm_readv(2) of the unmapped address
        // 0 fails after the entry the sensor watches.
        unsafe {
            libc::process_vm_readv(target, &local, 1, &remote, 1, 0);
            libc::kill(target, libc::SIGWINCH) == 0
        }
    });
    wait_tamper(&mut sensor, "signal", prober, |_| true);
    wait_tamper(&mut sensor, "process_vm_read", prober, |_| true);
    sensor.stop();
    let inventory = sensor.matching(|e| {
        is(e, "sensor.tamper")
            && matches!(
                e.get("mnsensor.tamper.kind").and_then(Value::as_str),
                Some("program_detached" | "link_missing" | "program_replaced" | "program_missing")
            )
    });
    assert!(inventory.is_empty(), "the inventory found a change: {inventory:?}");
}
