//! Maintenance windows: on which days and between which local times a run may start a node.

use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde::Serialize;

/// A weekly window in a time zone.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Window {
    /// Days on which the window opens (all seven when configured empty).
    #[serde(serialize_with = "day_names")]
    pub days: Vec<Weekday>,
    /// Local opening time.
    pub start: Time,
    /// Local closing time; at or before `start` means the next day.
    pub end: Time,
    /// The zone's IANA name.
    pub timezone: String,
}

impl Window {
    /// Whether `now` falls inside this window. A window that crosses midnight belongs to the day
    /// it opens on.
    pub fn contains(&self, now: Timestamp) -> bool {
        let Ok(tz) = TimeZone::get(&self.timezone) else { return false };
        let local = now.to_zoned_datetime(tz);
        let (day, time) = (local.weekday(), local.time());
        let opens_on = |d: Weekday| self.days.contains(&d);
        if self.start < self.end {
            opens_on(day) && time >= self.start && time < self.end
        } else {
            (opens_on(day) && time >= self.start) || (opens_on(day.previous()) && time < self.end)
        }
    }
}

fn day_names<S: serde::Serializer>(days: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(days.iter().map(|d| format!("{d:?}")[..3].to_ascii_lowercase()))
}

/// The days of a window configured without any.
pub(crate) const EVERY_DAY: [Weekday; 7] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
    Weekday::Saturday,
    Weekday::Sunday,
];

/// Whether a run may proceed at `now`: no windows configured means always.
pub(crate) fn window_open(windows: &[Window], now: Timestamp) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(now))
}

/// Parses a day name such as `mon` or `Monday`.
pub(crate) fn parse_day(text: &str) -> Option<Weekday> {
    let t = text.trim().to_ascii_lowercase();
    let day = match t.get(..3)? {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    };
    let full = format!("{day:?}").to_ascii_lowercase();
    (full.starts_with(&t)).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[&str], start: &str, end: &str, tz: &str) -> Window {
        Window {
            days: days.iter().map(|d| parse_day(d).unwrap()).collect(),
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
            timezone: tz.into(),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn same_day_window_in_a_time_zone() {
        // 2026-11-25 is a Wednesday; Berlin is UTC+1 in November.
        let w = window(&["wed"], "02:00", "05:00", "Europe/Berlin");
        assert!(w.contains(at("2026-11-25T01:00:00Z")));
        assert!(!w.contains(at("2026-11-25T00:59:59Z")));
        assert!(!w.contains(at("2026-11-25T04:00:00Z")));
        assert!(!w.contains(at("2026-11-26T01:00:00Z")));
    }

    #[test]
    fn window_across_midnight_belongs_to_its_opening_day() {
        let w = window(&["sat"], "22:00", "04:00", "UTC");
        assert!(w.contains(at("2026-11-28T23:00:00Z")));
        assert!(w.contains(at("2026-11-29T03:59:00Z")));
        assert!(!w.contains(at("2026-11-29T22:30:00Z")));
        assert!(!w.contains(at("2026-11-28T03:00:00Z")));
    }

    #[test]
    fn no_windows_means_always_open() {
        assert!(window_open(&[], at("2026-11-25T12:00:00Z")));
        let w = window(&["mon"], "01:00", "02:00", "UTC");
        assert!(!window_open(&[w], at("2026-11-25T12:00:00Z")));
    }

    #[test]
    fn day_names() {
        assert_eq!(parse_day("Monday"), Some(Weekday::Monday));
        assert_eq!(parse_day("sun"), Some(Weekday::Sunday));
        assert_eq!(parse_day("mo"), None);
        assert_eq!(parse_day("monx"), None);
    }
}
