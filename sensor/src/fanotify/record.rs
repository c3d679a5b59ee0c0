//! Parsing of the byte stream `read(2)` returns from a fanotify group: `struct
//! fanotify_event_metadata` followed, for FID groups, by information records (fanotify(7),
//! "Reading fanotify events"). Pure code over byte slices, so it is unit-tested with synthetic
//! buffers; all integers are native-endian as the kernel writes them.
use std::{ffi::OsString, os::unix::ffi::OsStringExt as _};

use super::{FanotifyError, FileHandle};

/// `FAN_EVENT_METADATA_LEN`.
pub(crate) const METADATA_LEN: usize = 24;
/// Size of `struct fanotify_event_info_header` + `__kernel_fsid_t` + the `struct
/// file_handle` header: the fixed part of a FID record.
const FID_FIXED_LEN: usize = 4 + 8 + 8;

/// One event as read from the queue.
#[derive(Debug)]
pub(crate) struct RawEvent<'a> {
    pub mask: u64,
    /// An open descriptor the reader must close (fd groups), or `FAN_NOFD`.
    pub fd: i32,
    pub pid: i32,
    /// The information records after the metadata (empty for fd groups).
    pub info: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Iterates over the events in `buf` (the bytes one `read(2)` returned).
///
/// A malformed event ends the iteration with an error: the kernel never produces one, and
/// after it no later event boundary can be trusted.
pub(crate) fn events(buf: &[u8]) -> Events<'_> {
    Events { buf, failed: false }
}

pub(crate) struct Events<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<RawEvent<'a>, FanotifyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let b = self.buf;
        let fail = |this: &mut Self, what: &'static str| {
            this.failed = true;
            Some(Err(FanotifyError::Malformed(what)))
        };
        if b.len() < METADATA_LEN {
            return fail(self, "truncated event metadata");
        }
        let event_len = u32_at(b, 0) as usize;
        let vers = b[4];
        let metadata_len = u16_at(b, 6) as usize;
        if vers != libc::FANOTIFY_METADATA_VERSION {
            return fail(self, "unexpected fanotify metadata version");
        }
        if event_len < METADATA_LEN || event_len > b.len() || metadata_len < METADATA_LEN {
            return fail(self, "event length out of bounds");
        }
        let ev = RawEvent {
            mask: u64_at(b, 8),
            fd: i32_at(b, 16),
            pid: i32_at(b, 20),
            info: &b[metadata_len.min(event_len)..event_len],
        };
        self.buf = &b[event_len..];
        Some(Ok(ev))
    }
}

/// One FID-style information record: `FAN_EVENT_INFO_TYPE_{FID,DFID,DFID_NAME,OLD_DFID_NAME,
/// NEW_DFID_NAME}`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FidRecord {
    pub info_type: u8,
    pub handle: FileHandle,
    /// The entry name (`*_DFID_NAME` records only); `"."` names the directory itself.
    pub name: Option<OsString>,
}

/// The records of one event, sorted by meaning. The kernel gives no ordering guarantee
/// (fanotify(7)), so records are matched by `info_type`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FidInfo {
    /// The object itself (`FAN_EVENT_INFO_TYPE_FID`).
    pub fid: Option<FileHandle>,
    /// The directory (`DFID` or `DFID_NAME`) and entry name.
    pub dir: Option<(FileHandle, Option<OsString>)>,
    /// `FAN_RENAME`: the old directory and name.
    pub old: Option<(FileHandle, OsString)>,
    /// `FAN_RENAME`: the new directory and name.
    pub new: Option<(FileHandle, OsString)>,
}

/// Parses the information records of a FID group event. Unknown record types (a pidfd or
/// error record, or a type from a newer kernel) are skipped by their length.
pub(crate) fn fid_info(mut info: &[u8]) -> Result<FidInfo, FanotifyError> {
    let mut out = FidInfo::default();
    while !info.is_empty() {
        if info.len() < 4 {
            return Err(FanotifyError::Malformed("truncated info record header"));
        }
        let info_type = info[0];
        let len = u16_at(info, 2) as usize;
        if len < 4 || len > info.len() {
            return Err(FanotifyError::Malformed("info record length out of bounds"));
        }
        let rec = &info[..len];
        info = &info[len..];
        match info_type {
            libc::FAN_EVENT_INFO_TYPE_FID
            | libc::FAN_EVENT_INFO_TYPE_DFID
            | libc::FAN_EVENT_INFO_TYPE_DFID_NAME
            | libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
            | libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME => {}
            _ => continue,
        }
        let r = fid_record(info_type, rec)?;
        match info_type {
            libc::FAN_EVENT_INFO_TYPE_FID => out.fid = Some(r.handle),
            libc::FAN_EVENT_INFO_TYPE_DFID | libc::FAN_EVENT_INFO_TYPE_DFID_NAME => {
                out.dir = Some((r.handle, r.name));
            }
            libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME => {
                out.old = Some((r.handle, r.name.unwrap_or_default()));
            }
            _ => out.new = Some((r.handle, r.name.unwrap_or_default())),
        }
    }
    Ok(out)
}

/// Parses one `struct fanotify_event_info_fid` (header, fsid, `struct file_handle`, and for
/// the `*_NAME` types a NUL-terminated name after the handle).
fn fid_record(info_type: u8, rec: &[u8]) -> Result<FidRecord, FanotifyError> {
    if rec.len() < FID_FIXED_LEN {
        return Err(FanotifyError::Malformed("truncated FID record"));
    }
    let fsid = [i32_at(rec, 4), i32_at(rec, 8)];
    let handle_bytes = u32_at(rec, 12) as usize;
    let handle_type = i32_at(rec, 16);
    let end = FID_FIXED_LEN
        .checked_add(handle_bytes)
        .filter(|&e| e <= rec.len())
        .ok_or(FanotifyError::Malformed("file handle longer than its record"))?;
    let handle = FileHandle { fsid, handle_type, bytes: rec[FID_FIXED_LEN..end].to_vec() };
    let named = matches!(
        info_type,
        libc::FAN_EVENT_INFO_TYPE_DFID_NAME
            | libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
            | libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME
    );
    let name = if named {
        let tail = &rec[end..];
        let n = tail
            .iter()
            .position(|&c| c == 0)
            .ok_or(FanotifyError::Malformed("entry name not NUL-terminated"))?;
        Some(OsString::from_vec(tail[..n].to_vec()))
    } else {
        None
    };
    Ok(FidRecord { info_type, handle, name })
}

#[cfg(test)]
pub(crate) mod synth {
    //! Builders for synthetic event buffers, shared by the unit tests.

    /// Appends a FID record.
    pub(crate) fn record(
        out: &mut Vec<u8>,
        info_type: u8,
        fsid: [i32; 2],
        ht: i32,
        h: &[u8],
        name: Option<&str>,
    ) {
        let mut body = Vec::new();
        body.extend_from_slice(&fsid[0].to_ne_bytes());
        body.extend_from_slice(&fsid[1].to_ne_bytes());
        body.extend_from_slice(&(h.len() as u32).to_ne_bytes());
        body.extend_from_slice(&ht.to_ne_bytes());
        body.extend_from_slice(h);
        if let Some(n) = name {
            body.extend_from_slice(n.as_bytes());
            body.push(0);
        }
        while (body.len() + 4) % 4 != 0 {
            body.push(0);
        }
        out.push(info_type);
        out.push(0);
        out.extend_from_slice(&((body.len() + 4) as u16).to_ne_bytes());
        out.extend_from_slice(&body);
    }

    /// Appends an event with the given info records.
    pub(crate) fn event(out: &mut Vec<u8>, mask: u64, fd: i32, pid: i32, info: &[u8]) {
        let len = super::METADATA_LEN + info.len();
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.push(libc::FANOTIFY_METADATA_VERSION);
        out.push(0);
        out.extend_from_slice(&(super::METADATA_LEN as u16).to_ne_bytes());
        out.extend_from_slice(&mask.to_ne_bytes());
        out.extend_from_slice(&fd.to_ne_bytes());
        out.extend_from_slice(&pid.to_ne_bytes());
        out.extend_from_slice(info);
    }
}

#[cfg(test)]
mod tests {
    use super::{synth, *};

    #[test]
    fn parses_rename_records_in_any_order() {
        let mut info = Vec::new();
        synth::record(&mut info, libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, [1, 2], 1, &[9; 8], Some("new"));
        synth::record(&mut info, libc::FAN_EVENT_INFO_TYPE_FID, [1, 2], 1, &[7; 8], None);
        synth::record(&mut info, 4, [0, 0], 0, &[], None); // a pidfd-like record: skipped
        synth::record(&mut info, libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, [1, 2], 1, &[8; 8], Some("old"));
        let mut buf = Vec::new();
        synth::event(&mut buf, libc::FAN_RENAME | libc::FAN_ONDIR, -1, 42, &info);
        synth::event(&mut buf, libc::FAN_Q_OVERFLOW, -1, 0, &[]);

        let evs: Vec<_> = events(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].pid, 42);
        assert_eq!(evs[1].mask, libc::FAN_Q_OVERFLOW);
        let fi = fid_info(evs[0].info).unwrap();
        assert_eq!(fi.old.as_ref().unwrap().1, "old");
        assert_eq!(fi.old.as_ref().unwrap().0.bytes, vec![8; 8]);
        assert_eq!(fi.new.as_ref().unwrap().1, "new");
        assert_eq!(fi.fid.as_ref().unwrap().bytes, vec![7; 8]);
        assert_eq!(fi.fid.as_ref().unwrap().fsid, [1, 2]);
        assert!(fi.dir.is_none());
    }

    #[test]
    fn rejects_malformed_buffers() {
        let mut buf = Vec::new();
        synth::event(&mut buf, libc::FAN_OPEN, 5, 1, &[]);
        // Claims to be longer than the buffer.
        buf[0..4].copy_from_slice(&100u32.to_ne_bytes());
        let mut it = events(&buf);
        assert!(matches!(it.next(), Some(Err(FanotifyError::Malformed(_)))));
        assert!(it.next().is_none());

        // A handle longer than its record.
        let mut info = Vec::new();
        synth::record(&mut info, libc::FAN_EVENT_INFO_TYPE_FID, [1, 2], 1, &[1; 8], None);
        info[12..16].copy_from_slice(&64u32.to_ne_bytes());
        assert!(fid_info(&info).is_err());

        // A name without its NUL.
        let mut info = Vec::new();
        synth::record(&mut info, libc::FAN_EVENT_INFO_TYPE_DFID_NAME, [1, 2], 1, &[1; 8], Some("abc"));
        let l = info.len();
        for b in &mut info[l - 4..] {
            *b = b'x';
        }
        assert!(fid_info(&info).is_err());

        // A wrong metadata version.
        let mut buf = Vec::new();
        synth::event(&mut buf, libc::FAN_OPEN, 5, 1, &[]);
        buf[4] = 2;
        assert!(events(&buf).next().unwrap().is_err());
    }
}
