//! The policy language as written: documents after the schema check, before names, paths
//! and programs are resolved on the host. Every item keeps its position for errors.
use std::{fmt, net::IpAddr, ops::BitOr, str::FromStr};

use jiff::civil::Date;

use super::yaml::Pos;

/// `apiVersion` of every document.
pub const API_VERSION: &str = "mnsensor/v1";
/// Time zone of a schedule without `timezone`.
pub const DEFAULT_TIMEZONE: &str = "Asia/Tokyo";

/// A value with the position it was written at.
#[derive(Clone, Debug, PartialEq)]
pub struct At<T> {
    pub pos: Pos,
    pub value: T,
}

impl<T> At<T> {
    pub fn new(pos: Pos, value: T) -> Self {
        Self { pos, value }
    }
}

/// One YAML document of a policy file.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub pos: Pos,
    pub name: At<String>,
    pub description: Option<String>,
    pub labels: Vec<(String, String)>,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// `kind: AccessPolicy`.
    Policy(PolicyDef),
    /// `kind: Lists`: shared lists only.
    Lists(Vec<ListDef>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyDef {
    pub mode: Mode,
    pub protect: Vec<At<Protect>>,
    pub lists: Vec<ListDef>,
    pub allow: Vec<AllowDef>,
    pub default: At<DefaultDef>,
    /// The `egress` section (`policy/egress.rs`).
    pub egress: Option<At<Box<super::egress::EgressPolicy>>>,
}

/// A `protect` item.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protect {
    /// A file, or a directory and everything below it.
    Path(String),
    /// A glob over absolute paths (`*`, `?`, `[…]`, `{a,b}` within a component, `**` across).
    Glob(String),
}

impl fmt::Display for Protect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "path {p}"),
            Self::Glob(g) => write!(f, "glob {g}"),
        }
    }
}

/// A named list (`spec.lists.NAME`); usable from every policy of the set.
#[derive(Clone, Debug, PartialEq)]
pub struct ListDef {
    pub name: At<String>,
    pub users: Vec<At<String>>,
    pub groups: Vec<At<String>>,
    pub uids: Vec<At<u32>>,
    pub programs: Vec<At<ProgramDef>>,
    pub networks: Vec<At<Network>>,
}

impl ListDef {
    /// The members, order-insensitive, for "same name, same content" comparisons.
    pub fn content(&self) -> impl PartialEq + fmt::Debug {
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v.dedup();
            v
        };
        (
            sorted(self.users.iter().map(|u| u.value.clone()).collect()),
            sorted(self.groups.iter().map(|g| g.value.clone()).collect()),
            sorted(self.uids.iter().map(|u| u.value.to_string()).collect()),
            sorted(self.programs.iter().map(|p| p.value.to_string()).collect()),
            sorted(self.networks.iter().map(|n| n.value.to_string()).collect()),
        )
    }

    pub fn has_subjects(&self) -> bool {
        !(self.users.is_empty() && self.groups.is_empty() && self.uids.is_empty())
    }
}

/// An executable: its path (symlinks resolved at load) and optionally its content hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProgramDef {
    pub path: String,
    pub sha256: Option<[u8; 32]>,
}

impl fmt::Display for ProgramDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if let Some(h) = &self.sha256 {
            write!(f, " (sha256 {})", hex(h))?;
        }
        Ok(())
    }
}

/// An IP network (`192.168.10.0/24`, `2001:db8::/32`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("`{s}` is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0–{max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl Network {
    /// True when `ip` lies in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// A subject of an allow entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SubjectRef {
    /// A list name: its users, groups and uids.
    List(String),
    User(String),
    Uid(u32),
    Group(String),
}

impl fmt::Display for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::List(l) => write!(f, "list {l}"),
            Self::User(u) => write!(f, "user {u}"),
            Self::Uid(u) => write!(f, "uid {u}"),
            Self::Group(g) => write!(f, "group {g}"),
        }
    }
}

/// A program of an allow entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProgramRef {
    List(String),
    Program(ProgramDef),
}

impl fmt::Display for ProgramRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::List(l) => write!(f, "list {l}"),
            Self::Program(p) => p.fmt(f),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AllowDef {
    pub name: At<String>,
    pub subjects: Vec<At<SubjectRef>>,
    /// `None`: any program.
    pub programs: Option<Vec<At<ProgramRef>>>,
    /// `None`: every operation.
    pub operations: Option<OpSet>,
    /// `None`: at any time.
    pub schedule: Option<ScheduleDef>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleDef {
    pub timezone: At<String>,
    /// Empty: all day, every day.
    pub windows: Vec<At<Window>>,
    pub except: Vec<At<Except>>,
}

/// `{days, from, to}`: minutes since midnight, `to` may be 1440 ("24:00"). A window with
/// `to <= from` crosses midnight and belongs to the day it starts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Bit `n` set: weekday `n` (Monday = 0).
    pub days: u8,
    pub from: u16,
    pub to: u16,
}

impl Window {
    pub const ALL_DAYS: u8 = 0b111_1111;
    pub const DAY_NAMES: [&'static str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

    pub fn crosses_midnight(&self) -> bool {
        self.to <= self.from
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days == Self::ALL_DAYS {
            f.write_str("every day")?;
        } else {
            let names: Vec<&str> =
                (0..7).filter(|i| self.days & (1 << i) != 0).map(|i| Self::DAY_NAMES[i]).collect();
            f.write_str(&names.join(","))?;
        }
        write!(f, " {}–{}", hhmm(self.from), hhmm(self.to))?;
        if self.crosses_midnight() {
            f.write_str(" (next day)")?;
        }
        Ok(())
    }
}

/// `HH:MM` of minutes since midnight.
pub fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// A schedule exception: days on which no window applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Except {
    JpHolidays,
    YearEnd,
    Date(Date),
}

impl fmt::Display for Except {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JpHolidays => f.write_str("jp_holidays"),
            Self::YearEnd => f.write_str("year_end"),
            Self::Date(d) => write!(f, "{d}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultDef {
    pub action: Action,
    pub severity: Severity,
}

/// `spec.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Record what enforcement would do (`deny`/`kill` become "would deny").
    Audit,
    Enforce,
}

/// `spec.default.action`: what happens to an access no allow entry matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Record it.
    Audit,
    /// Record it as an alert for the SIEM; the access proceeds.
    Alert,
    /// Refuse the access.
    Deny,
    /// Refuse the access and kill the process.
    Kill,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

macro_rules! names {
    ($ty:ty { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every spelling accepted in a policy, in order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The spelling used in policies and records.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }

            /// Parses the spelling used in policies.
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($name => Some(Self::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(Mode { Audit = "audit", Enforce = "enforce" });
names!(Action { Audit = "audit", Alert = "alert", Deny = "deny", Kill = "kill" });
names!(Severity { Low = "low", Medium = "medium", High = "high", Critical = "critical" });
names!(Op {
    Read = "read",
    Write = "write",
    Create = "create",
    Delete = "delete",
    Rename = "rename",
    Chmod = "chmod",
    Exec = "exec",
});

/// An operation on a protected file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Read,
    Write,
    Create,
    Delete,
    Rename,
    Chmod,
    Exec,
}

impl Op {
    pub const ALL: [Self; 7] =
        [Self::Read, Self::Write, Self::Create, Self::Delete, Self::Rename, Self::Chmod, Self::Exec];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of operations. An access with several (an open for reading and writing that
/// created the file: `read | write | create`) is allowed only by an entry that has all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OpSet(u8);

impl OpSet {
    pub const EMPTY: Self = Self(0);
    pub const ALL: Self = Self(0b111_1111);

    pub fn contains(self, op: Op) -> bool {
        self.0 & op.bit() != 0
    }
    /// True when every operation of `other` is in `self`.
    pub fn contains_all(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn insert(&mut self, op: Op) {
        self.0 |= op.bit();
    }
    /// The operations of `self` missing from `allowed`.
    pub fn minus(self, allowed: Self) -> Self {
        Self(self.0 & !allowed.0)
    }
    pub fn iter(self) -> impl Iterator<Item = Op> {
        Op::ALL.into_iter().filter(move |op| self.contains(*op))
    }
}

impl From<Op> for OpSet {
    fn from(op: Op) -> Self {
        Self(op.bit())
    }
}

impl BitOr for Op {
    type Output = OpSet;
    fn bitor(self, rhs: Self) -> OpSet {
        OpSet(self.bit() | rhs.bit())
    }
}

impl BitOr<Op> for OpSet {
    type Output = Self;
    fn bitor(self, rhs: Op) -> Self {
        Self(self.0 | rhs.bit())
    }
}

impl BitOr for OpSet {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl FromIterator<Op> for OpSet {
    fn from_iter<I: IntoIterator<Item = Op>>(iter: I) -> Self {
        let mut set = Self::EMPTY;
        for op in iter {
            set.insert(op);
        }
        set
    }
}

impl fmt::Display for OpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::ALL {
            return f.write_str("every operation");
        }
        let names: Vec<&str> = self.iter().map(Op::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::{Network, Op, OpSet};

    #[test]
    fn op_sets() {
        let rw = Op::Read | Op::Write;
        assert!(rw.contains(Op::Read) && !rw.contains(Op::Create));
        assert!(OpSet::ALL.contains_all(rw | Op::Exec));
        assert_eq!((rw | Op::Create).minus(rw), OpSet::from(Op::Create));
        assert_eq!(rw.to_string(), "read,write");
        assert_eq!(Op::ALL.into_iter().collect::<OpSet>(), OpSet::ALL);
    }

    #[test]
    fn networks() {
        let n: Network = "192.168.10.0/24".parse().unwrap();
        assert!(n.contains("192.168.10.7".parse().unwrap()));
        assert!(n.contains("::ffff:192.168.10.7".parse().unwrap()));
        assert!(!n.contains("192.168.11.7".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("tanaka".parse::<Network>().is_err());
        let all: Network = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()));
    }
}
