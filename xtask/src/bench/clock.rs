//! Clocks (per-thread CPU, monotonic, real time) and the few date conversions the report needs.

/// CPU time of the calling thread, in ns (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_ns() -> u64 {
    read(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// `CLOCK_MONOTONIC` in ns.
pub fn monotonic_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME` in ns since the Unix epoch: what the sensor's `time` is converted to.
pub fn realtime_ns() -> u64 {
    read(libc::CLOCK_REALTIME)
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids used here always exist.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `2026-11-22T06:16:57.400470117Z` (the sensor's `time`) as ns since the epoch.
pub fn parse_rfc3339_ns(s: &str) -> Option<u64> {
    u64::try_from(sensor_common::time::parse_rfc3339_ns(s)?).ok()
}

/// `2026-11-22 06:16:57 UTC` for seconds since the epoch.
pub fn format_utc(secs: u64) -> String {
    let (y, m, d) = sensor_common::time::civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::{format_utc, parse_rfc3339_ns};

    #[test]
    fn rfc3339_round_trips_through_the_calendar() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ns("2000-03-01T00:00:01.5Z"), Some(951_868_801_500_000_000));
        let t = parse_rfc3339_ns("2026-11-22T06:16:57.400470117Z").expect("parses");
        assert_eq!(t % 1_000_000_000, 400_470_117);
        assert_eq!(format_utc(t / 1_000_000_000), "2026-11-22 06:16:57 UTC");
        assert_eq!(parse_rfc3339_ns("2026-11-22 06:16:57Z"), None);
    }
}
