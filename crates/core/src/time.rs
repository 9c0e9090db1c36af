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
    fn negative_durations_are_rejected() {
        let negative = prost_types::Duration { seconds: -1, nanos: 0 };
        assert_eq!(millis_from_duration(&negative), None);
        assert_eq!(millis_from_duration(&duration_from_millis(2_500)), Some(2_500));
    }
}
