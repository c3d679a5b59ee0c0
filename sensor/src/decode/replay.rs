//! Synthesised kernel records: the mix of a protected-file storm, as the kernel programs write
//! them to the ring buffer. For the consumer benchmark (`sensor/benches/consumer.rs`,
//! `cargo xtask bench --consumer`) and the encoder's golden test.
use std::mem::offset_of;

use sensor_common::event::{
    Header, Kind, Task,
    file::{Close, Open, Tracked},
    net::Conn,
    process::{Exec, Exit, Fork},
};

fn task(tgid: u32) -> Task {
    let mut comm = [0u8; 16];
    comm[..6].copy_from_slice(b"worker");
    Task {
        tgid,
        tid: tgid,
        ppid: 1,
        uid: 0,
        gid: 0,
        euid: 0,
        egid: 0,
        auid: 1000,
        sessionid: 3,
        _pad: 0,
        comm,
    }
}

fn header(kind: Kind, tgid: u32, time_ns: u64) -> Header {
    Header { kind: kind as u32, flags: 0, time_ns, task: task(tgid) }
}

/// The first `len` bytes of a wire struct, as the kernel sends them.
pub fn wire<T: Copy>(v: &T, len: usize) -> Vec<u8> {
    // SAFETY: T is a plain repr(C) wire type; we read at most its size.
    let all = unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) };
    all[..len.min(all.len())].to_vec()
}

/// A kernel path area: leaf first, NUL-separated.
fn kernel_path(path: &str, data: &mut [u8]) -> u16 {
    let mut n = 0;
    for part in path.rsplit('/').filter(|p| !p.is_empty()) {
        data[n..n + part.len()].copy_from_slice(part.as_bytes());
        n += part.len();
        data[n] = 0;
        n += 1;
    }
    n as u16
}

/// `count` records: four exec'd processes, then per 16 records 7 opens and 7 closes of 64
/// protected files, a connect and a connection close, and every 1,000 records a fork and an
/// exit.
pub fn synthesise(count: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(count);
    let pids = [4100u32, 4101, 4102, 4103];
    let mut t = 1_000_000_000u64;
    for &pid in &pids {
        // SAFETY: all-zero is a valid wire struct.
        let mut ex: Box<Exec> = Box::new(unsafe { std::mem::zeroed() });
        ex.header = header(Kind::Exec, pid, t);
        ex.old_pid = pid;
        let exe = kernel_path("/usr/bin/python3.11", &mut ex.data);
        let argv = b"python3\0/srv/app/report.py\0--month\x00202611\0";
        ex.data[exe as usize..exe as usize + argv.len()].copy_from_slice(argv);
        let cwd = kernel_path("/srv/app", &mut ex.data[exe as usize + argv.len()..]);
        ex.exe_len = exe;
        ex.argv_len = argv.len() as u16;
        ex.cwd_len = cwd;
        ex.exe_dev = (8 << 20) | 1;
        ex.exe_ino = 131_077;
        out.push(wire(&*ex, offset_of!(Exec, data) + (exe + ex.argv_len + cwd) as usize));
    }
    let mut file = 0xffff_8880_0000_0000u64;
    while out.len() < count {
        let i = out.len();
        let pid = pids[i % pids.len()];
        t += 1_000;
        if i % 1000 == 0 {
            let fork = Fork {
                header: header(Kind::Fork, pid, t),
                child_tgid: 9000 + (i as u32 % 7),
                child_tid: 9000,
            };
            out.push(wire(&fork, size_of::<Fork>()));
            let exit = Exit { header: header(Kind::Exit, 9000 + (i as u32 % 7), t), exit_code: 0, _pad: 0 };
            out.push(wire(&exit, size_of::<Exit>()));
            continue;
        }
        match i % 16 {
            14 | 15 => {
                // SAFETY: all-zero is a valid wire struct.
                let mut c: Conn = unsafe { std::mem::zeroed() };
                c.header = header(if i % 16 == 14 { Kind::NetConnect } else { Kind::NetClose }, pid, t);
                c.family = 2;
                c.protocol = 6;
                c.sport = 40_000;
                c.dport = 443;
                c.saddr[..4].copy_from_slice(&[10, 0, 0, 5]);
                c.daddr[..4].copy_from_slice(&[10, 0, 0, 9]);
                c.oldstate = 1;
                out.push(wire(&c, size_of::<Conn>()));
            }
            n if n % 2 == 0 => {
                // SAFETY: all-zero is a valid wire struct.
                let mut o: Box<Open> = Box::new(unsafe { std::mem::zeroed() });
                o.header = header(Kind::FileOpen, pid, t);
                o.ino = 262_145 + (i % 64) as u64;
                o.dev = (8 << 20) | 1;
                o.flags = 0o100000;
                o.fd = 5;
                o.syscall = 257;
                file += 64;
                o.file = file;
                o.rule = 0;
                o.path_len = kernel_path(&format!("/srv/mynumber/人事/社員{:02}.xlsx", i % 64), &mut o.data);
                out.push(wire(&*o, offset_of!(Open, data) + o.path_len as usize));
            }
            _ => {
                // SAFETY: all-zero is a valid wire struct.
                let mut c: Box<Close> = Box::new(unsafe { std::mem::zeroed() });
                c.header = header(Kind::FileClose, pid, t);
                c.file = file;
                c.fd = 5;
                c.stats = Tracked {
                    opener: task(pid),
                    ino: 262_145 + (i % 64) as u64,
                    dev: (8 << 20) | 1,
                    io: 1,
                    opened_ns: t - 500,
                    bytes_read: 4096,
                    read_calls: 2,
                    ..Tracked::default()
                };
                // The tracepoint backend sends the path again; the release backend does not.
                c.path_len =
                    kernel_path(&format!("/srv/mynumber/人事/社員{:02}.xlsx", (i - 1) % 64), &mut c.data);
                out.push(wire(&*c, offset_of!(Close, data) + c.path_len as usize));
            }
        }
    }
    out
}
