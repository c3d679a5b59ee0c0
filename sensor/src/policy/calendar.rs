//! Built-in calendars for schedule exceptions: Japanese public holidays (`jp_holidays`) and
//! the year-end closure (`year_end`, 12/29–1/3).
//!
//! `jp_holidays` follows 国民の祝日に関する法律 as in force since 2020 (天皇誕生日 on 2/23,
//! スポーツの日), with the one-off moves of 2020 and 2021 (Olympics), for the years in
//! [`JP_HOLIDAY_YEARS`]:
//! * fixed days and Happy Monday days (成人の日, 海の日, 敬老の日, スポーツの日);
//! * 春分の日 and 秋分の日 by the standard formula (valid 1980–2099). The official dates are
//!   fixed by the 国立天文台 announcement in February of the year before; the formula has
//!   matched every announced date of this century;
//! * 振替休日 (art. 3-2): when a holiday is a Sunday, the next day that is not a holiday;
//! * 国民の休日 (art. 3-3): a day between two holidays.
use std::{collections::BTreeMap, ops::RangeInclusive, sync::OnceLock};

use jiff::civil::{Date, Weekday};

/// Years the `jp_holidays` calendar knows.
pub const JP_HOLIDAY_YEARS: RangeInclusive<i16> = 2020..=2099;

/// A date outside [`JP_HOLIDAY_YEARS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the jp_holidays calendar covers {}–{}, not {year}", JP_HOLIDAY_YEARS.start(), JP_HOLIDAY_YEARS.end())]
pub struct OutOfRange {
    pub year: i16,
}

/// The name of the Japanese public holiday on `date`, `None` on a working day.
pub fn jp_holiday(date: Date) -> Result<Option<&'static str>, OutOfRange> {
    if !JP_HOLIDAY_YEARS.contains(&date.year()) {
        return Err(OutOfRange { year: date.year() });
    }
    Ok(table().get(&date).copied())
}

/// True from December 29 to January 3 (both included).
pub fn is_year_end(date: Date) -> bool {
    (date.month() == 12 && date.day() >= 29) || (date.month() == 1 && date.day() <= 3)
}

/// All holidays of the supported years, 振替休日 and 国民の休日 included.
fn table() -> &'static BTreeMap<Date, &'static str> {
    static TABLE: OnceLock<BTreeMap<Date, &'static str>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut all = BTreeMap::new();
        for year in JP_HOLIDAY_YEARS {
            all.extend(holidays_of(year));
        }
        all
    })
}

/// Every holiday of `year`.
fn holidays_of(year: i16) -> BTreeMap<Date, &'static str> {
    let national: BTreeMap<Date, &'static str> = national_holidays(year).into_iter().collect();
    let mut all = national.clone();
    let mut day = date(year, 1, 1);
    while day.year() == year {
        if !national.contains_key(&day) {
            if is_substitute(day, &national) {
                all.insert(day, "振替休日");
            } else if is_between_holidays(day, &national) {
                all.insert(day, "国民の休日");
            }
        }
        day = day.tomorrow().expect("a day within 2020–2099");
    }
    all
}

/// Art. 3-2: the holidays just before `day` run back to a Sunday.
fn is_substitute(day: Date, national: &BTreeMap<Date, &'static str>) -> bool {
    let mut prev = day.yesterday().expect("a day within range");
    while national.contains_key(&prev) {
        if prev.weekday() == Weekday::Sunday {
            return true;
        }
        prev = prev.yesterday().expect("a day within range");
    }
    false
}

/// Art. 3-3: the days before and after `day` are 国民の祝日.
fn is_between_holidays(day: Date, national: &BTreeMap<Date, &'static str>) -> bool {
    let (Ok(prev), Ok(next)) = (day.yesterday(), day.tomorrow()) else {
        return false;
    };
    national.contains_key(&prev) && national.contains_key(&next)
}

/// 国民の祝日 (art. 2) of `year`; January 1 of the next year never takes part in a rule of
/// this year, December has no holiday after the 23rd.
fn national_holidays(year: i16) -> Vec<(Date, &'static str)> {
    let monday = |month: i8, nth: i8| {
        date(year, month, 1).nth_weekday_of_month(nth, Weekday::Monday).expect("the nth Monday exists")
    };
    let (umi, yama, sports) = match year {
        2020 => (date(2020, 7, 23), date(2020, 8, 10), date(2020, 7, 24)),
        2021 => (date(2021, 7, 22), date(2021, 8, 8), date(2021, 7, 23)),
        _ => (monday(7, 3), date(year, 8, 11), monday(10, 2)),
    };
    let offset = i32::from(year) - 1980;
    let equinox = |base_micro: i32| {
        let day = (base_micro + 242_194 * offset) / 1_000_000 - offset / 4;
        i8::try_from(day).expect("an equinox day of month")
    };
    vec![
        (date(year, 1, 1), "元日"),
        (monday(1, 2), "成人の日"),
        (date(year, 2, 11), "建国記念の日"),
        (date(year, 2, 23), "天皇誕生日"),
        (date(year, 3, equinox(20_843_100)), "春分の日"),
        (date(year, 4, 29), "昭和の日"),
        (date(year, 5, 3), "憲法記念日"),
        (date(year, 5, 4), "みどりの日"),
        (date(year, 5, 5), "こどもの日"),
        (umi, "海の日"),
        (yama, "山の日"),
        (monday(9, 3), "敬老の日"),
        (date(year, 9, equinox(23_248_800)), "秋分の日"),
        (sports, "スポーツの日"),
        (date(year, 11, 3), "文化の日"),
        (date(year, 11, 23), "勤労感謝の日"),
    ]
}

fn date(year: i16, month: i8, day: i8) -> Date {
    Date::new(year, month, day).expect("a valid calendar date")
}

#[cfg(test)]
mod tests {
    use jiff::civil::Date;

    use super::{is_year_end, jp_holiday, table};

    /// The lists published by 内閣府 (「国民の祝日」について), 2024–2027.
    /// (year, [(month, day, name)]).
    type Year = (i16, &'static [(i8, i8, &'static str)]);

    const OFFICIAL: &[Year] = &[
        (
            2024,
            &[
                (1, 1, "元日"),
                (1, 8, "成人の日"),
                (2, 11, "建国記念の日"),
                (2, 12, "振替休日"),
                (2, 23, "天皇誕生日"),
                (3, 20, "春分の日"),
                (4, 29, "昭和の日"),
                (5, 3, "憲法記念日"),
                (5, 4, "みどりの日"),
                (5, 5, "こどもの日"),
                (5, 6, "振替休日"),
                (7, 15, "海の日"),
                (8, 11, "山の日"),
                (8, 12, "振替休日"),
                (9, 16, "敬老の日"),
                (9, 22, "秋分の日"),
                (9, 23, "振替休日"),
                (10, 14, "スポーツの日"),
                (11, 3, "文化の日"),
                (11, 4, "振替休日"),
                (11, 23, "勤労感謝の日"),
            ],
        ),
        (
            2025,
            &[
                (1, 1, "元日"),
                (1, 13, "成人の日"),
                (2, 11, "建国記念の日"),
                (2, 23, "天皇誕生日"),
                (2, 24, "振替休日"),
                (3, 20, "春分の日"),
                (4, 29, "昭和の日"),
                (5, 3, "憲法記念日"),
                (5, 4, "みどりの日"),
                (5, 5, "こどもの日"),
                (5, 6, "振替休日"),
                (7, 21, "海の日"),
                (8, 11, "山の日"),
                (9, 15, "敬老の日"),
                (9, 23, "秋分の日"),
                (10, 13, "スポーツの日"),
                (11, 3, "文化の日"),
                (11, 23, "勤労感謝の日"),
                (11, 24, "振替休日"),
            ],
        ),
        (
            2026,
            &[
                (1, 1, "元日"),
                (1, 12, "成人の日"),
                (2, 11, "建国記念の日"),
                (2, 23, "天皇誕生日"),
                (3, 20, "春分の日"),
                (4, 29, "昭和の日"),
                (5, 3, "憲法記念日"),
                (5, 4, "みどりの日"),
                (5, 5, "こどもの日"),
                (5, 6, "振替休日"),
                (7, 20, "海の日"),
                (8, 11, "山の日"),
                (9, 21, "敬老の日"),
                (9, 22, "国民の休日"),
                (9, 23, "秋分の日"),
                (10, 12, "スポーツの日"),
                (11, 3, "文化の日"),
                (11, 23, "勤労感謝の日"),
            ],
        ),
        (
            2027,
            &[
                (1, 1, "元日"),
                (1, 11, "成人の日"),
                (2, 11, "建国記念の日"),
                (2, 23, "天皇誕生日"),
                (3, 21, "春分の日"),
                (3, 22, "振替休日"),
                (4, 29, "昭和の日"),
                (5, 3, "憲法記念日"),
                (5, 4, "みどりの日"),
                (5, 5, "こどもの日"),
                (7, 19, "海の日"),
                (8, 11, "山の日"),
                (9, 20, "敬老の日"),
                (9, 23, "秋分の日"),
                (10, 11, "スポーツの日"),
                (11, 3, "文化の日"),
                (11, 23, "勤労感謝の日"),
            ],
        ),
    ];

    fn d(y: i16, m: i8, day: i8) -> Date {
        Date::new(y, m, day).unwrap()
    }

    #[test]
    fn matches_the_official_lists_2024_to_2027() {
        for (year, official) in OFFICIAL {
            let want: Vec<(Date, &str)> = official.iter().map(|&(m, day, n)| (d(*year, m, day), n)).collect();
            let got: Vec<(Date, &str)> =
                table().range(d(*year, 1, 1)..=d(*year, 12, 31)).map(|(k, v)| (*k, *v)).collect();
            assert_eq!(got, want, "holidays of {year}");
        }
    }

    #[test]
    fn lookups_and_range() {
        assert_eq!(jp_holiday(d(2026, 9, 22)), Ok(Some("国民の休日")));
        assert_eq!(jp_holiday(d(2026, 9, 24)), Ok(None));
        // Olympic years.
        assert_eq!(jp_holiday(d(2020, 7, 24)), Ok(Some("スポーツの日")));
        assert_eq!(jp_holiday(d(2020, 10, 12)), Ok(None));
        assert_eq!(jp_holiday(d(2021, 8, 9)), Ok(Some("振替休日")));
        // 2023-01-01 was a Sunday.
        assert_eq!(jp_holiday(d(2023, 1, 2)), Ok(Some("振替休日")));
        assert!(jp_holiday(d(2019, 5, 1)).is_err());
        assert!(jp_holiday(d(2100, 1, 1)).is_err());
        assert!(jp_holiday(d(2099, 12, 31)).is_ok());
    }

    #[test]
    fn year_end_closure() {
        assert!(!is_year_end(d(2026, 12, 28)));
        assert!(is_year_end(d(2026, 12, 29)));
        assert!(is_year_end(d(2026, 12, 31)));
        assert!(is_year_end(d(2027, 1, 3)));
        assert!(!is_year_end(d(2027, 1, 4)));
    }
}
