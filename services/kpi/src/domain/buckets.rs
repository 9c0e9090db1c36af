//! Pre-aggregated counts: every contact's [`KpiCounts`] added into one
//! bucket per tenant, 15-minute arrival interval, queue and channel, so a
//! query costs what its buckets cost, not what its contacts cost.
//!
//! A bucket holds exactly the sum of the contributions of the contacts
//! whose current facts place them in it: each time a contact's facts
//! change, its old contribution is taken out of its old bucket and its new
//! one added to its new bucket ([`bucket_changes`]), in the same atomic
//! step as the facts. Since the facts do not depend on the order or number
//! of deliveries, neither do the buckets; a late or out-of-order event
//! lands in its contact's arrival interval, whenever it comes.
//!
//! A range with unaligned ends is the sum of the whole intervals inside it,
//! from the buckets, and of the contacts of its partial end intervals,
//! from their facts ([`split_range`]).

use std::collections::BTreeMap;

use switchboard_core::QueueId;
use switchboard_proto::common::v1::Channel;

use super::facts::{ContactFacts, FactsFilter};
use super::summary::{INTERVAL_MS, KpiCounts, interval_start_ms};

/// One bucket of a tenant: the contacts that arrived in one interval on one
/// queue and channel. A contact whose arrival, queue or channel is not known
/// yet is in a bucket with `None` there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketKey {
    /// The interval's start; `None`: arrival not known yet.
    pub interval_start_ms: Option<i64>,
    pub queue: Option<QueueId>,
    pub channel: Option<Channel>,
}

impl BucketKey {
    pub fn of(facts: &ContactFacts) -> BucketKey {
        BucketKey {
            interval_start_ms: facts.arrival_ms().map(interval_start_ms),
            queue: facts.queue.clone(),
            channel: facts.channel,
        }
    }
}

/// One contact's counts: what it adds to its bucket.
pub fn contribution(facts: &ContactFacts) -> KpiCounts {
    let mut counts = KpiCounts::default();
    counts.add_contact(facts);
    counts
}

/// What a contact's change from `before` (`None`: first seen) to `after`
/// does to the buckets: its old contribution out of its old bucket, its
/// new one into its new bucket; nothing for buckets left unchanged.
pub fn bucket_changes(before: Option<&ContactFacts>, after: &ContactFacts) -> Vec<(BucketKey, KpiCounts)> {
    let mut changes: BTreeMap<BucketKey, KpiCounts> = BTreeMap::new();
    if let Some(before) = before {
        changes.entry(BucketKey::of(before)).or_default().subtract(&contribution(before));
    }
    changes.entry(BucketKey::of(after)).or_default().add(&contribution(after));
    changes.into_iter().filter(|(_, delta)| *delta != KpiCounts::default()).collect()
}

/// Adds `changes` into `into`, key by key.
pub fn fold_changes(into: &mut BTreeMap<BucketKey, KpiCounts>, changes: Vec<(BucketKey, KpiCounts)>) {
    for (key, delta) in changes {
        into.entry(key).or_default().add(&delta);
    }
}

/// How a query's arrival range splits: whole intervals read from the
/// buckets, and partial end intervals read from the facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSplit {
    /// The aligned range whose buckets count whole: `[start, end)` over
    /// interval starts (`None`: unbounded on that side); `None` when no
    /// whole interval lies inside the range.
    pub whole: Option<(Option<i64>, Option<i64>)>,
    /// Whether contacts of unknown arrival count (only for a range without
    /// bounds, as [`FactsFilter::matches`] says).
    pub unknown_arrival: bool,
    /// The partial intervals' parts of the range, to summarise from facts.
    pub partial: Vec<(i64, i64)>,
}

/// Splits `filter`'s arrival range into whole intervals and partial ends.
pub fn split_range(filter: &FactsFilter) -> RangeSplit {
    let (start, end) = (filter.arrival_start_ms, filter.arrival_end_ms);
    let unknown_arrival = start.is_none() && end.is_none();
    // The first whole interval starts at or after `start`; the last whole
    // one ends at or before `end`.
    let whole_start = start.map(|start_ms| interval_start_ms(start_ms.saturating_add(INTERVAL_MS - 1)));
    let whole_end = end.map(interval_start_ms);
    let mut partial = Vec::new();
    if let (Some(whole_start), Some(whole_end)) = (whole_start, whole_end)
        && whole_start >= whole_end
    {
        // Within one interval (or across one boundary with no whole
        // interval between): all from facts.
        if let (Some(start_ms), Some(end_ms)) = (start, end) {
            partial.push((start_ms, end_ms));
        }
        return RangeSplit { whole: None, unknown_arrival, partial };
    }
    if let (Some(start_ms), Some(whole_start)) = (start, whole_start)
        && start_ms < whole_start
    {
        partial.push((start_ms, whole_start));
    }
    if let (Some(end_ms), Some(whole_end)) = (end, whole_end)
        && whole_end < end_ms
    {
        partial.push((whole_end, end_ms));
    }
    RangeSplit { whole: Some((whole_start, whole_end)), unknown_arrival, partial }
}

/// Whether a bucket is one `filter` counts whole, given `split`.
pub fn bucket_selected(key: &BucketKey, filter: &FactsFilter, split: &RangeSplit) -> bool {
    if filter.queue.is_some() && key.queue != filter.queue {
        return false;
    }
    if filter.channel.is_some() && key.channel != filter.channel {
        return false;
    }
    match key.interval_start_ms {
        None => split.unknown_arrival,
        Some(interval_ms) => split.whole.is_some_and(|(start, end)| {
            start.is_none_or(|start_ms| interval_ms >= start_ms) && end.is_none_or(|end_ms| interval_ms < end_ms)
        }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use switchboard_core::{ContactId, TenantId};

    use super::*;
    use crate::domain::{FactsUpdate, merge, summarize};

    fn facts(arrival_ms: i64, queue: &str, answered: Option<i64>) -> ContactFacts {
        let tenant = TenantId::parse("acme", "tenant").expect("tenant");
        let mut facts = ContactFacts::empty(tenant, ContactId::generate());
        let update = FactsUpdate {
            queue: Some(QueueId::parse(queue, "queue").expect("queue")),
            queue_entered: true,
            channel: Some(Channel::Chat),
            inbound: Some(true),
            created_ms: Some(arrival_ms),
            queued_ms: Some(arrival_ms),
            answered_ms: answered,
            ..FactsUpdate::default()
        };
        merge(&mut facts, &update);
        facts
    }

    /// The counts of `filter` from buckets (whole intervals) and facts
    /// (partial ones), as a store answers.
    fn by_buckets(contacts: &[ContactFacts], filter: &FactsFilter) -> KpiCounts {
        let mut buckets = BTreeMap::new();
        for contact in contacts {
            fold_changes(&mut buckets, bucket_changes(None, contact));
        }
        let split = split_range(filter);
        let mut counts = KpiCounts::default();
        for (key, bucket) in &buckets {
            if bucket_selected(key, filter, &split) {
                counts.add(bucket);
            }
        }
        for (start_ms, end_ms) in &split.partial {
            let edge =
                FactsFilter { arrival_start_ms: Some(*start_ms), arrival_end_ms: Some(*end_ms), ..filter.clone() };
            counts.add(&summarize(contacts.iter().filter(|contact| edge.matches(contact)), Default::default()).counts);
        }
        counts
    }

    proptest! {
        /// Buckets plus partial ends count exactly the contacts the filter
        /// matches, for any range, aligned or not.
        #[test]
        fn buckets_and_partial_ends_count_exactly_what_the_filter_selects(
            arrivals in proptest::collection::vec((0_i64..10 * INTERVAL_MS, any::<bool>(), any::<bool>()), 0..60),
            start in proptest::option::of(0_i64..10 * INTERVAL_MS),
            length in proptest::option::of(1_i64..6 * INTERVAL_MS),
            only_sales in any::<bool>(),
        ) {
            let contacts: Vec<ContactFacts> = arrivals
                .iter()
                .map(|(arrival_ms, sales, answered)| {
                    facts(*arrival_ms, if *sales { "sales" } else { "help" }, answered.then_some(arrival_ms + 1_000))
                })
                .collect();
            let filter = FactsFilter {
                queue: only_sales.then(|| QueueId::parse("sales", "queue").expect("queue")),
                channel: None,
                arrival_start_ms: start,
                arrival_end_ms: start.zip(length).map(|(start_ms, length_ms)| start_ms + length_ms),
            };
            let expected = summarize(contacts.iter().filter(|contact| filter.matches(contact)), Default::default());
            prop_assert_eq!(by_buckets(&contacts, &filter), expected.counts);
        }

        /// However a contact's facts grow, its buckets hold its current
        /// contribution only: the changes telescope.
        #[test]
        fn changes_telescope_to_the_current_contribution(
            arrival_ms in 0_i64..4 * INTERVAL_MS,
            answer_after in proptest::option::of(0_i64..60_000),
            abandon_after in proptest::option::of(0_i64..60_000),
        ) {
            let first = facts(arrival_ms, "sales", None);
            let mut buckets = BTreeMap::new();
            fold_changes(&mut buckets, bucket_changes(None, &first));
            let mut later = first.clone();
            let update = FactsUpdate {
                answered_ms: answer_after.map(|after| arrival_ms + after),
                abandoned_ms: abandon_after.map(|after| arrival_ms + after),
                ..FactsUpdate::default()
            };
            merge(&mut later, &update);
            fold_changes(&mut buckets, bucket_changes(Some(&first), &later));
            let nonzero: Vec<_> = buckets.into_iter().filter(|(_, counts)| *counts != KpiCounts::default()).collect();
            prop_assert_eq!(nonzero, vec![(BucketKey::of(&later), contribution(&later))]);
        }
    }

    #[test]
    fn a_range_splits_into_whole_intervals_and_partial_ends() {
        let filter =
            |start, end| FactsFilter { arrival_start_ms: start, arrival_end_ms: end, ..FactsFilter::default() };
        let aligned = split_range(&filter(Some(INTERVAL_MS), Some(3 * INTERVAL_MS)));
        assert_eq!(aligned.whole, Some((Some(INTERVAL_MS), Some(3 * INTERVAL_MS))));
        assert!(aligned.partial.is_empty() && !aligned.unknown_arrival);
        let ragged = split_range(&filter(Some(INTERVAL_MS + 5), Some(3 * INTERVAL_MS + 7)));
        assert_eq!(ragged.whole, Some((Some(2 * INTERVAL_MS), Some(3 * INTERVAL_MS))));
        assert_eq!(ragged.partial, vec![(INTERVAL_MS + 5, 2 * INTERVAL_MS), (3 * INTERVAL_MS, 3 * INTERVAL_MS + 7)]);
        let inside = split_range(&filter(Some(INTERVAL_MS + 5), Some(INTERVAL_MS + 9)));
        assert_eq!((inside.whole, inside.partial), (None, vec![(INTERVAL_MS + 5, INTERVAL_MS + 9)]));
        let open = split_range(&filter(None, None));
        assert_eq!((open.whole, open.unknown_arrival), (Some((None, None)), true));
    }
}
