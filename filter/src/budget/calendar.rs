//! Budget windows: fixed lengths aligned to the Unix epoch (`"1h"`, `"30d"`, `3600`), and calendar windows
//! (`"day"`, `"week"`, `"month"`) aligned to local midnight in UTC or a fixed UTC offset, so a monthly budget
//! resets when the invoice month does.
//!
//! Configuration, per rule:
//!
//! ```json
//! {"tenant": "*", "window": "month", "utc_offset": "-08:00", "cost_usd": 500}
//! ```
//!
//! `utc_offset` is a sibling of `window` rather than a nested object so the common case stays one short
//! string (`"window": "month"`, UTC), the key reads the same in every rule, and the README's flat key table
//! keeps one row per key. It is a fixed offset (`±HH:MM`), not a time-zone name: a zone with daylight
//! saving time would need the tz database in the module, and a budget whose month starts an hour earlier
//! half the year surprises more than it helps. Weeks are ISO 8601 weeks: they start on Monday.
//!
//! All arithmetic is on Unix seconds through a proleptic Gregorian civil calendar (`days_from_civil` and
//! `civil_from_days`: years counted from March so the leap day ends the year, in 400-year eras of 146 097
//! days; public-domain algorithms by Howard Hinnant, written here from the math). Every function is total:
//! instants near the epoch or at `u64::MAX` clamp instead of overflowing.

use crate::codec::json::strict::ConfigError;
use crate::codec::json::tape::Value as Json;

const DAY_S: i64 = 86_400;
/// Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar.
const EPOCH_SHIFT: i64 = 719_468;
const ERA_DAYS: i64 = 146_097;
/// The real-world range of UTC offsets (UTC−12:00 Baker Island to UTC+14:00 Line Islands).
const MIN_OFFSET_S: i32 = -12 * 3600;
const MAX_OFFSET_S: i32 = 14 * 3600;

/// A calendar unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    Day,
    /// ISO 8601 week, Monday to Sunday.
    Week,
    Month,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
        }
    }

    fn from_name(s: &str) -> Option<Unit> {
        match s {
            "day" => Some(Unit::Day),
            "week" => Some(Unit::Week),
            "month" => Some(Unit::Month),
            _ => None,
        }
    }
}

/// The window a budget rule counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    /// Fixed length in seconds (1 s to 366 days); windows start at multiples of it since the Unix epoch.
    Fixed(u64),
    /// A calendar day, ISO week or month, starting at local midnight at `offset_s` seconds east of UTC.
    Calendar { unit: Unit, offset_s: i32 },
}

/// `[start, end)` in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Clamped to 0 for the window that began before 1970 (an offset east of UTC at the epoch).
    pub start: u64,
    /// Saturates at `u64::MAX` for windows ending beyond it.
    pub end: u64,
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (`m` 1–12, `d` 1–31).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    // Months from March: March is 0, February 11.
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * ERA_DAYS + doe - EPOCH_SHIFT
}

/// The proleptic Gregorian date `(year, month 1–12, day 1–31)` of `z` days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + EPOCH_SHIFT;
    let era = z.div_euclid(ERA_DAYS);
    let doe = z.rem_euclid(ERA_DAYS);
    // Year of the era: the 4-, 100- and 400-year corrections undone before dividing by 365.
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

/// ISO weekday of `z` days since 1970-01-01: Monday 0 … Sunday 6 (1970-01-01 was a Thursday).
fn iso_weekday(z: i64) -> i64 {
    (z + 3).rem_euclid(7)
}

/// The local day number of `now_s` at `offset_s`. Bounded: |result| < 2^48 for every u64 instant.
fn local_day(now_s: u64, offset_s: i32) -> i64 {
    let local = i128::from(now_s) + i128::from(offset_s);
    // u64::MAX / 86400 ≈ 2.1e14: fits i64 with room for the calendar arithmetic below.
    local.div_euclid(i128::from(DAY_S)) as i64
}

/// Unix seconds of local midnight starting day `day` at `offset_s`, clamped to the u64 range.
fn utc_of_local_midnight(day: i64, offset_s: i32) -> u64 {
    let s = i128::from(day) * i128::from(DAY_S) - i128::from(offset_s);
    if s <= 0 {
        0
    } else {
        u64::try_from(s).unwrap_or(u64::MAX)
    }
}

/// `[first day, first day of the next window)` in local days.
fn calendar_days(unit: Unit, day: i64) -> (i64, i64) {
    match unit {
        Unit::Day => (day, day + 1),
        Unit::Week => {
            let monday = day - iso_weekday(day);
            (monday, monday + 7)
        }
        Unit::Month => {
            let (y, m, _) = civil_from_days(day);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (days_from_civil(y, m, 1), days_from_civil(ny, nm, 1))
        }
    }
}

impl Window {
    /// The window containing `now_s`.
    pub fn bounds(&self, now_s: u64) -> Bounds {
        match *self {
            Window::Fixed(w) => {
                // Exactly `ledger::window_start` / `seconds_to_reset`, so fixed windows keep their counters.
                let w = w.max(1);
                let start = now_s - now_s % w;
                Bounds {
                    start,
                    end: start.saturating_add(w),
                }
            }
            Window::Calendar { unit, offset_s } => {
                let (first, next) = calendar_days(unit, local_day(now_s, offset_s));
                Bounds {
                    start: utc_of_local_midnight(first, offset_s),
                    end: utc_of_local_midnight(next, offset_s),
                }
            }
        }
    }

    /// Start of the window containing `now_s` (what a counter records to know when to reset).
    pub fn start(&self, now_s: u64) -> u64 {
        self.bounds(now_s).start
    }

    /// Whole seconds until the window containing `now_s` ends, at least 1: `retry-after` and
    /// `x-ratelimit-reset-tokens`.
    pub fn seconds_to_reset(&self, now_s: u64) -> u64 {
        self.bounds(now_s).end.saturating_sub(now_s).max(1)
    }

    /// A stable, readable name of the window containing `now_s`, unique among the windows of one rule:
    /// `2026-03` (month), `2026-W09` (ISO week-year and week), `2026-03-05` (day), all in local time;
    /// the start in Unix seconds for fixed windows. For counter keys, log records and the admin view.
    pub fn key(&self, now_s: u64) -> String {
        match *self {
            Window::Fixed(_) => self.start(now_s).to_string(),
            Window::Calendar { unit, offset_s } => {
                let day = local_day(now_s, offset_s);
                match unit {
                    Unit::Day => {
                        let (y, m, d) = civil_from_days(day);
                        format!("{y:04}-{m:02}-{d:02}")
                    }
                    Unit::Month => {
                        let (y, m, _) = civil_from_days(day);
                        format!("{y:04}-{m:02}")
                    }
                    Unit::Week => {
                        // The ISO week belongs to the year of its Thursday; its number counts from the week
                        // holding that year's first Thursday.
                        let thursday = day - iso_weekday(day) + 3;
                        let (y, _, _) = civil_from_days(thursday);
                        let week = (thursday - days_from_civil(y, 1, 1)) / 7 + 1;
                        format!("{y:04}-W{week:02}")
                    }
                }
            }
        }
    }

    /// The longest this window can be, in seconds (a month: 31 days).
    pub fn max_len_s(&self) -> u64 {
        match *self {
            Window::Fixed(w) => w.max(1),
            Window::Calendar { unit, .. } => match unit {
                Unit::Day => 86_400,
                Unit::Week => 7 * 86_400,
                Unit::Month => 31 * 86_400,
            },
        }
    }

    /// What a rule fingerprint hashes for its window. A fixed window hashes its length's 8 little-endian
    /// bytes, as rule fingerprints always have (counters of existing rules survive the upgrade); a calendar
    /// window hashes 9 bytes whose fifth is the unit (1–3), which no fixed length can produce (lengths are
    /// below 2^32, so their fifth byte is 0).
    pub fn fingerprint_bytes(&self) -> Vec<u8> {
        match *self {
            Window::Fixed(w) => w.to_le_bytes().to_vec(),
            Window::Calendar { unit, offset_s } => {
                let mut b = b"cal\0".to_vec();
                b.push(match unit {
                    Unit::Day => 1,
                    Unit::Week => 2,
                    Unit::Month => 3,
                });
                b.extend_from_slice(&offset_s.to_le_bytes());
                b
            }
        }
    }

    /// For humans: `month (UTC-08:00)`, `1h`, `90s`.
    pub fn describe(&self) -> String {
        match *self {
            Window::Fixed(w) => match w {
                w if w % 86_400 == 0 => format!("{}d", w / 86_400),
                w if w % 3_600 == 0 => format!("{}h", w / 3_600),
                w if w % 60 == 0 => format!("{}m", w / 60),
                w => format!("{w}s"),
            },
            Window::Calendar { unit, offset_s } => {
                format!("{} (UTC{})", unit.as_str(), format_utc_offset(offset_s))
            }
        }
    }
}

/// `±HH:MM` → seconds east of UTC, within −12:00 … +14:00. `Z` is UTC.
pub fn parse_utc_offset(s: &str) -> Result<i32, String> {
    const HOW: &str = "must be a UTC offset like \"+05:30\" or \"-08:00\" (from -12:00 to +14:00)";
    if s == "Z" {
        return Ok(0);
    }
    let b = s.as_bytes();
    let sign = match b.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(HOW.into()),
    };
    let digit = |i: usize| -> Option<i32> {
        b.get(i)
            .filter(|c| c.is_ascii_digit())
            .map(|c| i32::from(c - b'0'))
    };
    let (Some(h1), Some(h2), Some(b':'), Some(m1), Some(m2), None) = (
        digit(1),
        digit(2),
        b.get(3).copied(),
        digit(4),
        digit(5),
        b.get(6),
    ) else {
        return Err(HOW.into());
    };
    let (hours, minutes) = (h1 * 10 + h2, m1 * 10 + m2);
    if minutes >= 60 {
        return Err(HOW.into());
    }
    let offset = sign * (hours * 3600 + minutes * 60);
    if !(MIN_OFFSET_S..=MAX_OFFSET_S).contains(&offset) {
        return Err(HOW.into());
    }
    Ok(offset)
}

/// Seconds east of UTC → `+HH:MM` / `-HH:MM` (whole minutes).
pub fn format_utc_offset(offset_s: i32) -> String {
    let sign = if offset_s < 0 { '-' } else { '+' };
    let m = offset_s.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

fn err(key: String, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

/// A rule's `window` and optional `utc_offset` (`rule_key` is the rule's own key, e.g.
/// `budgets.rules[2]`; errors name `budgets.rules[2].window` or `budgets.rules[2].utc_offset`).
pub fn read(rule_key: &str, window: Json, utc_offset: Option<Json>) -> Result<Window, ConfigError> {
    let offset = match utc_offset {
        None => None,
        Some(v) if v.raw_text() == Some("null") => None,
        Some(v) => {
            let key = format!("{rule_key}.utc_offset");
            let s = v.str().ok_or_else(|| {
                err(
                    key.clone(),
                    "must be a string like \"+05:30\" or \"-08:00\"",
                )
            })?;
            Some(parse_utc_offset(&s).map_err(|e| err(key, e))?)
        }
    };
    if let Some(unit) = window.str().and_then(|s| Unit::from_name(s.trim())) {
        return Ok(Window::Calendar {
            unit,
            offset_s: offset.unwrap_or(0),
        });
    }
    let secs = super::config::parse_window(window).map_err(|e| {
        let hint = if window.str().is_some() {
            "; or a calendar window: \"day\", \"week\" or \"month\""
        } else {
            ""
        };
        err(format!("{rule_key}.window"), format!("{e}{hint}"))
    })?;
    if offset.is_some() {
        return Err(err(
            format!("{rule_key}.utc_offset"),
            "applies only to calendar windows (\"day\", \"week\", \"month\"); fixed windows are aligned to the Unix epoch",
        ));
    }
    Ok(Window::Fixed(secs))
}

/// `envoy.type.v3.RateLimitUnit`, the type of the `unit` in the descriptor's `limit` override that tollgate
/// sends (`envoy/extensions/common/ratelimit/v3/ratelimit.proto`): UNKNOWN 0, SECOND 1, MINUTE 2, HOUR 3,
/// DAY 4, MONTH 5, YEAR 6. There is no WEEK in it (the response's `RateLimitResponse.RateLimit.Unit` has
/// WEEK = 7, usable only in a service's own configuration), and the field is validated `defined_only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RlsUnit {
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    /// 30 days in envoyproxy/ratelimit (`UnitToDivider`: 60·60·24·30), in windows starting at multiples of it
    /// since the epoch: not calendar months.
    Month = 5,
    /// 365 days in envoyproxy/ratelimit, likewise epoch-aligned.
    Year = 6,
}

/// Which key of a rule made it inexpressible with `backend: "rls"`, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RlsRefusal {
    /// `window` or `utc_offset`.
    pub field: &'static str,
    pub reason: &'static str,
}

impl Window {
    /// The protocol unit that counts exactly this window in envoyproxy/ratelimit (whose windows are fixed
    /// blocks aligned to the Unix epoch, `now / divider * divider` in `GenerateCacheKey`), or why none does.
    pub fn rls_unit(&self) -> Result<RlsUnit, RlsRefusal> {
        const FIXED: &str =
            "must be 1s, 1m, 1h, 1d, 30d or 365d with backend \"rls\" (the protocol's units)";
        match *self {
            Window::Fixed(1) => Ok(RlsUnit::Second),
            Window::Fixed(60) => Ok(RlsUnit::Minute),
            Window::Fixed(3_600) => Ok(RlsUnit::Hour),
            Window::Fixed(86_400) => Ok(RlsUnit::Day),
            Window::Fixed(2_592_000) => Ok(RlsUnit::Month),
            Window::Fixed(31_536_000) => Ok(RlsUnit::Year),
            Window::Fixed(_) => Err(RlsRefusal {
                field: "window",
                reason: FIXED,
            }),
            // A UTC day is an epoch-aligned 86 400 s block: the DAY unit counts exactly it.
            Window::Calendar {
                unit: Unit::Day,
                offset_s: 0,
            } => Ok(RlsUnit::Day),
            Window::Calendar { unit: Unit::Day, .. } => Err(RlsRefusal {
                field: "utc_offset",
                reason: "is not available with backend \"rls\": the protocol's DAY starts at 00:00 UTC",
            }),
            Window::Calendar {
                unit: Unit::Week, ..
            } => Err(RlsRefusal {
                field: "window",
                reason: "\"week\" is not available with backend \"rls\": the descriptor limit override has no WEEK unit, and envoyproxy/ratelimit's WEEK is 7-day blocks from 1970 (starting on Thursdays)",
            }),
            Window::Calendar {
                unit: Unit::Month, ..
            } => Err(RlsRefusal {
                field: "window",
                reason: "\"month\" is not available with backend \"rls\": the protocol's MONTH is 30-day blocks from 1970 in envoyproxy/ratelimit, not calendar months (use \"30d\", or backend \"local\")",
            }),
        }
    }
}

/// `rls_unit` as a configuration error naming the rule's key (`rule_key` e.g. `budgets.rules[2]`).
pub fn check_rls(rule_key: &str, window: &Window) -> Result<RlsUnit, ConfigError> {
    window
        .rls_unit()
        .map_err(|r| err(format!("{rule_key}.{}", r.field), r.reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use serde_json::json;

    const MONTH: Window = Window::Calendar {
        unit: Unit::Month,
        offset_s: 0,
    };

    fn cal(unit: Unit, offset: &str) -> Window {
        Window::Calendar {
            unit,
            offset_s: parse_utc_offset(offset).unwrap(),
        }
    }

    /// The civil calendar by counting: day by day from 1969-01-01, with the Gregorian leap rule.
    fn reference_dates(until_year: i64) -> Vec<(i64, u32, u32)> {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let len = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1969, 1, 1);
        let mut out = Vec::new();
        while y < until_year {
            out.push((y, m, d));
            d += 1;
            if d > len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        out
    }

    #[test]
    fn civil_calendar_matches_counting_days() {
        let dates = reference_dates(2500);
        let first = days_from_civil(1969, 1, 1);
        assert_eq!(first, -365);
        for (i, &date) in dates.iter().enumerate() {
            let z = first + i as i64;
            assert_eq!(civil_from_days(z), date, "day {z}");
            assert_eq!(days_from_civil(date.0, date.1, date.2), z, "{date:?}");
        }
    }

    #[test]
    fn civil_calendar_matches_python_datetime() {
        // datetime.fromisoformat(...).timestamp() in CPython.
        for (y, m, d, ts) in [
            (2000, 2, 29, 951_782_400i64),
            (2000, 3, 1, 951_868_800),
            (2100, 2, 1, 4_105_123_200),
            (2100, 3, 1, 4_107_542_400),
            (2028, 2, 1, 1_832_976_000),
            (2028, 3, 1, 1_835_481_600),
            (9999, 12, 1, 253_399_622_400),
        ] {
            assert_eq!(days_from_civil(y, m, d) * DAY_S, ts, "{y}-{m}-{d}");
            assert_eq!(civil_from_days(ts / DAY_S), (y, m, d));
        }
    }

    #[test]
    fn leap_years_give_february_its_length() {
        let feb = |y: i64| {
            let t = (days_from_civil(y, 2, 10) * DAY_S) as u64;
            let b = MONTH.bounds(t);
            (b.end - b.start) / 86_400
        };
        assert_eq!(feb(2000), 29, "divisible by 400");
        assert_eq!(feb(2100), 28, "divisible by 100, not 400");
        assert_eq!(feb(2024), 29);
        assert_eq!(feb(2028), 29);
        assert_eq!(feb(2025), 28);
        assert_eq!(feb(2026), 28);
        // Every month of a leap and a common year.
        for (y, lens) in [
            (2024, [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]),
            (2025, [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]),
        ] {
            for (m, len) in (1..=12).zip(lens) {
                let t = (days_from_civil(y, m, 15) * DAY_S) as u64;
                let b = MONTH.bounds(t);
                assert_eq!((b.end - b.start) / 86_400, len, "{y}-{m}");
                assert_eq!(b.start, (days_from_civil(y, m, 1) * DAY_S) as u64);
            }
        }
    }

    #[test]
    fn reset_is_exact_at_month_and_year_ends() {
        // 2024-02-29T12:00Z: 12 h to March.
        assert_eq!(MONTH.seconds_to_reset(1_709_208_000), 12 * 3600);
        // 2100-02-28T23:59:59Z: one second to March (no 29th in 2100).
        assert_eq!(MONTH.seconds_to_reset(4_107_542_399), 1);
        // 2025-12-31T23:59:59Z: the year ends with the month, the week and the day.
        let t = 1_767_225_599;
        for unit in [Unit::Day, Unit::Month] {
            let w = Window::Calendar { unit, offset_s: 0 };
            assert_eq!(w.seconds_to_reset(t), 1, "{unit:?}");
            assert_eq!(w.bounds(t + 1).start, t + 1);
        }
        assert_eq!(MONTH.key(t), "2025-12");
        assert_eq!(MONTH.key(t + 1), "2026-01");
        // 2026-01-01 is a Thursday: the week runs Mon 2025-12-29 .. Sun 2026-01-04, ISO 2026-W01.
        let week = cal(Unit::Week, "Z");
        assert_eq!(week.key(t), "2026-W01");
        assert_eq!(
            week.bounds(t).start,
            (days_from_civil(2025, 12, 29) * DAY_S) as u64
        );
        assert_eq!(week.seconds_to_reset(t), 4 * 86_400 + 1);
    }

    #[test]
    fn offsets_move_midnight_both_ways() {
        // 2026-03-01T03:00Z is still February 28, 19:00 at UTC-08:00.
        let t = 1_772_334_000;
        let pst = cal(Unit::Month, "-08:00");
        assert_eq!(
            pst.bounds(t),
            Bounds {
                start: 1_769_932_800, // 2026-02-01T00:00-08:00
                end: 1_772_352_000,   // 2026-03-01T00:00-08:00
            }
        );
        assert_eq!(pst.seconds_to_reset(t), 5 * 3600);
        assert_eq!(pst.key(t), "2026-02");
        assert_eq!(MONTH.key(t), "2026-03");
        // At UTC+05:30 March began at 2026-02-28T18:30Z.
        let ist = cal(Unit::Month, "+05:30");
        assert_eq!(
            ist.bounds(t),
            Bounds {
                start: 1_772_303_400,
                end: 1_774_981_800,
            }
        );
        let day = cal(Unit::Day, "-08:00");
        assert_eq!(day.key(t), "2026-02-28");
        assert_eq!(day.seconds_to_reset(t), 5 * 3600);
        let day_east = cal(Unit::Day, "+14:00");
        assert_eq!(day_east.key(t), "2026-03-01");
        assert_eq!(day_east.seconds_to_reset(t), 7 * 3600);
    }

    #[test]
    fn iso_weeks_start_on_monday_and_number_like_python() {
        let week = cal(Unit::Week, "+00:00");
        // date.isocalendar() in CPython.
        for ((y, m, d), key) in [
            ((2021, 1, 3), "2020-W53"),
            ((2024, 12, 30), "2025-W01"),
            ((2026, 1, 1), "2026-W01"),
            ((2020, 12, 31), "2020-W53"),
            ((2027, 1, 1), "2026-W53"),
            ((2004, 12, 31), "2004-W53"),
            ((2009, 12, 31), "2009-W53"),
            ((2010, 1, 3), "2009-W53"),
        ] {
            let t = (days_from_civil(y, m, d) * DAY_S) as u64 + 3600;
            assert_eq!(week.key(t), key, "{y}-{m}-{d}");
            let start = week.start(t) as i64 / DAY_S;
            assert_eq!(iso_weekday(start), 0, "starts on a Monday");
        }
    }

    #[test]
    fn near_the_epoch_and_far_in_the_future_nothing_overflows() {
        // At the epoch, UTC+14:00 is already 14:00 on 1970-01-01: that day began before 0.
        let east = cal(Unit::Day, "+14:00");
        assert_eq!(
            east.bounds(0),
            Bounds {
                start: 0,
                end: 36_000
            }
        );
        // At UTC-12:00 it is still 1969-12-31: December 1969 ends 12 h after the epoch.
        let west = cal(Unit::Month, "-12:00");
        assert_eq!(
            west.bounds(0),
            Bounds {
                start: 0,
                end: 43_200
            }
        );
        assert_eq!(west.key(0), "1969-12");
        assert_eq!(cal(Unit::Week, "-12:00").key(0), "1970-W01");
        // 9999-12-31T23:59:59Z: the month ends in year 10000.
        assert_eq!(MONTH.seconds_to_reset(253_402_300_799), 1);
        assert_eq!(MONTH.key(253_402_300_800), "10000-01");
        for t in [u64::MAX, u64::MAX - 1, u64::MAX / 2, i64::MAX as u64] {
            for unit in [Unit::Day, Unit::Week, Unit::Month] {
                for offset_s in [MIN_OFFSET_S, 0, MAX_OFFSET_S] {
                    let w = Window::Calendar { unit, offset_s };
                    let b = w.bounds(t);
                    assert!(b.start <= t && t <= b.end, "{w:?} {t}");
                    assert!(w.seconds_to_reset(t) >= 1);
                    assert!(!w.key(t).is_empty());
                }
            }
            assert!(Window::Fixed(366 * 86_400).bounds(t).start <= t);
        }
    }

    #[test]
    fn fixed_windows_equal_the_ledger_arithmetic() {
        let mut rng = SplitMix64::new(7);
        for w in [1, 60, 90, 3_600, 86_400, 30 * 86_400, 366 * 86_400] {
            for _ in 0..2000 {
                let t = rng.next_u64() >> (rng.next_u64() % 64);
                let win = Window::Fixed(w);
                assert_eq!(win.start(t), super::super::ledger::window_start(w, t));
                assert_eq!(
                    win.seconds_to_reset(t),
                    super::super::ledger::seconds_to_reset(w, t)
                );
            }
        }
        assert_eq!(Window::Fixed(86_400).key(90_000), "86400");
    }

    /// Every instant lies in its window; the window after ends where the next begins; boundaries are local
    /// midnights on the unit's first day; lengths are the unit's.
    #[test]
    fn windows_tile_time_for_random_instants_and_offsets() {
        let mut rng = SplitMix64::new(2026);
        // Up to year ~2^37: past any date a budget will see, short of the clamping at u64::MAX.
        for _ in 0..20_000 {
            let t = rng.next_u64() >> (rng.next_u64() % 64).max(27);
            let span = i64::from(MAX_OFFSET_S - MIN_OFFSET_S) / 60 + 1;
            let offset_s = MIN_OFFSET_S + (rng.next_u64() % span as u64) as i32 * 60;
            for unit in [Unit::Day, Unit::Week, Unit::Month] {
                let w = Window::Calendar { unit, offset_s };
                let b = w.bounds(t);
                assert!(b.start <= t && t < b.end, "{w:?} {t} {b:?}");
                assert_eq!(w.seconds_to_reset(t), b.end - t);
                let next = w.bounds(b.end);
                assert_eq!(next.start, b.end, "{w:?} {t}");
                assert_eq!(w.bounds(b.end - 1), b);
                assert_ne!(w.key(b.end), w.key(t));
                if b.start == 0 {
                    continue; // began before the epoch
                }
                assert_eq!(w.bounds(b.start), b);
                let local_start = b.start as i64 + i64::from(offset_s);
                assert_eq!(local_start.rem_euclid(DAY_S), 0, "local midnight");
                let first = local_start / DAY_S;
                let days = (b.end - b.start) as i64 / DAY_S;
                match unit {
                    Unit::Day => assert_eq!(days, 1),
                    Unit::Week => {
                        assert_eq!(days, 7);
                        assert_eq!(iso_weekday(first), 0);
                    }
                    Unit::Month => {
                        assert!((28..=31).contains(&days));
                        assert_eq!(civil_from_days(first).2, 1);
                    }
                }
            }
        }
    }

    #[test]
    fn offsets_parse_strictly() {
        for (s, want) in [
            ("+05:30", 19_800),
            ("-08:00", -28_800),
            ("+00:00", 0),
            ("-00:00", 0),
            ("Z", 0),
            ("+14:00", 50_400),
            ("-12:00", -43_200),
            ("+05:45", 20_700),
        ] {
            assert_eq!(parse_utc_offset(s), Ok(want), "{s}");
            if s != "Z" && s != "-00:00" {
                assert_eq!(format_utc_offset(want), s);
            }
        }
        for s in [
            "",
            "+5:30",
            "05:30",
            "+05:60",
            "+15:00",
            "-12:01",
            "+0530",
            "+05:30 ",
            "UTC",
            "+05:3",
            "+٠٥:٣٠",
            "+05:30:00",
        ] {
            assert!(parse_utc_offset(s).is_err(), "{s:?}");
        }
    }

    fn read_rule(v: serde_json::Value) -> Result<Window, ConfigError> {
        crate::codec::json::strict::read_json(&v, |v| {
            let mut window = None;
            let mut offset = None;
            for (k, val) in v.members().unwrap() {
                match k.as_ref() {
                    "window" => window = Some(val),
                    "utc_offset" => offset = Some(val),
                    _ => {}
                }
            }
            read("budgets.rules[2]", window.unwrap(), offset)
        })
    }

    #[test]
    fn config_forms_and_errors_name_the_key() {
        assert_eq!(read_rule(json!({"window": "month"})), Ok(MONTH));
        assert_eq!(
            read_rule(json!({"window": "week", "utc_offset": "+02:00"})),
            Ok(Window::Calendar {
                unit: Unit::Week,
                offset_s: 7200
            })
        );
        assert_eq!(
            read_rule(json!({"window": "30d"})),
            Ok(Window::Fixed(2_592_000))
        );
        assert_eq!(read_rule(json!({"window": 3600})), Ok(Window::Fixed(3600)));
        assert_eq!(
            read_rule(json!({"window": "day", "utc_offset": null})),
            Ok(Window::Calendar {
                unit: Unit::Day,
                offset_s: 0
            })
        );
        let e = |v| read_rule(v).unwrap_err();
        let bad_unit = e(json!({"window": "1w"}));
        assert_eq!(bad_unit.key, "budgets.rules[2].window");
        assert!(bad_unit.reason.contains("\"month\""), "{bad_unit:?}");
        assert_eq!(e(json!({"window": "Month"})).key, "budgets.rules[2].window");
        assert_eq!(e(json!({"window": 0})).key, "budgets.rules[2].window");
        assert_eq!(
            e(json!({"window": "month", "utc_offset": "PST"})).key,
            "budgets.rules[2].utc_offset"
        );
        assert_eq!(
            e(json!({"window": "month", "utc_offset": -8})).key,
            "budgets.rules[2].utc_offset"
        );
        let fixed = e(json!({"window": "1d", "utc_offset": "+01:00"}));
        assert_eq!(fixed.key, "budgets.rules[2].utc_offset");
        assert!(fixed.reason.contains("calendar"), "{fixed:?}");
    }

    #[test]
    fn rls_expresses_only_epoch_aligned_blocks() {
        let unit = |v| read_rule(v).unwrap().rls_unit();
        assert_eq!(unit(json!({"window": "1s"})), Ok(RlsUnit::Second));
        assert_eq!(unit(json!({"window": "60m"})), Ok(RlsUnit::Hour));
        assert_eq!(unit(json!({"window": "30d"})), Ok(RlsUnit::Month));
        assert_eq!(unit(json!({"window": "365d"})), Ok(RlsUnit::Year));
        assert_eq!(unit(json!({"window": "day"})), Ok(RlsUnit::Day));
        assert_eq!(RlsUnit::Month as i32, 5);
        assert_eq!(RlsUnit::Year as i32, 6);
        let key = |v| {
            let w = read_rule(v).unwrap();
            check_rls("budgets.rules[2]", &w).unwrap_err().key
        };
        assert_eq!(key(json!({"window": "month"})), "budgets.rules[2].window");
        assert_eq!(key(json!({"window": "week"})), "budgets.rules[2].window");
        assert_eq!(key(json!({"window": "7d"})), "budgets.rules[2].window");
        assert_eq!(
            key(json!({"window": "day", "utc_offset": "+01:00"})),
            "budgets.rules[2].utc_offset"
        );
        // A UTC calendar day and the protocol's DAY are the same blocks.
        let day = read_rule(json!({"window": "day"})).unwrap();
        for t in [0, 86_399, 86_400, 1_772_334_000] {
            assert_eq!(day.bounds(t), Window::Fixed(86_400).bounds(t));
        }
    }

    #[test]
    fn fingerprints_keep_fixed_windows_and_separate_calendar_ones() {
        assert_eq!(
            Window::Fixed(3600).fingerprint_bytes(),
            3600u64.to_le_bytes().to_vec()
        );
        let mut seen = std::collections::HashSet::new();
        for unit in [Unit::Day, Unit::Week, Unit::Month] {
            for offset_s in [0, 3600, -3600] {
                let b = Window::Calendar { unit, offset_s }.fingerprint_bytes();
                assert_ne!(b.get(4), Some(&0));
                assert!(seen.insert(b));
            }
        }
        assert_eq!(MONTH.describe(), "month (UTC+00:00)");
        assert_eq!(Window::Fixed(90).describe(), "90s");
        assert_eq!(Window::Fixed(2_592_000).describe(), "30d");
        assert_eq!(MONTH.max_len_s(), 31 * 86_400);
    }
}
