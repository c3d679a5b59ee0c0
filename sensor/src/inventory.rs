//! The periodic self-inventory: every `inventory_interval_s` the daemon checks that each of its
//! programs is still loaded and each of its links still exists, still runs its program and,
//! for cgroup links, is still attached (another root process can `BPF_LINK_DETACH` a cgroup
//! link it finds by id). What is wrong is written as `sensor.tamper`
//! (`program_missing`, `link_missing`, `program_replaced`, `program_detached`); a detached or
//! missing cgroup link is attached again and the record says whether that worked.
//! Kernel queries: `crate::kernel::bpfobj`.
use std::{fs::File, path::Path};

use aya::{
    Ebpf,
    programs::{CgroupAttachMode, Program},
};

use crate::{
    event::{Name, attr, record::Record},
    kernel::bpfobj::{self, LINK_TYPE_CGROUP, LinkInfo},
};

/// What the sensor attached, as the kernel showed it after start.
pub struct Inventory {
    programs: Vec<u32>,
    links: Vec<LinkInfo>,
}

impl Inventory {
    /// The links of `programs` as they are now (call once everything is attached).
    pub fn take(programs: &[u32]) -> Self {
        Self { programs: programs.to_vec(), links: bpfobj::links_of(programs) }
    }

    /// Number of links watched.
    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// Checks every program and link; re-attaches cgroup programs to `cgroup` (the egress
    /// cgroup) when their link was detached or is gone. Returns the records to write.
    pub fn check(&mut self, ebpf: &mut Ebpf, cgroup: &Path, now_ns: i128) -> Vec<Record> {
        let mut out = Vec::new();
        // Each missing program is reported once.
        self.programs.retain(|&id| {
            let loaded = bpfobj::prog_loaded(id);
            if !loaded {
                out.push(record(now_ns, "program_missing", id, None, None));
            }
            loaded
        });
        let mut kept = Vec::with_capacity(self.links.len());
        for known in std::mem::take(&mut self.links) {
            let what = match bpfobj::link(known.id) {
                None => "link_missing",
                Some(l) if l.prog_id != known.prog_id => "program_replaced",
                Some(l) if l.kind == LINK_TYPE_CGROUP && l.cgroup_id == 0 => "program_detached",
                Some(_) => {
                    kept.push(known);
                    continue;
                }
            };
            let again = (known.kind == LINK_TYPE_CGROUP && what != "program_replaced")
                .then(|| reattach(ebpf, known, cgroup, &kept));
            // Watched on through its new link; otherwise reported once.
            if let Some(Ok(new)) = &again {
                kept.push(*new);
            }
            out.push(record(now_ns, what, known.prog_id, Some(known.id), again));
        }
        self.links = kept;
        out
    }
}

/// Attaches program `known.prog_id` to `cgroup` again; the new link.
fn reattach(ebpf: &mut Ebpf, known: LinkInfo, cgroup: &Path, links: &[LinkInfo]) -> Result<LinkInfo, String> {
    let dir = File::open(cgroup).map_err(|e| format!("cannot open {}: {e}", cgroup.display()))?;
    let (_, prog) = ebpf
        .programs_mut()
        .find(|(_, p)| p.info().is_ok_and(|i| i.id() == known.prog_id))
        .ok_or_else(|| format!("program {} is not the sensor's any more", known.prog_id))?;
    let attached = match prog {
        Program::CgroupSockAddr(p) => p.attach(&dir, CgroupAttachMode::Single).map(drop),
        Program::CgroupSock(p) => p.attach(&dir, CgroupAttachMode::Single).map(drop),
        _ => return Err(format!("program {} is not a cgroup socket program", known.prog_id)),
    };
    attached.map_err(|e| e.to_string())?;
    bpfobj::links_of(&[known.prog_id])
        .into_iter()
        .find(|l| l.cgroup_id != 0 && !links.iter().any(|k| k.id == l.id))
        .ok_or_else(|| "attached, but no new link shows".to_owned())
}

fn record(
    now_ns: i128,
    what: &str,
    prog_id: u32,
    link_id: Option<u32>,
    again: Option<Result<LinkInfo, String>>,
) -> Record {
    let mut rec = Record::new(Name::SensorTamper, now_ns);
    rec.set(attr::TAMPER_KIND, what).set(attr::TAMPER_PROGRAM_ID, prog_id);
    if let Some(id) = link_id {
        rec.set(attr::TAMPER_LINK_ID, id);
    }
    match again {
        Some(Ok(l)) => {
            rec.set(attr::TAMPER_REATTACHED, true).set(attr::TAMPER_NEW_LINK_ID, l.id);
        }
        Some(Err(e)) => {
            tracing::error!(what, prog_id, error = %e, "A detached program could not be attached again.");
            rec.set(attr::TAMPER_REATTACHED, false).set(attr::TAMPER_REATTACH_ERROR, e.as_str());
        }
        None => {
            rec.set(attr::TAMPER_REATTACHED, false);
        }
    }
    tracing::warn!(what, prog_id, "Self-inventory: one of the sensor's kernel programs was tampered with.");
    rec
}
