//! The JSON writer of records: appends `"key":value` pairs to a byte buffer, with the same
//! bytes `serde_json` writes (string escaping, integers), without an intermediate value tree.
//!
//! Keys are the constants in [`super::attr`] (no characters that need escaping; `attr`'s test
//! checks it), so they are copied as they are.

/// Appends the comma between two pairs (none when `out` is empty or ends in `{`).
#[inline]
pub fn sep(out: &mut Vec<u8>) {
    if !matches!(out.last(), None | Some(b'{')) {
        out.push(b',');
    }
}

/// Appends `,"key":` (no comma when `out` is empty or ends in `{`).
#[inline]
pub fn key(out: &mut Vec<u8>, key: &str) {
    sep(out);
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Whether a byte needs escaping in a JSON string.
const fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Appends a JSON string (escaped as `serde_json` does).
#[inline]
pub fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| needs_escape(b)) {
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    escaped(out, bytes);
}

/// [`string`] for text that holds characters to escape.
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends an unsigned integer.
#[inline]
pub fn uint(out: &mut Vec<u8>, n: u64) {
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(n).as_bytes());
}

/// Appends a signed integer.
pub fn int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    uint(out, n.unsigned_abs());
}

/// Appends an array of strings.
pub fn strings<'a>(out: &mut Vec<u8>, items: impl IntoIterator<Item = &'a str>) {
    out.push(b'[');
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

/// A value that can follow a key.
pub trait Value {
    fn write(&self, out: &mut Vec<u8>);
}

impl Value for str {
    fn write(&self, out: &mut Vec<u8>) {
        string(out, self);
    }
}
impl Value for String {
    fn write(&self, out: &mut Vec<u8>) {
        string(out, self);
    }
}
impl Value for bool {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}
macro_rules! unsigned {
    ($($t:ty),*) => {$(impl Value for $t {
        fn write(&self, out: &mut Vec<u8>) {
            uint(out, u64::from(*self));
        }
    })*};
}
unsigned!(u16, u32, u64);
impl Value for usize {
    fn write(&self, out: &mut Vec<u8>) {
        uint(out, *self as u64);
    }
}
impl Value for i32 {
    fn write(&self, out: &mut Vec<u8>) {
        int(out, i64::from(*self));
    }
}
impl<T: AsRef<str>> Value for [T] {
    fn write(&self, out: &mut Vec<u8>) {
        strings(out, self.iter().map(AsRef::as_ref));
    }
}
impl<T: AsRef<str>> Value for Vec<T> {
    fn write(&self, out: &mut Vec<u8>) {
        strings(out, self.iter().map(AsRef::as_ref));
    }
}
impl<T: Value + ?Sized> Value for &T {
    fn write(&self, out: &mut Vec<u8>) {
        (**self).write(out);
    }
}

/// An array of numbers.
pub struct Numbers<'a>(pub &'a [u32]);

impl Value for Numbers<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            uint(out, u64::from(*n));
        }
        out.push(b']');
    }
}

/// Appends `,"key":value`.
#[inline]
pub fn pair<V: Value + ?Sized>(out: &mut Vec<u8>, k: &str, v: &V) {
    key(out, k);
    v.write(out);
}

/// Appends `,"key":value` when there is a value.
pub fn opt<V: Value>(out: &mut Vec<u8>, k: &str, v: Option<V>) {
    if let Some(v) = v {
        pair(out, k, &v);
    }
}

/// Appends `,"key":true` when `flag` holds (quality flags are left out when false).
pub fn flag(out: &mut Vec<u8>, k: &str, flag: bool) {
    if flag {
        pair(out, k, &true);
    }
}

#[cfg(test)]
mod tests {
    use super::{int, string, uint};

    #[test]
    fn writes_what_serde_json_writes() {
        for s in
            ["", "plain", "a\"b\\c", "tab\tnl\ncr\r\u{8}\u{c}\u{1}\u{1f}\u{7f}", "給与.xlsx", "é\u{2028}"]
        {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap());
        }
        for n in [0u64, 7, 10, 1_000_000_007, u64::MAX] {
            let mut out = Vec::new();
            uint(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for n in [i64::MIN, -1, 0, 42] {
            let mut out = Vec::new();
            int(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
