//! The ledger's on-disk format: segment headers and hash-chained, CRC-framed records.
//!
//! A segment file `<first seq, 20 digits>.seg` starts with a [`SEGMENT_HEAD`]-byte header
//! (magic, the sequence number of its first record, the chain hash before it) followed by
//! frames. A frame is
//!
//! ```text
//! len u32 | crc u32 | kind u8 | seq u64 | time_ns i64 | hash [32] | body [len]
//! ```
//!
//! (little endian). `crc` is CRC-32 of everything after it; `hash` is
//! SHA-256(previous hash ‖ kind ‖ seq ‖ time_ns ‖ body), so every frame covers all before it.
use sha2::{Digest as _, Sha256};

/// Magic at the start of every segment.
pub const MAGIC: &[u8; 8] = b"MNSLEDG1";
/// Bytes of the segment header: magic, first seq, previous chain hash.
pub const SEGMENT_HEAD: usize = 8 + 8 + 32;
/// Bytes of a frame before its body.
pub const FRAME_HEAD: usize = 4 + 4 + 1 + 8 + 8 + 32;
/// Largest body accepted (a bigger length field is corruption).
pub const MAX_BODY: usize = 16 << 20;
/// A chain hash.
pub type Hash = [u8; 32];

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One event record: the body is its JSON object.
    Record = 1,
    /// A signed checkpoint over the chain up to `seq`: body = flags (1 byte, bit 0: the
    /// sensor stopped cleanly after it) ‖ Ed25519 signature (64 bytes) of
    /// [`checkpoint_message`].
    Checkpoint = 2,
    /// Sequence numbers that were assigned but never stored (the ledger could not be
    /// written): body = first lost seq (u64); `seq` is the last lost one.
    Skip = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Record),
            2 => Some(Self::Checkpoint),
            3 => Some(Self::Skip),
            _ => None,
        }
    }
}

/// A decoded frame, borrowing its body.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub kind: Kind,
    pub seq: u64,
    pub time_ns: i64,
    pub hash: Hash,
    pub body: &'a [u8],
    /// Bytes the frame takes (head and body).
    pub len: usize,
}

/// What the bytes at an offset are.
#[derive(Debug)]
pub enum Parsed<'a> {
    Frame(Frame<'a>),
    /// Fewer bytes than the frame needs (a torn tail, or a file still being written).
    Incomplete,
    /// The CRC does not match, the length is absurd or the kind unknown.
    Corrupt(&'static str),
}

/// The chain hash of a frame after `prev`.
pub fn chain(prev: &Hash, kind: Kind, seq: u64, time_ns: i64, body: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update([kind as u8]);
    h.update(seq.to_le_bytes());
    h.update(time_ns.to_le_bytes());
    h.update(body);
    h.finalize().into()
}

/// Appends a frame to `out` and returns its hash.
pub fn encode(out: &mut Vec<u8>, prev: &Hash, kind: Kind, seq: u64, time_ns: i64, body: &[u8]) -> Hash {
    let hash = chain(prev, kind, seq, time_ns, body);
    let start = out.len();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind as u8);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&time_ns.to_le_bytes());
    out.extend_from_slice(&hash);
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    hash
}

/// Decodes the frame at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < FRAME_HEAD {
        return Parsed::Incomplete;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().unwrap_or_default()) as usize;
    if len > MAX_BODY {
        return Parsed::Corrupt("length field out of range");
    }
    if buf.len() < FRAME_HEAD + len {
        return Parsed::Incomplete;
    }
    let total = FRAME_HEAD + len;
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
    if crc32fast::hash(&buf[8..total]) != crc {
        return Parsed::Corrupt("CRC mismatch");
    }
    let Some(kind) = Kind::from_u8(buf[8]) else {
        return Parsed::Corrupt("unknown frame kind");
    };
    let u64_at = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap_or_default());
    let mut hash = [0; 32];
    hash.copy_from_slice(&buf[25..57]);
    Parsed::Frame(Frame {
        kind,
        seq: u64_at(9),
        time_ns: u64_at(17) as i64,
        hash,
        body: &buf[FRAME_HEAD..total],
        len: total,
    })
}

/// A segment header.
pub fn segment_head(first_seq: u64, prev: &Hash) -> [u8; SEGMENT_HEAD] {
    let mut h = [0; SEGMENT_HEAD];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&first_seq.to_le_bytes());
    h[16..].copy_from_slice(prev);
    h
}

/// Reads a segment header: `(first seq, previous chain hash)`.
pub fn parse_segment_head(buf: &[u8]) -> Option<(u64, Hash)> {
    if buf.len() < SEGMENT_HEAD || &buf[..8] != MAGIC {
        return None;
    }
    let mut prev = [0; 32];
    prev.copy_from_slice(&buf[16..SEGMENT_HEAD]);
    Some((u64::from_le_bytes(buf[8..16].try_into().ok()?), prev))
}

/// File name of the segment whose first record is `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The first seq of a segment file name, if it is one.
pub fn segment_seq(name: &str) -> Option<u64> {
    name.strip_suffix(".seg").filter(|s| s.len() == 20).and_then(|s| s.parse().ok())
}

/// What a checkpoint signs: the chain head `prev` after the record `seq`, its time and flags.
pub fn checkpoint_message(seq: u64, time_ns: i64, prev: &Hash, flags: u8) -> Vec<u8> {
    let mut m = b"mnsensor ledger checkpoint v1".to_vec();
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&time_ns.to_le_bytes());
    m.extend_from_slice(prev);
    m.push(flags);
    m
}

/// Checkpoint flag: the sensor stopped cleanly right after this checkpoint.
pub const FINAL: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let mut buf = Vec::new();
        let h1 = encode(&mut buf, &[0; 32], Kind::Record, 7, 42, b"{\"a\":1}");
        let h2 = encode(&mut buf, &h1, Kind::Record, 8, 43, b"{}");
        let Parsed::Frame(f) = parse(&buf) else { panic!("first frame") };
        assert_eq!((f.kind, f.seq, f.time_ns, f.body, f.hash), (Kind::Record, 7, 42, &b"{\"a\":1}"[..], h1));
        let Parsed::Frame(g) = parse(&buf[f.len..]) else { panic!("second frame") };
        assert_eq!((g.seq, g.hash), (8, h2));
        assert_eq!(chain(&f.hash, g.kind, g.seq, g.time_ns, g.body), g.hash);
        assert!(matches!(parse(&buf[..f.len - 1]), Parsed::Incomplete));
        let mut bad = buf.clone();
        bad[FRAME_HEAD + 2] ^= 1;
        assert!(matches!(parse(&bad), Parsed::Corrupt("CRC mismatch")));
        // The hash covers the previous one: a different predecessor gives a different hash.
        assert_ne!(chain(&[1; 32], g.kind, g.seq, g.time_ns, g.body), g.hash);
    }

    #[test]
    fn segment_names_and_heads() {
        assert_eq!(segment_name(5), "00000000000000000005.seg");
        assert_eq!(segment_seq(&segment_name(123)), Some(123));
        assert_eq!(segment_seq("x.seg"), None);
        assert_eq!(parse_segment_head(&segment_head(9, &[3; 32])), Some((9, [3; 32])));
        assert_eq!(parse_segment_head(b"junk"), None);
    }
}
