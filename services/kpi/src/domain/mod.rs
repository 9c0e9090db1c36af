//! # KPI definitions
//!
//! These definitions are the platform's contract (PRODUCT.md); the code in
//! this module is their only implementation, and every number the KPI API
//! returns is computed by it.
//!
//! ## Facts
//!
//! Per contact the service keeps one row of facts ([`ContactFacts`]):
//! queue, channel, customer, direction, and the instants it was created,
//! queued, answered, left by the customer (with the stage: in queue or
//! while offered), ended by routing and completed (with whether it was
//! resolved), plus its queue's service-level threshold T (default 20 s) and
//! short-abandon threshold (default 5 s). Each event sets some of them
//! ([`facts_event`]); every field is set once and kept ([`merge`]), so the
//! facts do not depend on the order events arrive in, and duplicate or
//! replayed events change nothing. A contact's **arrival** is its creation
//! instant, else its first enqueue.
//!
//! A contact belongs to the **queue it first entered** (named by its
//! creation and its enqueue), which is where it was offered. A transfer or
//! overflow to another queue keeps it there: events after the move name
//! the new queue, but never move the contact, and a contact answered,
//! transferred and answered again counts as answered once, at its first
//! answer (every instant keeps its earliest value).
//!
//! ## Per-contact terms
//!
//! - *inbound*: created with direction INBOUND (or UNSPECIFIED).
//! - *offered*: entered a queue.
//! - *answered*: accepted by an agent. If the customer's leaving raced the
//!   answer and both were recorded, the contact counts as answered only:
//!   the customer was served.
//! - *wait*: from entering the queue (or, for a contact that never did,
//!   from its creation) to the answer or the abandon; never negative. An
//!   answered contact with neither instant known waited 0.
//! - *abandoned*: the customer left before an agent answered, at any stage
//!   (self-service, queue, ringing). It is a **short abandon** when its wait
//!   is below the queue's short-abandon threshold (default 5 s; with a
//!   threshold of 0 there are none). An abandon whose wait cannot be
//!   measured is not short. Short abandons are excluded from every abandon
//!   rate.
//! - *timed out*: not answered, and routing ended it (routing's
//!   ContactAbandoned with a reason: the queue's max wait passed with no
//!   overflow, or it arrived while the queue was closed). The customer did
//!   not choose to leave, so it is never an abandon nor a short abandon, but
//!   it was lost. If the customer's leaving was reported at an earlier
//!   instant than routing's end, the customer left first: an abandon. An
//!   overflow to another queue is not an end; the contact waits on.
//! - *lost*: offered, never answered, and abandoned after the short-abandon
//!   threshold or timed out: "abandoned in queue, timed out, overflowed to
//!   nowhere".
//! - *waiting*: offered, not answered, not abandoned, not completed.
//! - *completed*: finished by its agent; *resolved*: completed with the
//!   issue solved.
//!
//! ## KPIs of a set of contacts
//!
//! Counts (inbound, offered, answered, abandoned = non-short abandons,
//! short_abandoned, timed_out, lost, waiting, completed, resolved) are the
//! numbers of contacts with each property. Rates are 0 when their
//! denominator is 0.
//!
//! - **CAR** (Call Abandon Rate) = inbound contacts ended unhandled (abandoned
//!   after the short-abandon threshold, at any stage, or timed out) ÷
//!   (inbound − inbound short abandons).
//! - **LCR** (Lost Call Rate) = lost ÷ (offered − offered short abandons).
//! - **ASA** (Average Speed of Answer) = Σ wait of answered contacts ÷
//!   answered, in exact integer arithmetic (milliseconds summed, the mean
//!   rounded down to the nanosecond).
//! - **Service level** = answered within T (wait ≤ the contact's queue
//!   threshold) ÷ (answered + abandoned + timed out) for the default
//!   variant ABANDONS_PENALISE (also what UNSPECIFIED means): a contact
//!   routing ended was not answered within T, like a late abandon; or ÷
//!   answered for ANSWERED_ONLY.
//!
//! A range query selects the contacts whose arrival lies in
//! `[start_time, end_time)` (unbounded sides select everything, including
//! contacts whose arrival is not known yet), optionally of one queue and/or
//! one channel. **Intervals** are 15-minute buckets aligned to the Unix
//! epoch by arrival, each summarised exactly like a range; empty buckets
//! are omitted and contacts without a known arrival belong to none. All
//! counts are additive, so the intervals of a range add up to the range.
//!
//! ## Reproducibility
//!
//! The live aggregate is the merge of every delivered event into the
//! stores' facts; [`recompute`] is the same merge over an event log. Since
//! the merge is order-insensitive and idempotent, both give the same facts
//! and therefore the same KPIs, whatever the delivery order and however
//! many times an event is delivered.

pub mod agents;
pub mod buckets;
pub mod events;
pub mod facts;
pub mod fcr;
pub mod live;
pub mod messages;
pub mod settings;
pub mod summary;

pub use events::{FactsEvent, facts_event, recompute};
pub use facts::{
    AbandonStage, ContactFacts, DEFAULT_SERVICE_LEVEL_THRESHOLD_MS, DEFAULT_SHORT_ABANDON_THRESHOLD_MS, FactsFilter,
    FactsUpdate, Survey, UnansweredEnd, merge,
};
pub use summary::{
    INTERVAL_MS, KpiCounts, KpiInterval, KpiSummary, ServiceLevelVariant, interval_start_ms, intervals, summarize,
};

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use switchboard_core::{ContactId, QueueId, TenantId};
    use switchboard_proto::common::v1::{Channel, Direction};
    use switchboard_proto::events::v1::EventEnvelope;
    use switchboard_proto::routing::v1 as routing;

    use super::*;
    use crate::store::contract::{ContactStory, StoryOutcome};

    prop_compose! {
        fn arbitrary_outcome()(
            kind in 0_u8..7,
            wait_ms in 0_i64..40_000,
            second_wait_ms in 0_i64..40_000,
            handle_ms in 0_i64..600_000,
            resolved in any::<bool>(),
            offered_stage in any::<bool>(),
            ingestion_lag_ms in 0_i64..50,
            closed in any::<bool>(),
            customer_left_offset_ms in proptest::option::of(-3_000_i64..3_000),
        ) -> StoryOutcome {
            let stage = if offered_stage { AbandonStage::Offered } else { AbandonStage::Queue };
            let reason = if closed { routing::EndReason::Closed } else { routing::EndReason::MaxWait };
            match kind {
                0 => StoryOutcome::Waiting,
                1 => StoryOutcome::Answered { wait_ms, completion: None },
                2 => StoryOutcome::Answered { wait_ms, completion: Some((handle_ms, resolved)) },
                3 => StoryOutcome::Abandoned { wait_ms, stage, routing_lag_ms: ingestion_lag_ms },
                4 => StoryOutcome::EndedByRouting { wait_ms, reason, customer_left_offset_ms },
                5 => StoryOutcome::AnsweredAgainAfterTransfer { wait_ms, second_wait_ms, handle_ms },
                _ => StoryOutcome::AnsweredWhileLeaving { wait_ms },
            }
        }
    }

    prop_compose! {
        fn arbitrary_story(number: u32)(
            queue in prop_oneof![Just("sales"), Just("support")],
            overflow_to in proptest::option::weighted(0.2, prop_oneof![Just("billing"), Just("backoffice")]),
            channel in prop_oneof![Just(Channel::Voice), Just(Channel::Chat), Just(Channel::Email)],
            outbound in proptest::bool::weighted(0.15),
            created_ms in 0_i64..(4 * INTERVAL_MS),
            queue_delay_ms in proptest::option::weighted(0.9, 0_i64..3_000),
            outcome in arbitrary_outcome(),
            short_abandon_threshold_ms in proptest::option::of(0_i64..8_000),
            service_level_threshold_ms in proptest::option::of(5_000_i64..30_000),
        ) -> ContactStory {
            ContactStory {
                tenant: TenantId::parse("acme", "tenant").expect("tenant"),
                contact: ContactId::parse(&format!("ct_{number:04}"), "contact").expect("contact"),
                queue: QueueId::parse(queue, "queue").expect("queue"),
                overflow_to: overflow_to.map(|name| QueueId::parse(name, "queue").expect("queue")),
                channel,
                direction: if outbound { Direction::Outbound } else { Direction::Inbound },
                created_ms,
                queue_delay_ms,
                outcome,
                short_abandon_threshold_ms,
                service_level_threshold_ms,
            }
        }
    }

    /// Every event of 1-6 stories, then a permutation of them with some
    /// delivered twice.
    fn events_and_delivery() -> impl Strategy<Value = (Vec<EventEnvelope>, Vec<EventEnvelope>)> {
        (1_u32..7)
            .prop_flat_map(|count| (0..count).map(arbitrary_story).collect::<Vec<_>>())
            .prop_flat_map(|stories| {
                let events: Vec<EventEnvelope> =
                    stories.iter().flat_map(ContactStory::events).map(|(_, envelope)| envelope).collect();
                let event_count = events.len();
                (Just(events.clone()), Just(events).prop_shuffle(), proptest::collection::vec(0..event_count, 0..8))
            })
            .prop_map(|(events, mut delivery, duplicates)| {
                for index in duplicates {
                    let duplicate = delivery[index].clone();
                    delivery.insert(index, duplicate);
                }
                (events, delivery)
            })
    }

    proptest! {
        /// Any delivery order, with duplicates, yields the facts and the
        /// KPIs of the log in publish order.
        #[test]
        fn facts_and_kpis_do_not_depend_on_delivery((events, delivery) in events_and_delivery()) {
            let in_order = recompute(&events);
            let delivered = recompute(&delivery);
            prop_assert_eq!(&in_order, &delivered);
            for variant in [ServiceLevelVariant::AbandonsPenalise, ServiceLevelVariant::AnsweredOnly] {
                prop_assert_eq!(
                    summarize(in_order.values(), variant).to_proto(),
                    summarize(delivered.values(), variant).to_proto()
                );
                prop_assert_eq!(intervals(in_order.values(), variant), intervals(delivered.values(), variant));
            }
        }

        /// Counts are additive: the intervals of a range add up to it.
        #[test]
        fn intervals_add_up_to_the_range((events, _) in events_and_delivery()) {
            let facts = recompute(&events);
            let mut total = KpiCounts::default();
            for interval in intervals(facts.values(), ServiceLevelVariant::default()) {
                prop_assert_eq!(interval.start_ms, interval_start_ms(interval.start_ms));
                total.add(&interval.summary.counts);
            }
            let with_arrival = facts.values().filter(|facts| facts.arrival_ms().is_some());
            prop_assert_eq!(total, summarize(with_arrival, ServiceLevelVariant::default()).counts);
        }

        /// Rates stay in 0..=1 and counts are consistent with each other.
        #[test]
        fn rates_are_fractions((events, _) in events_and_delivery()) {
            let summary = summarize(recompute(&events).values(), ServiceLevelVariant::default());
            let counts = summary.counts;
            for rate in [summary.car(), summary.lcr(), summary.service_level()] {
                prop_assert!((0.0..=1.0).contains(&rate), "rate {rate} of {counts:?}");
            }
            prop_assert!(counts.lost <= counts.abandoned + counts.timed_out);
            prop_assert!(counts.answered + counts.lost + counts.waiting + counts.offered_short_abandoned <= counts.offered);
            prop_assert!(counts.resolved <= counts.completed);
            prop_assert!(counts.answered_within_threshold <= counts.answered);
        }

        /// Transfers and overflows never move a contact out of the queue it
        /// entered, a second answer never counts, and routing's ends are
        /// lost but never abandons, whatever the delivery order.
        #[test]
        fn contacts_stay_where_they_entered_and_routing_ends_are_not_abandons(
            story in arbitrary_story(0),
            seed in any::<u64>(),
        ) {
            let events: Vec<EventEnvelope> = story.events().into_iter().map(|(_, envelope)| envelope).collect();
            let delivered = crate::store::contract::shuffled_with_duplicates(&events, seed);
            let all = recompute(&delivered);
            let facts = all.values().next().expect("one contact");
            prop_assert_eq!(facts.queue.as_ref(), Some(&story.queue));
            prop_assert!(facts.queue_entered);
            let enqueue_ms = story.created_ms + story.queue_delay_ms.unwrap_or(0);
            let counts = summarize(all.values(), ServiceLevelVariant::default()).counts;
            match story.outcome {
                StoryOutcome::AnsweredAgainAfterTransfer { wait_ms, .. } => {
                    prop_assert_eq!(facts.answered_ms, Some(enqueue_ms + wait_ms));
                    prop_assert_eq!((counts.answered, counts.completed, counts.total_answer_wait_ms), (1, 1, wait_ms));
                }
                StoryOutcome::EndedByRouting { wait_ms, customer_left_offset_ms, .. } => {
                    let customer_left_first = customer_left_offset_ms.is_some_and(|offset_ms| offset_ms < 0);
                    prop_assert_eq!(counts.timed_out, i64::from(!customer_left_first));
                    prop_assert_eq!(counts.abandoned + counts.short_abandoned, i64::from(customer_left_first));
                    prop_assert_eq!((counts.lost + counts.short_abandoned, counts.waiting), (1, 0));
                    prop_assert_eq!(facts.routing_ended_ms, Some(enqueue_ms + wait_ms));
                }
                _ => prop_assert_eq!(counts.timed_out, 0),
            }
        }
    }
}
