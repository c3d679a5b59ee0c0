//! Exfiltration detector: turns taint and egress observations (`sensor/src/egress/`) into
//! `detection.exfiltration`, `detection.bulk_read` and `detection.staging`, each once per
//! episode (docs/detections.md).
//!
//! Inputs carry running totals as the kernel maps hold them; the detector keeps the last
//! totals it saw per process and destination and works on the differences, so feeding the
//! same totals twice adds nothing.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use crate::{event::Name, policy::model::Network};

/// Where a process's taint came from: the first protected read of its chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The process that read the protected file, and its user and login user.
    pub tgid: u32,
    pub uid: u32,
    pub auid: Option<u32>,
    pub comm: String,
    /// The first protected file read (inode and device).
    pub ino: u64,
    pub dev: u32,
    /// Hand-offs (pipes, derived files) between that read and the holder.
    pub hops: u32,
    /// When it was read (wall-clock ns).
    pub time_ns: i128,
}

/// The process an observation is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proc {
    pub tgid: u32,
    pub uid: u32,
    pub comm: String,
}

/// One observation.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A tainted process, with the protected bytes and files it read itself so far.
    Taint { proc: Proc, origin: Origin, bytes: u64, files: u64, time_ns: i128 },
    /// A tainted process's traffic to one destination so far.
    Flow {
        proc: Proc,
        origin: Origin,
        addr: IpAddr,
        port: u16,
        /// `tcp`, `udp` or the protocol number.
        protocol: String,
        bytes: u64,
        connects: u32,
        denied: u32,
        /// Connections opened before the taint that the kernel cut (`action: deny`).
        cut: u32,
        first_ns: i128,
        last_ns: i128,
    },
    /// A file outside the protected trees written by a tainted process.
    Derived { proc: Proc, origin: Origin, path: String, ino: u64, dev: u32, time_ns: i128 },
    /// A raw, packet or ICMP socket created by a tainted process.
    RawSocket { proc: Proc, origin: Origin, family: u32, sock_type: u32, protocol: u32, time_ns: i128 },
}

/// An allowed destination: a network and, when not empty, its ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    pub network: Network,
    pub ports: Vec<u16>,
}

impl Allowed {
    /// Whether `addr:port` falls in this entry.
    pub fn covers(&self, addr: IpAddr, port: u16) -> bool {
        self.network.contains(addr) && (self.ports.is_empty() || self.ports.contains(&port))
    }
}

/// Tuning, from the policy's `egress` section (defaults in docs/detections.md).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub allowed: Vec<Allowed>,
    /// Users whose tainted traffic to an allowed destination is not reported (empty: all).
    pub allowed_uids: Vec<u32>,
    /// Bytes of tainted traffic to one destination that make an exfiltration.
    pub min_bytes: u64,
    /// Protected bytes, or distinct protected files, one user reads in a window that make a
    /// bulk read.
    pub bulk_bytes: u64,
    pub bulk_files: u64,
    /// An episode ends after this long without activity (ns).
    pub window_ns: i128,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allowed: Vec::new(),
            allowed_uids: Vec::new(),
            min_bytes: 1,
            bulk_bytes: 100 << 20,
            bulk_files: 100,
            window_ns: 600 * 1_000_000_000,
        }
    }
}

/// Programs whose reading of protected files is staging in itself.
pub const ARCHIVERS: [&str; 14] =
    ["tar", "zip", "7z", "7za", "7zz", "rar", "gzip", "bzip2", "xz", "zstd", "lz4", "openssl", "gpg", "age"];

/// Writes below these are control files, not copies of data (`/dev/shm` excepted).
const PSEUDO: [&str; 3] = ["/proc/", "/sys/", "/dev/"];

/// A detection and its evidence chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// `detection.exfiltration`, `detection.bulk_read`, `detection.staging` or
    /// `egress.raw_socket`.
    pub name: Name,
    pub time_ns: i128,
    /// Why it fired, one sentence.
    pub reason: String,
    pub proc: Proc,
    pub origin: Origin,
    /// Protected bytes and files the user read in the episode (bulk read) or the origin read.
    pub bytes_read: u64,
    pub files_read: u64,
    /// Derived files of the same origin.
    pub derived: Vec<String>,
    /// Destination and the bytes sent to it.
    pub destination: Option<(IpAddr, u16, String)>,
    pub bytes_sent: u64,
    /// `deny` when the kernel refused a connect or cut a connection, `alert` otherwise.
    pub action: &'static str,
    /// A connection opened before the taint was cut (`mnsensor.egress.cut`).
    pub cut: bool,
    pub first_ns: i128,
    pub last_ns: i128,
}

#[derive(Default)]
struct Episode {
    bytes: u64,
    files: u64,
    first_ns: i128,
    last_ns: i128,
    reported: bool,
    /// A connection of the episode was cut.
    cut: bool,
}

impl Episode {
    /// Adds activity at `t`; a gap longer than `window` starts a new episode first.
    fn touch(&mut self, t: i128, window: i128) {
        if self.last_ns != 0 && t - self.last_ns > window {
            *self = Self::default();
        }
        if self.first_ns == 0 {
            self.first_ns = t;
        }
        self.last_ns = self.last_ns.max(t);
    }
}

/// Most per-process entries kept; the oldest half is dropped beyond it.
const MAX_SEEN: usize = 1 << 16;

/// The detector's state.
#[derive(Default)]
pub struct Detector {
    pub settings: Settings,
    /// Last totals per (tgid, addr, port) and per tgid.
    flow_seen: HashMap<(u32, IpAddr, u16), (u64, u32)>,
    taint_seen: HashMap<u32, (u64, u64)>,
    /// Episodes per (uid, addr, port) and per uid.
    exfil: HashMap<(u32, IpAddr, u16), Episode>,
    bulk: HashMap<u32, Episode>,
    /// Derived files per origin file, and what was reported for staging.
    derived: HashMap<(u32, u64), Vec<String>>,
    staged: HashSet<(u32, u64)>,
    archivers: HashSet<u32>,
}

impl Detector {
    pub fn new(settings: Settings) -> Self {
        Self { settings, ..Self::default() }
    }

    /// Derived files made from the protected file `origin` read (for the other detectors).
    pub fn derived_files(&self, origin: &Origin) -> Vec<String> {
        self.derived.get(&(origin.dev, origin.ino)).cloned().unwrap_or_default()
    }

    /// Takes one observation; returns the detections it completes.
    pub fn observe(&mut self, input: Input) -> Vec<Detection> {
        if self.flow_seen.len() > MAX_SEEN {
            self.flow_seen.clear();
        }
        if self.taint_seen.len() > MAX_SEEN {
            self.taint_seen.clear();
        }
        match input {
            Input::Taint { proc, origin, bytes, files, time_ns } => {
                self.taint(proc, origin, bytes, files, time_ns)
            }
            Input::Flow {
                proc, origin, addr, port, protocol, bytes, denied, cut, first_ns, last_ns, ..
            } => self.flow(proc, origin, (addr, port, protocol), bytes, (denied, cut), first_ns, last_ns),
            Input::Derived { proc, origin, path, ino, dev, time_ns } => {
                self.derived(proc, origin, path, (dev, ino), time_ns)
            }
            Input::RawSocket { proc, origin, family, sock_type, protocol, time_ns } => {
                let reason = format!(
                    "{} holds protected data and opened a raw/packet/ICMP socket (family {family}, type {sock_type}, protocol {protocol})",
                    proc.comm
                );
                vec![self.detection(Name::EgressRawSocket, time_ns, &proc, &origin, None, 0, "alert", reason)]
            }
        }
    }

    fn taint(&mut self, proc: Proc, origin: Origin, bytes: u64, files: u64, t: i128) -> Vec<Detection> {
        let mut out = Vec::new();
        let seen = self.taint_seen.entry(proc.tgid).or_default();
        let (db, df) = (bytes.saturating_sub(seen.0), files.saturating_sub(seen.1));
        *seen = (bytes.max(seen.0), files.max(seen.1));
        if origin.hops == 0
            && bytes > 0
            && ARCHIVERS.contains(&proc.comm.as_str())
            && self.archivers.insert(proc.tgid)
        {
            out.push(self.detection(Name::DetectionStaging, t, &proc, &origin, None, 0, "alert", format!(
                "{} read protected data; archivers, compressors and encryptors reading protected files are staging",
                proc.comm
            )));
            if let Some(d) = out.last_mut() {
                d.bytes_read = bytes;
                d.files_read = files;
            }
        }
        if db == 0 && df == 0 {
            return out;
        }
        let window = self.settings.window_ns;
        let ep = self.bulk.entry(origin.uid).or_default();
        ep.touch(t, window);
        ep.bytes += db;
        ep.files += df;
        if !ep.reported && (ep.bytes >= self.settings.bulk_bytes || ep.files >= self.settings.bulk_files) {
            ep.reported = true;
            let (b, f, first, last) = (ep.bytes, ep.files, ep.first_ns, ep.last_ns);
            let mut d = self.detection(
                Name::DetectionBulkRead,
                t,
                &proc,
                &origin,
                None,
                0,
                "alert",
                format!("user {} read {b} protected bytes in {f} files within the window", origin.uid),
            );
            d.bytes_read = b;
            d.files_read = f;
            d.first_ns = first;
            d.last_ns = last;
            out.push(d);
        }
        out
    }

    #[allow(clippy::too_many_arguments, reason = "one flow's fields, destructured")]
    fn flow(
        &mut self,
        proc: Proc,
        origin: Origin,
        dest: (IpAddr, u16, String),
        bytes: u64,
        (denied, cut): (u32, u32),
        first_ns: i128,
        last_ns: i128,
    ) -> Vec<Detection> {
        let (addr, port, _) = dest;
        let seen = self.flow_seen.entry((proc.tgid, addr, port)).or_default();
        let (db, dd) = (bytes.saturating_sub(seen.0), denied.saturating_sub(seen.1));
        if db == 0 && dd == 0 {
            return Vec::new();
        }
        *seen = (bytes.max(seen.0), denied.max(seen.1));
        let allowed_dest = self.settings.allowed.iter().any(|a| a.covers(addr, port));
        let allowed_user =
            self.settings.allowed_uids.is_empty() || self.settings.allowed_uids.contains(&proc.uid);
        if allowed_dest && allowed_user {
            return Vec::new();
        }
        let ep = self.exfil.entry((origin.uid, addr, port)).or_default();
        ep.touch(last_ns.max(first_ns), self.settings.window_ns);
        if ep.first_ns > first_ns && first_ns > 0 {
            ep.first_ns = first_ns;
        }
        ep.bytes += db;
        ep.files += u64::from(dd);
        ep.cut |= cut > 0;
        if ep.reported || (ep.bytes < self.settings.min_bytes && ep.files == 0) {
            return Vec::new();
        }
        ep.reported = true;
        let (b, first, last, refused, cut) = (ep.bytes, ep.first_ns, ep.last_ns, ep.files > 0, ep.cut);
        let reason = match (allowed_dest, refused) {
            (false, true) if cut => "a tainted process sent on a connection it opened before it was tainted, to a destination not on the allow list; its packets are dropped and the connection cut".to_owned(),
            (true, _) => format!(
                "tainted data sent to an allowed destination by user {}, who is not allowed",
                proc.uid
            ),
            (false, true) => {
                "a tainted process tried to reach a destination not on the allow list; refused".to_owned()
            }
            (false, false) => {
                format!("a tainted process sent {b} bytes to a destination not on the allow list")
            }
        };
        let action = if refused { "deny" } else { "alert" };
        let mut d =
            self.detection(Name::DetectionExfiltration, last, &proc, &origin, Some(dest), b, action, reason);
        d.first_ns = first;
        d.last_ns = last;
        d.cut = cut;
        vec![d]
    }

    fn derived(
        &mut self,
        proc: Proc,
        origin: Origin,
        path: String,
        file: (u32, u64),
        t: i128,
    ) -> Vec<Detection> {
        if PSEUDO.iter().any(|p| path.starts_with(p)) && !path.starts_with("/dev/shm/") {
            return Vec::new();
        }
        let list = self.derived.entry((origin.dev, origin.ino)).or_default();
        if !list.contains(&path) && list.len() < 64 {
            list.push(path.clone());
        }
        if !self.staged.insert(file) {
            return Vec::new();
        }
        let mut d = self.detection(
            Name::DetectionStaging,
            t,
            &proc,
            &origin,
            None,
            0,
            "alert",
            format!("{} wrote a copy of protected data outside the protected trees: {path}", proc.comm),
        );
        d.derived = vec![path];
        vec![d]
    }

    #[allow(clippy::too_many_arguments, reason = "the evidence fields")]
    fn detection(
        &self,
        name: Name,
        t: i128,
        proc: &Proc,
        origin: &Origin,
        destination: Option<(IpAddr, u16, String)>,
        bytes_sent: u64,
        action: &'static str,
        reason: String,
    ) -> Detection {
        Detection {
            derived: self.derived_files(origin),
            destination,
            bytes_sent,
            action,
            ..super::evidence::detection(name, t, proc, origin, reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    fn origin(uid: u32) -> Origin {
        Origin { tgid: 10, uid, auid: Some(uid), comm: "cat".into(), ino: 7, dev: 3, hops: 0, time_ns: S }
    }

    fn proc(tgid: u32, uid: u32, comm: &str) -> Proc {
        Proc { tgid, uid, comm: comm.into() }
    }

    fn flow(tgid: u32, uid: u32, addr: &str, bytes: u64, denied: u32, t: i128) -> Input {
        Input::Flow {
            proc: proc(tgid, uid, "nc"),
            origin: origin(uid),
            addr: addr.parse().unwrap(),
            port: 9000,
            protocol: "tcp".into(),
            bytes,
            connects: 1,
            denied,
            cut: 0,
            first_ns: t,
            last_ns: t,
        }
    }

    /// A cut connection (kernel: denied and cut at the first tainted send; the bytes the
    /// send queued follow) is one `deny` detection that says so and carries those bytes.
    #[test]
    fn a_cut_connection_is_a_deny_detection_with_its_bytes() {
        let mut d = Detector::new(Settings::default());
        let cut = |bytes: u64, t: i128| Input::Flow {
            proc: proc(20, 1000, "nc"),
            origin: origin(1000),
            addr: "10.200.0.2".parse().unwrap(),
            port: 9000,
            protocol: "tcp".into(),
            bytes,
            connects: 0,
            denied: 1,
            cut: 1,
            first_ns: t,
            last_ns: t,
        };
        let out = d.observe(cut(40_000, 2 * S));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].action, out[0].cut, out[0].bytes_sent), ("deny", true, 40_000));
        assert!(out[0].reason.contains("opened before it was tainted"), "{}", out[0].reason);
        assert!(d.observe(cut(50_000, 3 * S)).is_empty(), "once per episode");
        // A refused connect is not a cut.
        let out = d.observe(flow(21, 1001, "10.200.0.3", 0, 1, 2 * S));
        assert_eq!((out[0].action, out[0].cut), ("deny", false));
    }

    #[test]
    fn exfiltration_once_per_episode_with_destination_and_bytes() {
        let mut d = Detector::new(Settings { min_bytes: 100, ..Settings::default() });
        assert!(d.observe(flow(20, 1000, "10.200.0.2", 50, 0, 2 * S)).is_empty());
        let out = d.observe(flow(20, 1000, "10.200.0.2", 150, 0, 3 * S));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, Name::DetectionExfiltration);
        assert_eq!(out[0].bytes_sent, 150);
        assert_eq!(out[0].destination.as_ref().unwrap().0, "10.200.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(out[0].action, "alert");
        // More traffic in the same episode: nothing new; the same totals again: nothing.
        assert!(d.observe(flow(20, 1000, "10.200.0.2", 900, 0, 4 * S)).is_empty());
        assert!(d.observe(flow(20, 1000, "10.200.0.2", 900, 0, 4 * S)).is_empty());
        // After the window: a new episode.
        let later = 4 * S + Settings::default().window_ns + S;
        assert_eq!(d.observe(flow(21, 1000, "10.200.0.2", 200, 0, later)).len(), 1);
    }

    #[test]
    fn refused_connect_is_a_deny_detection() {
        let mut d = Detector::new(Settings::default());
        let out = d.observe(flow(20, 1000, "10.200.0.2", 0, 1, 2 * S));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].action, "deny");
    }

    #[test]
    fn allowed_destination_only_for_allowed_users() {
        let allowed = Allowed { network: "10.200.0.0/24".parse().unwrap(), ports: vec![9000] };
        let mut d = Detector::new(Settings {
            allowed: vec![allowed],
            allowed_uids: vec![1000],
            ..Settings::default()
        });
        assert!(d.observe(flow(20, 1000, "10.200.0.2", 500, 0, 2 * S)).is_empty());
        assert_eq!(d.observe(flow(21, 1001, "10.200.0.2", 500, 0, 2 * S)).len(), 1);
        assert_eq!(d.observe(flow(22, 1000, "10.200.1.2", 500, 0, 2 * S)).len(), 1);
    }

    #[test]
    fn bulk_read_fires_once_above_threshold_and_not_below() {
        let mut d = Detector::new(Settings { bulk_files: 3, ..Settings::default() });
        let taint = |tgid, files| Input::Taint {
            proc: proc(tgid, 1000, "cat"),
            origin: origin(1000),
            bytes: 10,
            files,
            time_ns: 2 * S,
        };
        assert!(d.observe(taint(30, 1)).is_empty());
        assert!(d.observe(taint(31, 1)).is_empty());
        let out = d.observe(taint(32, 1));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, Name::DetectionBulkRead);
        assert_eq!(out[0].files_read, 3);
        assert!(d.observe(taint(33, 1)).is_empty());
    }

    #[test]
    fn staging_for_derived_files_and_archivers() {
        let mut d = Detector::new(Settings::default());
        let derived = |path: &str, ino| Input::Derived {
            proc: proc(40, 1000, "cp"),
            origin: origin(1000),
            path: path.into(),
            ino,
            dev: 1,
            time_ns: 2 * S,
        };
        assert_eq!(d.observe(derived("/tmp/copy", 5)).len(), 1);
        assert!(d.observe(derived("/tmp/copy", 5)).is_empty());
        let tar = Input::Taint {
            proc: proc(41, 1000, "tar"),
            origin: origin(1000),
            bytes: 1,
            files: 1,
            time_ns: 2 * S,
        };
        let out = d.observe(tar);
        assert_eq!(out.iter().filter(|d| d.name == Name::DetectionStaging).count(), 1);
        // The exfiltration carries the derived files of the same origin.
        let out = d.observe(flow(42, 1000, "10.200.0.2", 10, 0, 3 * S));
        assert_eq!(out[0].derived, vec!["/tmp/copy".to_owned()]);
    }

    #[test]
    fn allowed_ports() {
        let a = Allowed { network: "10.0.0.0/12".parse().unwrap(), ports: vec![443] };
        assert!(a.covers("10.15.255.1".parse().unwrap(), 443));
        assert!(!a.covers("10.15.255.1".parse().unwrap(), 80));
        assert!(!a.covers("10.16.0.1".parse().unwrap(), 443));
    }
}
