//! Paths as the kernel writes them (leaf first, NUL-separated; see `sensor_common::path`).

/// Turns `c\0b\0a\0` into `/a/b/c`. An empty walk is the root, `/`.
pub fn from_kernel(bytes: &[u8]) -> String {
    let mut parts: Vec<&[u8]> = bytes.split(|b| *b == 0).filter(|p| !p.is_empty()).collect();
    parts.reverse();
    let mut out = String::with_capacity(bytes.len() + 1);
    for p in parts {
        out.push('/');
        out.push_str(&String::from_utf8_lossy(p));
    }
    if out.is_empty() {
        out.push('/');
    }
    out
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
    }
}
