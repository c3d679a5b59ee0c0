//! DNS queries of tainted processes: counted per domain and user, with `detection.dns_tunnel`
//! when a query name has a long or high-entropy label (thresholds in [`Settings`],
//! docs/detections.md). The kernel hands over the start of each packet a tainted process's
//! socket sends to port 53 (`sensor-ebpf/src/egress.rs`).
use std::{collections::HashMap, net::IpAddr};

use crate::{
    analyze::exfil::{Detection, Origin, Proc},
    event::Name,
};

/// One packet to port 53 (UDP, or a TCP segment whose message starts with its length).
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    pub proc: Proc,
    pub origin: Origin,
    pub server: IpAddr,
    pub port: u16,
    /// `udp` or `tcp`.
    pub protocol: String,
    /// The start of the payload.
    pub data: Vec<u8>,
    pub time_ns: i128,
}

/// Thresholds, from the policy's `egress.dns_tunnel` (docs/policy.md; `policy check`
/// validates the ranges). A label is *long* at `long_label` bytes (DNS allows 63); it has
/// *high entropy* at `entropy_min_length` bytes or more with at least `entropy_bits` bits per
/// character (Shannon, over its bytes); a name is long at `long_name` bytes; a domain is
/// queried too often at `queries` queries by one user within `window_seconds` (0: not
/// counted as a signal).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub long_label: usize,
    pub entropy_min_length: usize,
    pub entropy_bits: f64,
    pub long_name: usize,
    pub queries: u64,
    /// The query-count window, and the episode: a domain's signal fires again after this long
    /// without one.
    pub window_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            long_label: 40,
            entropy_min_length: 16,
            entropy_bits: 3.5,
            long_name: 120,
            queries: 500,
            window_seconds: 600,
        }
    }
}

impl Settings {
    fn window_ns(&self) -> i128 {
        i128::from(self.window_seconds) * 1_000_000_000
    }
}

/// A DNS signal with its evidence.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    pub detection: Detection,
    pub name: String,
    pub domain: String,
    /// Queries of this domain by the origin user so far, this one included.
    pub queries: u64,
    /// Queries of this domain by the origin user in the current window.
    pub window_queries: u64,
    /// The label that fired: its length and entropy (bits per character).
    pub label_len: usize,
    pub label_entropy: f64,
}

#[derive(Default)]
struct DomainState {
    queries: u64,
    /// Start of the current query-count window and the queries in it.
    window_start_ns: i128,
    window_queries: u64,
    last_signal_ns: Option<i128>,
}

/// Most (user, domain) pairs kept; the map is cleared beyond it.
const MAX_DOMAINS: usize = 1 << 16;

#[derive(Default)]
pub struct Detector {
    pub settings: Settings,
    domains: HashMap<(u32, String), DomainState>,
}

impl Detector {
    pub fn new(settings: Settings) -> Self {
        Self { settings, domains: HashMap::new() }
    }

    /// Counts the packet's query (when it holds one) and returns a signal when it fires.
    pub fn observe(&mut self, p: Packet) -> Option<Signal> {
        let msg = if p.protocol == "tcp" { p.data.get(2..)? } else { &p.data[..] };
        let labels = query_labels(msg)?;
        let name = labels.join(".");
        let domain = domain_of(&labels);
        if self.domains.len() > MAX_DOMAINS {
            self.domains.clear();
        }
        let st = self.domains.entry((p.origin.uid, domain.clone())).or_default();
        st.queries += 1;
        let s = &self.settings;
        if st.window_queries == 0 || p.time_ns - st.window_start_ns > s.window_ns() {
            st.window_start_ns = p.time_ns;
            st.window_queries = 0;
        }
        st.window_queries += 1;
        let label = labels
            .iter()
            .map(|l| (l.len(), entropy(l.as_bytes())))
            .find(|&(n, e)| n >= s.long_label || (n >= s.entropy_min_length && e >= s.entropy_bits));
        let why = match label {
            Some((n, e)) => format!(
                "a label of {n} characters at {e:.2} bits per character (thresholds: {} characters, or {} at {} bits)",
                s.long_label, s.entropy_min_length, s.entropy_bits
            ),
            None if name.len() >= s.long_name => {
                format!("a name of {} characters (threshold {})", name.len(), s.long_name)
            }
            None if s.queries > 0 && st.window_queries >= s.queries => format!(
                "{} queries of {domain} within {} s (threshold {})",
                st.window_queries, s.window_seconds, s.queries
            ),
            None => return None,
        };
        let (label, entropy) = label.unwrap_or((0, 0.0));
        if st.last_signal_ns.is_some_and(|t| p.time_ns - t <= s.window_ns()) {
            st.last_signal_ns = Some(p.time_ns);
            return None;
        }
        st.last_signal_ns = Some(p.time_ns);
        let reason = format!("{} holds protected data and queried {name}: {why}", p.proc.comm);
        let detection = Detection {
            name: Name::DetectionDnsTunnel,
            time_ns: p.time_ns,
            reason,
            proc: p.proc,
            origin: p.origin.clone(),
            bytes_read: 0,
            files_read: 0,
            derived: Vec::new(),
            destination: Some((p.server, p.port, p.protocol)),
            bytes_sent: 0,
            action: "alert",
            cut: false,
            first_ns: p.origin.time_ns,
            last_ns: p.time_ns,
        };
        Some(Signal {
            detection,
            name,
            domain,
            queries: st.queries,
            window_queries: st.window_queries,
            label_len: label,
            label_entropy: entropy,
        })
    }
}

/// The labels of the first question of a DNS query message (header, then QNAME). `None`
/// for a response, a message without a question, or a name cut off or compressed.
pub fn query_labels(msg: &[u8]) -> Option<Vec<String>> {
    let flags = msg.get(2)?;
    let qdcount = u16::from_be_bytes([*msg.get(4)?, *msg.get(5)?]);
    if flags & 0x80 != 0 || qdcount == 0 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(at)?);
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // a pointer: not in a question's first name
        }
        let label = msg.get(at + 1..at + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += 1 + len;
    }
    (!labels.is_empty()).then_some(labels)
}

/// The domain a name is counted under: its last two labels, or three when the last is a
/// two-letter country code and the one before it is at most three letters (`example.co.jp`).
pub fn domain_of(labels: &[String]) -> String {
    let n = labels.len();
    let take = if n >= 3 && labels[n - 1].len() == 2 && labels[n - 2].len() <= 3 { 3 } else { 2 };
    labels[n.saturating_sub(take)..].join(".")
}

/// Shannon entropy of `bytes`, in bits per byte.
pub fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| f64::from(c) / n).map(|p| -p * p.log2()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query message for `name` (id 1, recursion desired, one A question).
    fn query(name: &str) -> Vec<u8> {
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    fn packet(name: &str, t: i128) -> Packet {
        Packet {
            proc: Proc { tgid: 5, uid: 1000, comm: "python3".into() },
            origin: Origin { uid: 1000, ..Origin::default() },
            server: "10.200.0.2".parse().unwrap(),
            port: 53,
            protocol: "udp".into(),
            data: query(name),
            time_ns: t,
        }
    }

    #[test]
    fn names_and_domains() {
        let labels = query_labels(&query("Files.Example.co.jp")).unwrap();
        assert_eq!(labels, ["files", "example", "co", "jp"]);
        assert_eq!(domain_of(&labels), "example.co.jp");
        assert_eq!(domain_of(&query_labels(&query("a.b.example.test")).unwrap()), "example.test");
        let mut response = query("example.test");
        response[2] |= 0x80;
        assert_eq!(query_labels(&response), None);
        assert_eq!(query_labels(&query("example.test")[..15]), None, "cut off");
    }

    #[test]
    fn entropy_of_words_and_random_labels() {
        assert!(entropy(b"documentation") < 3.5);
        assert!(entropy(b"mfrggzdfmztwq2lknnwg23tpobyxe43u") > 3.5);
        assert_eq!(entropy(b"aaaa"), 0.0);
    }

    #[test]
    fn normal_queries_are_counted_and_a_tunnel_label_signals_once() {
        let mut d = Detector::default();
        assert!(d.observe(packet("www.example.test", 1)).is_none());
        assert!(d.observe(packet("mail.example.test", 2)).is_none());
        let s = d.observe(packet("mfrggzdfmztwq2lknnwg23tpobyxe43u.example.test", 3)).unwrap();
        assert_eq!(s.domain, "example.test");
        assert_eq!(s.queries, 3);
        assert_eq!(s.label_len, 32);
        assert_eq!(s.detection.name, Name::DetectionDnsTunnel);
        assert!(
            d.observe(packet("gezdgnbvgy3tqojqgezdgnbvgy3tqojq.example.test", 4)).is_none(),
            "same episode"
        );
        let later = 4 + Settings::default().window_ns() + 1;
        assert!(d.observe(packet("gezdgnbvgy3tqojqgezdgnbvgy3tqojq.example.test", later)).is_some());
        let long = format!("{}.other.test", "a".repeat(45));
        assert_eq!(d.observe(packet(&long, 5)).unwrap().label_len, 45, "long label, low entropy");
    }

    #[test]
    fn thresholds_come_from_the_settings() {
        let long = format!("{}.other.test", "a".repeat(45));
        let mut d = Detector::new(Settings { long_label: 50, queries: 3, ..Settings::default() });
        assert!(d.observe(packet(&long, 1)).is_none(), "45 < 50");
        assert!(d.observe(packet("b.other.test", 2)).is_none());
        let s = d.observe(packet("c.other.test", 3)).expect("third query in the window");
        assert_eq!((s.queries, s.window_queries, s.label_len), (3, 3, 0));
        assert!(s.detection.reason.contains("3 queries of other.test"), "{}", s.detection.reason);
        let mut d = Detector::new(Settings { queries: 3, window_seconds: 1, ..Settings::default() });
        for t in 0..3 {
            assert!(d.observe(packet("x.spread.test", i128::from(t) * 2_000_000_000)).is_none(), "window");
        }
        let mut d = Detector::new(Settings { entropy_bits: 6.0, ..Settings::default() });
        assert!(
            d.observe(packet("mfrggzdfmztwq2lknnwg23tpobyxe43u.example.test", 1)).is_none(),
            "below 6 bits"
        );
    }
}
