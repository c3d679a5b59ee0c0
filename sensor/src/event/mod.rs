//! The typed events that flow through the pipeline, and their JSON encoding.
//!
//! `source` (ring buffer, fanotify, `/proc`) → `crate::decode` (bytes → [`Envelope`]) →
//! `crate::enrich` (process table, names: fills [`Subject`]) → `crate::analyze` (policy
//! audit) → [`Envelope::write`] ([`Record`], the JSON view the seal stage numbers and writes).
//!
//! One module per event family, paired with `sensor-common/src/event/<family>.rs` (wire
//! types) and `sensor-ebpf/src/<family>.rs` (kernel half); each family struct has one
//! attribute writer. Attribute keys: [`attr`], names: [`Name`], the schema: docs/events.md.
pub mod attr;
pub mod change;
pub mod client;
pub mod decision;
pub mod file;
pub mod json;
pub mod name;
pub mod net;
pub mod path;
pub mod process;
pub mod record;
pub mod sensor;
pub mod subject;
pub mod tamper;
pub mod time;

use sensor_common::event::{FLAG_ARGV_TRUNCATED, FLAG_PATH_TRUNCATED, FLAG_READ_ERROR};

pub use self::{
    name::Name,
    record::Record,
    subject::{FileRef, Subject},
};

/// One event.
#[derive(Clone, Debug)]
pub enum Event {
    Exec(process::Exec),
    Fork(process::Fork),
    Exit(process::Exit),
    FileOpen(file::FileOpen),
    FileClose(file::FileClose),
    FileChange(change::FileChange),
    FileAccess(change::FileAccess),
    Conn(net::Conn),
    Decision(decision::Decision),
    Tamper(tamper::Tamper),
    /// A refusal the BPF LSM program applied, before enrich names its policy.
    LsmDecision(decision::LsmDecision),
    /// The sensor's own records (start, stop, loss, policy reloads, alerts): rare, written
    /// as they are built.
    Sensor(Record),
}

/// An event with its time and the kernel's quality flags.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// Wall-clock time, nanoseconds since the epoch.
    pub time_ns: i128,
    /// `FLAG_*` bits of the kernel record (0 for other sources).
    pub quality: u32,
    pub event: Event,
}

impl Envelope {
    /// An event from a source without quality flags.
    pub fn new(time_ns: i128, event: Event) -> Self {
        Self { time_ns, quality: 0, event }
    }

    /// The event's subject, when it has one.
    pub fn subject_mut(&mut self) -> Option<&mut Subject> {
        Some(match &mut self.event {
            Event::Exec(e) => &mut e.subject,
            Event::Fork(e) => &mut e.subject,
            Event::Exit(e) => &mut e.subject,
            Event::FileOpen(e) => &mut e.subject,
            Event::FileClose(e) => &mut e.subject,
            Event::FileChange(e) => &mut e.subject,
            Event::FileAccess(e) => &mut e.subject,
            Event::Conn(e) => &mut e.subject,
            Event::Decision(e) => &mut e.subject,
            Event::Tamper(e) => &mut e.subject,
            Event::LsmDecision(e) => &mut e.subject,
            Event::Sensor(_) => return None,
        })
    }

    /// The `event.name`.
    pub fn name(&self) -> Name {
        match &self.event {
            Event::Exec(_) => Name::ProcessExec,
            Event::Fork(_) => Name::ProcessFork,
            Event::Exit(_) => Name::ProcessExit,
            Event::FileOpen(_) => Name::FileOpen,
            Event::FileClose(_) => Name::FileClose,
            Event::FileChange(e) => e.name(),
            Event::FileAccess(_) => Name::FileAccess,
            Event::Conn(e) => e.name(),
            Event::Decision(_) | Event::LsmDecision(_) => Name::PolicyDecision,
            Event::Tamper(_) => Name::SensorTamper,
            Event::Sensor(r) => {
                Name::ALL.iter().copied().find(|n| n.as_str() == r.name).unwrap_or(Name::SensorAlert)
            }
        }
    }

    /// Writes the event into `rec` (replacing what it held; its buffer is reused).
    pub fn write(&self, rec: &mut Record) {
        if let Event::Sensor(r) = &self.event {
            rec.clone_from(r);
            return;
        }
        rec.reset(self.name(), self.time_ns);
        match &self.event {
            Event::Exec(e) => e.write(rec),
            Event::Fork(e) => e.subject.write(rec),
            Event::Exit(e) => e.write(rec),
            Event::FileOpen(e) => e.write(rec),
            Event::FileClose(e) => e.write(rec),
            Event::FileChange(e) => e.write(rec),
            Event::FileAccess(e) => e.write(rec),
            Event::Conn(e) => e.write(rec),
            Event::Decision(e) => e.write(rec),
            Event::Tamper(e) => e.write(rec),
            // Named by enrich; a record that reaches here unnamed still says what happened.
            Event::LsmDecision(e) => e.write(rec),
            Event::Sensor(_) => {}
        }
        rec.flag(attr::PATH_TRUNCATED, self.quality & FLAG_PATH_TRUNCATED != 0)
            .flag(attr::ARGV_TRUNCATED, self.quality & FLAG_ARGV_TRUNCATED != 0)
            .flag(attr::READ_ERROR, self.quality & FLAG_READ_ERROR != 0);
    }

    /// The event as a new [`Record`].
    pub fn record(&self) -> Record {
        let mut rec = Record::new(self.name(), self.time_ns);
        self.write(&mut rec);
        rec
    }
}

impl From<Record> for Envelope {
    fn from(rec: Record) -> Self {
        Self::new(rec.time_ns, Event::Sensor(rec))
    }
}
