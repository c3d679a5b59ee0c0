//! `jsonl:PATH`: JSON lines appended to a file created 0600, rotated by size and age
//! (keeping `keep` files: `PATH.1` the newest; a file never grows beyond `rotate_bytes` unless
//! one record is larger), reopened on SIGHUP (for logrotate without copytruncate). A failed
//! write is cut back and a retried batch skips what was written, so no line is doubled.
//! Only a regular file is rotated: `jsonl:/dev/null` or a FIFO is written to, never renamed
//! (renaming `/dev/null` away and creating a file in its place broke the whole machine).
use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::Deserialize;

use super::{DeliverError, ExportError, Exporter, Sealed};

/// `jsonl:` settings (config `jsonl:`), for every file output.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Rotate once the file would grow beyond this many bytes; 0: never by size.
    pub rotate_bytes: u64,
    /// Rotate once the file is this old (seconds since it was created); 0: never by age.
    pub rotate_age_secs: u64,
    /// Rotated files kept (`PATH.1` … `PATH.N`); older ones are deleted.
    pub keep: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self { rotate_bytes: 100 << 20, rotate_age_secs: 86_400, keep: 7 }
    }
}

/// A `jsonl:PATH` output.
pub struct Jsonl {
    spec: String,
    path: PathBuf,
    settings: Settings,
    file: Option<File>,
    /// Bytes in the file that we know are whole lines.
    len: u64,
    created: SystemTime,
    /// Whether PATH is a regular file (only those are rotated or cut back).
    regular: bool,
    buf: Vec<u8>,
    /// The last record written (a retried batch skips it and those before).
    written: Option<u64>,
}

impl Jsonl {
    /// Opens (creates 0600) the file.
    pub fn open(spec: &str, path: &Path, settings: &Settings) -> Result<Self, DeliverError> {
        let mut out = Self {
            spec: spec.to_owned(),
            path: path.to_owned(),
            settings: settings.clone(),
            file: None,
            len: 0,
            created: SystemTime::now(),
            regular: true,
            buf: Vec::with_capacity(1 << 16),
            written: None,
        };
        out.open_file().map_err(|source| DeliverError::Open { path: path.to_owned(), source })?;
        Ok(out)
    }

    fn open_file(&mut self) -> std::io::Result<()> {
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path)?;
        let meta = file.metadata()?;
        self.len = meta.len();
        self.regular = meta.is_file();
        self.created = meta.created().unwrap_or_else(|_| SystemTime::now());
        self.file = Some(file);
        Ok(())
    }

    fn fail(&self, what: &str, e: std::io::Error) -> ExportError {
        ExportError::Retryable(format!("{what} {}: {e}", self.path.display()))
    }

    /// Writes the buffered lines (ending with record `last`); a failed write is cut back.
    fn write_buf(&mut self, last: Option<u64>) -> Result<(), ExportError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.open_file().map_err(|e| self.fail("cannot open", e))?;
        }
        let Some(file) = self.file.as_mut() else { return Err(ExportError::Retryable("no file".into())) };
        match file.write_all(&self.buf) {
            Ok(()) => {
                self.len += self.buf.len() as u64;
                self.buf.clear();
                self.written = last.or(self.written);
                Ok(())
            }
            Err(e) => {
                // Cut a partial write back: the retry writes these lines whole.
                if self.regular {
                    let _ = file.set_len(self.len);
                }
                Err(self.fail("cannot write", e))
            }
        }
    }

    /// `PATH` → `PATH.1` → … → `PATH.keep`; the oldest goes.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let keep = self.settings.keep;
        let name = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if keep == 0 {
            match fs::remove_file(&self.path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        } else {
            let _ = fs::remove_file(name(keep));
            for n in (1..keep).rev() {
                if name(n).exists() {
                    fs::rename(name(n), name(n + 1))?;
                }
            }
            match fs::rename(&self.path, name(1)) {
                // Moved away already (logrotate before its SIGHUP): nothing to rotate.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        self.open_file()
    }
}

impl Exporter for Jsonl {
    fn spec(&self) -> &str {
        &self.spec
    }

    fn send(&mut self, batch: &[Sealed]) -> Result<(), ExportError> {
        // Records a failed earlier attempt already wrote are not written again.
        let written = self.written;
        let fresh = batch.iter().filter(|r| written.is_none_or(|w| r.seq > w));
        self.buf.clear();
        let mut last = None;
        let old = self.regular
            && self.settings.rotate_age_secs > 0
            && self.created.elapsed().unwrap_or_default()
                >= Duration::from_secs(self.settings.rotate_age_secs);
        let mut rotate_now = old;
        for r in fresh {
            let used = self.len + self.buf.len() as u64;
            let add = r.line.len() as u64 + 1;
            let limit = self.settings.rotate_bytes;
            if used > 0 && (rotate_now || (self.regular && limit > 0 && used + add > limit)) {
                self.write_buf(last)?;
                self.rotate().map_err(|e| self.fail("cannot rotate", e))?;
                rotate_now = false;
            }
            self.buf.extend_from_slice(&r.line);
            self.buf.push(b'\n');
            last = Some(r.seq);
        }
        self.write_buf(last)
    }

    fn reopen(&mut self) -> Result<(), ExportError> {
        self.file = None;
        self.open_file()
            .map_err(|e| ExportError::Retryable(format!("cannot reopen {}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::{Jsonl, Settings};
    use crate::deliver::{Exporter as _, Sealed};

    fn rec(seq: u64) -> Sealed {
        Sealed { seq, time_ns: 0, line: format!("{{\"mnsensor.seq\":{seq}}}").into_bytes() }
    }

    #[test]
    fn creates_0600_rotates_by_size_keeping_n_and_reopens() {
        let dir = std::env::temp_dir().join(format!("mnsensor-jsonl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("e.jsonl");
        let settings = Settings { rotate_bytes: 40, rotate_age_secs: 0, keep: 2 };
        let mut out = Jsonl::open("jsonl:x", &path, &settings).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        for seq in 0..8 {
            out.send(&[rec(seq)]).unwrap();
        }
        // 19-byte lines, 40-byte files: two per file; the newest in PATH, then .1, .2.
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "{\"mnsensor.seq\":6}\n{\"mnsensor.seq\":7}\n");
        assert!(read(&dir.join("e.jsonl.1")).contains(":5}"));
        assert!(read(&dir.join("e.jsonl.2")).contains(":3}"));
        assert!(!dir.join("e.jsonl.3").exists());
        // SIGHUP after an external rotation: a new file at PATH.
        std::fs::rename(&path, dir.join("moved")).unwrap();
        out.reopen().unwrap();
        out.send(&[rec(9)]).unwrap();
        assert_eq!(read(&path), "{\"mnsensor.seq\":9}\n");
        // logrotate moved the file away and the size limit is reached before the SIGHUP: the
        // rotation finds nothing to move and starts a new file instead of failing.
        out.send(&[rec(10)]).unwrap();
        std::fs::rename(&path, dir.join("moved2")).unwrap();
        out.send(&[rec(11)]).unwrap();
        assert_eq!(read(&path), "{\"mnsensor.seq\":11}\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A device or FIFO is written to and never rotated: rotating `jsonl:/dev/null` used to
    /// rename the device away and leave a regular file in its place.
    #[test]
    fn a_fifo_is_written_but_never_rotated() {
        use std::{io::Read as _, os::unix::fs::FileTypeExt as _};
        let dir = std::env::temp_dir().join(format!("mnsensor-jsonl-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pipe");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader_path = path.clone();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::fs::File::open(reader_path).unwrap().read_to_string(&mut s).unwrap();
            s
        });
        let settings = Settings { rotate_bytes: 40, rotate_age_secs: 0, keep: 2 };
        let mut out = Jsonl::open("jsonl:x", &path, &settings).unwrap();
        for seq in 0..8 {
            out.send(&[rec(seq)]).unwrap();
        }
        drop(out);
        let got = reader.join().unwrap();
        assert_eq!(got.lines().count(), 8, "{got}");
        assert!(std::fs::metadata(&path).unwrap().file_type().is_fifo(), "the FIFO was replaced");
        assert!(!dir.join("pipe.1").exists(), "the FIFO was rotated");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
