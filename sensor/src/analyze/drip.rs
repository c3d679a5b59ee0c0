//! `detection.slow_drip`: the tainted processes of one user sent more than a budget to one
//! destination within a long window (default 24 h), however the traffic was split over
//! connections, processes and time. `detection.exfiltration` sees episodes that end after
//! minutes of silence; this one adds up what trickles out below its thresholds.
//!
//! Bytes are kept in 24 buckets per window and (user, destination), so memory per pair is
//! fixed; the oldest bucket leaves the sum as the window slides. Once per episode: an episode
//! ends when the sum in the window falls back to the budget or below.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::IpAddr,
};

use super::{
    evidence,
    exfil::{Input, Settings},
};
use crate::event::{Name, record::Record};

/// Tuning, from the policy's `egress.slow_drip` (defaults in docs/detections.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DripSettings {
    /// Bytes one user's tainted processes may send to one destination in the window.
    pub bytes: u64,
    /// The window, in seconds.
    pub window_seconds: u64,
}

impl Default for DripSettings {
    fn default() -> Self {
        Self { bytes: 10 << 20, window_seconds: 24 * 3600 }
    }
}

/// Buckets per window.
const BUCKETS: i128 = 24;
/// Most (user, destination) pairs and per-process totals kept; the tables are cleared beyond.
const MAX_KEYS: usize = 1 << 16;

#[derive(Default)]
struct Budget {
    /// (bucket start, bytes), oldest first.
    buckets: VecDeque<(i128, u64)>,
    processes: HashSet<u32>,
    first_ns: i128,
    reported: bool,
}

/// The slow-drip detector.
#[derive(Default)]
pub struct Drip {
    pub settings: DripSettings,
    /// Last flow totals per (tgid, addr, port).
    seen: HashMap<(u32, IpAddr, u16), u64>,
    budgets: HashMap<(u32, IpAddr, u16), Budget>,
}

impl Drip {
    pub fn new(settings: DripSettings) -> Self {
        Self { settings, ..Self::default() }
    }

    /// Takes one observation; `exfil` says which destinations and users are allowed (their
    /// traffic is not counted, as for `detection.exfiltration`).
    pub fn observe(&mut self, input: &Input, exfil: &Settings) -> Option<Record> {
        let Input::Flow { proc, origin, addr, port, protocol, bytes, last_ns, .. } = input else {
            return None;
        };
        if self.seen.len() > MAX_KEYS {
            self.seen.clear();
        }
        if self.budgets.len() > MAX_KEYS {
            self.budgets.clear();
        }
        let seen = self.seen.entry((proc.tgid, *addr, *port)).or_default();
        let delta = bytes.saturating_sub(*seen);
        *seen = (*bytes).max(*seen);
        let allowed_dest = exfil.allowed.iter().any(|a| a.covers(*addr, *port));
        let allowed_user = exfil.allowed_uids.is_empty() || exfil.allowed_uids.contains(&proc.uid);
        if delta == 0 || (allowed_dest && allowed_user) {
            return None;
        }
        let window = i128::from(self.settings.window_seconds.max(1)) * 1_000_000_000;
        let width = (window / BUCKETS).max(1);
        let t = *last_ns;
        let b = self.budgets.entry((origin.uid, *addr, *port)).or_default();
        while b.buckets.front().is_some_and(|(start, _)| *start + width <= t - window) {
            b.buckets.pop_front();
        }
        if b.buckets.is_empty() {
            b.processes.clear();
            b.first_ns = t;
        }
        let start = t - t.rem_euclid(width);
        match b.buckets.back_mut() {
            Some((s, n)) if *s == start => *n += delta,
            _ => b.buckets.push_back((start, delta)),
        }
        if b.processes.len() < 1024 {
            b.processes.insert(proc.tgid);
        }
        let sum: u64 = b.buckets.iter().map(|(_, n)| n).sum();
        if sum <= self.settings.bytes {
            b.reported = false;
            return None;
        }
        if b.reported {
            return None;
        }
        b.reported = true;
        let reason = format!(
            "user {}'s tainted processes sent {sum} bytes to {addr}:{port} within {} s, over the budget of {}",
            origin.uid, self.settings.window_seconds, self.settings.bytes
        );
        let mut d = evidence::detection(Name::DetectionSlowDrip, t, proc, origin, reason);
        d.destination = Some((*addr, *port, protocol.clone()));
        d.bytes_sent = sum;
        d.first_ns = b.first_ns;
        let mut r = crate::egress::record::record(&d);
        r.set("mnsensor.egress.budget_bytes", self.settings.bytes)
            .set("mnsensor.egress.window_seconds", self.settings.window_seconds)
            .set("mnsensor.egress.processes", b.processes.len());
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::exfil::{Allowed, Origin, Proc};

    const S: i128 = 1_000_000_000;

    fn flow(tgid: u32, uid: u32, bytes: u64, t: i128) -> Input {
        Input::Flow {
            proc: Proc { tgid, uid, comm: "curl".into() },
            origin: Origin { tgid, uid, comm: "curl".into(), ..Origin::default() },
            addr: "10.200.0.2".parse().unwrap(),
            port: 443,
            protocol: "tcp".into(),
            bytes,
            connects: 1,
            denied: 0,
            cut: 0,
            first_ns: t,
            last_ns: t,
        }
    }

    fn text(r: &Record) -> String {
        r.to_json(0, "h")
    }

    #[test]
    fn split_connections_add_up_once_per_episode() {
        let mut d = Drip::new(DripSettings { bytes: 1000, window_seconds: 24 * 3600 });
        let allow = Settings::default();
        let hour = 3600 * S;
        // Four processes, 300 bytes each, hours apart; the same totals twice add nothing.
        assert!(d.observe(&flow(1, 1000, 300, hour), &allow).is_none());
        assert!(d.observe(&flow(1, 1000, 300, hour), &allow).is_none());
        assert!(d.observe(&flow(2, 1000, 300, 5 * hour), &allow).is_none());
        assert!(d.observe(&flow(3, 1000, 300, 9 * hour), &allow).is_none());
        let r = d.observe(&flow(4, 1000, 300, 13 * hour), &allow).expect("over budget");
        let t = text(&r);
        assert!(t.contains("\"mnsensor.egress.bytes_sent\":1200"), "{t}");
        assert!(t.contains("\"mnsensor.egress.processes\":4"), "{t}");
        assert!(t.contains("detection.slow_drip"), "{t}");
        // Still over the budget: the same episode.
        assert!(d.observe(&flow(5, 1000, 300, 14 * hour), &allow).is_none());
        // Another user has a budget of their own.
        assert!(d.observe(&flow(6, 1001, 300, 14 * hour), &allow).is_none());
        // A day later the old buckets have left the window; a new episode needs a new excess.
        assert!(d.observe(&flow(7, 1000, 900, 40 * hour), &allow).is_none());
        assert!(d.observe(&flow(8, 1000, 200, 41 * hour), &allow).is_some());
    }

    #[test]
    fn allowed_destinations_of_allowed_users_are_not_counted() {
        let mut d = Drip::new(DripSettings { bytes: 100, window_seconds: 60 });
        let allow = Settings {
            allowed: vec![Allowed { network: "10.200.0.0/24".parse().unwrap(), ports: vec![] }],
            allowed_uids: vec![1000],
            ..Settings::default()
        };
        assert!(d.observe(&flow(1, 1000, 500, S), &allow).is_none());
        assert!(d.observe(&flow(2, 1001, 500, S), &allow).is_some());
    }
}
