//! Egress: the user half of the taint and egress programs (`sensor-ebpf/src/taint.rs`,
//! `sensor-ebpf/src/egress.rs`).
//!
//! [`Egress::attach`] loads the cgroup v2 socket programs and attaches them to one cgroup
//! (in production the root, `/sys/fs/cgroup`; tests pass a child cgroup they create), plus
//! the send tracepoints; it fills the allow list and the action from the policy.
//! [`Egress::poll`] drains the taint ring and reads the taint and flow maps into
//! [`exfil::Input`]s, removing the entries of processes that have exited; under
//! `action: deny` it disconnects the connections the kernel cut ([`cut`]). Everything is
//! detached when the loaded object ([`crate::bpf::Programs`]) is dropped.
use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::{
    maps::{
        Array, HashMap, MapData, PerCpuArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, ProgramError,
        TracePoint,
    },
};
use sensor_common::event::{
    Task,
    egress::{
        ACTION_ALERT, ACTION_DENY, ALLOW_PORTS, AllowAddr, AllowPorts, Cut, CutKey, CutRecord, Derived,
        DnsPacket, EgressConfig, Flow, FlowKey, REC_CUT, REC_DERIVED, REC_DNS, REC_SOCKET, RawSocket,
        STAT_SLOTS, Taint,
    },
    net::{AF_INET, IPPROTO_TCP},
};

use crate::{
    analyze::{
        dns,
        exfil::{Input, Origin, Proc},
    },
    bpf::{BpfError, Programs, missing_map, program},
    event::time::Clock,
    kernel::tracefs::TraceFs,
    policy::egress::{EgressAction, EgressPolicy},
};

pub mod cut;
pub mod record;

/// Setting up egress control failed.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// The cgroup directory could not be opened.
    #[error("cannot open the cgroup {path}: {source}")]
    Cgroup { path: String, source: std::io::Error },
    /// A program could not be loaded or attached.
    #[error("egress program {program}: {source}")]
    Program { program: &'static str, source: ProgramError },
    /// A map update failed.
    #[error("egress map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
}

/// The cgroup socket programs: (program, socket-address hook or `None` for sock_create).
const CGROUP_PROGRAMS: [&str; 4] =
    ["egress_connect4", "egress_connect6", "egress_sendmsg4", "egress_sendmsg6"];
/// Attach mode: aya attaches with a BPF link (5.7+), which always coexists with the other
/// programs of the cgroup and takes no flags (`AllowMultiple` makes `link_create` fail).
const LINK: CgroupAttachMode = CgroupAttachMode::Single;
/// Send syscalls whose destinations and bytes taint.rs counts, and receive syscalls that
/// carry taint out of unix sockets.
const SEND_TRACEPOINTS: [&str; 4] =
    ["sys_exit_sendto", "sys_exit_sendmsg", "sys_exit_recvfrom", "sys_exit_recvmsg"];
/// Under `action: deny` only: (program, syscall-enter tracepoint) of each syscall that can
/// put bytes on a socket connected before its process was tainted
/// (`sensor-ebpf/src/cut.rs`).
const CUT_TRACEPOINTS: [(&str, &str); 7] = [
    ("cut_enter_write", "sys_enter_write"),
    ("cut_enter_writev", "sys_enter_writev"),
    ("cut_enter_sendto", "sys_enter_sendto"),
    ("cut_enter_sendmsg", "sys_enter_sendmsg"),
    ("cut_enter_sendmmsg", "sys_enter_sendmmsg"),
    ("cut_enter_sendfile64", "sys_enter_sendfile64"),
    ("cut_enter_splice", "sys_enter_splice"),
];

/// Kernel counters of `EXFIL_STATS`, totalled over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub taint_full: u64,
    pub object_full: u64,
    pub flow_full: u64,
    pub ring_lost: u64,
    pub denied: u64,
    pub socket_full: u64,
    pub cut_full: u64,
}

/// The attached egress programs' maps.
pub struct Egress {
    taint: HashMap<MapData, u32, Taint>,
    flows: HashMap<MapData, FlowKey, Flow>,
    sockets: HashMap<MapData, u64, FlowKey>,
    cuts: HashMap<MapData, CutKey, Cut>,
    ring: RingBuf<MapData>,
    stats: PerCpuArray<MapData, u64>,
    allow: LpmTrie<MapData, AllowAddr, AllowPorts>,
    config: Array<MapData, EgressConfig>,
    /// The egress cgroup's depth below the cgroup v2 root and its id.
    cgroup: (u32, u64),
    /// Whether the cut programs are attached (the policy said deny at start).
    cut_attached: bool,
    clock: Clock,
    /// DNS packets decoded by the last [`Egress::poll`].
    dns: Vec<dns::Packet>,
    /// `program@hook` of what was attached, and the programs' kernel ids.
    pub attached: Vec<String>,
    pub ids: Vec<u32>,
}

impl Egress {
    /// Loads and attaches the egress programs to the cgroup v2 directory `cgroup` and applies
    /// `policy`.
    pub fn attach(
        programs: &mut Programs,
        cgroup: &Path,
        tracefs: &TraceFs,
        policy: &EgressPolicy,
    ) -> Result<Self, EgressError> {
        let ebpf = programs.ebpf_mut();
        let mut attached = Vec::new();
        let mut ids = Vec::new();
        let send = SEND_TRACEPOINTS.map(|name| (name, name));
        let cut: &[(&'static str, &str)] =
            if policy.action == EgressAction::Deny { &CUT_TRACEPOINTS } else { &[] };
        for &(name, event) in send.iter().chain(cut) {
            if !tracefs.event_exists("syscalls", event) {
                continue;
            }
            let prog: &mut TracePoint = program(ebpf, name)?;
            let err = |source| EgressError::Program { program: name, source };
            prog.load().map_err(err)?;
            prog.attach("syscalls", event).map_err(err)?;
            ids.extend(prog.info().ok().map(|i| i.id()));
            attached.push(format!("{name}@tracepoint/syscalls/{event}"));
        }
        let cgroup = &cgroup_v2(cgroup);
        let dir = File::open(cgroup)
            .map_err(|source| EgressError::Cgroup { path: cgroup.display().to_string(), source })?;
        for name in CGROUP_PROGRAMS {
            let prog: &mut CgroupSockAddr = program(ebpf, name)?;
            let err = |source| EgressError::Program { program: name, source };
            prog.load().map_err(err)?;
            prog.attach(&dir, LINK).map_err(err)?;
            ids.extend(prog.info().ok().map(|i| i.id()));
            attached.push(format!("{name}@cgroup/{}", cgroup.display()));
        }
        let name = "egress_skb";
        let prog: &mut CgroupSkb = program(ebpf, name)?;
        let err = |source| EgressError::Program { program: name, source };
        prog.load().map_err(err)?;
        prog.attach(&dir, CgroupSkbAttachType::Egress, LINK).map_err(err)?;
        ids.extend(prog.info().ok().map(|i| i.id()));
        attached.push(format!("{name}@cgroup_skb/egress/{}", cgroup.display()));
        let name = "egress_sock_create";
        let prog: &mut CgroupSock = program(ebpf, name)?;
        let err = |source| EgressError::Program { program: name, source };
        prog.load().map_err(err)?;
        prog.attach(&dir, LINK).map_err(err)?;
        ids.extend(prog.info().ok().map(|i| i.id()));
        attached.push(format!("{name}@cgroup/{}", cgroup.display()));
        let mut on: Array<_, u32> = Array::try_from(
            ebpf.map_mut("TAINT_ON").ok_or(EgressError::Map { name: "TAINT_ON", source: missing_map() })?,
        )
        .map_err(|source| EgressError::Map { name: "TAINT_ON", source })?;
        on.set(0, 1, 0).map_err(|source| EgressError::Map { name: "TAINT_ON", source })?;

        let mut take =
            |name: &'static str| ebpf.take_map(name).ok_or(EgressError::Map { name, source: missing_map() });
        let map_err = |name: &'static str| move |source| EgressError::Map { name, source };
        let mut egress = Self {
            taint: HashMap::try_from(take("TAINT")?).map_err(map_err("TAINT"))?,
            flows: HashMap::try_from(take("FLOWS")?).map_err(map_err("FLOWS"))?,
            sockets: HashMap::try_from(take("TAINTED_SOCKETS")?).map_err(map_err("TAINTED_SOCKETS"))?,
            cuts: HashMap::try_from(take("CUT_CONNECTIONS")?).map_err(map_err("CUT_CONNECTIONS"))?,
            ring: RingBuf::try_from(take("EXFIL_EVENTS")?).map_err(map_err("EXFIL_EVENTS"))?,
            stats: PerCpuArray::try_from(take("EXFIL_STATS")?).map_err(map_err("EXFIL_STATS"))?,
            allow: LpmTrie::try_from(take("EGRESS_ALLOW")?).map_err(map_err("EGRESS_ALLOW"))?,
            config: Array::try_from(take("EGRESS_CONFIG")?).map_err(map_err("EGRESS_CONFIG"))?,
            cgroup: crate::kernel::cgroup::level_and_id(cgroup)
                .map_err(|source| EgressError::Cgroup { path: cgroup.display().to_string(), source })?,
            cut_attached: policy.action == EgressAction::Deny,
            clock: Clock::now(),
            dns: Vec::new(),
            attached,
            ids,
        };
        egress.apply(policy)?;
        Ok(egress)
    }

    /// Writes the allow list and the action: new entries first, then stale ones removed.
    pub fn apply(&mut self, policy: &EgressPolicy) -> Result<(), EgressError> {
        let err = |name: &'static str| move |source| EgressError::Map { name, source };
        let mut wanted = Vec::new();
        for a in &policy.allow {
            let (addr, prefix) = allow_key(a.network.addr, a.network.prefix);
            let mut ports = AllowPorts::default();
            for (slot, port) in ports.ports.iter_mut().zip(a.ports.iter().take(ALLOW_PORTS)) {
                *slot = *port;
            }
            let key = Key::new(u32::from(prefix), addr);
            self.allow.insert(&key, ports, 0).map_err(err("EGRESS_ALLOW"))?;
            wanted.push((u32::from(prefix), addr));
        }
        let stale: Vec<Key<AllowAddr>> = self
            .allow
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(&(k.prefix_len(), k.data())))
            .collect();
        for k in stale {
            let _ = self.allow.remove(&k);
        }
        let action = match policy.action {
            EgressAction::Alert => ACTION_ALERT,
            EgressAction::Deny => ACTION_DENY,
        };
        if policy.action == EgressAction::Deny && !self.cut_attached {
            tracing::warn!(
                "egress: action deny now refuses tainted connects, but connections opened before a taint are cut only after a restart (the cut programs load at start under deny)"
            );
        }
        let (cgroup_level, cgroup_id) = self.cgroup;
        let config = EgressConfig { action, cgroup_level, cgroup_id };
        self.config.set(0, config, 0).map_err(err("EGRESS_CONFIG"))?;
        Ok(())
    }

    /// Drains the ring and reads the maps; entries of exited processes are removed after
    /// they were read.
    pub fn poll(&mut self) -> Vec<Input> {
        let mut out = Vec::new();
        let mut records = Vec::new();
        while let Some(item) = self.ring.next() {
            records.push(item.to_vec());
        }
        for r in &records {
            if r.get(..4) == Some(&REC_DNS.to_ne_bytes()[..]) {
                self.dns.extend(self.decode_dns(r));
            } else if r.get(..4) == Some(&REC_CUT.to_ne_bytes()[..]) {
                if let Some(key) = cut_record(r) {
                    let _ = self.cuts.remove(&key);
                }
            } else {
                out.extend(self.decode(r));
            }
        }
        let mut gone = Vec::new();
        for (tgid, t) in self.taint.iter().filter_map(Result::ok) {
            let origin = self.origin(&t);
            let proc = Proc { tgid, uid: origin.uid, comm: origin.comm.clone() };
            let proc = live_proc(tgid).unwrap_or(proc);
            out.push(Input::Taint {
                proc,
                origin,
                bytes: t.bytes,
                files: t.files,
                time_ns: self.clock.wall_ns(t.last_ns),
            });
            if !alive(tgid) {
                gone.push(tgid);
            }
        }
        let mut gone_flows = Vec::new();
        for (key, f) in self.flows.iter().filter_map(Result::ok) {
            out.push(Input::Flow {
                proc: task_proc(&f.task),
                origin: self.origin(&f.taint),
                addr: addr_of(key.family, key.daddr),
                port: key.dport,
                protocol: protocol_name(key.protocol),
                // Syscall results are exact for what they see; the packets of a socket
                // connected while tainted also show sends no syscall exit sees (io_uring).
                bytes: f.bytes.max(f.wire_bytes),
                connects: f.connects,
                denied: f.denied,
                cut: f.cut,
                first_ns: self.clock.wall_ns(f.first_ns),
                last_ns: self.clock.wall_ns(f.last_ns),
            });
            if !alive(key.tgid) {
                gone_flows.push(key);
            }
        }
        for tgid in gone {
            let _ = self.taint.remove(&tgid);
        }
        for key in gone_flows {
            let _ = self.flows.remove(&key);
        }
        let gone_sockets: Vec<u64> = self
            .sockets
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, key)| !alive(key.tgid))
            .map(|(cookie, _)| cookie)
            .collect();
        for cookie in gone_sockets {
            let _ = self.sockets.remove(&cookie);
        }
        let gone_cuts: Vec<CutKey> = self
            .cuts
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, cut)| !alive(cut.flow.tgid))
            .map(|(key, _)| key)
            .collect();
        for key in gone_cuts {
            let _ = self.cuts.remove(&key);
        }
        out
    }

    /// Decodes one ring record (a derived file or a raw socket).
    fn decode(&self, bytes: &[u8]) -> Option<Input> {
        let kind = u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?);
        match kind {
            REC_DERIVED => {
                let head = std::mem::offset_of!(Derived, data);
                if bytes.len() < head {
                    return None;
                }
                // SAFETY: at least `head` bytes; the struct is plain data; read unaligned.
                let mut d: Derived = unsafe { std::mem::zeroed() };
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut d).cast::<u8>(), head);
                }
                let path = bytes.get(head..head + usize::from(d.path_len)).unwrap_or_default();
                Some(Input::Derived {
                    proc: task_proc(&d.header.task),
                    origin: self.origin(&d.taint),
                    path: crate::event::path::from_kernel(path),
                    ino: d.ino,
                    dev: d.dev,
                    time_ns: self.clock.wall_ns(d.header.time_ns),
                })
            }
            REC_SOCKET => {
                if bytes.len() < size_of::<RawSocket>() {
                    return None;
                }
                // SAFETY: as above, with the full size.
                let s: RawSocket = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
                Some(Input::RawSocket {
                    proc: Proc { tgid: s.tgid, uid: s.uid, comm: comm(&s.comm) },
                    origin: self.origin(&s.taint),
                    family: s.family,
                    sock_type: s.sock_type,
                    protocol: s.protocol,
                    time_ns: self.clock.wall_ns(s.time_ns),
                })
            }
            _ => None,
        }
    }

    /// Decodes a DNS packet record; the sender and its taint come from the flow the socket
    /// counts into (`None` once that flow is gone).
    fn decode_dns(&self, bytes: &[u8]) -> Option<dns::Packet> {
        if bytes.len() < size_of::<DnsPacket>() {
            return None;
        }
        // SAFETY: the full size; plain data; read unaligned.
        let p: DnsPacket = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let flow = self.flows.get(&p.key, 0).ok()?;
        let copied = (p.copied as usize).min(p.data.len());
        Some(dns::Packet {
            proc: task_proc(&flow.task),
            origin: self.origin(&flow.taint),
            server: addr_of(p.key.family, p.key.daddr),
            port: p.key.dport,
            protocol: protocol_name(p.protocol),
            data: p.data[..copied].to_vec(),
            time_ns: self.clock.wall_ns(p.time_ns),
        })
    }

    /// The DNS packets of the last poll.
    pub fn take_dns(&mut self) -> Vec<dns::Packet> {
        std::mem::take(&mut self.dns)
    }

    fn origin(&self, t: &Taint) -> Origin {
        Origin {
            tgid: t.origin.tgid,
            uid: t.origin.uid,
            auid: (t.origin.auid != u32::MAX).then_some(t.origin.auid),
            comm: comm(&t.origin.comm),
            ino: t.src_ino,
            dev: t.src_dev,
            hops: t.hops,
            time_ns: self.clock.wall_ns(t.first_ns),
        }
    }

    /// The kernel counters, totalled over CPUs.
    pub fn stats(&self) -> Stats {
        let mut v = [0u64; STAT_SLOTS as usize];
        for (slot, total) in v.iter_mut().enumerate() {
            *total = self.stats.get(&(slot as u32), 0).map(|per| per.iter().sum()).unwrap_or(0);
        }
        Stats {
            taint_full: v[0],
            object_full: v[1],
            flow_full: v[2],
            ring_lost: v[3],
            denied: v[4],
            socket_full: v[5],
            cut_full: v[6],
        }
    }
}

/// A [`CutRecord`]: disconnects the connection (its packets are already dropped). Returns
/// its key once a TCP connection is disconnected: the kernel purged its queue and it cannot
/// send again, so the mark can go (its ports may be reused by another connection). A
/// failure is logged: the kernel keeps dropping the packets, the process only sees a
/// stalled connection instead of an error.
fn cut_record(bytes: &[u8]) -> Option<CutKey> {
    if bytes.len() < size_of::<CutRecord>() {
        return None;
    }
    // SAFETY: the full size; plain data; read unaligned.
    let r: CutRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let (tgid, fd) = (r.cut.flow.tgid, r.cut.fd);
    match cut::disconnect(tgid, fd, &r.key) {
        Ok(cut::Outcome::Disconnected) => Some(r.key),
        Ok(cut::Outcome::Untouched) => None,
        Err(e) => {
            tracing::warn!(tgid, fd, error = %e, "egress: a cut connection's packets are dropped, but it could not be disconnected");
            None
        }
    }
}

/// `/sys/fs/cgroup` on a hybrid (v1 + v2) host is a tmpfs of v1 controllers; the v2
/// hierarchy is then mounted at `/sys/fs/cgroup/unified`.
pub fn cgroup_v2(path: &Path) -> std::path::PathBuf {
    let unified = path.join("unified");
    if !path.join("cgroup.procs").exists() && unified.join("cgroup.procs").exists() {
        return unified;
    }
    path.to_path_buf()
}

/// The allow-list key of a network: IPv4 as `::ffff:a.b.c.d` with the prefix + 96.
fn allow_key(addr: IpAddr, prefix: u8) -> (AllowAddr, u8) {
    match addr {
        IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), prefix + 96),
        IpAddr::V6(a) => (a.octets(), prefix),
    }
}

fn addr_of(family: u16, d: [u8; 16]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(d))
    }
}

fn protocol_name(p: u16) -> String {
    match p {
        IPPROTO_TCP => "tcp".to_owned(),
        sensor_common::event::egress::IPPROTO_UDP => "udp".to_owned(),
        n => n.to_string(),
    }
}

fn comm(c: &[u8; 16]) -> String {
    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
    String::from_utf8_lossy(&c[..end]).into_owned()
}

fn task_proc(t: &Task) -> Proc {
    Proc { tgid: t.tgid, uid: t.uid, comm: comm(&t.comm) }
}

fn alive(tgid: u32) -> bool {
    Path::new(&format!("/proc/{tgid}")).exists()
}

/// The current uid and name of a live process (its taint's origin may be another process).
fn live_proc(tgid: u32) -> Option<Proc> {
    let status = std::fs::read_to_string(format!("/proc/{tgid}/status")).ok()?;
    let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
    let comm = field("Name:")?.to_owned();
    let uid = field("Uid:")?.split_whitespace().next()?.parse().ok()?;
    Some(Proc { tgid, uid, comm })
}

/// The attached programs plus the detector: what the daemon drives once a second.
pub struct Runner {
    pub egress: Egress,
    detector: crate::analyze::exfil::Detector,
    dns: dns::Detector,
    media: crate::analyze::media::Media,
    drip: crate::analyze::drip::Drip,
    print: crate::analyze::print::Print,
    stats: Stats,
}

impl Runner {
    /// Attaches the egress programs to `cgroup` and starts a detector tuned by `policy`.
    pub fn start(
        programs: &mut Programs,
        cgroup: &Path,
        tracefs: &TraceFs,
        policy: &EgressPolicy,
    ) -> Result<Self, EgressError> {
        let egress = Egress::attach(programs, cgroup, tracefs, policy)?;
        let detector = crate::analyze::exfil::Detector::new(policy.settings());
        let media = crate::analyze::media::Media::new(crate::kernel::blockdev::Resolver::host());
        let drip = crate::analyze::drip::Drip::new(policy.slow_drip);
        let print = crate::analyze::print::Print::new(policy.print_spool.clone());
        Ok(Self {
            egress,
            detector,
            dns: dns::Detector::new(policy.dns_tunnel),
            media,
            drip,
            print,
            stats: Stats::default(),
        })
    }

    /// A new policy: allow list, action and thresholds.
    pub fn reload(&mut self, policy: &EgressPolicy) -> Result<(), EgressError> {
        self.egress.apply(policy)?;
        self.detector.settings = policy.settings();
        self.drip.settings = policy.slow_drip;
        self.dns.settings = policy.dns_tunnel;
        self.print.spool.clone_from(&policy.print_spool);
        Ok(())
    }

    /// Polls the kernel and returns the records to write: detections, and a `sensor.alert`
    /// (`mnsensor.alert.kind: taint_lost`) when taint state could not be kept.
    pub fn tick(&mut self) -> Vec<crate::event::record::Record> {
        let inputs = self.egress.poll();
        let mut out = Vec::new();
        for i in &inputs {
            self.media.observe(i);
            self.print.observe(i);
            out.extend(self.drip.observe(i, &self.detector.settings));
        }
        out.extend(inputs.into_iter().flat_map(|i| self.detector.observe(i)).map(|d| record::record(&d)));
        for p in self.egress.take_dns() {
            out.extend(self.dns.observe(p).map(|s| record::dns(&s)));
        }
        let detector = &self.detector;
        out.extend(self.media.tick(|d| detector.derived_files(&d.origin)));
        out.extend(self.print.tick(|d| detector.derived_files(&d.origin)));
        let now = self.egress.stats();
        let lost =
            |s: &Stats| s.taint_full + s.object_full + s.flow_full + s.ring_lost + s.socket_full + s.cut_full;
        if lost(&now) > lost(&self.stats) {
            let mut r =
                crate::event::record::Record::new(crate::event::Name::SensorAlert, Clock::realtime_ns());
            r.set(crate::event::attr::ALERT_KIND, "taint_lost")
                .set("mnsensor.taint.lost.processes", now.taint_full)
                .set("mnsensor.taint.lost.objects", now.object_full)
                .set("mnsensor.taint.lost.flows", now.flow_full)
                .set("mnsensor.taint.lost.sockets", now.socket_full)
                .set("mnsensor.taint.lost.cuts", now.cut_full)
                .set("mnsensor.taint.lost.records", now.ring_lost);
            out.push(r);
        }
        self.stats = now;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_allow_keys_are_mapped() {
        let (k, p) = allow_key("10.200.0.0".parse().unwrap(), 24);
        assert_eq!(p, 120);
        assert_eq!(&k[10..], &[0xff, 0xff, 10, 200, 0, 0]);
        let (k, p) = allow_key("2001:db8::".parse().unwrap(), 32);
        assert_eq!(p, 32);
        assert_eq!(k[0], 0x20);
    }
}
