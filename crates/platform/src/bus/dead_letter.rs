//! Reading and replaying dead letters: what the operator commands
//! `switchboard dead-letters list` and `switchboard dead-letters replay` do.
//! Dead letters are written by the service kit's consumers
//! ([`crate::service::consume`]); each is a [`DeadLetter`] on
//! `switchboard.deadletter.v1`.

use std::fmt;

use prost::Message;
use switchboard_core::Error;
use switchboard_core::event::DEAD_LETTER_TOPIC;
use switchboard_proto::events::v1::DeadLetter;

use super::{EventBus, RawRecord, Scan};

/// Where a dead letter sits on the dead-letter topic: `partition:offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadLetterId {
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for DeadLetterId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.partition, self.offset)
    }
}

impl std::str::FromStr for DeadLetterId {
    type Err = Error;

    fn from_str(value: &str) -> Result<DeadLetterId, Error> {
        let invalid = || Error::invalid_field("id", format!("`{value}` is not `partition:offset`"));
        let (partition, offset) = value.split_once(':').ok_or_else(invalid)?;
        Ok(DeadLetterId {
            partition: partition.parse().map_err(|_| invalid())?,
            offset: offset.parse().map_err(|_| invalid())?,
        })
    }
}

/// A dead letter with its place on the dead-letter topic.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterEntry {
    pub id: DeadLetterId,
    pub letter: DeadLetter,
}

/// Which dead letters to read.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// Only those a consumer of this name wrote.
    pub consumer: Option<String>,
    /// Only those of this tenant.
    pub tenant: Option<String>,
}

impl DeadLetterFilter {
    fn matches(&self, letter: &DeadLetter) -> bool {
        self.consumer.as_ref().is_none_or(|consumer| *consumer == letter.consumer)
            && self.tenant.as_ref().is_none_or(|tenant| *tenant == letter.tenant)
    }
}

/// Every dead letter on the topic that `filter` selects, oldest first per
/// partition. A record on the topic that is not a dead letter is skipped.
pub async fn list_dead_letters(bus: &dyn EventBus, filter: &DeadLetterFilter) -> Result<Vec<DeadLetterEntry>, Error> {
    let mut entries = Vec::new();
    bus.scan(DEAD_LETTER_TOPIC, &mut |record: RawRecord| {
        if let Ok(letter) = DeadLetter::decode(record.payload.as_slice())
            && filter.matches(&letter)
        {
            entries.push(DeadLetterEntry {
                id: DeadLetterId { partition: record.partition, offset: record.offset },
                letter,
            });
        }
        Scan::Continue
    })
    .await?;
    entries.sort_by_key(|entry| entry.id);
    Ok(entries)
}

/// Publishes each dead letter's original record again on its original topic
/// (same key, same value, same trace context), where every consumer of the
/// topic reads it once more; consumers are idempotent, so those that had
/// handled it change nothing. Returns how many were republished.
pub async fn replay_dead_letters(bus: &dyn EventBus, entries: &[DeadLetterEntry]) -> Result<usize, Error> {
    for entry in entries {
        let letter = &entry.letter;
        let original = RawRecord {
            topic: letter.topic.clone(),
            partition: letter.partition,
            offset: letter.offset,
            key: letter.key.clone(),
            payload: letter.value.clone(),
            traceparent: (!letter.traceparent.is_empty()).then(|| letter.traceparent.clone()),
        };
        bus.publish_raw(&original).await?;
        tracing::info!(
            dead_letter = %entry.id,
            topic = %letter.topic,
            consumer = %letter.consumer,
            tenant = %letter.tenant,
            "dead letter replayed"
        );
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id: DeadLetterId = "2:41".parse().expect("id");
        assert_eq!(id, DeadLetterId { partition: 2, offset: 41 });
        assert_eq!(id.to_string(), "2:41");
        for bad in ["", "2", "x:1", "1:y", "1:2:3"] {
            assert!(bad.parse::<DeadLetterId>().is_err(), "{bad}");
        }
    }
}
