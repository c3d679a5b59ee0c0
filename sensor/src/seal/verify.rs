//! `mnsensor ledger verify`: reads every segment and reports either an intact ledger or
//! exactly what was modified, deleted, inserted, reordered or truncated. A chain recomputed
//! over edited records is caught by the signed checkpoints. Exit codes: docs/ledger.md.
use std::{fmt, path::Path};

use ed25519_dalek::{Signature, VerifyingKey};

use super::{
    frame::{self, FINAL, Hash, Kind, Parsed},
    ledger,
};

/// One problem found, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A frame's bytes were changed (its CRC or its hash does not match its content).
    Modified { seq: u64, at: String, why: &'static str },
    /// Records are missing inside the ledger.
    Deleted { first: u64, last: u64, at: String },
    /// Two neighbouring records are in the wrong order.
    Reordered { first: u64, second: u64, at: String },
    /// A record whose number was already used or lies behind the chain.
    Inserted { seq: u64, at: String },
    /// A checkpoint's signature does not cover the chain before it: records after the last
    /// good checkpoint were rewritten with a recomputed chain (or the key is wrong).
    Forged { checkpoint_seq: u64, after_seq: Option<u64>, at: String },
    /// A segment ends inside a frame.
    Truncated { at: String, bytes: u64, last_segment: bool },
    /// A segment header is damaged or does not continue the chain.
    BadSegment { at: String, why: &'static str },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Modified { seq, at, why } => write!(f, "modified: record seq {seq} ({at}): {why}"),
            Self::Deleted { first, last, at } if first == last => {
                write!(f, "deleted: record seq {first} is missing ({at})")
            }
            Self::Deleted { first, last, at } => {
                write!(f, "deleted: records seq {first}..={last} are missing ({at})")
            }
            Self::Reordered { first, second, at } => {
                write!(f, "reordered: record seq {first} comes before seq {second} ({at})")
            }
            Self::Inserted { seq, at } => {
                write!(f, "inserted: record seq {seq} repeats or goes back in the sequence ({at})")
            }
            Self::Forged { checkpoint_seq, after_seq, at } => {
                let after = after_seq.map_or_else(|| "the start".to_owned(), |s| format!("seq {s}"));
                write!(
                    f,
                    "forged: the signed checkpoint at seq {checkpoint_seq} ({at}) does not match the chain: records after {after} up to seq {checkpoint_seq} were altered and the chain recomputed (or the wrong key was given)"
                )
            }
            Self::Truncated { at, bytes, last_segment: true } => write!(
                f,
                "truncated: the ledger ends inside a frame ({at}, {bytes} bytes): a torn tail after a crash (repaired at the next start) or a cut file"
            ),
            Self::Truncated { at, bytes, .. } => {
                write!(f, "truncated: segment ends inside a frame ({at}, {bytes} bytes)")
            }
            Self::BadSegment { at, why } => write!(f, "modified: segment {at}: {why}"),
        }
    }
}

/// The result of a verification.
#[derive(Debug, Default)]
pub struct Report {
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Last valid checkpoint: (seq, time ns, final).
    pub last_checkpoint: Option<(u64, i64, bool)>,
    /// Records after the last valid checkpoint.
    pub unsigned: u64,
    /// Sequence ranges the ledger says were never stored (Skip frames).
    pub skipped: Vec<(u64, u64)>,
    pub findings: Vec<Finding>,
}

/// Exit codes of `mnsensor ledger verify`.
pub mod exit {
    /// Intact.
    pub const OK: u8 = 0;
    /// Could not verify (no ledger, unreadable, bad key).
    pub const ERROR: u8 = 1;
    /// Modified, deleted, inserted, reordered or forged records, or a damaged segment.
    pub const TAMPERED: u8 = 2;
    /// Only a torn tail: the last segment ends inside a frame.
    pub const TRUNCATED: u8 = 3;
}

impl Report {
    /// The exit code for this report.
    pub fn exit_code(&self) -> u8 {
        let tail_only =
            self.findings.iter().all(|f| matches!(f, Finding::Truncated { last_segment: true, .. }));
        match (self.findings.is_empty(), tail_only) {
            (true, _) => exit::OK,
            (false, true) => exit::TRUNCATED,
            (false, false) => exit::TAMPERED,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        let status = match self.exit_code() {
            exit::OK => "OK",
            exit::TRUNCATED => "TRUNCATED",
            _ => "TAMPERED",
        };
        let range = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!("seq {a}..={b}"),
            _ => "no records".to_owned(),
        };
        write!(f, "{status}: {} records, {range}", self.records)?;
        match self.last_checkpoint {
            Some((seq, time, fin)) => write!(
                f,
                ", last checkpoint at seq {seq} ({}{})",
                crate::event::time::rfc3339(i128::from(time)),
                if fin { ", clean stop" } else { "" }
            )?,
            None => write!(f, ", no checkpoint")?,
        }
        if self.unsigned > 0 {
            write!(f, ", {} records after it not yet signed (sensor running or crashed)", self.unsigned)?;
        }
        for (a, b) in &self.skipped {
            write!(
                f,
                "\nnote: seq {a}..={b} were never stored (the ledger could not be written; reported by a sensor.alert)"
            )?;
        }
        Ok(())
    }
}

/// Verifies the ledger of `state_dir` against `key`.
pub fn verify(state_dir: &Path, key: &VerifyingKey) -> std::io::Result<Report> {
    let dir = ledger::dir_of(state_dir);
    let segs = ledger::segments(&dir)?;
    if segs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no ledger segments in {}", dir.display()),
        ));
    }
    let mut v = Verifier {
        key,
        report: Report::default(),
        expected: None,
        prev: [0; 32],
        since_good: None,
        suspect: false,
    };
    for (i, (_, path)) in segs.iter().enumerate() {
        let bytes = std::fs::read(path)?;
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        v.segment(&name, &bytes, i + 1 == segs.len());
    }
    Ok(v.report)
}

struct Verifier<'k> {
    key: &'k VerifyingKey,
    report: Report,
    /// Next sequence number expected.
    expected: Option<u64>,
    prev: Hash,
    /// Seq of the last valid checkpoint.
    since_good: Option<u64>,
    /// A finding since the last valid checkpoint (a failing signature is then no news).
    suspect: bool,
}

/// A frame of a segment, or the raw fields of one whose CRC fails.
struct Item<'a> {
    at: usize,
    frame: Option<frame::Frame<'a>>,
    raw_seq: u64,
    raw_hash: Hash,
}

impl Verifier<'_> {
    fn find(&mut self, f: Finding) {
        self.suspect = true;
        self.report.findings.push(f);
    }

    fn segment(&mut self, name: &str, bytes: &[u8], last: bool) {
        let Some((first, prev)) = frame::parse_segment_head(bytes) else {
            if last && bytes.len() < frame::SEGMENT_HEAD {
                // Cut inside its header: a crash while the segment was being started (the
                // next start removes it, as it cuts any torn tail).
                self.find(Finding::Truncated {
                    at: name.to_owned(),
                    bytes: bytes.len() as u64,
                    last_segment: true,
                });
            } else {
                self.find(Finding::BadSegment { at: name.to_owned(), why: "no ledger header" });
            }
            return;
        };
        match self.expected {
            None => {
                self.expected = Some(first);
                self.prev = prev;
            }
            Some(exp) => {
                if first > exp {
                    self.find(Finding::Deleted {
                        first: exp,
                        last: first - 1,
                        at: format!("before segment {name}"),
                    });
                } else if first < exp {
                    self.find(Finding::Inserted { seq: first, at: format!("segment {name} header") });
                } else if prev != self.prev {
                    self.find(Finding::BadSegment {
                        at: name.to_owned(),
                        why: "header does not continue the chain",
                    });
                }
                self.expected = Some(first);
                self.prev = prev;
            }
        }
        // Split into frames first (a swap needs to look ahead).
        let mut items = Vec::new();
        let mut at = frame::SEGMENT_HEAD;
        while at < bytes.len() {
            let rest = &bytes[at..];
            match frame::parse(rest) {
                Parsed::Frame(f) => {
                    items.push(Item { at, frame: Some(f), raw_seq: f.seq, raw_hash: f.hash });
                    at += f.len;
                }
                Parsed::Corrupt("CRC mismatch") => {
                    let len = frame::FRAME_HEAD
                        + u32::from_le_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
                    let mut raw_hash = [0; 32];
                    raw_hash.copy_from_slice(&rest[25..57]);
                    let raw_seq = u64::from_le_bytes(rest[9..17].try_into().unwrap_or_default());
                    items.push(Item { at, frame: None, raw_seq, raw_hash });
                    at += len;
                }
                Parsed::Corrupt(why) => {
                    self.find(Finding::BadSegment { at: format!("{name} offset {at}"), why });
                    break;
                }
                Parsed::Incomplete => {
                    self.find(Finding::Truncated {
                        at: format!("segment {name} offset {at}"),
                        bytes: (bytes.len() - at) as u64,
                        last_segment: last,
                    });
                    break;
                }
            }
        }
        let mut i = 0;
        while i < items.len() {
            let item = &items[i];
            let at = format!("segment {name} offset {}", item.at);
            let Some(f) = item.frame else {
                self.find(Finding::Modified { seq: item.raw_seq, at, why: "CRC mismatch" });
                self.prev = item.raw_hash;
                self.expected = Some(item.raw_seq + 1);
                i += 1;
                continue;
            };
            let exp = self.expected.unwrap_or(f.seq);
            match f.kind {
                Kind::Checkpoint => self.checkpoint(&f, &at),
                Kind::Skip => {
                    let from =
                        f.body.get(..8).and_then(|b| b.try_into().ok()).map_or(u64::MAX, u64::from_le_bytes);
                    if from != exp {
                        self.find(Finding::Inserted { seq: f.seq, at: at.clone() });
                    }
                    self.report.skipped.push((from, f.seq));
                    self.expected = Some(f.seq + 1);
                }
                Kind::Record => {
                    let next_seq = items
                        .get(i + 1)
                        .and_then(|n| n.frame)
                        .filter(|n| n.kind == Kind::Record)
                        .map(|n| n.seq);
                    if f.seq == exp {
                        self.count(f.seq);
                    } else if f.seq > exp && next_seq == Some(exp) {
                        self.find(Finding::Reordered { first: f.seq, second: exp, at: at.clone() });
                        // Take both; the chain continues after the second.
                        self.count(exp);
                        self.count(f.seq);
                        self.prev = items[i + 1].raw_hash;
                        self.expected = Some(f.seq.max(exp) + 1);
                        i += 2;
                        continue;
                    } else if f.seq > exp {
                        self.find(Finding::Deleted {
                            first: exp,
                            last: f.seq - 1,
                            at: format!("before {at}"),
                        });
                        self.count(f.seq);
                    } else {
                        self.find(Finding::Inserted { seq: f.seq, at: at.clone() });
                    }
                    self.expected = Some(f.seq.max(exp.saturating_sub(1)) + 1);
                }
            }
            if frame::chain(&self.prev, f.kind, f.seq, f.time_ns, f.body) != f.hash && !self.suspect {
                self.find(Finding::Modified {
                    seq: f.seq,
                    at,
                    why: "content does not match its hash (CRC recomputed)",
                });
            }
            self.prev = f.hash;
            i += 1;
        }
    }

    fn count(&mut self, seq: u64) {
        let r = &mut self.report;
        r.records += 1;
        r.unsigned += 1;
        r.first_seq = Some(r.first_seq.map_or(seq, |s| s.min(seq)));
        r.last_seq = Some(r.last_seq.map_or(seq, |s| s.max(seq)));
    }

    fn checkpoint(&mut self, f: &frame::Frame<'_>, at: &str) {
        let flags = f.body.first().copied().unwrap_or(0);
        let sig =
            f.body.get(1..65).and_then(|b| <[u8; 64]>::try_from(b).ok()).map(|b| Signature::from_bytes(&b));
        let msg = frame::checkpoint_message(f.seq, f.time_ns, &self.prev, flags);
        let good = sig.is_some_and(|s| self.key.verify_strict(&msg, &s).is_ok());
        if good {
            self.report.last_checkpoint = Some((f.seq, f.time_ns, flags & FINAL != 0));
            self.report.unsigned = 0;
            self.since_good = Some(f.seq);
            self.suspect = false;
        } else if !self.suspect {
            self.find(Finding::Forged {
                checkpoint_seq: f.seq,
                after_seq: self.since_good,
                at: at.to_owned(),
            });
            // Reported once: the next checkpoint starts a new span.
            self.suspect = false;
            self.since_good = Some(f.seq);
        } else {
            self.suspect = false;
            self.since_good = Some(f.seq);
        }
    }
}
