//! `detection.print`: protected data submitted for printing through CUPS.
//!
//! Two observations, joined by the taint's origin:
//! - a CUPS client (`lp`, `lpr`) that holds protected data: it read a protected file or a
//!   derived copy itself, or received the data through a pipe. This is what the detection
//!   is about: the submitting process's taint is what matters;
//! - a job data file that the CUPS server wrote into the spool directory after a tainted
//!   client sent it the document over its socket (the server became tainted by reading it).
//!   cupsd receives the document into a request file (`%08x`) and then renames it to
//!   `d<job>-<document>`; the kernel reports the first name, so the final name (and the job
//!   number) is found by inode in the same directory. It covers clients that are not
//!   `lp`/`lpr` (an application printing through libcups, a client that exited before a
//!   poll).
//!
//! Once per client process, and once per origin for spool writes no client claimed (a
//! server stays tainted once it read tainted data, so its later spool writes carry the same
//! origin and are not reported again).
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use super::{
    evidence::{self, Reads},
    exfil::{Detection, Input, Origin, Proc},
};
use crate::event::{Name, record::Record};

/// Task names of the CUPS command-line clients.
pub const CLIENTS: [&str; 4] = ["lp", "lpr", "lp.cups", "lpr.cups"];
/// CUPS's spool directory (`RequestRoot`) on Debian and upstream.
pub const DEFAULT_SPOOL: &str = "/var/spool/cups";
/// Polls a client's detection waits for its spool file (about a second each).
const WAIT_POLLS: u32 = 3;
/// Most entries remembered in each table; beyond it the oldest are dropped.
const MAX_ENTRIES: usize = 4096;

/// A client's submission, waiting for its spool file.
struct Job {
    detection: Detection,
    queue: Option<String>,
    spool: Vec<String>,
    job: Option<u32>,
    polls: u32,
}

/// A job data file written by a tainted server.
struct Spooled {
    proc: Proc,
    origin: Origin,
    path: String,
    ino: u64,
    job: Option<u32>,
    time_ns: i128,
    polls: u32,
}

/// The print detector.
pub struct Print {
    /// Spool directories (`egress.print.spool`).
    pub spool: Vec<PathBuf>,
    reads: Reads,
    clients: HashSet<u32>,
    origins: HashSet<u32>,
    pending: Vec<Job>,
    spooled: Vec<Spooled>,
}

impl Print {
    pub fn new(spool: Vec<PathBuf>) -> Self {
        Self {
            spool,
            reads: Reads::default(),
            clients: HashSet::new(),
            origins: HashSet::new(),
            pending: Vec::new(),
            spooled: Vec::new(),
        }
    }

    /// Takes one observation of a poll.
    pub fn observe(&mut self, input: &Input) {
        self.reads.observe(input);
        match input {
            Input::Taint { proc, origin, time_ns, .. }
                if CLIENTS.contains(&proc.comm.as_str()) && !self.clients.contains(&proc.tgid) =>
            {
                bounded(&mut self.clients);
                self.clients.insert(proc.tgid);
                let queue = queue_of(proc.tgid);
                let reason = format!(
                    "{} of user {} submitted protected data for printing{}",
                    proc.comm,
                    proc.uid,
                    queue.as_deref().map(|q| format!(" to queue {q}")).unwrap_or_default()
                );
                let detection = evidence::detection(Name::DetectionPrint, *time_ns, proc, origin, reason);
                self.pending.push(Job { detection, queue, spool: Vec::new(), job: None, polls: 0 });
            }
            Input::Derived { proc, origin, path, ino, time_ns, .. }
                if self.is_spool_data(path) && self.spooled.len() < MAX_ENTRIES =>
            {
                self.spooled.push(Spooled {
                    proc: proc.clone(),
                    origin: origin.clone(),
                    path: path.clone(),
                    ino: *ino,
                    job: job_number(path),
                    time_ns: *time_ns,
                    polls: 0,
                });
            }
            _ => {}
        }
    }

    /// After a poll's inputs: client submissions that found their spool file or waited long
    /// enough, and spool files no client claimed. `derived` gives the derived files of a
    /// detection's origin.
    pub fn tick(&mut self, derived: impl Fn(&Detection) -> Vec<String>) -> Vec<Record> {
        let mut out = Vec::new();
        let mut waiting = Vec::new();
        for s in &mut self.spooled {
            s.renamed();
        }
        for mut job in self.pending.drain(..) {
            let origin = job.detection.origin.tgid;
            for s in self.spooled.iter().filter(|s| s.origin.tgid == origin) {
                job.spool.push(s.path.clone());
                job.job = job.job.or(s.job);
            }
            self.spooled.retain(|s| s.origin.tgid != origin);
            job.polls += 1;
            if job.spool.is_empty() && job.polls < WAIT_POLLS {
                waiting.push(job);
                continue;
            }
            bounded(&mut self.origins);
            self.origins.insert(origin);
            let (bytes, files) = self.reads.of(job.detection.proc.tgid);
            job.detection.bytes_read = bytes;
            job.detection.files_read = files;
            job.detection.derived = derived(&job.detection);
            out.push(record(&job));
        }
        self.pending = waiting;
        let mut left = Vec::new();
        for mut s in self.spooled.drain(..) {
            s.polls += 1;
            if s.polls < WAIT_POLLS {
                left.push(s);
                continue;
            }
            if !self.origins.insert(s.origin.tgid) {
                continue;
            }
            let reason = format!(
                "{} wrote print job data {} holding protected data received from {} (user {})",
                s.proc.comm, s.path, s.origin.comm, s.origin.uid
            );
            let mut detection =
                evidence::detection(Name::DetectionPrint, s.time_ns, &s.proc, &s.origin, reason);
            detection.derived = derived(&detection);
            let job = Job { detection, queue: None, spool: vec![s.path], job: s.job, polls: 0 };
            out.push(record(&job));
        }
        self.spooled = left;
        out
    }

    /// A job data file (`d…`) or a request file (eight hex digits) directly in a spool
    /// directory.
    fn is_spool_data(&self, path: &str) -> bool {
        let p = Path::new(path);
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let request = name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit());
        (name.starts_with('d') || request)
            && p.parent().is_some_and(|dir| self.spool.iter().any(|s| s == dir))
    }
}

impl Spooled {
    /// A request file renamed to its job data file: the `d…` name with the same inode
    /// (metadata only: the file is not read, which would taint the sensor).
    fn renamed(&mut self) {
        if self.job.is_some() {
            return;
        }
        let Some(dir) = Path::new(&self.path).parent() else { return };
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('d')
                && e.metadata().is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == self.ino)
            {
                self.path = dir.join(&name).to_string_lossy().into_owned();
                self.job = job_number(&self.path);
                return;
            }
        }
    }
}

fn bounded(set: &mut HashSet<u32>) {
    if set.len() >= MAX_ENTRIES {
        set.clear();
    }
}

fn record(job: &Job) -> Record {
    let mut r = crate::egress::record::record(&job.detection);
    r.set_opt("mnsensor.print.queue", job.queue.as_deref()).set_opt("mnsensor.print.job", job.job);
    if !job.spool.is_empty() {
        r.set("mnsensor.print.spool_files", job.spool.clone());
    }
    r
}

/// The job number of a CUPS data file `d<job>-<document>` (`d00012-001` → 12).
fn job_number(path: &str) -> Option<u32> {
    let name = Path::new(path).file_name()?.to_str()?;
    name.strip_prefix('d')?.split_once('-')?.0.parse().ok()
}

/// The destination named on a live client's command line: `-d Q` / `-dQ` (lp), `-P Q` /
/// `-PQ` (lpr).
fn queue_of(tgid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{tgid}/cmdline")).ok()?;
    let args: Vec<String> =
        cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    queue_in(&args)
}

fn queue_in(args: &[String]) -> Option<String> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        for flag in ["-d", "-P"] {
            if a == flag {
                return it.next().cloned();
            }
            if let Some(q) = a.strip_prefix(flag).filter(|q| !q.is_empty()) {
                return Some(q.to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    fn proc(tgid: u32, comm: &str) -> Proc {
        Proc { tgid, uid: 1000, comm: comm.into() }
    }

    fn origin(tgid: u32, comm: &str) -> Origin {
        Origin { tgid, uid: 1000, auid: Some(1000), comm: comm.into(), ino: 7, dev: 3, hops: 0, time_ns: S }
    }

    fn taint(tgid: u32, comm: &str) -> Input {
        Input::Taint {
            proc: proc(tgid, comm),
            origin: origin(tgid, comm),
            bytes: 500,
            files: 1,
            time_ns: 2 * S,
        }
    }

    fn spool(origin_tgid: u32, path: &str) -> Input {
        Input::Derived {
            proc: proc(50, "cupsd"),
            origin: origin(origin_tgid, "lp"),
            path: path.into(),
            ino: 9,
            dev: 1,
            time_ns: 2 * S,
        }
    }

    fn texts(r: Vec<Record>) -> Vec<String> {
        r.iter().map(|r| r.to_json(0, "h")).collect()
    }

    #[test]
    fn client_joined_with_its_spool_file_once() {
        let mut p = Print::new(vec![PathBuf::from("/var/spool/cups")]);
        p.observe(&spool(10, "/var/spool/cups/d00012-001"));
        p.observe(&spool(10, "/var/spool/cups/c00012"));
        p.observe(&taint(10, "lp"));
        p.observe(&taint(10, "lp"));
        let out = texts(p.tick(|_| Vec::new()));
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("\"mnsensor.print.job\":12"), "{}", out[0]);
        assert!(out[0].contains("\"mnsensor.taint.bytes_read\":500"), "{}", out[0]);
        assert!(out[0].contains("d00012-001"), "{}", out[0]);
        assert!(!out[0].contains("c00012"), "control files are not job data: {}", out[0]);
        // The server's later spool writes carry the same origin: not again.
        p.observe(&spool(10, "/var/spool/cups/d00013-001"));
        for _ in 0..WAIT_POLLS {
            assert!(p.tick(|_| Vec::new()).is_empty());
        }
    }

    #[test]
    fn a_client_without_spool_file_waits_then_reports_and_untainted_paths_do_not() {
        let mut p = Print::new(vec![PathBuf::from("/var/spool/cups")]);
        p.observe(&taint(20, "lpr"));
        p.observe(&taint(21, "cat"));
        p.observe(&spool(30, "/tmp/d00001-001"));
        assert!(p.tick(|_| Vec::new()).is_empty());
        assert!(p.tick(|_| Vec::new()).is_empty());
        let out = texts(p.tick(|_| Vec::new()));
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("\"mnsensor.process.comm\":\"lpr\""), "{}", out[0]);
    }

    #[test]
    fn a_spool_file_no_client_claimed_is_reported_for_its_origin() {
        let mut p = Print::new(vec![PathBuf::from("/var/spool/cups")]);
        p.observe(&spool(40, "/var/spool/cups/d00002-001"));
        let mut out = Vec::new();
        for _ in 0..WAIT_POLLS {
            out.extend(texts(p.tick(|_| Vec::new())));
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("\"mnsensor.process.comm\":\"cupsd\""), "{}", out[0]);
        assert!(out[0].contains("\"mnsensor.taint.origin.pid\":40"), "{}", out[0]);
    }

    #[test]
    fn queues_from_the_command_line() {
        let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(queue_in(&args("lp -h /run/s -d office f")), Some("office".into()));
        assert_eq!(queue_in(&args("lp -doffice f")), Some("office".into()));
        assert_eq!(queue_in(&args("lpr -P hr f")), Some("hr".into()));
        assert_eq!(queue_in(&args("lp f")), None);
        assert_eq!(job_number("/var/spool/cups/d00012-001"), Some(12));
    }
}
