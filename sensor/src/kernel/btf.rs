//! A small reader for the kernel's BTF (`Documentation/bpf/btf.rst`), just enough to find the
//! byte offsets of struct members in `/sys/kernel/btf/vmlinux`.
//!
//! The whole type section is walked once to learn where each type starts (every kind's size
//! is known, so unknown kinds are an error rather than a silent desync) and to index struct
//! and union names. Member lookups then read the raw bytes on demand.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// BTF magic number, as read with the blob's own byte order.
const MAGIC: u16 = 0xeb9f;
/// Size of the version-1 header; later headers may be longer (`hdr_len`).
const HEADER_LEN: usize = 24;
/// Size of `struct btf_type` (name_off, info, size/type).
const TYPE_LEN: usize = 12;
/// Longest typedef/modifier chain or anonymous-member nesting we follow before giving up.
const MAX_DEPTH: usize = 32;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Errors from reading BTF or resolving a member in it.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file could not be read.
    #[error("cannot read BTF from {}: {source}", path.display())]
    Io {
        /// The file we tried to read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The blob is not valid BTF (bad magic, truncated section, unknown kind, ...).
    #[error("malformed BTF{}: {reason}", origin(path.as_deref()))]
    Malformed {
        /// The file the blob came from, if any.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
    /// The BTF parsed, but the types reached from `struct_name.member` are inconsistent.
    #[error("malformed BTF{} while resolving {struct_name}.{member}: {reason}", origin(path.as_deref()))]
    Resolve {
        /// The file the blob came from, if any.
        path: Option<PathBuf>,
        /// The struct (or union, or type id) being searched.
        struct_name: String,
        /// The member being looked for.
        member: String,
        /// What is wrong.
        reason: String,
    },
}

fn origin(path: Option<&Path>) -> String {
    path.map(|p| format!(" in {}", p.display())).unwrap_or_default()
}

/// Where a struct member lives, relative to the start of the outermost struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberOffset {
    /// Offset in bytes (rounded down for bitfields).
    pub byte_offset: u32,
    /// Offset in bits.
    pub bit_offset: u32,
    /// Width in bits when the member is a bitfield, 0 otherwise.
    pub bitfield_size: u32,
    /// BTF type id of the member (before following typedefs).
    pub type_id: u32,
}

impl MemberOffset {
    /// Whether the member is a bitfield (or otherwise not byte-aligned), which the programs
    /// cannot read with a plain byte offset.
    pub fn is_bitfield(&self) -> bool {
        self.bitfield_size != 0 || !self.bit_offset.is_multiple_of(8)
    }
}

/// One entry of the type section: the fixed `struct btf_type` plus where its trailing data is.
#[derive(Clone, Copy, Debug)]
struct Type {
    name_off: u32,
    info: u32,
    size_or_type: u32,
    /// Offset of the kind-specific data in the blob.
    data: usize,
}

impl Type {
    fn kind(&self) -> u32 {
        (self.info >> 24) & 0x1f
    }
    fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }
    fn kind_flag(&self) -> bool {
        self.info >> 31 == 1
    }
    fn is_composite(&self) -> bool {
        matches!(self.kind(), KIND_STRUCT | KIND_UNION)
    }
}

/// Parsed BTF: the raw blob, the position of every type, and a struct/union name index.
pub struct Btf {
    path: Option<PathBuf>,
    data: Vec<u8>,
    big_endian: bool,
    /// Start and end of the string section in `data`.
    strings: (usize, usize),
    /// Indexed by type id; id 0 is `void`.
    types: Vec<Type>,
    /// Struct and union names to their type ids, in type-section order.
    composites: HashMap<Box<str>, Vec<u32>>,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btf")
            .field("path", &self.path)
            .field("types", &self.types.len())
            .finish_non_exhaustive()
    }
}

impl Btf {
    /// Reads and parses a BTF file such as `/sys/kernel/btf/vmlinux`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, BtfError> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| BtfError::Io { path: path.to_path_buf(), source })?;
        Self::parse_from(data, Some(path.to_path_buf()))
    }

    /// Parses a BTF blob held in memory.
    pub fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        Self::parse_from(data, None)
    }

    fn parse_from(data: Vec<u8>, path: Option<PathBuf>) -> Result<Self, BtfError> {
        let mut btf = Self {
            path,
            data,
            big_endian: false,
            strings: (0, 0),
            types: Vec::new(),
            composites: HashMap::new(),
        };
        if let Err(reason) = btf.index() {
            return Err(BtfError::Malformed { path: btf.path, reason });
        }
        Ok(btf)
    }

    /// Validates the header and sections and fills `types` and `composites`.
    fn index(&mut self) -> Result<(), String> {
        let magic = self.data.get(..2).ok_or("shorter than its header")?;
        self.big_endian = match [magic[0], magic[1]] {
            m if u16::from_le_bytes(m) == MAGIC => false,
            m if u16::from_be_bytes(m) == MAGIC => true,
            m => return Err(format!("bad magic {m:02x?}")),
        };
        let hdr_len = self.u32_at(4)? as usize;
        if hdr_len < HEADER_LEN {
            return Err(format!("header length {hdr_len} is below {HEADER_LEN}"));
        }
        let section = |off: usize, what: &str| -> Result<(usize, usize), String> {
            let start = hdr_len + self.u32_at(off)? as usize;
            let end = start.saturating_add(self.u32_at(off + 4)? as usize);
            if end > self.data.len() {
                return Err(format!(
                    "{what} section ends at {end}, past the blob's {} bytes",
                    self.data.len()
                ));
            }
            Ok((start, end))
        };
        let (mut pos, types_end) = section(8, "type")?;
        self.strings = section(16, "string")?;

        self.types.push(Type { name_off: 0, info: 0, size_or_type: 0, data: 0 });
        while pos < types_end {
            let ty = Type {
                name_off: self.u32_at(pos)?,
                info: self.u32_at(pos + 4)?,
                size_or_type: self.u32_at(pos + 8)?,
                data: pos + TYPE_LEN,
            };
            let extra = match ty.kind() {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * ty.vlen(),
                KIND_ENUM | KIND_FUNC_PROTO => 8 * ty.vlen(),
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                kind => {
                    return Err(format!("type id {} has unknown kind {kind}", self.types.len()));
                }
            };
            pos = ty.data + extra;
            if pos > types_end {
                return Err(format!("type id {} runs past the type section", self.types.len()));
            }
            if ty.is_composite() && ty.name_off != 0 {
                let name = std::str::from_utf8(self.str_at(ty.name_off)?)
                    .map_err(|_| format!("type id {} has a non-UTF-8 name", self.types.len()))?;
                let id = u32::try_from(self.types.len()).map_err(|_| "too many types")?;
                self.composites.entry(name.into()).or_default().push(id);
            }
            self.types.push(ty);
        }
        Ok(())
    }

    /// Number of types, including `void`.
    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    /// Whether a struct or union with this name exists.
    pub fn has_struct(&self, struct_name: &str) -> bool {
        self.composites.contains_key(struct_name)
    }

    /// Byte offset of `member` in the struct or union `struct_name`, searching anonymous
    /// struct/union members too. `Ok(None)` when the struct or the member does not exist.
    ///
    /// Among several structs or unions with this name, the first one with members is used.
    pub fn member_offset(&self, struct_name: &str, member: &str) -> Result<Option<MemberOffset>, BtfError> {
        let Some(ids) = self.composites.get(struct_name) else {
            return Ok(None);
        };
        let id = ids.iter().copied().find(|&id| self.types[id as usize].vlen() > 0).unwrap_or(ids[0]);
        self.find_member(id, member, 0, 0).map_err(|reason| self.resolve_error(struct_name, member, reason))
    }

    /// Like [`Btf::member_offset`], but inside the type `type_id` (after following typedefs
    /// and qualifiers), e.g. the `val` inside a `kuid_t` member. `Ok(None)` when that type is
    /// not a struct or union or has no such member.
    pub fn member_offset_in_type(
        &self,
        type_id: u32,
        member: &str,
    ) -> Result<Option<MemberOffset>, BtfError> {
        let lookup = || -> Result<Option<MemberOffset>, String> {
            let id = self.skip_modifiers(type_id)?;
            if !self.ty(id)?.is_composite() {
                return Ok(None);
            }
            self.find_member(id, member, 0, 0)
        };
        lookup().map_err(|reason| self.resolve_error(&format!("type id {type_id}"), member, reason))
    }

    fn resolve_error(&self, struct_name: &str, member: &str, reason: String) -> BtfError {
        BtfError::Resolve {
            path: self.path.clone(),
            struct_name: struct_name.to_owned(),
            member: member.to_owned(),
            reason,
        }
    }

    /// Depth-first search of the members of struct/union `id`, descending into anonymous
    /// struct/union members; `base_bits` is the bit offset of `id` in the outermost struct.
    fn find_member(
        &self,
        id: u32,
        member: &str,
        base_bits: u32,
        depth: usize,
    ) -> Result<Option<MemberOffset>, String> {
        if depth > MAX_DEPTH {
            return Err(format!("anonymous members nest deeper than {MAX_DEPTH}"));
        }
        let ty = self.ty(id)?;
        for i in 0..ty.vlen() {
            let at = ty.data + i * 12;
            let (name_off, type_id, raw) = (self.u32_at(at)?, self.u32_at(at + 4)?, self.u32_at(at + 8)?);
            let (bits, bitfield_size) = match ty.kind_flag() {
                true => (raw & 0xff_ffff, raw >> 24),
                false => (raw, 0),
            };
            let bit_offset = base_bits
                .checked_add(bits)
                .ok_or_else(|| format!("member offset overflows in type id {id}"))?;
            let name = self.str_at(name_off)?;
            if name == member.as_bytes() {
                let bitfield_size = match bitfield_size {
                    0 => self.int_bitfield_size(type_id)?,
                    size => size,
                };
                return Ok(Some(MemberOffset {
                    byte_offset: bit_offset / 8,
                    bit_offset,
                    bitfield_size,
                    type_id,
                }));
            }
            if name.is_empty() {
                let inner = self.skip_modifiers(type_id)?;
                if self.ty(inner)?.is_composite()
                    && let Some(found) = self.find_member(inner, member, bit_offset, depth + 1)?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// Old-style bitfields (structs without `kind_flag`) are INTs whose encoding has fewer
    /// bits than their size, or a bit offset; returns that width, or 0 for a plain member.
    fn int_bitfield_size(&self, type_id: u32) -> Result<u32, String> {
        let ty = self.ty(self.skip_modifiers(type_id)?)?;
        if ty.kind() != KIND_INT {
            return Ok(0);
        }
        let encoding = self.u32_at(ty.data)?;
        let (bits, offset) = (encoding & 0xff, (encoding >> 16) & 0xff);
        Ok(if offset != 0 || bits != ty.size_or_type * 8 { bits } else { 0 })
    }

    /// Follows typedef, const, volatile, restrict and type-tag chains to the underlying type.
    fn skip_modifiers(&self, mut id: u32) -> Result<u32, String> {
        for _ in 0..MAX_DEPTH {
            let ty = self.ty(id)?;
            match ty.kind() {
                KIND_TYPEDEF | KIND_CONST | KIND_VOLATILE | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.size_or_type;
                }
                _ => return Ok(id),
            }
        }
        Err(format!("typedef/qualifier chain from type id {id} is longer than {MAX_DEPTH}"))
    }

    fn ty(&self, id: u32) -> Result<Type, String> {
        self.types.get(id as usize).copied().ok_or_else(|| format!("type id {id} does not exist"))
    }

    fn u32_at(&self, off: usize) -> Result<u32, String> {
        let bytes: [u8; 4] = self
            .data
            .get(off..off + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("read past the end of the blob at {off}"))?;
        Ok(match self.big_endian {
            true => u32::from_be_bytes(bytes),
            false => u32::from_le_bytes(bytes),
        })
    }

    /// The NUL-terminated string at `off` in the string section, without the NUL.
    fn str_at(&self, off: u32) -> Result<&[u8], String> {
        let (start, end) = self.strings;
        let from = start + off as usize;
        let tail = self
            .data
            .get(from..end)
            .ok_or_else(|| format!("string offset {off} is outside the string section"))?;
        let len = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| format!("string at offset {off} is not NUL-terminated"))?;
        Ok(&tail[..len])
    }
}

/// Builds little-endian BTF blobs for tests.
#[cfg(test)]
pub(crate) mod testing {
    pub const INT: u32 = super::KIND_INT;
    pub const PTR: u32 = super::KIND_PTR;
    pub const ARRAY: u32 = super::KIND_ARRAY;
    pub const STRUCT: u32 = super::KIND_STRUCT;
    pub const UNION: u32 = super::KIND_UNION;
    pub const ENUM: u32 = super::KIND_ENUM;
    pub const FWD: u32 = super::KIND_FWD;
    pub const TYPEDEF: u32 = super::KIND_TYPEDEF;
    pub const VOLATILE: u32 = super::KIND_VOLATILE;
    pub const CONST: u32 = super::KIND_CONST;
    pub const FUNC: u32 = super::KIND_FUNC;
    pub const FUNC_PROTO: u32 = super::KIND_FUNC_PROTO;
    pub const VAR: u32 = super::KIND_VAR;
    pub const DATASEC: u32 = super::KIND_DATASEC;
    pub const FLOAT: u32 = super::KIND_FLOAT;
    pub const DECL_TAG: u32 = super::KIND_DECL_TAG;
    pub const TYPE_TAG: u32 = super::KIND_TYPE_TAG;
    pub const ENUM64: u32 = super::KIND_ENUM64;

    /// A struct member: name, type id, bit offset, bitfield size (0 for none).
    pub type Member<'a> = (&'a str, u32, u32, u32);

    /// Accumulates types (ids from 1) and strings.
    pub struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        pub fn new() -> Self {
            Self { types: Vec::new(), strings: vec![0], next_id: 1 }
        }

        /// Adds a string and returns its offset ("" is offset 0).
        pub fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        /// Adds a type with raw trailing words; returns its id.
        pub fn raw(
            &mut self,
            name: &str,
            kind: u32,
            kflag: bool,
            vlen: u32,
            size_or_type: u32,
            extra: &[u32],
        ) -> u32 {
            let name_off = self.string(name);
            let info = (u32::from(kflag) << 31) | (kind << 24) | vlen;
            for word in [name_off, info, size_or_type].iter().chain(extra) {
                self.types.extend_from_slice(&word.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        /// A signed INT of `size` bytes, or an old-style bitfield INT when `bits` differs.
        pub fn int(&mut self, name: &str, size: u32, bits: u32) -> u32 {
            self.raw(name, INT, false, 0, size, &[(1 << 24) | bits])
        }

        /// TYPEDEF, CONST, VOLATILE, TYPE_TAG, PTR: kinds that just point at another type.
        pub fn modifier(&mut self, kind: u32, name: &str, target: u32) -> u32 {
            self.raw(name, kind, false, 0, target, &[])
        }

        /// A struct or union; members are (name, type id, bit offset, bitfield size). Uses
        /// `kind_flag` encoding when any member has a bitfield size.
        pub fn composite(&mut self, kind: u32, name: &str, size: u32, members: &[Member<'_>]) -> u32 {
            let kflag = members.iter().any(|m| m.3 != 0);
            let mut extra = Vec::new();
            for &(member, ty, bits, bitfield) in members {
                extra.extend([self.string(member), ty, (bitfield << 24) | bits]);
            }
            self.raw(name, kind, kflag, members.len() as u32, size, &extra)
        }

        pub fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xeb9f_u16.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            let words = [24, 0, self.types.len() as u32, self.types.len() as u32, self.strings.len() as u32];
            for word in words {
                out.extend_from_slice(&word.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    /// One type of every kind, so a wrong size for any of them shifts later type ids.
    fn every_kind(b: &mut Builder, int: u32) {
        b.modifier(PTR, "", int);
        b.raw("", ARRAY, false, 0, 0, &[int, int, 4]);
        let (a, bb, x, y, c) = (b.string("A"), b.string("B"), b.string("x"), b.string("y"), b.string("C"));
        b.raw("e", ENUM, false, 2, 4, &[a, 0, bb, 1]);
        b.raw("fwd", FWD, false, 0, 0, &[]);
        let proto = b.raw("", FUNC_PROTO, false, 2, int, &[x, int, y, int]);
        b.raw("f", FUNC, false, 0, proto, &[]);
        let var = b.raw("v", VAR, false, 0, int, &[1]);
        b.raw(".data", DATASEC, false, 1, 4, &[var, 0, 4]);
        b.raw("double", FLOAT, false, 0, 8, &[]);
        b.raw("tag", DECL_TAG, false, 0, int, &[u32::MAX]);
        b.raw("rcu", TYPE_TAG, false, 0, int, &[]);
        b.raw("e64", ENUM64, false, 1, 8, &[c, 1, 0]);
    }

    fn sample() -> Btf {
        let mut b = Builder::new();
        let int = b.int("int", 4, 32);
        every_kind(&mut b, int);
        let long = b.int("long", 8, 64);
        // typedef const volatile int myint_t (via a type tag too).
        let tag = b.modifier(TYPE_TAG, "rcu", int);
        let vol = b.modifier(VOLATILE, "", tag);
        let cst = b.modifier(CONST, "", vol);
        let myint = b.modifier(TYPEDEF, "myint_t", cst);
        // struct { int a; myint_t b; } inside union { <that>; long x; }
        let inner = b.composite(STRUCT, "", 8, &[("a", int, 0, 0), ("b", myint, 32, 0)]);
        let union = b.composite(UNION, "", 8, &[("", inner, 0, 0), ("x", long, 0, 0)]);
        // An anonymous member reached through a typedef.
        let deep = b.composite(STRUCT, "", 4, &[("deep", int, 0, 0)]);
        let deep_td = b.modifier(TYPEDEF, "deep_t", deep);
        // A declaration-only duplicate first: the one with members must win.
        b.composite(STRUCT, "outer", 0, &[]);
        b.composite(
            STRUCT,
            "outer",
            32,
            &[
                ("first", int, 0, 0),
                ("", union, 64, 0),
                ("td", myint, 128, 0),
                ("flags", int, 160, 3),
                ("", deep_td, 192, 0),
            ],
        );
        // An old-style bitfield: no kind_flag, the INT encoding says 5 bits.
        let int5 = b.int("int", 4, 5);
        b.composite(STRUCT, "old", 8, &[("plain", int, 0, 0), ("bits", int5, 32, 0)]);
        Btf::parse(b.build()).expect("sample BTF parses")
    }

    fn offset(btf: &Btf, s: &str, m: &str) -> Option<u32> {
        btf.member_offset(s, m).expect("no BTF error").map(|o| o.byte_offset)
    }

    #[test]
    fn resolves_members_through_anonymous_members_and_typedefs() {
        let btf = sample();
        assert_eq!(offset(&btf, "outer", "first"), Some(0));
        assert_eq!(offset(&btf, "outer", "x"), Some(8));
        assert_eq!(offset(&btf, "outer", "a"), Some(8));
        assert_eq!(offset(&btf, "outer", "b"), Some(12));
        assert_eq!(offset(&btf, "outer", "td"), Some(16));
        assert_eq!(offset(&btf, "outer", "deep"), Some(24));
        assert_eq!(offset(&btf, "outer", "nope"), None);
        assert_eq!(offset(&btf, "missing", "first"), None);
        assert!(btf.has_struct("outer") && !btf.has_struct("missing"));
        let td = btf.member_offset("outer", "td").unwrap().unwrap();
        assert!(!td.is_bitfield());
    }

    #[test]
    fn reports_bitfields() {
        let btf = sample();
        let flags = btf.member_offset("outer", "flags").unwrap().unwrap();
        assert!(flags.is_bitfield());
        assert_eq!((flags.byte_offset, flags.bitfield_size), (20, 3));
        let bits = btf.member_offset("old", "bits").unwrap().unwrap();
        assert!(bits.is_bitfield());
        assert!(!btf.member_offset("old", "plain").unwrap().unwrap().is_bitfield());
    }

    #[test]
    fn member_offset_in_type_follows_typedefs() {
        let mut b = Builder::new();
        let uint = b.int("unsigned int", 4, 32);
        let anon = b.composite(STRUCT, "", 4, &[("val", uint, 0, 0)]);
        let kuid = b.modifier(TYPEDEF, "kuid_t", anon);
        b.composite(STRUCT, "cred", 8, &[("usage", uint, 0, 0), ("uid", kuid, 32, 0)]);
        let btf = Btf::parse(b.build()).unwrap();
        let uid = btf.member_offset("cred", "uid").unwrap().unwrap();
        assert_eq!(uid.byte_offset, 4);
        let val = btf.member_offset_in_type(uid.type_id, "val").unwrap().unwrap();
        assert_eq!(val.byte_offset, 0);
        assert_eq!(btf.member_offset_in_type(uid.type_id, "nope").unwrap(), None);
        assert_eq!(btf.member_offset_in_type(uint, "val").unwrap(), None);
    }

    #[test]
    fn rejects_malformed_blobs() {
        let mut b = Builder::new();
        b.int("int", 4, 32);
        let good = b.build();
        assert!(Btf::parse(good.clone()).is_ok());

        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        assert!(matches!(Btf::parse(bad_magic), Err(BtfError::Malformed { .. })));

        let truncated = good[..good.len() - 8].to_vec();
        assert!(matches!(Btf::parse(truncated), Err(BtfError::Malformed { .. })));

        let mut b = Builder::new();
        b.raw("", 31, false, 0, 0, &[]);
        let err = Btf::parse(b.build()).unwrap_err();
        assert!(err.to_string().contains("unknown kind 31"), "{err}");

        let mut b = Builder::new();
        let int = b.int("int", 4, 32);
        b.composite(STRUCT, "s", 4, &[("m", int + 100, 0, 0)]);
        b.composite(STRUCT, "t", 4, &[("", int + 100, 0, 0)]);
        let btf = Btf::parse(b.build()).unwrap();
        let err = btf.member_offset("s", "m").unwrap_err();
        assert!(err.to_string().contains("s.m: type id 101 does not exist"), "{err}");
        let err = btf.member_offset("t", "m").unwrap_err();
        assert!(err.to_string().contains("t.m: type id 101 does not exist"), "{err}");
    }

    #[test]
    fn reads_vmlinux() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !crate::test_skip::allowed(path.exists(), &format!("{} does not exist", path.display())) {
            return;
        }
        let btf = Btf::from_file(path).unwrap();
        assert!(btf.type_count() > 10_000);
        for (s, m) in
            [("task_struct", "tgid"), ("file", "f_path"), ("dentry", "d_name"), ("mm_struct", "arg_start")]
        {
            let found = btf.member_offset(s, m).unwrap();
            assert!(found.is_some_and(|o| !o.is_bitfield()), "{s}.{m}: {found:?}");
        }
        // pid_t pid; pid_t tgid; have been adjacent in task_struct since 2.6.
        let pid = offset(&btf, "task_struct", "pid").unwrap();
        let tgid = offset(&btf, "task_struct", "tgid").unwrap();
        assert_eq!(tgid, pid + 4);
        // struct qstr { union { struct { HASH_LEN_DECLARE; }; u64 hash_len; }; const char *name; }
        assert_eq!(offset(&btf, "qstr", "name"), Some(8));
        assert_eq!(offset(&btf, "task_struct", "no_such_member"), None);
    }
}
