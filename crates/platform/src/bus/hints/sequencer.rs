//! The order a hinted subscription hands records over in: each partition's
//! records exactly once, in offset order, whichever way each came first
//! (a hint or the broker's fetch).
//!
//! A hint is handed over only when it is the next record of its partition:
//! the broker delivered (or a hint stood in for) every record before it.
//! Until the broker delivered one record of a partition its position is
//! unknown, so hints of that partition wait. A hint ahead of its turn (a
//! hint before it was lost or is late) waits for it, up to
//! [`MAX_EARLY_HINTS`] in all; the broker delivers whatever was dropped.

use std::collections::{BTreeMap, HashMap};

use crate::bus::RawRecord;

/// The most hints kept, over all partitions, until their turn comes.
pub(super) const MAX_EARLY_HINTS: usize = 1_024;

/// What became of the hints since the last [`Sequencer::take_tally`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct HintTally {
    /// Handed over before the broker delivered the record.
    pub used: u64,
    /// The record was handed over already.
    pub late: u64,
    /// No room to keep it until its turn.
    pub dropped: u64,
}

type Partition = (String, i32);

#[derive(Debug, Default)]
pub(super) struct Sequencer {
    /// Per partition, the offset of the next record to hand over.
    next: HashMap<Partition, i64>,
    /// Hints ahead of their turn, per partition by offset.
    early: HashMap<Partition, BTreeMap<i64, RawRecord>>,
    early_count: usize,
    tally: HintTally,
}

impl Sequencer {
    /// Forgets every position and waiting hint: the partitions held
    /// changed, so the broker may start a partition again at an older
    /// committed offset.
    pub(super) fn reset(&mut self) {
        self.tally.late += self.early_count as u64;
        self.next.clear();
        self.early.clear();
        self.early_count = 0;
    }

    /// A record the broker delivered: whether to hand it over (false: a
    /// hint stood in for it). Hints whose turn comes right after it are
    /// appended to `after`, in order.
    pub(super) fn on_broker_record(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        after: &mut Vec<RawRecord>,
    ) -> bool {
        let key = (topic.to_owned(), partition);
        if self.next.get(&key).is_some_and(|next| offset < *next) {
            return false;
        }
        self.next.insert(key.clone(), offset + 1);
        self.release(&key, after);
        true
    }

    /// A hint of a partition this member holds: appended to `ready` when
    /// its turn is now, with the waiting hints that follow it; kept when
    /// its turn is to come.
    pub(super) fn on_hint(&mut self, hint: RawRecord, ready: &mut Vec<RawRecord>) {
        let key = (hint.topic.clone(), hint.partition);
        match self.next.get(&key) {
            Some(next) if hint.offset < *next => self.tally.late += 1,
            Some(next) if hint.offset == *next => {
                self.next.insert(key.clone(), hint.offset + 1);
                self.tally.used += 1;
                ready.push(hint);
                self.release(&key, ready);
            }
            _ if self.early_count >= MAX_EARLY_HINTS => self.tally.dropped += 1,
            _ => {
                let waiting = self.early.entry(key).or_default();
                if waiting.insert(hint.offset, hint).is_some() {
                    self.tally.late += 1;
                } else {
                    self.early_count += 1;
                }
            }
        }
    }

    /// What became of the hints since the last call.
    pub(super) fn take_tally(&mut self) -> HintTally {
        std::mem::take(&mut self.tally)
    }

    /// Hands over the waiting hints of `key` whose turn came, and forgets
    /// those already passed.
    fn release(&mut self, key: &Partition, ready: &mut Vec<RawRecord>) {
        let Some(waiting) = self.early.get_mut(key) else { return };
        let Some(next) = self.next.get_mut(key) else { return };
        while let Some(entry) = waiting.first_entry() {
            let offset = *entry.key();
            if offset > *next {
                break;
            }
            let hint = entry.remove();
            self.early_count -= 1;
            if offset == *next {
                *next += 1;
                self.tally.used += 1;
                ready.push(hint);
            } else {
                self.tally.late += 1;
            }
        }
        if waiting.is_empty() {
            self.early.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn record(partition: i32, offset: i64) -> RawRecord {
        RawRecord {
            topic: "t".to_owned(),
            partition,
            offset,
            key: Vec::new(),
            payload: offset.to_be_bytes().to_vec(),
            traceparent: None,
        }
    }

    /// What a subscription sees: the broker's deliveries (every record of
    /// every partition, in order per partition) interleaved with hints.
    #[derive(Debug, Clone)]
    enum Arrival {
        Broker(i32, i64),
        Hint(i32, i64),
    }

    /// The records handed over, per partition, in order.
    fn run(arrivals: &[Arrival]) -> (HashMap<i32, Vec<i64>>, Sequencer) {
        let mut sequencer = Sequencer::default();
        let mut handed: HashMap<i32, Vec<i64>> = HashMap::new();
        for arrival in arrivals {
            let mut released = Vec::new();
            match arrival {
                Arrival::Broker(partition, offset) => {
                    if sequencer.on_broker_record("t", *partition, *offset, &mut released) {
                        handed.entry(*partition).or_default().push(*offset);
                    }
                }
                Arrival::Hint(partition, offset) => sequencer.on_hint(record(*partition, *offset), &mut released),
            }
            for hint in released {
                assert_eq!(hint.payload, hint.offset.to_be_bytes(), "a hint is handed over as it came");
                handed.entry(hint.partition).or_default().push(hint.offset);
            }
        }
        (handed, sequencer)
    }

    /// Partitions of up to 30 records each; the broker delivers every one
    /// in order; hints come for a random choice of them (some twice), in
    /// a random order; the two streams interleave at random.
    fn arrivals() -> impl Strategy<Value = (Vec<i64>, Vec<Arrival>)> {
        prop::collection::vec(1i64..30, 1..4)
            .prop_flat_map(|lengths| {
                let broker: Vec<Arrival> = lengths
                    .iter()
                    .enumerate()
                    .flat_map(|(partition, length)| {
                        (0..*length).map(move |offset| Arrival::Broker(partition as i32, offset))
                    })
                    .collect();
                let all: Vec<(i32, i64)> = lengths
                    .iter()
                    .enumerate()
                    .flat_map(|(partition, length)| (0..*length).map(move |offset| (partition as i32, offset)))
                    .collect();
                let hints = prop::sample::subsequence(all.clone(), 0..=all.len())
                    .prop_flat_map(|chosen| {
                        let doubled: Vec<(i32, i64)> = chosen.iter().chain(chosen.iter().take(3)).copied().collect();
                        Just(doubled).prop_shuffle()
                    })
                    .prop_map(|hints| {
                        hints
                            .into_iter()
                            .map(|(partition, offset)| Arrival::Hint(partition, offset))
                            .collect::<Vec<_>>()
                    });
                let broker_len = broker.len();
                (Just(lengths), Just(broker), hints, prop::collection::vec(any::<bool>(), broker_len * 3))
            })
            .prop_map(|(lengths, broker, hints, coin)| {
                let mut broker = broker.into_iter().peekable();
                let mut hints = hints.into_iter().peekable();
                let mut coin = coin.into_iter();
                let mut merged = Vec::new();
                loop {
                    let take_hint = match (broker.peek(), hints.peek()) {
                        (None, None) => break,
                        (None, Some(_)) => true,
                        (Some(_), None) => false,
                        (Some(_), Some(_)) => coin.next().unwrap_or(true),
                    };
                    let next = if take_hint { hints.next() } else { broker.next() };
                    merged.extend(next);
                }
                (lengths, merged)
            })
    }

    proptest! {
        #[test]
        fn every_record_is_handed_over_once_in_order((lengths, arrivals) in arrivals()) {
            let (handed, sequencer) = run(&arrivals);
            for (partition, length) in lengths.iter().enumerate() {
                let expected: Vec<i64> = (0..*length).collect();
                prop_assert_eq!(handed.get(&(partition as i32)).cloned().unwrap_or_default(), expected);
            }
            prop_assert_eq!(sequencer.early_count, 0, "nothing waits once the broker delivered everything");
        }
    }

    #[test]
    fn a_hint_waits_until_the_broker_gave_its_partition_a_position() {
        let (handed, mut sequencer) = run(&[Arrival::Hint(0, 5), Arrival::Hint(0, 6)]);
        assert!(handed.is_empty(), "the position of a partition is unknown before the broker delivered from it");
        let mut after = Vec::new();
        assert!(sequencer.on_broker_record("t", 0, 4, &mut after));
        assert_eq!(after.iter().map(|hint| hint.offset).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(sequencer.take_tally(), HintTally { used: 2, late: 0, dropped: 0 });
        assert!(!sequencer.on_broker_record("t", 0, 5, &mut after), "a record a hint stood in for is skipped");
        assert!(sequencer.on_broker_record("t", 0, 7, &mut after));
    }

    #[test]
    fn hints_beyond_the_room_are_dropped_and_the_broker_delivers_them() {
        let mut sequencer = Sequencer::default();
        let mut ready = Vec::new();
        for offset in 1..=(MAX_EARLY_HINTS as i64 + 5) {
            sequencer.on_hint(record(0, offset), &mut ready);
        }
        assert!(ready.is_empty());
        assert_eq!(sequencer.take_tally().dropped, 5);
        let mut after = Vec::new();
        assert!(sequencer.on_broker_record("t", 0, 0, &mut after));
        assert_eq!(after.len(), MAX_EARLY_HINTS, "the kept ones follow in order");
        for offset in (MAX_EARLY_HINTS as i64 + 1)..=(MAX_EARLY_HINTS as i64 + 5) {
            assert!(
                sequencer.on_broker_record("t", 0, offset, &mut after),
                "a dropped hint's record comes from the broker"
            );
        }
    }

    #[test]
    fn a_reset_forgets_positions_so_a_partition_may_start_again_further_back() {
        let mut sequencer = Sequencer::default();
        let mut after = Vec::new();
        assert!(sequencer.on_broker_record("t", 0, 10, &mut after));
        sequencer.reset();
        assert!(
            sequencer.on_broker_record("t", 0, 8, &mut after),
            "redelivered from the committed offset after a rebalance"
        );
        let mut ready = Vec::new();
        sequencer.on_hint(record(0, 9), &mut ready);
        assert_eq!(ready.len(), 1);
    }
}
