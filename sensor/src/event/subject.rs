//! Who did it (the process block of every record) and which file: [`Subject`] and
//! [`FileRef`], each written by one function.
//!
//! The enrich stage (`crate::enrich`) attaches pre-serialised fragments to a subject: the
//! credential block with user and group names ([`Creds`]) and the program block (executable,
//! command line, attribution; [`Program`]), so that the encoder copies bytes instead of
//! formatting them per record.
use std::sync::Arc;

use sensor_common::event::Task;

use super::{Record, attr, client::Served, json};

/// The acting process.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    /// The kernel's view of the task. When `known` is false only `task.tgid` is set.
    pub task: Task,
    /// Whether `task` holds the identity (false: the process was gone, only its pid is known).
    pub known: bool,
    /// The identity block (pid … session id) with user and group names, written by the enrich
    /// stage for exactly this task identity; without it ids are written without names.
    pub ident: Option<Arc<[u8]>>,
    /// Program block (enrich stage); without it the attribution is `unknown`.
    pub program: Option<Arc<Program>>,
    /// The client a file server process serves (enrich stage, `crate::enrich::smb`).
    pub served: Option<Served>,
}

impl Subject {
    /// A subject with the kernel's identity of `task`.
    pub fn of(task: Task) -> Self {
        Self { task, known: true, ident: None, program: None, served: None }
    }

    /// A subject of which only the process id is known.
    pub fn pid(pid: u32) -> Self {
        Self {
            task: Task { tgid: pid, ..Task::default() },
            known: false,
            ident: None,
            program: None,
            served: None,
        }
    }

    /// The process id.
    pub fn pid_of(&self) -> u32 {
        self.task.tgid
    }

    /// Writes the process attributes: identity, the program block, then the client served.
    pub fn write(&self, rec: &mut Record) {
        self.write_task(rec);
        self.write_program(rec);
        if let Some(served) = &self.served {
            served.write(rec.body());
        }
    }

    /// Writes the identity attributes (no program block).
    pub fn write_task(&self, rec: &mut Record) {
        let out = rec.body();
        if !self.known {
            json::pair(out, attr::PROCESS_PID, &self.task.tgid);
            return;
        }
        json::sep(out);
        match &self.ident {
            Some(block) => out.extend_from_slice(block),
            None => out.extend_from_slice(&identity(&self.task, &Creds::build(&self.task, |_| None))),
        }
    }

    /// Writes the program block: executable, command line, attribution.
    pub fn write_program(&self, rec: &mut Record) {
        match &self.program {
            Some(p) => p.write(rec.body()),
            None => {
                json::pair(rec.body(), attr::PROCESS_ATTRIBUTION, "unknown");
            }
        }
    }
}

/// The identity block of `task` (pid … session id, no leading comma) with the credential
/// block `creds`.
pub fn identity(t: &Task, creds: &Creds) -> Vec<u8> {
    let mut block = Vec::with_capacity(384);
    let out = &mut block;
    json::pair(out, attr::PROCESS_PID, &t.tgid);
    json::pair(out, attr::PROCESS_THREAD_ID, &t.tid);
    json::pair(out, attr::PROCESS_PARENT_PID, &t.ppid);
    json::sep(out);
    out.extend_from_slice(&creds.ids);
    json::pair(out, attr::PROCESS_COMM, cstr(&t.comm).as_ref());
    if !creds.login.is_empty() {
        json::sep(out);
        out.extend_from_slice(&creds.login);
    }
    if t.sessionid != u32::MAX {
        json::pair(out, attr::SESSION_ID, &t.sessionid);
    }
    block
}

/// Whether two tasks have the same identity block.
pub fn same_identity(a: &Task, b: &Task) -> bool {
    (a.tgid, a.tid, a.ppid, a.uid, a.gid, a.euid, a.egid, a.auid, a.sessionid, a.comm)
        == (b.tgid, b.tid, b.ppid, b.uid, b.gid, b.euid, b.egid, b.auid, b.sessionid, b.comm)
}

/// The credential attributes of a task, written once per credential tuple and name TTL.
#[derive(Debug)]
pub struct Creds {
    /// `process.user.id` … `mnsensor.process.real_group.id`, without a leading comma.
    pub ids: Box<[u8]>,
    /// The login user's id and name (empty when there is no login user).
    pub login: Box<[u8]>,
}

/// The credential tuple a [`Creds`] depends on.
pub type CredKey = (u32, u32, u32, u32, u32);

impl Creds {
    /// The key of `task`'s credentials.
    pub fn key(task: &Task) -> CredKey {
        (task.euid, task.uid, task.egid, task.gid, task.auid)
    }

    /// Writes the fragments of `task`, naming users and groups with `name`.
    pub fn build(task: &Task, mut name: impl FnMut(Id) -> Option<Arc<str>>) -> Self {
        let mut ids = Vec::with_capacity(256);
        json::pair(&mut ids, attr::PROCESS_USER_ID, &task.euid);
        json::opt(&mut ids, attr::PROCESS_USER_NAME, name(Id::User(task.euid)).as_deref());
        json::pair(&mut ids, attr::PROCESS_REAL_USER_ID, &task.uid);
        json::opt(&mut ids, attr::PROCESS_REAL_USER_NAME, name(Id::User(task.uid)).as_deref());
        json::pair(&mut ids, attr::PROCESS_GROUP_ID, &task.egid);
        json::opt(&mut ids, attr::PROCESS_GROUP_NAME, name(Id::Group(task.egid)).as_deref());
        json::pair(&mut ids, attr::PROCESS_REAL_GROUP_ID, &task.gid);
        let mut login = Vec::new();
        if task.auid != u32::MAX {
            json::pair(&mut login, attr::LOGIN_USER_ID, &task.auid);
            json::opt(&mut login, attr::LOGIN_USER_NAME, name(Id::User(task.auid)).as_deref());
        }
        Self { ids: ids.into(), login: login.into() }
    }
}

/// A user or group id to name.
#[derive(Clone, Copy, Debug)]
pub enum Id {
    User(u32),
    Group(u32),
}

/// Where a process's executable and command line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribution {
    /// Seen exec'ing by the sensor (or forked from such a process).
    Exec,
    /// Read from `/proc` because it predates the sensor (or was missed).
    Procfs,
}

impl Attribution {
    /// The `mnsensor.process.attribution` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Procfs => "procfs",
        }
    }
}

/// The program block of a process, written once per exec (or `/proc` read).
#[derive(Debug)]
pub struct Program {
    pub exe: Option<Arc<str>>,
    pub args: Arc<[String]>,
    pub attribution: Attribution,
    /// Executable path and name, command line and arguments, without a leading comma.
    head: Box<[u8]>,
}

impl Program {
    /// A program block.
    pub fn new(exe: Option<Arc<str>>, args: Arc<[String]>, attribution: Attribution) -> Self {
        let mut head = Vec::with_capacity(128);
        write_program_head(&mut head, exe.as_deref(), &args);
        Self { exe, args, attribution, head: head.into() }
    }

    /// Writes the block: head, then the attribution.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.write_head(out);
        json::pair(out, attr::PROCESS_ATTRIBUTION, self.attribution.as_str());
    }

    /// Writes executable, command line and arguments (without the attribution).
    pub fn write_head(&self, out: &mut Vec<u8>) {
        json::sep(out);
        out.extend_from_slice(&self.head);
    }
}

/// Executable path and name, command line, arguments.
fn write_program_head(out: &mut Vec<u8>, exe: Option<&str>, args: &[String]) {
    if let Some(exe) = exe {
        json::pair(out, attr::PROCESS_EXECUTABLE_PATH, exe);
        super::path::write_bytes(out, attr::PROCESS_EXECUTABLE_PATH_BYTES, exe);
        json::pair(out, attr::PROCESS_EXECUTABLE_NAME, basename(exe));
    }
    json::key(out, attr::PROCESS_COMMAND_LINE);
    json::string(out, &args.join(" "));
    json::pair(out, attr::PROCESS_COMMAND_ARGS, args);
}

/// A file an event is about.
#[derive(Clone, Debug, Default)]
pub struct FileRef {
    /// Absolute path; empty when unknown.
    pub path: String,
    /// Kernel-encoded device number and inode; `None` when unknown.
    pub id: Option<(u32, u64)>,
    /// The kernel's protection rule index, when the record carries one (enrich names it).
    pub rule: Option<u32>,
    /// The protected tree or file (configured path) that covers it.
    pub protected: Option<Arc<str>>,
    /// The path and identity attributes as [`Self::block`] writes them, cached by the enrich
    /// stage for a file written before.
    pub block: Option<Arc<[u8]>>,
}

impl FileRef {
    /// Writes path, name, directory, inode and device (not the protection rule: records place
    /// it differently).
    pub fn write(&self, rec: &mut Record) {
        let out = rec.body();
        match &self.block {
            Some(block) => {
                json::sep(out);
                out.extend_from_slice(block);
            }
            None => self.write_to(out),
        }
    }

    /// The attributes [`Self::write`] writes, without a leading comma.
    pub fn block(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 3 * self.path.len());
        self.write_to(&mut out);
        out
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        if !self.path.is_empty() {
            let (dir, name) = self.path.rsplit_once('/').unwrap_or(("", &self.path));
            json::pair(out, attr::FILE_PATH, self.path.as_str());
            super::path::write_bytes(out, attr::FILE_PATH_BYTES, &self.path);
            json::pair(out, attr::FILE_NAME, name);
            json::pair(out, attr::FILE_DIRECTORY, if dir.is_empty() { "/" } else { dir });
        }
        if let Some((dev, ino)) = self.id {
            json::pair(out, attr::FILE_INODE, &ino);
            write_device(out, dev);
        }
    }

    /// Writes `mnsensor.protected.path` when the file is protected.
    pub fn write_protected(&self, rec: &mut Record) {
        rec.set_opt(attr::PROTECTED_PATH, self.protected.as_deref());
        if let Some(p) = &self.protected {
            super::path::write_bytes(rec.body(), attr::PROTECTED_PATH_BYTES, p);
        }
    }
}

/// `mnsensor.file.device`: `major:minor` of a kernel-encoded device (`major << 20 | minor`).
pub fn write_device(out: &mut Vec<u8>, dev: u32) {
    json::key(out, attr::FILE_DEVICE);
    out.push(b'"');
    json::uint(out, u64::from(dev >> 20));
    out.push(b':');
    json::uint(out, u64::from(dev & 0xf_ffff));
    out.push(b'"');
}

/// The last component of a path.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A NUL-terminated byte string as text.
pub fn cstr(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
}
