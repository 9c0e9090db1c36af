//! The facts the KPI service keeps per contact, and the one merge that
//! folds an event's [`FactsUpdate`] into them.
//!
//! The merge is associative and idempotent, and commutative over the events
//! of one contact (which agree on every attribute, see [`merge`]). Applying
//! the updates of a contact's events in any order, any number of times,
//! yields the same facts, which is what makes every KPI reproducible from
//! the event log and immune to duplicate or replayed deliveries.

use switchboard_core::{ContactId, CustomerId, QueueId, TenantId};
use switchboard_proto::common::v1::Channel;

/// Service-level target T when the queue did not say (PRODUCT.md: 20 s).
pub const DEFAULT_SERVICE_LEVEL_THRESHOLD_MS: i64 = 20_000;
/// Short-abandon threshold when the queue did not say (PRODUCT.md: 5 s).
pub const DEFAULT_SHORT_ABANDON_THRESHOLD_MS: i64 = 5_000;

/// Where the customer was when they left before being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AbandonStage {
    /// Waiting in a queue.
    Queue,
    /// While an agent was being offered the contact (ringing).
    Offered,
}

impl AbandonStage {
    /// The stable name stored in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            AbandonStage::Queue => "queue",
            AbandonStage::Offered => "offered",
        }
    }

    pub fn parse(value: &str) -> Option<AbandonStage> {
        match value {
            "queue" => Some(AbandonStage::Queue),
            "offered" => Some(AbandonStage::Offered),
            _ => None,
        }
    }
}

/// What one event says about one contact. Every field is optional: an
/// event sets only what it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactsUpdate {
    pub queue: Option<QueueId>,
    pub channel: Option<Channel>,
    pub customer: Option<CustomerId>,
    /// `Some(true)` for inbound contacts, `Some(false)` for outbound; only
    /// the contact's creation knows its direction.
    pub inbound: Option<bool>,
    pub created_ms: Option<i64>,
    pub queued_ms: Option<i64>,
    pub answered_ms: Option<i64>,
    pub abandoned_ms: Option<i64>,
    pub abandon_stage: Option<AbandonStage>,
    pub completed_ms: Option<i64>,
    pub resolved: Option<bool>,
    pub service_level_threshold_ms: Option<i64>,
    pub short_abandon_threshold_ms: Option<i64>,
}

/// Everything the KPI service knows about one contact: the row behind
/// every KPI. Timestamps are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactFacts {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub queue: Option<QueueId>,
    pub channel: Option<Channel>,
    pub customer: Option<CustomerId>,
    pub inbound: Option<bool>,
    pub created_ms: Option<i64>,
    pub queued_ms: Option<i64>,
    pub answered_ms: Option<i64>,
    pub abandoned_ms: Option<i64>,
    pub abandon_stage: Option<AbandonStage>,
    pub completed_ms: Option<i64>,
    pub resolved: Option<bool>,
    /// `None`: [`DEFAULT_SERVICE_LEVEL_THRESHOLD_MS`].
    pub service_level_threshold_ms: Option<i64>,
    /// `None`: [`DEFAULT_SHORT_ABANDON_THRESHOLD_MS`].
    pub short_abandon_threshold_ms: Option<i64>,
}

impl ContactFacts {
    /// Facts of a contact no event has been seen for yet.
    pub fn empty(tenant: TenantId, contact: ContactId) -> ContactFacts {
        ContactFacts {
            tenant,
            contact,
            queue: None,
            channel: None,
            customer: None,
            inbound: None,
            created_ms: None,
            queued_ms: None,
            answered_ms: None,
            abandoned_ms: None,
            abandon_stage: None,
            completed_ms: None,
            resolved: None,
            service_level_threshold_ms: None,
            short_abandon_threshold_ms: None,
        }
    }

    /// When the contact arrived: its creation, else its first enqueue.
    /// Time ranges and 15-minute intervals select contacts by this instant.
    pub fn arrival_ms(&self) -> Option<i64> {
        self.created_ms.or(self.queued_ms)
    }

    pub fn service_level_threshold_ms(&self) -> i64 {
        self.service_level_threshold_ms.unwrap_or(DEFAULT_SERVICE_LEVEL_THRESHOLD_MS)
    }

    pub fn short_abandon_threshold_ms(&self) -> i64 {
        self.short_abandon_threshold_ms.unwrap_or(DEFAULT_SHORT_ABANDON_THRESHOLD_MS)
    }

    /// The facts as an update, so two sets of facts of one contact can be
    /// merged (used to prove the merge is a join).
    pub fn as_update(&self) -> FactsUpdate {
        FactsUpdate {
            queue: self.queue.clone(),
            channel: self.channel,
            customer: self.customer.clone(),
            inbound: self.inbound,
            created_ms: self.created_ms,
            queued_ms: self.queued_ms,
            answered_ms: self.answered_ms,
            abandoned_ms: self.abandoned_ms,
            abandon_stage: self.abandon_stage,
            completed_ms: self.completed_ms,
            resolved: self.resolved,
            service_level_threshold_ms: self.service_level_threshold_ms,
            short_abandon_threshold_ms: self.short_abandon_threshold_ms,
        }
    }
}

/// Keeps the value already known; takes the update's only when none is.
fn first_write_wins<T: Clone>(known: &mut Option<T>, update: &Option<T>) {
    if known.is_none() {
        known.clone_from(update);
    }
}

/// Keeps the earliest instant of the two.
fn earliest_wins(known: &mut Option<i64>, update: Option<i64>) {
    *known = match (*known, update) {
        (Some(known), Some(update)) => Some(known.min(update)),
        (known, update) => known.or(update),
    };
}

/// Folds `update` into `facts`. Every field is set once and then kept:
///
/// - instants (`*_ms`) keep the earliest value seen. Producers send the
///   same instant in every event that carries it (an answer carries its
///   enqueue time), so this is first-write-wins; where two sources may
///   disagree by a few milliseconds (the customer leaving is reported by
///   ingestion and by routing) the earliest is the true one, and taking it
///   keeps the result independent of how the two topics interleave;
/// - attributes (queue, channel, customer, direction, stage, resolved,
///   thresholds) are first-write-wins. They do not change during a
///   contact's life in API v1, so every event that carries one carries the
///   same value.
///
/// The PostgreSQL store implements the same rule with `LEAST` and
/// `COALESCE` in its upsert.
pub fn merge(facts: &mut ContactFacts, update: &FactsUpdate) {
    first_write_wins(&mut facts.queue, &update.queue);
    first_write_wins(&mut facts.channel, &update.channel);
    first_write_wins(&mut facts.customer, &update.customer);
    first_write_wins(&mut facts.inbound, &update.inbound);
    earliest_wins(&mut facts.created_ms, update.created_ms);
    earliest_wins(&mut facts.queued_ms, update.queued_ms);
    earliest_wins(&mut facts.answered_ms, update.answered_ms);
    earliest_wins(&mut facts.abandoned_ms, update.abandoned_ms);
    first_write_wins(&mut facts.abandon_stage, &update.abandon_stage);
    earliest_wins(&mut facts.completed_ms, update.completed_ms);
    first_write_wins(&mut facts.resolved, &update.resolved);
    first_write_wins(&mut facts.service_level_threshold_ms, &update.service_level_threshold_ms);
    first_write_wins(&mut facts.short_abandon_threshold_ms, &update.short_abandon_threshold_ms);
}

/// Which contacts of a tenant a KPI query covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactsFilter {
    /// Only contacts of this queue.
    pub queue: Option<QueueId>,
    /// Only contacts on this channel.
    pub channel: Option<Channel>,
    /// Only contacts that arrived at or after this instant.
    pub arrival_start_ms: Option<i64>,
    /// Only contacts that arrived before this instant.
    pub arrival_end_ms: Option<i64>,
}

impl FactsFilter {
    /// The filter's contract, which every store implements. A contact
    /// whose queue, channel or arrival is not known yet does not match a
    /// filter on that field.
    pub fn matches(&self, facts: &ContactFacts) -> bool {
        if self.queue.is_some() && facts.queue != self.queue {
            return false;
        }
        if self.channel.is_some() && facts.channel != self.channel {
            return false;
        }
        if self.arrival_start_ms.is_none() && self.arrival_end_ms.is_none() {
            return true;
        }
        let Some(arrival_ms) = facts.arrival_ms() else {
            return false;
        };
        let after_start = self.arrival_start_ms.is_none_or(|start_ms| arrival_ms >= start_ms);
        let before_end = self.arrival_end_ms.is_none_or(|end_ms| arrival_ms < end_ms);
        after_start && before_end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn contact_facts() -> ContactFacts {
        let tenant = TenantId::parse("acme", "tenant").expect("tenant");
        let contact = ContactId::parse("ct_0001", "contact").expect("contact");
        ContactFacts::empty(tenant, contact)
    }

    fn queue(name: &str) -> QueueId {
        QueueId::parse(name, "queue").expect("queue")
    }

    #[test]
    fn attributes_are_first_write_wins_and_instants_earliest_wins() {
        let mut facts = contact_facts();
        merge(
            &mut facts,
            &FactsUpdate { queue: Some(queue("sales")), queued_ms: Some(2_000), ..FactsUpdate::default() },
        );
        merge(
            &mut facts,
            &FactsUpdate {
                queue: Some(queue("support")),
                queued_ms: Some(1_000),
                answered_ms: Some(5_000),
                ..FactsUpdate::default()
            },
        );
        assert_eq!(facts.queue, Some(queue("sales")));
        assert_eq!(facts.queued_ms, Some(1_000));
        assert_eq!(facts.answered_ms, Some(5_000));
    }

    #[test]
    fn arrival_is_creation_else_enqueue() {
        let mut facts = contact_facts();
        assert_eq!(facts.arrival_ms(), None);
        facts.queued_ms = Some(2_000);
        assert_eq!(facts.arrival_ms(), Some(2_000));
        facts.created_ms = Some(1_500);
        assert_eq!(facts.arrival_ms(), Some(1_500));
    }

    #[test]
    fn filters_select_by_queue_channel_and_half_open_range() {
        let mut facts = contact_facts();
        facts.queue = Some(queue("sales"));
        facts.channel = Some(Channel::Voice);
        facts.created_ms = Some(1_000);
        assert!(FactsFilter::default().matches(&facts));
        assert!(FactsFilter { queue: Some(queue("sales")), ..FactsFilter::default() }.matches(&facts));
        assert!(!FactsFilter { queue: Some(queue("support")), ..FactsFilter::default() }.matches(&facts));
        assert!(!FactsFilter { channel: Some(Channel::Chat), ..FactsFilter::default() }.matches(&facts));
        let range = |start, end| FactsFilter { arrival_start_ms: start, arrival_end_ms: end, ..FactsFilter::default() };
        assert!(range(Some(1_000), Some(1_001)).matches(&facts));
        assert!(!range(Some(1_001), None).matches(&facts));
        assert!(!range(None, Some(1_000)).matches(&facts));
        let mut unknown_arrival = contact_facts();
        unknown_arrival.answered_ms = Some(3_000);
        assert!(FactsFilter::default().matches(&unknown_arrival));
        assert!(!range(Some(0), None).matches(&unknown_arrival));
    }

    fn arbitrary_instant() -> impl Strategy<Value = Option<i64>> {
        proptest::option::of(0_i64..10_000)
    }

    prop_compose! {
        fn arbitrary_update()(
            queue in proptest::option::of(prop_oneof![Just("sales"), Just("support")]),
            channel in proptest::option::of(prop_oneof![Just(Channel::Voice), Just(Channel::Chat)]),
            inbound in proptest::option::of(any::<bool>()),
            created_ms in arbitrary_instant(),
            queued_ms in arbitrary_instant(),
            answered_ms in arbitrary_instant(),
            abandoned_ms in arbitrary_instant(),
            abandon_stage in proptest::option::of(prop_oneof![Just(AbandonStage::Queue), Just(AbandonStage::Offered)]),
            completed_ms in arbitrary_instant(),
            resolved in proptest::option::of(any::<bool>()),
            service_level_threshold_ms in proptest::option::of(0_i64..30_000),
            short_abandon_threshold_ms in proptest::option::of(0_i64..10_000),
        ) -> FactsUpdate {
            FactsUpdate {
                queue: queue.map(|name| QueueId::parse(name, "queue")).transpose().unwrap_or_default(),
                channel,
                customer: None,
                inbound,
                created_ms,
                queued_ms,
                answered_ms,
                abandoned_ms,
                abandon_stage,
                completed_ms,
                resolved,
                service_level_threshold_ms,
                short_abandon_threshold_ms,
            }
        }
    }

    fn merged(updates: &[FactsUpdate]) -> ContactFacts {
        let mut facts = contact_facts();
        for update in updates {
            merge(&mut facts, update);
        }
        facts
    }

    proptest! {
        /// Idempotent: a replayed update changes nothing.
        #[test]
        fn merge_is_idempotent(updates in proptest::collection::vec(arbitrary_update(), 0..6)) {
            let once = merged(&updates);
            let mut twice = once.clone();
            for update in &updates {
                merge(&mut twice, update);
            }
            prop_assert_eq!(once, twice);
        }

        /// Associative: merging a contact's facts built from two halves of
        /// its events equals merging all its events one by one.
        #[test]
        fn merge_is_associative(
            first in proptest::collection::vec(arbitrary_update(), 0..4),
            second in proptest::collection::vec(arbitrary_update(), 0..4),
        ) {
            let mut combined = merged(&first);
            merge(&mut combined, &merged(&second).as_update());
            let all: Vec<FactsUpdate> = first.iter().chain(second.iter()).cloned().collect();
            prop_assert_eq!(combined, merged(&all));
        }
    }
}
