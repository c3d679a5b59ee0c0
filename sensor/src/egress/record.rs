//! Detections as output records (`detection.*`, `egress.raw_socket`; docs/events.md).
use crate::{
    analyze::{dns::Signal, exfil::Detection},
    event::{record::Record, time::rfc3339},
    users::user_name,
};

/// The record of a detection, with its evidence chain as flat attributes. These records do
/// not pass the enrich stage, so the user names are looked up here.
pub fn record(d: &Detection) -> Record {
    let mut r = Record::new(d.name, d.time_ns);
    r.set("mnsensor.detection.reason", d.reason.clone())
        .set("mnsensor.detection.action", d.action)
        .set("process.pid", d.proc.tgid)
        .set("mnsensor.process.comm", d.proc.comm.as_str())
        .set("process.real_user.id", d.proc.uid)
        .set_opt("process.real_user.name", user_name(d.proc.uid).as_deref())
        .set("mnsensor.taint.origin.pid", d.origin.tgid)
        .set("mnsensor.taint.origin.name", d.origin.comm.clone())
        .set("mnsensor.taint.origin.user.id", d.origin.uid)
        .set_opt("mnsensor.taint.origin.user.name", user_name(d.origin.uid).as_deref())
        .set_opt("mnsensor.login_user.id", d.origin.auid)
        .set_opt("mnsensor.login_user.name", d.origin.auid.and_then(user_name).as_deref())
        .set("mnsensor.taint.file.inode", d.origin.ino)
        .set("mnsensor.taint.file.device", d.origin.dev)
        .set("mnsensor.taint.hops", d.origin.hops)
        .set("mnsensor.detection.first_time", rfc3339(d.first_ns))
        .set("mnsensor.detection.last_time", rfc3339(d.last_ns));
    if d.bytes_read > 0 || d.files_read > 0 {
        r.set("mnsensor.taint.bytes_read", d.bytes_read).set("mnsensor.taint.files_read", d.files_read);
    }
    if !d.derived.is_empty() {
        r.set("mnsensor.taint.derived_files", d.derived.clone());
    }
    if let Some((addr, port, proto)) = &d.destination {
        r.set("destination.address", addr.to_string())
            .set("destination.port", *port)
            .set("network.transport", proto.clone())
            .set("mnsensor.egress.bytes_sent", d.bytes_sent);
    }
    if d.cut {
        r.set("mnsensor.egress.cut", true);
    }
    r
}

/// `detection.dns_tunnel`: the detection's evidence plus the query.
pub fn dns(s: &Signal) -> Record {
    let mut r = record(&s.detection);
    r.set("dns.question.name", s.name.clone())
        .set("mnsensor.dns.domain", s.domain.clone())
        .set("mnsensor.dns.queries", s.queries)
        .set("mnsensor.dns.label_length", s.label_len as u64)
        .set("mnsensor.dns.label_entropy", format!("{:.2}", s.label_entropy));
    r
}
