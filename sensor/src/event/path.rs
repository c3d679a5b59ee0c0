//! Paths as the kernel writes them (leaf first, NUL-separated; see `sensor_common::path`).

/// Turns `c\0b\0a\0` into `/a/b/c`. An empty walk is the root, `/`.
pub fn from_kernel(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    for part in bytes.split(|b| *b == 0).rev().filter(|p| !p.is_empty()) {
        out.push(b'/');
        out.extend_from_slice(part);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    // Invalid UTF-8 never spans a NUL, so converting once equals converting per component.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::from_kernel;

    #[test]
    fn reverses_components() {
        assert_eq!(from_kernel(b"a.txt\0share\0srv\0"), "/srv/share/a.txt");
        assert_eq!(from_kernel(b""), "/");
        assert_eq!(from_kernel(b"tmp\0"), "/tmp");
        assert_eq!(from_kernel("給与.xlsx\0人事\0".as_bytes()), "/人事/給与.xlsx");
        assert_eq!(from_kernel(b"b\xff\0a\0"), "/a/b\u{fffd}");
    }
}
