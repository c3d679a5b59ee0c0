//! Paths as the kernel writes them (leaf first, NUL-separated; see `sensor_common::path`), and
//! the lossless text form of every path the sensor reports (docs/events.md, "File names that
//! are not UTF-8").
//!
//! Linux names are bytes; records are UTF-8 text. A path's *display form* ([`escape`]) is its
//! bytes with every valid UTF-8 character kept, a backslash written `\\` and every byte that is
//! not part of valid UTF-8 written `\xNN` (two lowercase hex digits). Every `\` in a display
//! form starts one of these two escapes, so [`unescape`] gives back the exact bytes and two
//! different names never share a display form. A name that is not UTF-8 also carries its
//! bytes percent-encoded ([`percent`], RFC 3986) in a `…path_bytes` attribute.
use std::{
    borrow::Cow,
    ffi::{OsStr, OsString},
    os::unix::ffi::{OsStrExt as _, OsStringExt as _},
    path::{Path, PathBuf},
};

/// Turns `c\0b\0a\0` into `/a/b/c` (display form). An empty walk is the root, `/`.
pub fn from_kernel(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    for part in bytes.split(|b| *b == 0).rev().filter(|p| !p.is_empty()) {
        out.push(b'/');
        out.extend_from_slice(part);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    // Invalid UTF-8 never spans a NUL, so escaping once equals escaping per component.
    escape(&out)
}

/// The display form of a name: valid UTF-8 as is, `\` as `\\`, other bytes as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        if valid.contains('\\') {
            out.push_str(&valid.replace('\\', "\\\\"));
        } else {
            out.push_str(valid);
        }
        for b in chunk.invalid() {
            push_hex(&mut out, b'\\', 'x', *b);
        }
    }
    out
}

/// The display form of an OS path.
pub fn of_os(p: impl AsRef<OsStr>) -> String {
    escape(p.as_ref().as_bytes())
}

/// The bytes a display form stands for. Text that is not a display form (a `\` that starts
/// neither escape) is kept as written.
pub fn unescape(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('\\') {
        return Cow::Borrowed(s.as_bytes());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match escape_at(b, i) {
            Some((byte, len)) => {
                out.push(byte);
                i += len;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// The escape at `b[i]` (`\\` or `\xNN`): the byte it stands for and its length.
fn escape_at(b: &[u8], i: usize) -> Option<(u8, usize)> {
    match (b.get(i)?, b.get(i + 1)?) {
        (b'\\', b'\\') => Some((b'\\', 2)),
        (b'\\', b'x') => {
            let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
            Some((u8::from_str_radix(hex, 16).ok()?, 4))
        }
        _ => None,
    }
}

/// The filesystem path a display form names.
pub fn to_path(s: &str) -> Cow<'_, Path> {
    match unescape(s) {
        Cow::Borrowed(b) => Cow::Borrowed(Path::new(OsStr::from_bytes(b))),
        Cow::Owned(v) => Cow::Owned(PathBuf::from(OsString::from_vec(v))),
    }
}

/// The exact bytes of a display form when they are not valid UTF-8 (its name needs the
/// `…path_bytes` attribute); `None` for a UTF-8 name.
pub fn raw(s: &str) -> Option<Vec<u8>> {
    if !s.contains("\\x") {
        return None;
    }
    let bytes = unescape(s);
    std::str::from_utf8(&bytes).is_err().then(|| bytes.into_owned())
}

/// RFC 3986 percent-encoding: ASCII letters, digits, `-._~` and `/` as is, every other byte
/// `%XX` (uppercase hex). Digits stay digits so that redaction masks a My Number in it.
pub fn percent(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            push_hex(&mut out, b'%', 'X', b);
        }
    }
    out
}

/// Writes `lead`, then `b` as two hex digits (`x`: lowercase, `X`: uppercase); with `lead`
/// `\` also the `x` of the display escape.
fn push_hex(out: &mut String, lead: u8, case: char, b: u8) {
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let digits = if case == 'x' { LOWER } else { UPPER };
    out.push(char::from(lead));
    if lead == b'\\' {
        out.push('x');
    }
    out.push(char::from(digits[usize::from(b >> 4)]));
    out.push(char::from(digits[usize::from(b & 0xf)]));
}

/// Writes `key` with the percent-encoded bytes of `path` when it is not UTF-8.
pub fn write_bytes(out: &mut Vec<u8>, key: &str, path: &str) {
    if let Some(bytes) = raw(path) {
        super::json::pair(out, key, percent(&bytes).as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::{escape, from_kernel, percent, raw, unescape};

    #[test]
    fn reverses_components() {
        assert_eq!(from_kernel(b"a.txt\0share\0srv\0"), "/srv/share/a.txt");
        assert_eq!(from_kernel(b""), "/");
        assert_eq!(from_kernel(b"tmp\0"), "/tmp");
        assert_eq!(from_kernel("給与.xlsx\0人事\0".as_bytes()), "/人事/給与.xlsx");
        assert_eq!(from_kernel(b"b\xff\0a\0"), "/a/b\\xff");
    }

    /// "マイナンバー.csv" in Shift_JIS.
    const SJIS: &[u8] = b"\x83}\x83C\x83i\x83\x93\x83o\x81[.csv";

    #[test]
    fn escapes_invalid_bytes_and_backslashes() {
        assert_eq!(escape(SJIS), "\\x83}\\x83C\\x83i\\x83\\x93\\x83o\\x81[.csv");
        assert_eq!(escape(b"a\\b"), "a\\\\b");
        assert_eq!(escape("給与\\x41".as_bytes()), "給与\\\\x41");
        assert_eq!(escape(b"plain"), "plain");
        assert_eq!(raw(&escape(SJIS)).as_deref(), Some(SJIS));
        assert_eq!(raw(&escape(b"a\\x41")), None, "a UTF-8 name has no bytes attribute");
        assert_eq!(raw("給与"), None);
        assert_eq!(percent(SJIS), "%83%7D%83C%83i%83%93%83o%81%5B.csv");
        assert_eq!(percent(b"a b/123456789018%"), "a%20b/123456789018%25");
    }

    /// Names that differ only in bytes that are not UTF-8, or in a literal backslash where
    /// another has an escape, get different display forms; every one round-trips.
    #[test]
    fn display_forms_are_distinct_and_round_trip() {
        let mut rng = crate::test_rng::Rng(0x5157_4a49);
        let alphabet: &[&[u8]] =
            &[b"\\", b"x", b"8", b"3", b"a", b"\x83", b"\x81", b"\xff", "ー".as_bytes(), b"/", b"\xe3\x83"];
        let mut seen = std::collections::HashMap::new();
        for _ in 0..20_000 {
            let mut name = Vec::new();
            for _ in 0..rng.below(8) {
                name.extend_from_slice(alphabet[rng.below(alphabet.len())]);
            }
            let shown = escape(&name);
            assert_eq!(unescape(&shown).as_ref(), name.as_slice(), "{shown}");
            if let Some(other) = seen.insert(shown.clone(), name.clone()) {
                assert_eq!(other, name, "two names share the display form {shown}");
            }
        }
        assert!(seen.len() > 5_000, "only {} distinct names", seen.len());
    }
}
