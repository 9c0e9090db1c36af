//! Business hours: a weekly schedule in a time zone, with holidays.

use std::collections::BTreeSet;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use switchboard_core::Error;

/// One opening interval on an ISO weekday (1 = Monday), in minutes of the
/// local day; `close_minute` may be 1440 (midnight at the end of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    pub day_of_week: i8,
    pub open_minute: i32,
    pub close_minute: i32,
}

/// When a queue is open.
#[derive(Debug, Clone)]
pub struct Schedule {
    time_zone: TimeZone,
    weekly: Vec<Opening>,
    holidays: BTreeSet<Date>,
}

/// "HH:MM" to minutes of the day; "24:00" only where `allow_end_of_day`.
pub fn parse_minute(value: &str, field: &str, allow_end_of_day: bool) -> Result<i32, Error> {
    let invalid = || Error::invalid_field(field, format!("`{value}` is not a time of day HH:MM"));
    let (hours, minutes) = value.split_once(':').ok_or_else(invalid)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(invalid());
    }
    let hours: i32 = hours.parse().map_err(|_| invalid())?;
    let minutes: i32 = minutes.parse().map_err(|_| invalid())?;
    let end_of_day = allow_end_of_day && hours == 24 && minutes == 0;
    let within_day = (0..24).contains(&hours) && (0..60).contains(&minutes);
    if !(end_of_day || within_day) {
        return Err(invalid());
    }
    Ok(hours * 60 + minutes)
}

impl Schedule {
    /// Validates and builds a schedule; errors name the field under
    /// `prefix` (the business hours' path in the request).
    pub fn parse(
        time_zone: &str,
        weekly: &[(i32, &str, &str)],
        holidays: &[String],
        prefix: &str,
    ) -> Result<Schedule, Error> {
        let time_zone = TimeZone::get(time_zone).map_err(|_| {
            Error::invalid_field(format!("{prefix}.time_zone"), format!("`{time_zone}` is not an IANA time zone"))
        })?;
        if weekly.len() > 50 {
            return Err(Error::invalid_field(format!("{prefix}.weekly"), "at most 50 intervals"));
        }
        let mut openings = Vec::with_capacity(weekly.len());
        for (index, (day_of_week, open, close)) in weekly.iter().enumerate() {
            let interval = format!("{prefix}.weekly[{index}]");
            if !(1..=7).contains(day_of_week) {
                return Err(Error::invalid_field(format!("{interval}.day_of_week"), "must be 1 (Monday) to 7"));
            }
            let open_minute = parse_minute(open, &format!("{interval}.open"), false)?;
            let close_minute = parse_minute(close, &format!("{interval}.close"), true)?;
            if close_minute <= open_minute {
                return Err(Error::invalid_field(format!("{interval}.close"), "must be after `open`"));
            }
            let day_of_week = i8::try_from(*day_of_week).unwrap_or(1);
            openings.push(Opening { day_of_week, open_minute, close_minute });
        }
        if holidays.len() > 366 {
            return Err(Error::invalid_field(format!("{prefix}.holidays"), "at most 366 dates"));
        }
        let mut parsed_holidays = BTreeSet::new();
        for holiday in holidays {
            let date: Date = holiday.parse().map_err(|_| {
                Error::invalid_field(format!("{prefix}.holidays"), format!("`{holiday}` is not a date YYYY-MM-DD"))
            })?;
            parsed_holidays.insert(date);
        }
        Ok(Schedule { time_zone, weekly: openings, holidays: parsed_holidays })
    }

    /// Whether the queue is open at `instant_ms` (Unix milliseconds).
    pub fn is_open_at(&self, instant_ms: i64) -> bool {
        let Ok(timestamp) = jiff::Timestamp::from_millisecond(instant_ms) else {
            return false;
        };
        let local = timestamp.to_zoned(self.time_zone.clone());
        if self.holidays.contains(&local.date()) {
            return false;
        }
        let day_of_week = local.weekday().to_monday_one_offset();
        let minute = i32::from(local.hour()) * 60 + i32::from(local.minute());
        self.weekly.iter().any(|opening| {
            opening.day_of_week == day_of_week && opening.open_minute <= minute && minute < opening.close_minute
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn millis(rfc3339: &str) -> i64 {
        rfc3339.parse::<jiff::Timestamp>().expect("timestamp").as_millisecond()
    }

    #[test]
    fn opening_hours_follow_the_local_time_zone_and_holidays() {
        // Weekdays 09:00-18:00 Moscow time (UTC+3), closed on 2026-12-31.
        let weekly: Vec<(i32, &str, &str)> = (1..=5).map(|day| (day, "09:00", "18:00")).collect();
        let schedule =
            Schedule::parse("Europe/Moscow", &weekly, &["2026-12-31".to_owned()], "queue.business_hours").expect("ok");
        assert!(schedule.is_open_at(millis("2026-11-23T06:00:00Z")), "Monday 09:00 in Moscow");
        assert!(!schedule.is_open_at(millis("2026-11-23T05:59:00Z")), "Monday 08:59 in Moscow");
        assert!(!schedule.is_open_at(millis("2026-11-23T15:00:00Z")), "18:00 is closing time");
        assert!(!schedule.is_open_at(millis("2026-11-28T10:00:00Z")), "Saturday");
        assert!(!schedule.is_open_at(millis("2026-12-31T10:00:00Z")), "holiday");
        let overnight = Schedule::parse("UTC", &[(7, "20:00", "24:00")], &[], "hours").expect("ok");
        assert!(overnight.is_open_at(millis("2026-11-29T23:59:00Z")), "Sunday until midnight");
    }

    #[test]
    fn invalid_schedules_name_the_field() {
        let field = |result: Result<Schedule, Error>| result.expect_err("invalid").field_violations[0].field.clone();
        assert_eq!(field(Schedule::parse("Mars/Olympus", &[], &[], "h")), "h.time_zone");
        assert_eq!(field(Schedule::parse("UTC", &[(8, "09:00", "10:00")], &[], "h")), "h.weekly[0].day_of_week");
        assert_eq!(field(Schedule::parse("UTC", &[(1, "9:00", "10:00")], &[], "h")), "h.weekly[0].open");
        assert_eq!(field(Schedule::parse("UTC", &[(1, "10:00", "09:00")], &[], "h")), "h.weekly[0].close");
        assert_eq!(field(Schedule::parse("UTC", &[(1, "24:00", "24:00")], &[], "h")), "h.weekly[0].open");
        assert_eq!(field(Schedule::parse("UTC", &[], &["2026-02-30".to_owned()], "h")), "h.holidays");
    }

    proptest! {
        #[test]
        fn an_always_open_week_is_open_and_an_empty_one_never(instant in 0i64..4_000_000_000_000) {
            let always: Vec<(i32, &str, &str)> = (1..=7).map(|day| (day, "00:00", "24:00")).collect();
            let open = Schedule::parse("America/New_York", &always, &[], "h").expect("ok");
            let closed = Schedule::parse("America/New_York", &[], &[], "h").expect("ok");
            prop_assert!(open.is_open_at(instant));
            prop_assert!(!closed.is_open_at(instant));
        }
    }
}
