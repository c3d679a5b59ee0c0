//! Schedules: time windows in a time zone, minus exception days.
//!
//! A window `{days, from, to}` is half-open (`from` ≤ t < `to`). A window with `to` ≤ `from`
//! crosses midnight and belongs to the day it starts on: `days` and `except` are checked
//! against that day (a Friday 22:00–06:00 window covers Saturday 03:00; a holiday on
//! Saturday does not end it, a holiday on Friday cancels it).
use std::fmt;

use jiff::{
    Timestamp,
    civil::{Date, DateTime},
    tz::{self, TimeZone},
};

use super::{
    calendar,
    model::{DEFAULT_TIMEZONE, Except, ScheduleDef, Window},
};

/// When an access happens: an instant, or a wall-clock time that each schedule reads in
/// its own time zone (`policy explain --at "2026-04-01 10:00"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Instant(Timestamp),
    Local(DateTime),
}

impl From<Timestamp> for When {
    fn from(ts: Timestamp) -> Self {
        Self::Instant(ts)
    }
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Instant(ts) => write!(f, "{ts}"),
            Self::Local(dt) => {
                write!(f, "{} (wall clock, in each schedule's time zone)", dt.strftime("%Y-%m-%d %H:%M:%S"))
            }
        }
    }
}

/// A compiled `schedule`.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub tz_name: String,
    tz: TimeZone,
    windows: Vec<Window>,
    except: Vec<Except>,
}

/// The outcome of a schedule check, with the reason in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleCheck {
    pub inside: bool,
    pub detail: String,
}

impl Schedule {
    /// Resolves the time zone. `Asia/Tokyo` works without a system tz database (Japan has
    /// had no daylight saving time since 1951: a fixed +09:00).
    pub fn compile(def: &ScheduleDef) -> Result<Self, String> {
        let name = def.timezone.value.as_str();
        let tz = match TimeZone::get(name) {
            Ok(tz) => tz,
            Err(_) if name == DEFAULT_TIMEZONE => TimeZone::fixed(tz::offset(9)),
            Err(e) => {
                return Err(format!("unknown time zone `{name}` ({e}); use an IANA name such as Asia/Tokyo"));
            }
        };
        let windows = if def.windows.is_empty() {
            vec![Window { days: Window::ALL_DAYS, from: 0, to: 24 * 60 }]
        } else {
            def.windows.iter().map(|w| w.value).collect()
        };
        Ok(Self {
            tz_name: name.to_owned(),
            tz,
            windows,
            except: def.except.iter().map(|e| e.value).collect(),
        })
    }

    /// The wall-clock time of `when` in this schedule's zone.
    pub fn local(&self, when: When) -> DateTime {
        match when {
            When::Instant(ts) => ts.to_zoned(self.tz.clone()).datetime(),
            When::Local(dt) => dt,
        }
    }

    /// True when `when` falls in a window on a day that is not an exception.
    pub fn contains(&self, when: When) -> bool {
        self.check(when).inside
    }

    /// [`Self::contains`] with the reason.
    pub fn check(&self, when: When) -> ScheduleCheck {
        let dt = self.local(when);
        let at = format!("{} {} {}", weekday(dt.date()), dt.strftime("%Y-%m-%d %H:%M"), self.tz_name);
        let mut excepted = None;
        for w in &self.windows {
            let Some(start) = window_day(w, dt) else {
                continue;
            };
            match self.exception(start) {
                None => {
                    return ScheduleCheck { inside: true, detail: format!("{at} is inside {w}") };
                }
                Some(why) => excepted = Some(why),
            }
        }
        let detail = match excepted {
            Some(why) => format!("{at}: {why}"),
            None => {
                let all: Vec<String> = self.windows.iter().map(ToString::to_string).collect();
                format!("{at} is outside {}", all.join("; "))
            }
        };
        ScheduleCheck { inside: false, detail }
    }

    /// Why `day` is an exception day, if it is one.
    fn exception(&self, day: Date) -> Option<String> {
        self.except.iter().find_map(|e| match e {
            Except::JpHolidays => match calendar::jp_holiday(day) {
                Ok(Some(name)) => Some(format!("{day} is {name} (jp_holidays)")),
                Ok(None) => None,
                Err(e) => Some(format!("{e}; the day counts as a holiday")),
            },
            Except::YearEnd => calendar::is_year_end(day)
                .then(|| format!("{day} is in the year-end closure 12/29–1/3 (year_end)")),
            Except::Date(d) => (*d == day).then(|| format!("{day} is listed in except")),
        })
    }
}

/// The day the window instance containing `dt` started on, if one does.
fn window_day(w: &Window, dt: DateTime) -> Option<Date> {
    let t = u32::from(dt.hour().unsigned_abs()) * 3600
        + u32::from(dt.minute().unsigned_abs()) * 60
        + u32::from(dt.second().unsigned_abs());
    let (from, to) = (u32::from(w.from) * 60, u32::from(w.to) * 60);
    let on = |d: Date| w.days & (1 << d.weekday().to_monday_zero_offset()) != 0;
    let today = dt.date();
    if !w.crosses_midnight() {
        return (on(today) && from <= t && t < to).then_some(today);
    }
    if t >= from && on(today) {
        return Some(today);
    }
    let yesterday = today.yesterday().ok()?;
    (t < to && on(yesterday)).then_some(yesterday)
}

fn weekday(d: Date) -> &'static str {
    let i = usize::from(d.weekday().to_monday_zero_offset().unsigned_abs());
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][i]
}

#[cfg(test)]
mod tests {
    use jiff::{Timestamp, civil::DateTime};

    use super::{Schedule, When};
    use crate::policy::{
        model::{At, Except, ScheduleDef, Window},
        yaml::Pos,
    };

    fn sched(tz: &str, windows: &[(u8, &str, &str)], except: &[Except]) -> Schedule {
        let m = |s: &str| {
            let (h, mi) = s.split_once(':').unwrap();
            h.parse::<u16>().unwrap() * 60 + mi.parse::<u16>().unwrap()
        };
        Schedule::compile(&ScheduleDef {
            timezone: At::new(Pos::START, tz.to_owned()),
            windows: windows
                .iter()
                .map(|(days, f, t)| At::new(Pos::START, Window { days: *days, from: m(f), to: m(t) }))
                .collect(),
            except: except.iter().map(|e| At::new(Pos::START, *e)).collect(),
        })
        .unwrap()
    }

    fn local(s: &str) -> When {
        When::Local(s.parse::<DateTime>().unwrap())
    }

    const WEEKDAYS: u8 = 0b001_1111;

    #[test]
    fn office_hours_in_tokyo() {
        let s = sched("Asia/Tokyo", &[(WEEKDAYS, "09:00", "19:00")], &[Except::JpHolidays, Except::YearEnd]);
        // 2026-04-01 is a Wednesday.
        assert!(s.contains(local("2026-04-01T09:00")));
        assert!(s.contains(local("2026-04-01T18:59:59")));
        assert!(!s.contains(local("2026-04-01T19:00")), "the end is excluded");
        assert!(!s.contains(local("2026-04-01T08:59")));
        assert!(!s.contains(local("2026-04-04T10:00")), "Saturday");
        let c = s.check(local("2026-05-06T10:00"));
        assert!(!c.inside && c.detail.contains("振替休日"), "{c:?}");
        assert!(!s.contains(local("2026-12-29T10:00")), "year end");
        assert!(s.contains(local("2027-01-04T10:00")), "Monday 2027-01-04: back to work");
        assert!(!s.contains(local("2026-12-28T19:30")));
        assert!(s.contains(local("2026-12-28T10:00")), "Monday before the closure");
    }

    #[test]
    fn instants_are_read_in_the_schedule_zone() {
        let s = sched("Asia/Tokyo", &[(WEEKDAYS, "09:00", "19:00")], &[]);
        // 00:30 UTC = 09:30 JST on Wednesday 2026-04-01.
        let ts: Timestamp = "2026-04-01T00:30:00Z".parse().unwrap();
        assert!(s.contains(When::Instant(ts)));
        let ts: Timestamp = "2026-04-01T10:30:00Z".parse().unwrap();
        assert!(!s.contains(When::Instant(ts)), "19:30 JST");
        let utc = sched("UTC", &[(WEEKDAYS, "09:00", "19:00")], &[]);
        assert!(utc.contains(When::Instant("2026-04-01T10:30:00Z".parse().unwrap())));
    }

    #[test]
    fn windows_crossing_midnight_belong_to_their_start_day() {
        // Friday night shift 22:00–06:00.
        let fri = 1 << 4;
        let s = sched("Asia/Tokyo", &[(fri, "22:00", "06:00")], &[Except::JpHolidays]);
        assert!(s.contains(local("2026-04-03T23:00")), "Friday 23:00");
        assert!(s.contains(local("2026-04-04T05:59")), "Saturday 05:59 belongs to Friday");
        assert!(!s.contains(local("2026-04-04T06:00")));
        assert!(!s.contains(local("2026-04-04T23:00")), "Saturday night is not Friday");
        assert!(!s.contains(local("2026-04-03T05:00")), "Friday early morning belongs to Thursday");
        // 2026-05-01 is a Friday (not a holiday), 2026-05-02 a Saturday; 2026-09-21 (Mon) 敬老の日.
        let mon = 1;
        let s = sched("Asia/Tokyo", &[(mon, "22:00", "06:00")], &[Except::JpHolidays]);
        assert!(
            !s.contains(local("2026-09-22T01:00")),
            "Monday 9/21 is a holiday: its night window is cancelled"
        );
        assert!(s.contains(local("2026-09-29T01:00")));
    }

    #[test]
    fn whole_day_and_literal_dates() {
        let s = sched("Asia/Tokyo", &[], &[Except::Date("2026-08-13".parse().unwrap())]);
        assert!(s.contains(local("2026-08-12T03:00")));
        assert!(!s.contains(local("2026-08-13T12:00")));
        let s = sched("Asia/Tokyo", &[(Window::ALL_DAYS, "00:00", "24:00")], &[]);
        assert!(s.contains(local("2026-08-13T23:59:59")));
    }

    #[test]
    fn unknown_zone() {
        let def = ScheduleDef {
            timezone: At::new(Pos::START, "Mars/Olympus".into()),
            windows: vec![],
            except: vec![],
        };
        assert!(Schedule::compile(&def).unwrap_err().contains("Mars/Olympus"));
    }
}
