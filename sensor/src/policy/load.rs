//! Finding and reading policy files safely.
//!
//! A path given to the loader is a file or a directory. In a directory, the files named
//! `*.yaml` or `*.yml` that do not start with `.` are policy files; other names (editor
//! backups, `README`, `*.dpkg-old`) are ignored; subdirectories are not read, with a warning
//! (the same for `policy check` and the daemon). The set's files are read in byte-wise
//! lexical order of their paths.
//!
//! A file is refused (an error, nothing loaded) when it is not a regular file, is a
//! symlink whose target is outside its policy directory, is larger than
//! [`MAX_FILE_BYTES`], or (with host checks) is not owned by root, is world-writable, or is
//! group-writable by a group other than root. The directory itself must be owned by root
//! and not writable by group or others. Files are opened with `O_NOFOLLOW | O_NONBLOCK`
//! (a FIFO cannot hang the loader) and checked on the open descriptor.
use std::{
    collections::HashSet,
    fs::{self, File},
    io::Read as _,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use super::{
    MAX_FILE_BYTES,
    error::{Diagnostics, Problem},
    yaml::Pos,
};

/// A policy file to read, and the directory its symlink (if any) must stay in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    pub policy_dir: PathBuf,
}

/// The policy files named by `paths`, in set order. Problems go to `diag`.
pub fn discover(paths: &[PathBuf], host_checks: bool, diag: &mut Diagnostics) -> Vec<Candidate> {
    let mut out = Vec::new();
    for arg in paths {
        let meta = match fs::metadata(arg) {
            Ok(m) => m,
            Err(e) => {
                diag.error(arg, Pos::START, Problem::Read(e.to_string()));
                continue;
            }
        };
        if meta.is_dir() {
            let Some(dir) = canonical(arg, diag) else {
                continue;
            };
            if host_checks && let Some(why) = unsafe_owner_or_mode(&meta, "directory") {
                diag.error(arg, Pos::START, Problem::UnsafeFile(why));
                continue;
            }
            let entries = match fs::read_dir(arg) {
                Ok(e) => e,
                Err(e) => {
                    diag.error(arg, Pos::START, Problem::Read(e.to_string()));
                    continue;
                }
            };
            let before = out.len();
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') {
                    continue;
                }
                let policy_name = name.ends_with(".yaml") || name.ends_with(".yml");
                if policy_name {
                    // A directory with a policy name is refused when read.
                    out.push(Candidate { path: arg.join(entry.file_name()), policy_dir: dir.clone() });
                } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    // Never read, by the tools and the daemon alike; said so rather than
                    // skipped silently (policies/examples/ next to a live set, for instance).
                    diag.warning(
                        &arg.join(entry.file_name()),
                        Pos::START,
                        "subdirectory not read: only the files directly in a policy directory are policies (name it to load it)".into(),
                    );
                }
            }
            if out.len() == before {
                diag.warning(arg, Pos::START, "no policy files (*.yaml, *.yml) in this directory".into());
            }
        } else {
            let parent = match arg.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            };
            if let Some(dir) = canonical(&parent, diag) {
                out.push(Candidate { path: arg.clone(), policy_dir: dir });
            }
        }
    }
    out.sort_by(|a, b| a.path.as_os_str().cmp(b.path.as_os_str()));
    // The same file named twice (a directory and one of its files) is read once.
    let mut seen = HashSet::new();
    out.retain(|c| seen.insert(fs::canonicalize(&c.path).unwrap_or_else(|_| c.path.clone())));
    out
}

fn canonical(p: &Path, diag: &mut Diagnostics) -> Option<PathBuf> {
    match fs::canonicalize(p) {
        Ok(c) => Some(c),
        Err(e) => {
            diag.error(p, Pos::START, Problem::Read(e.to_string()));
            None
        }
    }
}

/// Reads one policy file after the safety checks; `None` (with an error) when refused.
pub fn read(c: &Candidate, host_checks: bool, diag: &mut Diagnostics) -> Option<String> {
    let refuse = |diag: &mut Diagnostics, why: String| {
        diag.error(&c.path, Pos::START, Problem::UnsafeFile(why));
        None
    };
    let link = match fs::symlink_metadata(&c.path) {
        Ok(m) => m,
        Err(e) => {
            diag.error(&c.path, Pos::START, Problem::Read(e.to_string()));
            return None;
        }
    };
    let target = if link.file_type().is_symlink() {
        match fs::canonicalize(&c.path) {
            Ok(t) if t.starts_with(&c.policy_dir) => t,
            Ok(t) => {
                return refuse(
                    diag,
                    format!(
                        "it is a symlink to {}, outside the policy directory {}",
                        t.display(),
                        c.policy_dir.display()
                    ),
                );
            }
            Err(e) => return refuse(diag, format!("it is a dangling symlink ({e})")),
        }
    } else {
        c.path.clone()
    };
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&target)
    {
        Ok(f) => f,
        Err(e) => {
            diag.error(&c.path, Pos::START, Problem::Read(e.to_string()));
            return None;
        }
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => {
            diag.error(&c.path, Pos::START, Problem::Read(e.to_string()));
            return None;
        }
    };
    if !meta.is_file() {
        return refuse(diag, format!("it is not a regular file (it is a {})", kind(&meta)));
    }
    if host_checks && let Some(why) = unsafe_owner_or_mode(&meta, "file") {
        return refuse(diag, why);
    }
    let limit = u64::try_from(MAX_FILE_BYTES).unwrap_or(u64::MAX);
    if meta.len() > limit {
        return refuse(
            diag,
            format!("it is {} bytes, more than the limit of {} bytes", meta.len(), MAX_FILE_BYTES),
        );
    }
    let mut bytes = Vec::new();
    if let Err(e) = (&file).take(limit + 1).read_to_end(&mut bytes) {
        diag.error(&c.path, Pos::START, Problem::Read(e.to_string()));
        return None;
    }
    if bytes.len() > MAX_FILE_BYTES {
        return refuse(diag, format!("it grew past the limit of {MAX_FILE_BYTES} bytes while being read"));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let text = String::from_utf8_lossy(valid);
            let line = text.matches('\n').count() + 1;
            let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let pos = Pos { line: line as u64, column: column as u64 };
            diag.error(
                &c.path,
                pos,
                Problem::Invalid(
                    "the file is not valid UTF-8 (save it as UTF-8; Shift_JIS is not accepted)".into(),
                ),
            );
            None
        }
    }
}

/// Why a file or directory must not be trusted: not root's, or writable by others.
fn unsafe_owner_or_mode(meta: &fs::Metadata, what: &str) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 {
        return Some(format!("the {what} is owned by uid {}, not root", meta.uid()));
    }
    if mode & 0o002 != 0 {
        return Some(format!("the {what} is world-writable (mode {mode:04o})"));
    }
    if mode & 0o020 != 0 && meta.gid() != 0 {
        return Some(format!("the {what} is writable by group {} (mode {mode:04o})", meta.gid()));
    }
    None
}

fn kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "special file"
    }
}
