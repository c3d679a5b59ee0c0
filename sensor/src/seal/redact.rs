//! Redaction: masks My Numbers (個人番号) before a record is hashed into the ledger, and in
//! the daemon's own logs. The rule and its limits: docs/redaction.md.
//!
//! A My Number is 12 digits whose last is the check digit of the first 11, written plain
//! (`123456789018`), in groups of four separated by a space or hyphen (`1234 5678 9018`,
//! `1234-5678-9018`), with ASCII or full-width digits and separators. No digit and no ASCII
//! letter may stand right before or after it (so the digits inside a hex hash, such as the
//! policy hash, are never taken for one). Each of its digits becomes `*`; separators stay.
//! In JSON only string values are scanned (numbers such as inodes are never touched).
use std::io;

/// ASCII digit value, or the value of a full-width digit (U+FF10..U+FF19, `EF BC 90..99`),
/// with its length in bytes.
#[inline]
fn digit_at(b: &[u8], i: usize) -> Option<(u8, usize)> {
    match b.get(i)? {
        c @ b'0'..=b'9' => Some((c - b'0', 1)),
        0xEF if b.get(i + 1) == Some(&0xBC) => match b.get(i + 2)? {
            c @ 0x90..=0x99 => Some((c - 0x90, 3)),
            _ => None,
        },
        _ => None,
    }
}

/// Length of a group separator at `i`: space, hyphen, full-width space (U+3000),
/// full-width hyphen-minus (U+FF0D), katakana long sound mark (U+30FC), minus sign (U+2212),
/// hyphen and dashes (U+2010..U+2015).
#[inline]
fn separator_at(b: &[u8], i: usize) -> Option<usize> {
    match (b.get(i)?, b.get(i + 1), b.get(i + 2)) {
        (b' ' | b'-', _, _) => Some(1),
        (0xE3, Some(0x80), Some(0x80)) | (0xEF, Some(0xBC), Some(0x8D)) | (0xE3, Some(0x83), Some(0xBC)) => {
            Some(3)
        }
        (0xE2, Some(0x88), Some(0x92)) | (0xE2, Some(0x80), Some(0x90..=0x95)) => Some(3),
        _ => None,
    }
}

/// Bytes the scan must look at: quotes, backslashes, ASCII digits and the first byte of a
/// full-width digit.
static INTERESTING: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'%' as usize] = true;
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = true;
        d += 1;
    }
    t[0xEF] = true;
    t
};

/// Flags (bit 7 of each byte) the bytes of 8 where a My Number may start: bytes ≥ 0x80 (a
/// full-width digit's first byte) and ASCII digits that start 4 digits in a row (every My
/// Number does). Bytes 5..=7 cannot be judged within the word: every digit there is flagged.
/// SWAR; each flag is exact.
#[inline]
fn starts8(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = w & !HIGH;
    // b + 0x50 has its high bit from b ≥ 0x30, b + 0x46 from b ≥ 0x3A (no carries: b < 0x80).
    let digit = (x + ONES * 0x50) & !(x + ONES * 0x46) & HIGH & !w;
    // Bytes ≥ 0x80 count as digits when looking ahead (a full-width digit may follow).
    let d = digit | (w & HIGH);
    let run4 = digit & (d >> 8) & (d >> 16) & (d >> 24);
    (w & HIGH) | (run4 & 0x0000_0080_8080_8080) | (digit & 0x8080_8000_0000_0000)
}

/// Whether 12 digits (most significant first) form a My Number (ecosystem.md §5.1).
pub fn valid_check_digit(d: &[u8; 12]) -> bool {
    const WEIGHTS: [u32; 11] = [6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
    let sum: u32 = d[..11].iter().zip(WEIGHTS).map(|(&x, w)| u32::from(x) * w).sum();
    let r = sum % 11;
    let check = if r <= 1 { 0 } else { 11 - r };
    u32::from(d[11]) == check
}

/// The length of the escape of one byte of a file name at `i` (docs/events.md, "File names
/// that are not UTF-8"): `\xNN` of a display form (`\\xNN` inside a JSON string) or `%NN`
/// of a `…path_bytes` attribute. Such a byte is a boundary like punctuation: its hex digits
/// are not digits of a number.
fn byte_escape_at(b: &[u8], i: usize, json: bool) -> Option<usize> {
    let hex = |at: usize| b.get(at).is_some_and(u8::is_ascii_hexdigit);
    let lead = match (b.get(i)?, b.get(i + 1), b.get(i + 2)) {
        (b'%', ..) => 1,
        (b'\\', Some(b'x'), _) if !json => 2,
        (b'\\', Some(b'\\'), Some(b'x')) if json => 3,
        _ => return None,
    };
    (hex(i + lead) && hex(i + lead + 1)).then_some(lead + 2)
}

/// Whether a byte escape (see [`byte_escape_at`]) ends right before `i`: a superset of the
/// places [`scan`] calls [`match_at`] with `after_escape`.
fn escape_before(b: &[u8], i: usize) -> bool {
    let hex = |at: usize| b[at].is_ascii_hexdigit();
    i >= 3
        && hex(i - 1)
        && hex(i - 2)
        && (b[i - 3] == b'%' || (i >= 4 && b[i - 3] == b'x' && b[i - 4] == b'\\'))
}

/// If a My Number starts at `i` (a digit not preceded by a digit, or preceded by a byte
/// escape when `after_escape`), the byte offsets of its 12 digits with their lengths, and the
/// offset just past it.
fn match_at(b: &[u8], i: usize, after_escape: bool) -> Option<([(usize, usize); 12], usize)> {
    if i > 0 && !after_escape && b[i - 1].is_ascii_alphabetic() {
        return None;
    }
    let mut digits = [0u8; 12];
    let mut at = [(0usize, 0usize); 12];
    let mut p = i;
    let mut grouped = None;
    for n in 0..12 {
        if n == 4 || n == 8 {
            let sep = separator_at(b, p);
            match (grouped, sep) {
                (None, Some(len)) if n == 4 => {
                    grouped = Some(true);
                    p += len;
                }
                (None, None) => grouped = Some(false),
                (Some(true), Some(len)) => p += len,
                (Some(false), None) => {}
                _ => return None,
            }
        }
        let (d, len) = digit_at(b, p)?;
        digits[n] = d;
        at[n] = (p, len);
        p += len;
    }
    if digit_at(b, p).is_some()
        || b.get(p).is_some_and(u8::is_ascii_alphabetic)
        || !valid_check_digit(&digits)
    {
        return None;
    }
    // `1234 5678 9018 7…`: a digit right after the separator continues the grouping.
    if grouped == Some(true) && separator_at(b, p).is_some_and(|l| digit_at(b, p + l).is_some()) {
        return None;
    }
    Some((at, p))
}

/// Masks every My Number in `text` (JSON when `json`: only inside string values; any text
/// otherwise). Returns how many were masked. The common case (none) allocates nothing.
pub fn redact(text: &mut Vec<u8>, json: bool) -> usize {
    if !maybe_contains(text) {
        return 0;
    }
    scan(text, json)
}

/// Whether `b` holds a My Number anywhere, string or not (a superset of what [`scan`] masks).
/// Reads 8 bytes at a time and stops only where 4 digits in a row or a non-ASCII byte start:
/// the common record, with none, is passed in one quick read.
fn maybe_contains(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        if let Some(word) = b.get(i..i + 8) {
            let m = starts8(u64::from_le_bytes(word.try_into().unwrap_or_default()));
            if m == 0 {
                i += 8;
                continue;
            }
            // The lowest flag is exact: go straight to it.
            i += (m.trailing_zeros() / 8) as usize;
        }
        let escaped = escape_before(b, i);
        if digit_at(b, i).is_some() && (escaped || !digit_before(b, i)) && match_at(b, i, escaped).is_some() {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether a digit (ASCII or full-width) ends right before `i`.
fn digit_before(b: &[u8], i: usize) -> bool {
    (i >= 1 && b[i - 1].is_ascii_digit()) || (i >= 3 && digit_at(b, i - 3).is_some_and(|(_, len)| len == 3))
}

/// Masks My Numbers byte by byte, following JSON strings when `json`.
fn scan(text: &mut Vec<u8>, json: bool) -> usize {
    let b = &text[..];
    let mut masks: Vec<(usize, usize)> = Vec::new();
    let mut count = 0;
    let mut in_string = !json;
    let mut prev_digit = false;
    let mut after_escape = false;
    let mut i = 0;
    while i < b.len() {
        // Skip the bytes that can neither start a number nor change the string state.
        if !INTERESTING[b[i] as usize] {
            prev_digit = false;
            after_escape = false;
            i += 1;
            while i < b.len() && !INTERESTING[b[i] as usize] {
                i += 1;
            }
            continue;
        }
        let c = b[i];
        if in_string && let Some(len) = byte_escape_at(b, i, json) {
            prev_digit = false;
            after_escape = true;
            i += len;
            continue;
        }
        let escaped = std::mem::take(&mut after_escape);
        if json && c == b'"' {
            in_string = !in_string;
            prev_digit = false;
            i += 1;
            continue;
        }
        if json && c == b'\\' && in_string {
            prev_digit = false;
            // `\\\\` is one escaped backslash of a display form: it starts no byte escape.
            i += if b.get(i + 1..i + 4) == Some(b"\\\\\\") { 4 } else { 2 };
            continue;
        }
        if in_string
            && (c.is_ascii_digit() || c == 0xEF)
            && let Some((_, len)) = digit_at(b, i)
        {
            if !prev_digit && let Some((at, end)) = match_at(b, i, escaped) {
                masks.extend_from_slice(&at);
                count += 1;
                i = end;
            } else {
                i += len;
            }
            prev_digit = true;
            continue;
        }
        prev_digit = false;
        i += 1;
    }
    if count > 0 {
        let mut out = Vec::with_capacity(text.len());
        let mut from = 0;
        for (at, len) in masks {
            out.extend_from_slice(&text[from..at]);
            out.push(b'*');
            from = at + len;
        }
        out.extend_from_slice(&text[from..]);
        *text = out;
    }
    count
}

/// A writer that masks My Numbers in what passes through it (the daemon's own logs: each
/// log line arrives in one write).
pub struct Writer<W>(pub W);

impl<W: io::Write> io::Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut text = buf.to_vec();
        redact(&mut text, false);
        self.0.write_all(&text)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// stderr behind a [`Writer`] (for `tracing_subscriber`'s `with_writer`).
pub fn stderr() -> Writer<io::Stderr> {
    Writer(io::stderr())
}

#[cfg(test)]
mod tests {
    use super::{redact, valid_check_digit};

    fn digits(s: &str) -> [u8; 12] {
        let v: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
        v.try_into().unwrap()
    }

    fn json(s: &str) -> (String, usize) {
        let mut v = s.as_bytes().to_vec();
        let n = redact(&mut v, true);
        (String::from_utf8(v).unwrap(), n)
    }

    #[test]
    fn digits_glued_to_letters_are_not_a_my_number() {
        // A policy hash whose hex holds a valid 12-digit run (seen in a test run).
        let hash = r#"{"mnsensor.policy.hash":"e123456789018c9d"}"#;
        assert_eq!(json(hash), (hash.to_owned(), 0));
        assert_eq!(json(r#"{"a":"id123456789018"}"#).1, 0);
        assert_eq!(json(r#"{"a":"123456789018x"}"#).1, 0);
        // Punctuation, spaces and non-ASCII text are boundaries.
        assert_eq!(json(r#"{"a":"No.123456789018"}"#), (r#"{"a":"No.************"}"#.to_owned(), 1));
        assert_eq!(
            json(r#"{"a":"番号123456789018です"}"#),
            (r#"{"a":"番号************です"}"#.to_owned(), 1)
        );
    }

    #[test]
    fn check_digit_matches_published_examples() {
        for ok in ["123456789018", "983205673214", "111111111118"] {
            assert!(valid_check_digit(&digits(ok)), "{ok}");
        }
        for bad in ["123456789012", "983205673215", "111111111111"] {
            assert!(!valid_check_digit(&digits(bad)), "{bad}");
        }
        // Remainder 0 or 1 gives check digit 0: 11 zeros sum to 0.
        assert!(valid_check_digit(&digits("000000000000")));
    }

    #[test]
    fn masks_every_written_form_inside_strings_only() {
        assert_eq!(json(r#"{"a":"id 123456789018 x"}"#), (r#"{"a":"id ************ x"}"#.into(), 1));
        assert_eq!(json(r#"{"a":"1234-5678-9018"}"#).0, r#"{"a":"****-****-****"}"#);
        assert_eq!(json(r#"{"a":"/d/1234 5678 9018.csv"}"#).0, r#"{"a":"/d/**** **** ****.csv"}"#);
        assert_eq!(json(r#"{"a":"１２３４５６７８９０１８"}"#).0, r#"{"a":"************"}"#);
        assert_eq!(json(r#"{"a":"１２３４－５６７８－９０１８"}"#).0, r#"{"a":"****－****－****"}"#);
        assert_eq!(json(r#"{"a":["x","_983205673214"]}"#).0, r#"{"a":["x","_************"]}"#);
        // Numbers outside strings, wrong check digits, longer runs and odd grouping stay.
        for same in [
            r#"{"file.inode":123456789018}"#,
            r#"{"a":"123456789012"}"#,
            r#"{"a":"1234567890180"}"#,
            r#"{"a":"0123456789018"}"#,
            r#"{"a":"1234 56789018"}"#,
            r#"{"a":"1234 5678 9018 7"}"#,
        ] {
            assert_eq!(json(same), (same.to_owned(), 0), "{same}");
        }
        // Bytes of a file name that is not UTF-8, escaped (`\xNN` in a display form, `%NN` in
        // a `…path_bytes` attribute), are boundaries; an escaped backslash is not a byte escape.
        let sjis = r#"{"file.path":"/d/\\x83\\x93123456789018.csv","b":"/d/%83%93123456789018.csv"}"#;
        assert_eq!(
            json(sjis),
            (r#"{"file.path":"/d/\\x83\\x93************.csv","b":"/d/%83%93************.csv"}"#.into(), 2)
        );
        assert_eq!(json(r#"{"a":"\\\\x41123456789018"}"#).1, 0, "a backslash, then `x41…`");
        let mut text = b"path=/d/\\x9a123456789018".to_vec();
        assert_eq!((redact(&mut text, false), text.as_slice()), (1, &b"path=/d/\\x9a************"[..]));
        // An escaped quote does not end the string.
        assert_eq!(json(r#"{"a":"\"123456789018"}"#).0, r#"{"a":"\"************"}"#);
        // Two in one string, and a key-like string.
        assert_eq!(json(r#"{"a":"123456789018,983205673214"}"#).1, 2);
    }

    #[test]
    fn the_quick_check_never_skips_what_the_scan_masks() {
        // Random texts over an alphabet rich in digits, separators, quotes and (valid JSON)
        // escapes.
        let alphabet: Vec<&str> = vec![
            "0",
            "1",
            "2",
            "3",
            "8",
            "9",
            " ",
            "-",
            "\"",
            "\\\\",
            "\\\"",
            "a",
            ":",
            ",",
            "１",
            "８",
            "０",
            "－",
            "\u{3000}",
            "é",
            "%8A",
            "\\\\x9a",
            "\\\\\\\\x41",
        ];
        let numbers = ["123456789018", "1234-5678-9018", "983205673214", "１２３４５６７８９０１８"];
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut t = String::new();
            for _ in 0..(next() % 60) {
                if next() % 10 == 0 {
                    t.push_str(numbers[(next() % 4) as usize]);
                } else {
                    t.push_str(alphabet[(next() % alphabet.len() as u64) as usize]);
                }
            }
            for json in [true, false] {
                let (mut fast, mut slow) = (t.clone().into_bytes(), t.clone().into_bytes());
                let n = redact(&mut fast, json);
                assert_eq!((n, &fast), (super::scan(&mut slow, json), &slow), "{t:?}");
            }
        }
    }

    #[test]
    fn log_text_is_scanned_everywhere() {
        let mut v = b"path=/x/123456789018 n=983205673214".to_vec();
        assert_eq!(redact(&mut v, false), 2);
        assert_eq!(v, b"path=/x/************ n=************");
        // The log writer: what it passes on is masked; it reports the caller's length.
        let mut w = super::Writer(Vec::new());
        let line = "WARN Output failing. output=jsonl:/srv/1234-5678-9018/e.jsonl\n";
        assert_eq!(std::io::Write::write(&mut w, line.as_bytes()).unwrap(), line.len());
        assert_eq!(String::from_utf8(w.0).unwrap(), line.replace("1234-5678-9018", "****-****-****"));
    }
}
