//! Wall-clock helpers: milliseconds since the Unix epoch and protobuf
//! `Timestamp`/`Duration` conversions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn timestamp_from_millis(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

pub fn millis_from_timestamp(timestamp: &prost_types::Timestamp) -> i64 {
    timestamp.seconds.saturating_mul(1000).saturating_add(i64::from(timestamp.nanos) / 1_000_000)
}

/// `Some(timestamp)` for a positive millisecond value, `None` for 0 (unset).
pub fn optional_timestamp(millis: i64) -> Option<prost_types::Timestamp> {
    (millis > 0).then(|| timestamp_from_millis(millis))
}

pub fn duration_from_millis(millis: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: millis.div_euclid(1000),
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// Milliseconds of a protobuf duration; `None` when negative.
pub fn millis_from_duration(duration: &prost_types::Duration) -> Option<i64> {
    let millis = duration.seconds.saturating_mul(1000).saturating_add(i64::from(duration.nanos) / 1_000_000);
    (millis >= 0).then_some(millis)
}

/// The largest `Duration.seconds` protobuf allows (about 10,000 years).
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
/// `Timestamp.seconds` of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z,
/// the range protobuf (and its JSON form) allows.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// Milliseconds of a well-formed protobuf duration: `nanos` within
/// ±999,999,999 and of the same sign as `seconds`, `seconds` within
/// ±315,576,000,000. Anything else cannot even be printed as JSON.
pub fn checked_duration_millis(duration: &prost_types::Duration) -> Result<i64, &'static str> {
    if !(-999_999_999..=999_999_999).contains(&duration.nanos) {
        return Err("nanos must be within ±999,999,999");
    }
    if (duration.seconds > 0 && duration.nanos < 0) || (duration.seconds < 0 && duration.nanos > 0) {
        return Err("seconds and nanos must have the same sign");
    }
    if !(-MAX_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(&duration.seconds) {
        return Err("seconds must be within ±315,576,000,000");
    }
    Ok(duration.seconds * 1000 + i64::from(duration.nanos) / 1_000_000)
}

/// Milliseconds since the epoch of a well-formed protobuf timestamp:
/// between 0001-01-01 and 9999-12-31, `nanos` within 0..1e9.
pub fn checked_timestamp_millis(timestamp: &prost_types::Timestamp) -> Result<i64, &'static str> {
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        return Err("nanos must be within 0..999,999,999");
    }
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&timestamp.seconds) {
        return Err("must be between 0001-01-01 and 9999-12-31");
    }
    Ok(timestamp.seconds * 1000 + i64::from(timestamp.nanos) / 1_000_000)
}

pub fn std_duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trips_millis() {
        for millis in [1, 999, 1_000, 1_763_900_000_123] {
            assert_eq!(millis_from_timestamp(&timestamp_from_millis(millis)), millis);
        }
    }

    #[test]
    fn malformed_durations_and_timestamps_are_refused() {
        use prost_types::{Duration as ProtoDuration, Timestamp};
        let duration = |seconds, nanos| ProtoDuration { seconds, nanos };
        assert_eq!(checked_duration_millis(&duration(2, 500_000_000)), Ok(2_500));
        assert_eq!(checked_duration_millis(&duration(-2, -500_000_000)), Ok(-2_500));
        assert!(checked_duration_millis(&duration(0, 1_000_000_000)).is_err());
        assert!(checked_duration_millis(&duration(1, -1)).is_err());
        assert!(checked_duration_millis(&duration(-1, 1)).is_err());
        assert!(checked_duration_millis(&duration(i64::MAX, 0)).is_err());
        let timestamp = |seconds, nanos| Timestamp { seconds, nanos };
        assert_eq!(checked_timestamp_millis(&timestamp(1, 5_000_000)), Ok(1_005));
        assert!(checked_timestamp_millis(&timestamp(1, -1)).is_err());
        assert!(checked_timestamp_millis(&timestamp(MAX_TIMESTAMP_SECONDS + 1, 0)).is_err());
        assert!(checked_timestamp_millis(&timestamp(i64::MIN, 0)).is_err());
    }

    #[test]
    fn negative_durations_are_rejected() {
        let negative = prost_types::Duration { seconds: -1, nanos: 0 };
        assert_eq!(millis_from_duration(&negative), None);
        assert_eq!(millis_from_duration(&duration_from_millis(2_500)), Some(2_500));
    }
}
