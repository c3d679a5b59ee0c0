//! From kernel records to output records.
//!
//! One module per event family, paired with `sensor-common/src/event/<family>.rs` (wire
//! types) and `sensor-ebpf/src/<family>.rs` (kernel half). Attribute keys: [`attr`], the
//! schema: docs/events.md.
pub mod attr;
pub mod change;
pub mod decision;
pub mod file;
pub mod net;
pub mod path;
pub mod process;
pub mod record;
pub mod sensor;
pub mod time;

use sensor_common::event::{FLAG_ARGV_TRUNCATED, FLAG_PATH_TRUNCATED, FLAG_READ_ERROR, Header, Kind, Task};

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

pub use self::record::Record;

/// How long closes and kernel change records are remembered for the fanotify observer.
const RECENT: Duration = Duration::from_secs(5);
/// Most closers remembered per file.
const MAX_CLOSERS: usize = 16;
/// Most files (closes) and changes remembered.
const MAX_RECENT: usize = 1 << 18;
use crate::{proctable::ProcTable, protect::ProtectSet, users::Names};

/// The `event.name` of a kernel record kind.
pub const fn name_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Exec => "process.exec",
        Kind::Fork => "process.fork",
        Kind::Exit => "process.exit",
        Kind::FileOpen => "file.open",
        Kind::NetConnect => "network.connect",
        Kind::NetAccept => "network.accept",
        Kind::NetClose => "network.close",
        Kind::FileClose => "file.close",
        Kind::PolicyDecision => "policy.decision",
        // The record is named by its operation (`file.delete`, …); this names its losses.
        Kind::FileChange => "file.change",
    }
}

/// What decoding needs besides the record: the process table, names, clock, protected set.
pub struct Decoder {
    pub procs: ProcTable,
    /// Path and protection rule of each tracked open file, by `struct file` address, for
    /// `file.close` records the daemon writes itself (opener exited, sensor stopping).
    pub open_files: HashMap<u64, file::OpenFile>,
    /// Recent closes by file `(dev, ino)`: `(when, tgid)` of its closers, so that an access
    /// fanotify reports just after the close record was decoded is still explained.
    pub recent_closes: HashMap<(u32, u64), Vec<(Instant, u32)>>,
    /// Recent change records from the kernel by `(event name, path)`: the fanotify observer
    /// does not report these again (it still reports what the kernel hooks do not see, such
    /// as the in-kernel NFS server's deletions).
    pub recent_changes: HashMap<(&'static str, String), Instant>,
    /// When the two maps above were last pruned.
    pub pruned: Instant,
    /// Opens of protected files decoded since the daemon last judged them against the
    /// audit-mode policies.
    pub opens: Vec<file::OpenSeen>,
    /// The policy set in force (for the BPF LSM program's decision records).
    pub policies: std::sync::Arc<crate::enforce::Policies>,
    pub names: Names,
    pub clock: time::Clock,
    pub protect: ProtectSet,
}

/// A record the daemon could not decode (a kernel/daemon version mismatch or a bug).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its kind's fixed part.
    #[error("kernel record of kind {kind} is {len} bytes, shorter than its {need}-byte header")]
    Short { kind: u32, len: usize, need: usize },
    /// Unknown kind number.
    #[error("kernel record has unknown kind {0}")]
    UnknownKind(u32),
    /// A file change record with an unknown operation.
    #[error("kernel file change record has unknown operation {0}")]
    UnknownOp(u32),
}

impl Decoder {
    /// Decodes one ring-buffer record; `None` for a record about a file that turned out not
    /// to be protected (a hard link's name, resolved here).
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Option<Record>, DecodeError> {
        let header: Header = read_struct(bytes, 0)?;
        let kind = Kind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
        let mut rec = Record::new(name_of(kind), self.clock.wall_ns(header.time_ns));
        match kind {
            Kind::Exec => process::exec(self, bytes, &mut rec)?,
            Kind::Fork => process::fork(self, bytes, &mut rec)?,
            Kind::Exit => process::exit(self, bytes, &mut rec)?,
            Kind::FileOpen => file::open(self, bytes, &mut rec)?,
            Kind::FileClose => file::close(self, bytes, &mut rec)?,
            Kind::PolicyDecision => decision::from_kernel(self, bytes, &mut rec)?,
            Kind::NetConnect | Kind::NetAccept | Kind::NetClose => net::conn(self, kind, bytes, &mut rec)?,
            Kind::FileChange => {
                if !change::change(self, bytes, &mut rec)? {
                    return Ok(None);
                }
            }
        }
        rec.flag(attr::PATH_TRUNCATED, header.flags & FLAG_PATH_TRUNCATED != 0)
            .flag(attr::ARGV_TRUNCATED, header.flags & FLAG_ARGV_TRUNCATED != 0)
            .flag(attr::READ_ERROR, header.flags & FLAG_READ_ERROR != 0);
        Ok(Some(rec))
    }

    /// Remembers a close for [`Self::explains`].
    pub fn note_closed(&mut self, tgid: u32, dev: u32, ino: u64) {
        let now = Instant::now();
        self.prune(now);
        if self.recent_closes.len() >= MAX_RECENT && !self.recent_closes.contains_key(&(dev, ino)) {
            return;
        }
        let closers = self.recent_closes.entry((dev, ino)).or_default();
        closers.retain(|(t, p)| now.duration_since(*t) < RECENT && *p != tgid);
        if closers.len() < MAX_CLOSERS {
            closers.push((now, tgid));
        }
    }

    /// Remembers a kernel change record for [`Self::kernel_reported`].
    pub fn note_change(&mut self, name: &'static str, path: &str) {
        let now = Instant::now();
        self.prune(now);
        if self.recent_changes.len() < MAX_RECENT {
            self.recent_changes.insert((name, path.to_owned()), now);
        }
    }

    /// Forgets closes and changes older than [`RECENT`], at most once a second (both maps are
    /// looked up by file, so their size costs memory, not time).
    fn prune(&mut self, now: Instant) {
        if now.duration_since(self.pruned) < Duration::from_secs(1) {
            return;
        }
        self.pruned = now;
        self.recent_closes.retain(|_, closers| {
            closers.retain(|(t, _)| now.duration_since(*t) < RECENT);
            !closers.is_empty()
        });
        self.recent_changes.retain(|_, t| now.duration_since(*t) < RECENT);
    }

    /// Whether the kernel reported `name` (`file.delete`, …) of `path` in the last seconds.
    pub fn kernel_reported(&self, name: &'static str, path: &std::path::Path) -> bool {
        let key = (name, path.to_string_lossy().into_owned());
        self.recent_changes.get(&key).is_some_and(|t| t.elapsed() < RECENT)
    }

    /// Whether the kernel records account for `pid` touching file `(dev, ino)`: it (or an
    /// ancestor, which may have handed it the descriptor) has the file open, or closed it in
    /// the last seconds.
    pub fn explains(&self, pid: u32, dev: u32, ino: u64) -> bool {
        let holders: Vec<u32> = self
            .open_files
            .values()
            .filter(|f| f.dev == dev && f.ino == ino)
            .map(|f| f.opener)
            .chain(
                self.recent_closes
                    .get(&(dev, ino))
                    .into_iter()
                    .flatten()
                    .filter(|(t, _)| t.elapsed() < RECENT)
                    .map(|(_, tgid)| *tgid),
            )
            .collect();
        if holders.is_empty() {
            return false;
        }
        let mut p = pid;
        for _ in 0..8 {
            if holders.contains(&p) {
                return true;
            }
            match procfs::process::Process::new(p as i32).and_then(|pr| pr.stat()) {
                Ok(stat) if stat.ppid > 0 => p = stat.ppid as u32,
                _ => return false,
            }
        }
        false
    }

    /// Adds the process attributes of `task`; executable and command line from the table.
    pub fn add_task(&mut self, task: &Task, rec: &mut Record) {
        rec.set(attr::PROCESS_PID, task.tgid)
            .set(attr::PROCESS_THREAD_ID, task.tid)
            .set(attr::PROCESS_PARENT_PID, task.ppid)
            .set(attr::PROCESS_USER_ID, task.euid)
            .set_opt(attr::PROCESS_USER_NAME, self.names.user(task.euid).as_deref())
            .set(attr::PROCESS_REAL_USER_ID, task.uid)
            .set_opt(attr::PROCESS_REAL_USER_NAME, self.names.user(task.uid).as_deref())
            .set(attr::PROCESS_GROUP_ID, task.egid)
            .set_opt(attr::PROCESS_GROUP_NAME, self.names.group(task.egid).as_deref())
            .set(attr::PROCESS_REAL_GROUP_ID, task.gid)
            .set(attr::PROCESS_COMM, cstr(&task.comm));
        if task.auid != u32::MAX {
            rec.set(attr::LOGIN_USER_ID, task.auid)
                .set_opt(attr::LOGIN_USER_NAME, self.names.user(task.auid).as_deref());
        }
        if task.sessionid != u32::MAX {
            rec.set(attr::SESSION_ID, task.sessionid);
        }
    }

    /// Adds executable, command line and attribution of `tgid` from the process table.
    pub fn add_program(&mut self, tgid: u32, rec: &mut Record) {
        match self.procs.get(tgid) {
            Some(info) => {
                if let Some(exe) = &info.exe {
                    rec.set(attr::PROCESS_EXECUTABLE_PATH, exe.as_ref())
                        .set(attr::PROCESS_EXECUTABLE_NAME, basename(exe));
                }
                rec.set(attr::PROCESS_COMMAND_LINE, info.args.join(" "))
                    .set(attr::PROCESS_COMMAND_ARGS, info.args.to_vec())
                    .set(attr::PROCESS_ATTRIBUTION, info.attribution.as_str());
            }
            None => {
                rec.set(attr::PROCESS_ATTRIBUTION, "unknown");
            }
        }
    }
}

/// The last component of a path.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A NUL-terminated byte string as text.
pub fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Copies a `#[repr(C)]` struct out of a record that may be shorter than the struct (the
/// kernel sends only the used part of trailing data arrays); missing bytes are zero. Fails
/// when even the part before `min` bytes is missing.
pub fn read_struct_prefix<T: Copy>(bytes: &[u8], min: usize) -> Result<Box<T>, DecodeError> {
    let size = size_of::<T>();
    if bytes.len() < min {
        return Err(DecodeError::Short { kind: kind_of(bytes), len: bytes.len(), need: min });
    }
    // SAFETY: T is a plain-data repr(C) wire type for which all-zero bytes are valid.
    let mut out: Box<T> = Box::new(unsafe { std::mem::zeroed() });
    let n = bytes.len().min(size);
    // SAFETY: `out` has `size` bytes, we copy at most that many from `bytes`.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut *out).cast::<u8>(), n) };
    Ok(out)
}

/// Copies a fixed-size `#[repr(C)]` struct from `bytes[offset..]`.
pub fn read_struct<T: Copy>(bytes: &[u8], offset: usize) -> Result<T, DecodeError> {
    let size = size_of::<T>();
    if bytes.len() < offset + size {
        return Err(DecodeError::Short { kind: kind_of(bytes), len: bytes.len(), need: offset + size });
    }
    // SAFETY: bounds checked above; T is plain data; unaligned read.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().add(offset).cast::<T>()) })
}

fn kind_of(bytes: &[u8]) -> u32 {
    bytes.get(..4).map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}
