//! Kernel timestamps (CLOCK_BOOTTIME) to RFC 3339 UTC strings.

/// Reads a clock in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; the clocks used always exist on Linux.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Converts CLOCK_BOOTTIME nanoseconds to wall-clock nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    /// Measures the current offset between wall clock and boot time.
    pub fn now() -> Self {
        Self { offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME) }
    }

    /// Wall-clock time of a kernel timestamp.
    pub fn wall_ns(&self, boot_ns: u64) -> i128 {
        i128::from(boot_ns) + self.offset_ns
    }

    /// The current wall-clock time.
    pub fn realtime_ns() -> i128 {
        clock_ns(libc::CLOCK_REALTIME)
    }

    /// Current CLOCK_BOOTTIME in nanoseconds.
    pub fn boottime_ns() -> u64 {
        u64::try_from(clock_ns(libc::CLOCK_BOOTTIME)).unwrap_or(0)
    }
}

/// `2026-11-22T05:36:31.123456789Z` for nanoseconds since the epoch.
pub fn rfc3339(epoch_ns: i128) -> String {
    let mut out = Vec::with_capacity(30);
    write_rfc3339(&mut out, epoch_ns);
    String::from_utf8(out).unwrap_or_default()
}

thread_local! {
    /// The `YYYY-MM-DDTHH:MM:SS.` prefix of the last second written: records come in time
    /// order, so the calendar arithmetic runs about once a second.
    static SECOND: std::cell::Cell<(i128, [u8; 20])> = const { std::cell::Cell::new((i128::MIN, [0; 20])) };
}

/// Appends [`rfc3339`] of `epoch_ns` to `out`.
pub fn write_rfc3339(out: &mut Vec<u8>, epoch_ns: i128) {
    let secs = epoch_ns.div_euclid(1_000_000_000);
    let nanos = epoch_ns.rem_euclid(1_000_000_000) as u32;
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = sensor_common::time::civil_from_days(days as i64);
        let text = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.", sod / 3600, sod / 60 % 60, sod % 60);
        if text.len() != prefix.len() {
            // Years outside 0000-9999: not worth a cache.
            out.extend_from_slice(text.as_bytes());
            push_nanos(out, nanos);
            return;
        }
        prefix.copy_from_slice(text.as_bytes());
        SECOND.set((secs, prefix));
    }
    out.extend_from_slice(&prefix);
    push_nanos(out, nanos);
}

/// Nine digits and the `Z`.
fn push_nanos(out: &mut Vec<u8>, mut nanos: u32) {
    let mut digits = [b'0'; 10];
    digits[9] = b'Z';
    for d in digits[..9].iter_mut().rev() {
        *d = b'0' + (nanos % 10) as u8;
        nanos /= 10;
    }
    out.extend_from_slice(&digits);
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29T12:34:56.000000789Z (leap day)
        assert_eq!(rfc3339(951_827_696_000_000_789), "2000-02-29T12:34:56.000000789Z");
        // 2026-11-22T05:36:31.5Z
        assert_eq!(rfc3339(1_795_325_791_500_000_000), "2026-11-22T05:36:31.500000000Z");
        // The cached second is reused, and replaced when the second changes.
        assert_eq!(rfc3339(1_795_325_791_000_000_001), "2026-11-22T05:36:31.000000001Z");
        assert_eq!(rfc3339(1_795_325_792_999_999_999), "2026-11-22T05:36:32.999999999Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
    }
}
