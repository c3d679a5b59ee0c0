//! `detection.removable_media`: a tainted process (it read a protected file, or a derived
//! copy of one) wrote a file on a filesystem whose block device is removable — the
//! guideline's 持出し (taking data out) record. The file is one the kernel reported as a
//! derived file (`sensor-ebpf/src/taint.rs`); its device is resolved when it is seen
//! (`kernel/blockdev.rs`), so media plugged in and mounted later are covered.
//!
//! The detection waits until the file stopped growing between two polls (or vanished), so
//! that it carries the bytes written; once per file.
use super::{
    evidence::{self, Reads},
    exfil::{Detection, Input},
};
use crate::{
    event::{Name, record::Record},
    kernel::blockdev::{Removable, Resolver},
};

/// A copy on removable media, waiting for its size to settle.
struct Pending {
    detection: Detection,
    device: Removable,
    path: String,
    size: Option<u64>,
}

/// Most copies waiting at once (the rest are reported without waiting).
const MAX_PENDING: usize = 1024;

/// The removable-media detector.
pub struct Media {
    resolver: Resolver,
    reads: Reads,
    pending: Vec<Pending>,
}

impl Media {
    pub fn new(resolver: Resolver) -> Self {
        Self { resolver, reads: Reads::default(), pending: Vec::new() }
    }

    /// Takes one observation of a poll.
    pub fn observe(&mut self, input: &Input) {
        self.reads.observe(input);
        let Input::Derived { proc, origin, path, dev, time_ns, .. } = input else { return };
        let Some(device) = self.resolver.removable(*dev) else { return };
        let what: Vec<&str> =
            [device.vendor.as_deref(), device.model.as_deref()].into_iter().flatten().collect();
        let reason = format!(
            "{} wrote protected data to {path} on removable device {}{}",
            proc.comm,
            device.partition.as_deref().unwrap_or(&device.disk),
            if what.is_empty() { String::new() } else { format!(" ({})", what.join(" ")) },
        );
        let detection = evidence::detection(Name::DetectionRemovableMedia, *time_ns, proc, origin, reason);
        self.pending.push(Pending { detection, device, path: path.clone(), size: None });
    }

    /// After a poll's inputs: the copies whose size did not change since the last poll.
    /// `derived` gives the derived files of an origin (the exfiltration detector keeps them).
    pub fn tick(&mut self, derived: impl Fn(&Detection) -> Vec<String>) -> Vec<Record> {
        let crowded = self.pending.len() > MAX_PENDING;
        let mut out = Vec::new();
        let mut keep = Vec::new();
        for mut p in self.pending.drain(..) {
            let now = std::fs::metadata(&p.path).ok().map(|m| m.len());
            if now.is_some() && now != p.size && !crowded {
                p.size = now;
                keep.push(p);
                continue;
            }
            let size = now.or(p.size);
            let (bytes, files) = self.reads.of(p.detection.proc.tgid);
            p.detection.bytes_read = bytes;
            p.detection.files_read = files;
            p.detection.derived = derived(&p.detection);
            out.push(record(&p, size));
        }
        self.pending = keep;
        out
    }
}

fn record(p: &Pending, size: Option<u64>) -> Record {
    let d = &p.device;
    let mut r = crate::egress::record::record(&p.detection);
    r.set("mnsensor.media.file.path", p.path.as_str())
        .set_opt("mnsensor.media.file.size", size)
        .set("mnsensor.media.device.name", d.disk.as_str())
        .set_opt("mnsensor.media.partition", d.partition.as_deref())
        .set("mnsensor.media.device.number", d.number.as_str())
        .set_opt("mnsensor.media.vendor", d.vendor.as_deref())
        .set_opt("mnsensor.media.model", d.model.as_deref())
        .set_opt("mnsensor.media.serial", d.serial.as_deref())
        .set_opt("mnsensor.media.mount_point", d.mount_point.as_deref())
        .set("mnsensor.media.removable", d.marked_by);
    r
}
