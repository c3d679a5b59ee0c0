//! Finding (or mounting) tracefs and reading tracepoint format files.
//!
//! Classic tracepoint programs read their context at fixed offsets, and those offsets drift
//! between kernels, so they are read from `events/<category>/<event>/format` at startup.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where tracefs is mounted on kernels since 4.1.
pub const TRACEFS_PATH: &str = "/sys/kernel/tracing";
/// The older location, automounted inside debugfs.
pub const DEBUGFS_TRACING_PATH: &str = "/sys/kernel/debug/tracing";
/// `TRACEFS_MAGIC` from `include/uapi/linux/magic.h`.
const TRACEFS_MAGIC: i64 = 0x7472_6163;

/// Errors from locating tracefs or reading a tracepoint format.
#[derive(Debug, thiserror::Error)]
pub enum TraceFsError {
    /// Neither location is mounted and mounting failed.
    #[error(
        "tracefs is not mounted at {TRACEFS_PATH} and mounting it failed: {source}; \
         run `mount -t tracefs tracefs {TRACEFS_PATH}`"
    )]
    Mount {
        /// The `mount(2)` error.
        source: io::Error,
    },
    /// The tracepoint does not exist on this kernel (or is not compiled in).
    #[error("tracepoint {category}/{event} does not exist on this kernel")]
    NoEvent {
        /// Event category (the directory under `events/`).
        category: String,
        /// Event name.
        event: String,
    },
    /// The tracepoint exists but its format has no such field.
    #[error("tracepoint {category}/{event} has no field `{field}`")]
    NoField {
        /// Event category.
        category: String,
        /// Event name.
        event: String,
        /// The field looked for.
        field: String,
    },
    /// A format file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A `field:` line of a format file could not be understood.
    #[error("cannot parse {}: {reason} in `{line}`", path.display())]
    Parse {
        /// The format file.
        path: PathBuf,
        /// The offending line.
        line: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One field of a tracepoint's format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Field name, without array suffix or pointer stars.
    pub name: String,
    /// Whether the field is `__data_loc`: a u32 holding `length << 16 | offset` of data
    /// stored after the fixed fields.
    pub data_loc: bool,
    /// Offset in bytes from the start of the tracepoint context.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// Whether the field is signed.
    pub signed: bool,
}

/// A mounted tracefs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceFs {
    root: PathBuf,
}

impl TraceFs {
    /// Finds tracefs at [`TRACEFS_PATH`] or [`DEBUGFS_TRACING_PATH`], mounting it at
    /// [`TRACEFS_PATH`] when neither is mounted.
    pub fn locate() -> Result<Self, TraceFsError> {
        for root in [TRACEFS_PATH, DEBUGFS_TRACING_PATH] {
            if is_tracefs(Path::new(root)) {
                return Ok(Self::at(root));
            }
        }
        mount_tracefs()?;
        tracing::info!(path = TRACEFS_PATH, "Mounted tracefs.");
        Ok(Self::at(TRACEFS_PATH))
    }

    /// Uses the tracefs (or a copy of its `events/` tree) at `root` without checking it.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn event_dir(&self, category: &str, event: &str) -> PathBuf {
        self.root.join("events").join(category).join(event)
    }

    /// Whether the tracepoint `category/event` exists.
    pub fn event_exists(&self, category: &str, event: &str) -> bool {
        self.event_dir(category, event).join("format").is_file()
    }

    /// All fields of the tracepoint `category/event`, common fields included.
    pub fn fields(&self, category: &str, event: &str) -> Result<Vec<Field>, TraceFsError> {
        let path = self.event_dir(category, event).join("format");
        let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => {
                TraceFsError::NoEvent { category: category.to_owned(), event: event.to_owned() }
            }
            _ => TraceFsError::Io { path: path.clone(), source },
        })?;
        parse_format(&text).map_err(|(line, reason)| TraceFsError::Parse {
            path,
            line: line.to_owned(),
            reason,
        })
    }

    /// The field `name` of the tracepoint `category/event`.
    pub fn field(&self, category: &str, event: &str, name: &str) -> Result<Field, TraceFsError> {
        self.fields(category, event)?.into_iter().find(|f| f.name == name).ok_or_else(|| {
            TraceFsError::NoField {
                category: category.to_owned(),
                event: event.to_owned(),
                field: name.to_owned(),
            }
        })
    }
}

/// Parses the `field:` lines of a format file, e.g.
/// `\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;`. Other lines are ignored.
/// On error returns the offending line and what is wrong with it.
pub fn parse_format(text: &str) -> Result<Vec<Field>, (&str, &'static str)> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("field:") else {
            continue;
        };
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next().unwrap_or_default();
        let (mut offset, mut size, mut signed) = (None, None, false);
        for part in parts {
            let number = |value: &str| value.trim().parse::<u32>().ok();
            match part.split_once(':') {
                Some(("offset", v)) => offset = number(v),
                Some(("size", v)) => size = number(v),
                Some(("signed", v)) => signed = number(v) == Some(1),
                _ => {}
            }
        }
        let (Some(offset), Some(size)) = (offset, size) else {
            return Err((line, "missing or bad offset or size"));
        };
        // The name is the last word of the declaration: `__u8 saddr[4]`, `void *p`.
        let last = decl.rsplit([' ', '\t']).next().unwrap_or_default();
        let name = last.split('[').next().unwrap_or_default().trim_start_matches('*');
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((line, "no field name"));
        }
        fields.push(Field {
            name: name.to_owned(),
            data_loc: decl.starts_with("__data_loc"),
            offset,
            size,
            signed,
        });
    }
    Ok(fields)
}

/// Whether `path` is the root of a mounted tracefs (`statfs` follows the debugfs automount).
fn is_tracefs(path: &Path) -> bool {
    fs_magic(path) == Some(TRACEFS_MAGIC)
}

/// The `f_type` magic of the filesystem mounted at `path`, if `statfs` succeeds.
pub(crate) fn fs_magic(path: &Path) -> Option<i64> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statfs is a valid value for this plain C struct.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stat is a valid, writable statfs.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast, reason = "f_type is i64 or u32 depending on the target")]
    Some(stat.f_type as i64)
}

/// Mounts a pseudo filesystem whose source and type are both `fstype` (tracefs, securityfs).
pub(crate) fn mount_pseudo_fs(fstype: &CStr, target: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated; no mount data is passed.
    let rc = unsafe { libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn mount_tracefs() -> Result<(), TraceFsError> {
    mount_pseudo_fs(c"tracefs", c"/sys/kernel/tracing").map_err(|source| TraceFsError::Mount { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "name: inet_sock_set_state
ID: 1480
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] parent_comm;\toffset:56;\tsize:4;\tsigned:0;
\tfield:long ret;\toffset:64;\tsize:8;\tsigned:1;
\tfield:struct task_struct *p;\toffset:72;\tsize:8;\tsigned:0;

print fmt: \"family=%s\", __print_symbolic(REC->family, { 2, \"AF_INET\" })
";

    fn get<'a>(fields: &'a [Field], name: &str) -> &'a Field {
        fields.iter().find(|f| f.name == name).expect(name)
    }

    #[test]
    fn parses_format_text() {
        let fields = parse_format(FORMAT).unwrap();
        assert_eq!(fields.len(), 12);
        let field = |name, offset, size, signed| (name, offset, size, signed);
        for (name, offset, size, signed) in [
            field("common_type", 0, 2, false),
            field("common_pid", 4, 4, true),
            field("skaddr", 8, 8, false),
            field("oldstate", 16, 4, true),
            field("sport", 24, 2, false),
            field("saddr", 32, 4, false),
            field("saddr_v6", 40, 16, false),
            field("parent_comm", 56, 4, false),
            field("ret", 64, 8, true),
            field("p", 72, 8, false),
        ] {
            let f = get(&fields, name);
            assert_eq!((f.offset, f.size, f.signed), (offset, size, signed), "{name}");
        }
        let data_loc: Vec<_> = fields.iter().filter(|f| f.data_loc).map(|f| &f.name).collect();
        assert_eq!(data_loc, ["parent_comm"]);
    }

    #[test]
    fn rejects_bad_field_lines() {
        assert!(parse_format("\tfield:long ret;\toffset:x;\tsize:8;\tsigned:1;").is_err());
        assert!(parse_format("\tfield:long ret;\tsize:8;").is_err());
        assert!(parse_format("\tfield:;\toffset:1;\tsize:8;").is_err());
    }

    #[test]
    fn reports_missing_events_and_fields() {
        let dir = std::env::temp_dir().join(format!("mnsensor-tracefs-{}", std::process::id()));
        let event = dir.join("events/syscalls/sys_exit_openat");
        std::fs::create_dir_all(&event).unwrap();
        std::fs::write(event.join("format"), FORMAT).unwrap();
        let fs = TraceFs::at(&dir);
        assert!(fs.event_exists("syscalls", "sys_exit_openat"));
        assert!(!fs.event_exists("syscalls", "sys_exit_nope"));
        assert_eq!(fs.field("syscalls", "sys_exit_openat", "ret").unwrap().offset, 64);
        let no_field = fs.field("syscalls", "sys_exit_openat", "nope");
        assert!(matches!(no_field, Err(TraceFsError::NoField { .. })), "{no_field:?}");
        let no_event = fs.field("syscalls", "sys_exit_nope", "ret");
        assert!(matches!(no_event, Err(TraceFsError::NoEvent { .. })), "{no_event:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_sys_exit_openat_ret() {
        // SAFETY: geteuid has no preconditions.
        if !crate::test_skip::allowed(unsafe { libc::geteuid() } == 0, "needs root to find or mount tracefs")
        {
            return;
        }
        let fs = TraceFs::locate().unwrap();
        assert!(is_tracefs(fs.root()));
        let ret = fs.field("syscalls", "sys_exit_openat", "ret").unwrap();
        assert_eq!((ret.size, ret.signed), (8, true));
        // After the 8-byte common header and the int __syscall_nr (padded).
        assert_eq!(ret.offset, 16);
    }
}
