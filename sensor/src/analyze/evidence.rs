//! The evidence chain shared by the detections of data leaving through a device, a printer
//! or a slow drip ([`super::media`], [`super::print`], [`super::drip`]): they start from
//! the same [`Detection`] the exfiltration detector writes, and add their own attributes.
use super::exfil::{Detection, Origin, Proc};
use crate::event::Name;

/// A detection about `proc`, holding data from `origin`, at `t`; no bytes or destination.
pub fn detection(name: Name, t: i128, proc: &Proc, origin: &Origin, reason: String) -> Detection {
    Detection {
        name,
        time_ns: t,
        reason,
        proc: proc.clone(),
        origin: origin.clone(),
        bytes_read: 0,
        files_read: 0,
        derived: Vec::new(),
        destination: None,
        bytes_sent: 0,
        action: "alert",
        cut: false,
        first_ns: origin.time_ns,
        last_ns: t,
    }
}

/// The protected bytes and files each tainted process read itself, from the taint inputs
/// (the latest totals; bounded like the exfiltration detector's tables).
#[derive(Default)]
pub struct Reads(std::collections::HashMap<u32, (u64, u64)>);

/// Most processes remembered; the table is cleared beyond it.
const MAX_READS: usize = 1 << 16;

impl Reads {
    pub fn observe(&mut self, input: &super::exfil::Input) {
        if let super::exfil::Input::Taint { proc, bytes, files, .. } = input {
            if self.0.len() >= MAX_READS {
                self.0.clear();
            }
            self.0.insert(proc.tgid, (*bytes, *files));
        }
    }

    /// Bytes and files `tgid` read (0, 0 when not seen).
    pub fn of(&self, tgid: u32) -> (u64, u64) {
        self.0.get(&tgid).copied().unwrap_or_default()
    }
}
