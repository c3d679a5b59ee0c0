//! Decode: kernel ring-buffer records → typed [`Envelope`]s.
//!
//! Pure: no process table, no protected set, no file system or `/proc` (the enrich stage,
//! `crate::enrich`, does those). Fields are read in place from the record (ring records are
//! only as long as their used data; nothing is copied into zeroed structs). Wire types:
//! `sensor-common/src/event/`.
use std::{mem::offset_of, net::IpAddr, sync::Arc};

use sensor_common::event::{
    Header, Kind,
    file::{
        CHANGE_DELETE, CHANGE_LINK, CHANGE_LINK_NAMES, CHANGE_RENAME, CHANGE_TRUNCATE, Change as WireChange,
        Close, FILE_DATA, Open, SCOPE_RECEIVER, Tracked,
    },
    net::Conn as WireConn,
    policy::{ACTION_ALERT, ACTION_AUDIT, ACTION_KILL, LsmDecision as WireLsm},
    process::{Exec as WireExec, Exit as WireExit, Fork as WireFork},
    tamper::{
        TAMPER_BPF, TAMPER_BPF_MAP, TAMPER_PROC_ENVIRON, TAMPER_PROC_MEM, TAMPER_PTRACE, TAMPER_SIGNAL,
        TAMPER_VM_READ, TAMPER_VM_WRITE, Tamper as WireTamper,
    },
};

use crate::event::{
    Envelope, Event, FileRef, Subject,
    change::{Change, FileChange, ObservedBy},
    decision::LsmDecision,
    file::{CloseReason, FileClose, FileOpen, OpenHow},
    net::{Conn, ConnOp, address},
    path,
    process::{Exec, Exit, Fork},
    tamper::{Tamper, TamperOp},
    time::Clock,
};
use crate::policy::Verdict;

pub mod replay;
#[cfg(test)]
mod tests;

/// A record the daemon could not decode (a kernel/daemon version mismatch or a bug).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its kind's fixed part.
    #[error("kernel record of kind {kind} is {len} bytes, shorter than its {need}-byte header")]
    Short { kind: u32, len: usize, need: usize },
    /// Unknown kind number.
    #[error("kernel record has unknown kind {0}")]
    UnknownKind(u32),
    /// A file change or tamper record with an unknown operation.
    #[error("kernel record has unknown operation {0}")]
    UnknownOp(u32),
}

/// A kernel record being read: bounds-checked, unaligned reads of fields at their offsets.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    /// The record, when it holds at least `min` bytes.
    fn new(bytes: &'a [u8], min: usize) -> Result<Self, DecodeError> {
        if bytes.len() < min {
            return Err(DecodeError::Short { kind: kind_of(bytes), len: bytes.len(), need: min });
        }
        Ok(Self(bytes))
    }

    /// The plain-data value at `offset`.
    fn at<T: Copy>(&self, offset: usize) -> Result<T, DecodeError> {
        let need = offset + size_of::<T>();
        if self.0.len() < need {
            return Err(DecodeError::Short { kind: kind_of(self.0), len: self.0.len(), need });
        }
        // SAFETY: bounds checked above; T is a plain-data wire type (all bit patterns valid);
        // the read is unaligned.
        Ok(unsafe { std::ptr::read_unaligned(self.0.as_ptr().add(offset).cast::<T>()) })
    }

    /// Up to `len` bytes of the data area starting at `offset` (at most `cap` bytes; a record
    /// cut short gives what it holds).
    fn area(&self, offset: usize, len: usize, cap: usize) -> &'a [u8] {
        let rest = self.0.get(offset..).unwrap_or_default();
        &rest[..rest.len().min(len).min(cap)]
    }
}

/// Reads field `$field` of wire struct `$ty`.
macro_rules! field {
    ($w:expr, $ty:ty, $field:ident) => {
        $w.at(offset_of!($ty, $field))
    };
}

/// Decodes one ring-buffer record. `clock` turns the kernel's boot-time stamps into wall time.
pub fn decode(bytes: &[u8], clock: &Clock) -> Result<Envelope, DecodeError> {
    let w = Wire::new(bytes, size_of::<Header>())?;
    let header: Header = w.at(0)?;
    let kind = Kind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let subject = Subject::of(header.task);
    let event = match kind {
        Kind::Exec => exec(bytes, subject)?,
        Kind::Fork => {
            let w = Wire::new(bytes, size_of::<WireFork>())?;
            let mut child = header.task;
            child.ppid = child.tgid;
            child.tgid = field!(w, WireFork, child_tgid)?;
            child.tid = field!(w, WireFork, child_tid)?;
            Event::Fork(Fork { subject: Subject::of(child) })
        }
        Kind::Exit => {
            let w = Wire::new(bytes, size_of::<WireExit>())?;
            Event::Exit(Exit { subject, code: field!(w, WireExit, exit_code)? })
        }
        Kind::FileOpen => open(bytes, subject)?,
        Kind::FileClose => close(bytes, subject, clock)?,
        Kind::PolicyDecision => lsm(bytes, subject)?,
        Kind::NetConnect | Kind::NetAccept | Kind::NetClose => conn(bytes, kind, subject)?,
        Kind::FileChange => change(bytes, subject)?,
        Kind::Tamper => tamper(bytes, subject)?,
    };
    Ok(Envelope { time_ns: clock.wall_ns(header.time_ns), quality: header.flags, event })
}

fn tamper(bytes: &[u8], subject: Subject) -> Result<Event, DecodeError> {
    let w = Wire::new(bytes, size_of::<WireTamper>())?;
    let op: u32 = field!(w, WireTamper, op)?;
    let arg: u32 = field!(w, WireTamper, arg)?;
    let target: u32 = field!(w, WireTamper, target)?;
    let op = match op {
        TAMPER_SIGNAL => TamperOp::Signal { signal: arg, target, result: field!(w, WireTamper, result)? },
        TAMPER_PTRACE => TamperOp::Ptrace { request: arg, target },
        TAMPER_VM_READ => TamperOp::ProcessVm { write: false, target },
        TAMPER_VM_WRITE => TamperOp::ProcessVm { write: true, target },
        TAMPER_BPF => TamperOp::Bpf { command: arg },
        TAMPER_BPF_MAP => {
            let name: [u8; 16] = field!(w, WireTamper, name)?;
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            TamperOp::BpfMap { command: arg, id: target, name: String::from_utf8_lossy(name).into_owned() }
        }
        TAMPER_PROC_MEM | TAMPER_PROC_ENVIRON => TamperOp::ProcOpen {
            environ: op == TAMPER_PROC_ENVIRON,
            target,
            fmode: field!(w, WireTamper, result)?,
        },
        op => return Err(DecodeError::UnknownOp(op)),
    };
    Ok(Event::Tamper(Tamper { subject, op }))
}

fn exec(bytes: &[u8], subject: Subject) -> Result<Event, DecodeError> {
    let at = offset_of!(WireExec, data);
    let w = Wire::new(bytes, at)?;
    let exe_len: u16 = field!(w, WireExec, exe_len)?;
    let argv_len: u16 = field!(w, WireExec, argv_len)?;
    let cwd_len: u16 = field!(w, WireExec, cwd_len)?;
    let (exe_len, argv_len, cwd_len) = (exe_len as usize, argv_len as usize, cwd_len as usize);
    let data = w.area(at, usize::MAX, usize::MAX);
    let exe = path::from_kernel(data.get(..exe_len).unwrap_or_default());
    let argv = data.get(exe_len..exe_len + argv_len).unwrap_or_default();
    let args: Arc<[String]> = argv
        .strip_suffix(&[0])
        .unwrap_or(argv)
        .split(|b| *b == 0)
        .filter(|_| !argv.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cwd = data.get(exe_len + argv_len..exe_len + argv_len + cwd_len).unwrap_or_default();
    Ok(Event::Exec(Exec {
        subject,
        exe: exe.into(),
        args,
        cwd: path::from_kernel(cwd),
        exe_dev: field!(w, WireExec, exe_dev)?,
        exe_ino: field!(w, WireExec, exe_ino)?,
        old_pid: field!(w, WireExec, old_pid)?,
    }))
}

fn open(bytes: &[u8], subject: Subject) -> Result<Event, DecodeError> {
    let at = offset_of!(Open, data);
    let w = Wire::new(bytes, at)?;
    let len: u16 = field!(w, Open, path_len)?;
    let fd: i32 = field!(w, Open, fd)?;
    let dev: u32 = field!(w, Open, dev)?;
    let ino: u64 = field!(w, Open, ino)?;
    let rule: u32 = field!(w, Open, rule)?;
    Ok(Event::FileOpen(FileOpen {
        subject,
        file: FileRef {
            path: path::from_kernel(w.area(at, len as usize, FILE_DATA)),
            id: Some((dev, ino)),
            rule: Some(rule),
            protected: None,
            block: None,
        },
        fd: (fd >= 0).then_some(fd),
        how: OpenHow::Kernel {
            flags: field!(w, Open, flags)?,
            fmode: field!(w, Open, fmode)?,
            syscall: field!(w, Open, syscall)?,
            file: field!(w, Open, file)?,
            rule,
        },
    }))
}

fn close(bytes: &[u8], subject: Subject, clock: &Clock) -> Result<Event, DecodeError> {
    let at = offset_of!(Close, data);
    let w = Wire::new(bytes, at)?;
    let stats: Tracked = field!(w, Close, stats)?;
    let len: u16 = field!(w, Close, path_len)?;
    let fd: i32 = field!(w, Close, fd)?;
    let scope: u16 = field!(w, Close, scope)?;
    Ok(Event::FileClose(FileClose {
        subject,
        // A release (`security_file_free`) walks no path: enrich fills in the one seen at open.
        file: FileRef {
            path: if len == 0 {
                String::new()
            } else {
                path::from_kernel(w.area(at, len as usize, FILE_DATA))
            },
            id: Some((stats.dev, stats.ino)),
            rule: None,
            protected: None,
            block: None,
        },
        kernel_file: field!(w, Close, file)?,
        reason: CloseReason::of_wire(field!(w, Close, reason)?),
        fd: (fd >= 0).then_some(fd),
        opened_ns: clock.wall_ns(stats.opened_ns),
        receiver: scope == SCOPE_RECEIVER,
        stats,
    }))
}

fn change(bytes: &[u8], subject: Subject) -> Result<Event, DecodeError> {
    let at = offset_of!(WireChange, data);
    let w = Wire::new(bytes, at)?;
    let op: u32 = field!(w, WireChange, op)?;
    let len: u16 = field!(w, WireChange, path_len)?;
    let new_len: u16 = field!(w, WireChange, new_path_len)?;
    let first = w.area(at, len as usize, FILE_DATA);
    let second = w.area(at + FILE_DATA, new_len as usize, FILE_DATA);
    let size: u64 = field!(w, WireChange, size)?;
    let nlink: u32 = field!(w, WireChange, nlink)?;
    let (path, change) = match op {
        CHANGE_DELETE => (
            path::from_kernel(first),
            Change::Delete { size: Some(size), links: Some(u64::from(nlink.saturating_sub(1))) },
        ),
        CHANGE_TRUNCATE => (
            path::from_kernel(first),
            Change::Truncate { size: field!(w, WireChange, new_size)?, old_size: size },
        ),
        CHANGE_RENAME => {
            (path::from_kernel(second), Change::Rename { old_path: Some(path::from_kernel(first)) })
        }
        CHANGE_LINK => (
            path::from_kernel(second),
            Change::Link { old_path: Some(path::from_kernel(first)), links: u64::from(nlink) + 1 },
        ),
        CHANGE_LINK_NAMES => {
            (String::new(), Change::LinkNames { base: path::from_kernel(first), name: path::escape(second) })
        }
        op => return Err(DecodeError::UnknownOp(op)),
    };
    let rule: u32 = field!(w, WireChange, rule)?;
    Ok(Event::FileChange(FileChange {
        subject,
        file: FileRef {
            path,
            id: Some((field!(w, WireChange, dev)?, field!(w, WireChange, ino)?)),
            rule: Some(rule),
            protected: None,
            block: None,
        },
        change,
        observed_by: ObservedBy::Kernel,
    }))
}

fn lsm(bytes: &[u8], subject: Subject) -> Result<Event, DecodeError> {
    let at = offset_of!(WireLsm, data);
    let w = Wire::new(bytes, at)?;
    let len: u16 = field!(w, WireLsm, path_len)?;
    let action: u32 = field!(w, WireLsm, action)?;
    Ok(Event::LsmDecision(LsmDecision {
        subject,
        file: FileRef {
            path: path::from_kernel(w.area(at, len as usize, FILE_DATA)),
            id: Some((field!(w, WireLsm, dev)?, field!(w, WireLsm, ino)?)),
            rule: None,
            protected: None,
            block: None,
        },
        policy: field!(w, WireLsm, policy)?,
        combo: field!(w, WireLsm, combo)?,
        verdict: match action {
            ACTION_KILL => Verdict::Kill,
            ACTION_ALERT => Verdict::Alert,
            ACTION_AUDIT => Verdict::Audit,
            _ => Verdict::Deny,
        },
        enforcement: crate::enforce::lsm::backend_of_hook(field!(w, WireLsm, hook)?),
    }))
}

fn conn(bytes: &[u8], kind: Kind, subject: Subject) -> Result<Event, DecodeError> {
    let w = Wire::new(bytes, size_of::<WireConn>())?;
    let family: u16 = field!(w, WireConn, family)?;
    let (local, mapped_l): (IpAddr, bool) = address(family, field!(w, WireConn, saddr)?);
    let (peer, mapped_p) = address(family, field!(w, WireConn, daddr)?);
    let op = match kind {
        Kind::NetConnect => ConnOp::Connect,
        Kind::NetAccept => ConnOp::Accept { fd: field!(w, WireConn, fd)? },
        _ => ConnOp::Close {
            previous_state: field!(w, WireConn, oldstate)?,
            sent: field!(w, WireConn, bytes_sent)?,
            received: field!(w, WireConn, bytes_received)?,
        },
    };
    Ok(Event::Conn(Conn {
        subject,
        op,
        local,
        local_port: field!(w, WireConn, sport)?,
        peer,
        peer_port: field!(w, WireConn, dport)?,
        ipv4_mapped: mapped_l || mapped_p,
    }))
}

fn kind_of(bytes: &[u8]) -> u32 {
    bytes.get(..4).map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}
