//! The measured side, `xtask bench workload …`: every sample is a fresh process (audit contexts
//! and the sensor's per-process state are decided at fork). Each run prints one JSON line.
use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::clock::{monotonic_ns, realtime_ns, thread_cpu_ns};

#[derive(Debug, Subcommand)]
pub enum Workload {
    /// N operations after N/10 warm-up ones; prints CPU ns (this thread) and wall ns per op.
    Op {
        #[arg(long)]
        op: Op,
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        n: u64,
    },
    /// open+close of the PATHs in turn at RATE per second (0: as fast as possible) from
    /// THREADS threads (each starting at another file).
    Produce {
        #[arg(long = "path", required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        threads: u32,
        #[arg(long)]
        secs: f64,
    },
    /// open+close of DIR/lat-FIRST, the next one, … (COUNT files) paced at RATE per second;
    /// prints the CLOCK_REALTIME read just before each open. Then TAIL_SECS more of TAIL_PATH
    /// at the same rate, so that the last probes see the same traffic as the others.
    Latency {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        first: usize,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        tail_path: PathBuf,
        #[arg(long)]
        tail_secs: f64,
    },
    /// BYTES over one loopback TCP connection (64 KiB writes); prints MB/s.
    Tcp {
        #[arg(long)]
        bytes: u64,
    },
    /// N loopback TCP connects (each closed at once); prints per-connect wall ns.
    Connect {
        #[arg(long)]
        n: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// open(O_RDONLY) + close.
    Open,
    /// stat.
    Stat,
    /// pread of 4 KiB at offset 0 on a descriptor opened once.
    Pread,
    /// read of 4 KiB, sequentially through the file (rewinding at its end), opened once.
    Read,
}

pub const CHUNK: usize = 4096;

pub fn run(workload: &Workload) -> Result<()> {
    let out = match workload {
        Workload::Op { op, path, n } => op_loop(*op, path, *n)?,
        Workload::Produce { paths, rate, threads, secs } => produce(paths, *rate, *threads, *secs)?,
        Workload::Latency { dir, first, count, rate, tail_path, tail_secs } => {
            latency(dir, *first, *count, *rate, tail_path, *tail_secs)?
        }
        Workload::Tcp { bytes } => super::egress::tcp(*bytes)?,
        Workload::Connect { n } => super::egress::connect(*n)?,
    };
    println!("{out}");
    Ok(())
}

/// Paths the loops hand to libc.
pub fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).with_context(|| format!("{} has a NUL byte", path.display()))
}

fn open_close(path: &CString) -> Result<()> {
    // SAFETY: `path` is NUL-terminated; the descriptor is ours and closed at once.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("open");
    }
    // SAFETY: as above.
    unsafe { libc::close(fd) };
    Ok(())
}

struct Runner {
    op: Op,
    path: CString,
    fd: libc::c_int,
    buf: Vec<u8>,
}

impl Runner {
    fn new(op: Op, path: &Path) -> Result<Self> {
        let path = c_path(path)?;
        let mut fd = -1;
        if matches!(op, Op::Pread | Op::Read) {
            // SAFETY: `path` is NUL-terminated; the descriptor is closed in Drop.
            fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("open");
            }
        }
        Ok(Self { op, path, fd, buf: vec![0; CHUNK] })
    }

    fn once(&mut self) -> Result<()> {
        let buf = self.buf.as_mut_ptr().cast();
        match self.op {
            Op::Open => open_close(&self.path)?,
            Op::Stat => {
                // SAFETY: `st` is writable and `path` NUL-terminated.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                if unsafe { libc::stat(self.path.as_ptr(), &mut st) } != 0 {
                    return Err(std::io::Error::last_os_error()).context("stat");
                }
            }
            // SAFETY (both reads): `buf` holds CHUNK writable bytes; `fd` is open.
            Op::Pread => {
                if unsafe { libc::pread(self.fd, buf, CHUNK, 0) } < 0 {
                    return Err(std::io::Error::last_os_error()).context("pread");
                }
            }
            Op::Read => {
                let mut got = unsafe { libc::read(self.fd, buf, CHUNK) };
                if got == 0 {
                    unsafe { libc::lseek(self.fd, 0, libc::SEEK_SET) };
                    got = unsafe { libc::read(self.fd, buf, CHUNK) };
                }
                if got <= 0 {
                    return Err(std::io::Error::last_os_error()).context("read");
                }
            }
        }
        Ok(())
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if self.fd >= 0 {
            // SAFETY: our descriptor.
            unsafe { libc::close(self.fd) };
        }
    }
}

fn op_loop(op: Op, path: &Path, n: u64) -> Result<serde_json::Value> {
    let mut runner = Runner::new(op, path)?;
    for _ in 0..n / 10 {
        runner.once()?;
    }
    let (wall0, cpu0) = (monotonic_ns(), thread_cpu_ns());
    let mut i = 0;
    while i < n {
        runner.once()?;
        i += 1;
    }
    let (cpu, wall) = (thread_cpu_ns() - cpu0, monotonic_ns() - wall0);
    Ok(json!({
        "pid": std::process::id(),
        "n": n,
        "warmup": n / 10,
        "cpu_ns": cpu as f64 / n as f64,
        "wall_ns": wall as f64 / n as f64,
    }))
}

fn produce(paths: &[PathBuf], rate: u64, threads: u32, secs: f64) -> Result<serde_json::Value> {
    let paths = paths.iter().map(|p| c_path(p)).collect::<Result<Vec<_>>>()?;
    let start = monotonic_ns();
    let end = start + (secs * 1e9) as u64;
    let per_thread = rate as f64 / f64::from(threads);
    let handles: Vec<_> = (0..threads as usize)
        .map(|t| {
            let mut paths = paths.clone();
            let first = t * paths.len() / threads as usize;
            paths.rotate_left(first);
            thread::spawn(move || paced(&paths, per_thread, start, end))
        })
        .collect();
    let mut opens = 0;
    for h in handles {
        opens += h.join().map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
    }
    let elapsed = (monotonic_ns() - start) as f64 / 1e9;
    Ok(
        json!({ "pid": std::process::id(), "opens": opens, "elapsed_s": elapsed, "rate": opens as f64 / elapsed }),
    )
}

/// Opens `paths` in turn at `rate` per second until `end`, in bursts of at most 256, sleeping
/// 20 µs when ahead.
fn paced(paths: &[CString], rate: f64, start: u64, end: u64) -> Result<u64> {
    // SAFETY: plain prctl; a 1 ns timer slack makes the 20 µs sleeps short.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut done = 0u64;
    loop {
        let now = monotonic_ns();
        if now >= end {
            return Ok(done);
        }
        let due = if rate > 0.0 { ((now - start) as f64 * 1e-9 * rate) as u64 + 1 } else { done + 256 };
        if done >= due {
            thread::sleep(Duration::from_micros(20));
            continue;
        }
        for _ in 0..(due - done).min(256) {
            open_close(&paths[done as usize % paths.len()])?;
            done += 1;
        }
    }
}

fn latency(
    dir: &Path,
    first: usize,
    count: usize,
    rate: u64,
    tail: &Path,
    tail_secs: f64,
) -> Result<serde_json::Value> {
    if rate == 0 {
        bail!("--rate must be > 0");
    }
    let paths =
        (first..first + count).map(|i| c_path(&dir.join(latency_name(i)))).collect::<Result<Vec<_>>>()?;
    let period = 1_000_000_000 / rate;
    let start = monotonic_ns();
    let mut times = Vec::with_capacity(count);
    for (i, path) in paths.iter().enumerate() {
        let due = start + i as u64 * period;
        let now = monotonic_ns();
        if due > now {
            thread::sleep(Duration::from_nanos(due - now));
        }
        times.push(realtime_ns());
        open_close(path)?;
    }
    let now = monotonic_ns();
    paced(&[c_path(tail)?], rate as f64, now, now + (tail_secs * 1e9) as u64)?;
    Ok(json!({ "pid": std::process::id(), "t_ns": times }))
}

/// The name of the `i`th latency file.
pub fn latency_name(i: usize) -> String {
    format!("lat-{i:05}")
}
