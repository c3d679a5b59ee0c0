//! The calendar of the records' `time` attribute (RFC 3339, UTC), shared by the daemon that
//! writes it and the tools that read it back (bench, tests). Proleptic Gregorian calendar,
//! H. Hinnant's algorithms; integer arithmetic only, no allocation.

/// Days since 1970-01-01 of a Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Gregorian `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-11-22T06:16:57.400470117Z` (a record's `time`; 0 to 9 fraction digits) as
/// nanoseconds since the epoch; `None` when it is not that shape.
pub fn parse_rfc3339_ns(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: core::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    let secs = days * 86_400 + num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    let frac = s.get(19..s.len() - 1)?;
    let nanos = match frac.strip_prefix('.') {
        None if frac.is_empty() => 0,
        Some(d) if !d.is_empty() && d.len() <= 9 => d.parse::<i128>().ok()? * 10i128.pow(9 - d.len() as u32),
        _ => return None,
    };
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::{civil_from_days, days_from_civil, parse_rfc3339_ns};

    #[test]
    fn round_trips_through_the_calendar() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ns("2000-03-01T00:00:01.5Z"), Some(951_868_801_500_000_000));
        assert_eq!(parse_rfc3339_ns("2026-11-22T06:16:57.400470117Z"), Some(1_795_328_217_400_470_117));
        assert_eq!(parse_rfc3339_ns("2026-11-22 06:16:57Z"), None);
        for days in [-1, 0, 11_016, 20_779, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
