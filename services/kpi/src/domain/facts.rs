//! The facts the KPI service keeps per contact, and the one merge that
//! folds an event's [`FactsUpdate`] into them.
//!
//! The merge is associative and idempotent, and commutative over the events
//! of one contact (which agree on every attribute but the queue, and the
//! queue's rule is commutative on its own, see [`merge`]). Applying
//! the updates of a contact's events in any order, any number of times,
//! yields the same facts, which is what makes every KPI reproducible from
//! the event log and immune to duplicate or replayed deliveries.

use switchboard_core::{ContactId, CustomerId, QueueId, TenantId};
use switchboard_proto::common::v1::Channel;

use super::settings::FcrScope;

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

/// How a contact no agent answered ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnansweredEnd {
    /// The customer left at `at_ms`: an abandon.
    CustomerLeft { at_ms: i64 },
    /// Routing ended it (max wait with no overflow, or the queue closed):
    /// lost, but not a customer abandon.
    EndedByRouting,
}

/// A customer's answer to the post-contact survey: a score of 1 to 5,
/// given at `at_ms`. One counts per contact: the earliest (and at the same
/// instant the lower score), so concurrent answers settle the same way in
/// every store and in any delivery order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Survey {
    pub at_ms: i64,
    pub score: i32,
}

impl Survey {
    /// The scores a survey takes.
    pub const SCORES: std::ops::RangeInclusive<i32> = 1..=5;

    /// Scored 4 or 5: a satisfied customer (CSAT's numerator).
    pub fn satisfied(&self) -> bool {
        self.score >= 4
    }
}

/// What one event says about one contact. Every field is optional: an
/// event sets only what it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactsUpdate {
    pub queue: Option<QueueId>,
    /// True when `queue` is the queue the contact entered (reported by its
    /// creation or its enqueue); false when it is the queue the contact was
    /// in later (an answer, abandon or completion, possibly after a
    /// transfer).
    pub queue_entered: bool,
    pub channel: Option<Channel>,
    pub customer: Option<CustomerId>,
    /// `Some(true)` for inbound contacts, `Some(false)` for outbound; only
    /// the contact's creation knows its direction.
    pub inbound: Option<bool>,
    pub created_ms: Option<i64>,
    pub queued_ms: Option<i64>,
    pub answered_ms: Option<i64>,
    /// When the customer left.
    pub abandoned_ms: Option<i64>,
    pub abandon_stage: Option<AbandonStage>,
    /// When routing ended the contact unanswered (max wait with no
    /// overflow, or arrival while the queue was closed).
    pub routing_ended_ms: Option<i64>,
    pub completed_ms: Option<i64>,
    pub resolved: Option<bool>,
    pub service_level_threshold_ms: Option<i64>,
    pub short_abandon_threshold_ms: Option<i64>,
    /// The wrap-up its queue gave the agent after it (the completion
    /// says); part of its handle time.
    pub wrap_up_ms: Option<i64>,
    /// When the same customer next made contact, on any channel: the
    /// earliest creation of the customer's contacts created after this one
    /// (see [`super::fcr::link_customer_contacts`]).
    pub next_contact_ms: Option<i64>,
    /// The customer's answer to the post-contact survey.
    pub survey: Option<Survey>,
    /// When the same customer next made contact in the queue this one
    /// entered: as `next_contact_ms`, among the customer's contacts that
    /// entered the same queue.
    pub next_same_queue_contact_ms: Option<i64>,
    /// The disposition the agent completed it with (its topic).
    pub disposition: Option<String>,
    /// When the same customer next made contact that was completed with
    /// the same disposition: as `next_contact_ms`, among the customer's
    /// contacts of the same disposition.
    pub next_same_disposition_contact_ms: Option<i64>,
    /// Its tenant's first-contact window when it was created (`None`: the
    /// default, [`super::fcr::FCR_WINDOW_MS`]).
    pub fcr_window_ms: Option<i64>,
    /// Its tenant's first-contact scope when it was created (`None`: the
    /// default, any contact).
    pub fcr_scope: Option<FcrScope>,
    /// When it was first offered as a callback (the agent calls the
    /// customer back).
    pub callback_offered_ms: Option<i64>,
}

/// Everything the KPI service knows about one contact: the row behind
/// every KPI. Timestamps are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactFacts {
    pub tenant: TenantId,
    pub contact: ContactId,
    /// The queue the contact is attributed to: the one it first entered.
    /// Until its creation or enqueue is seen, a queue a later event
    /// reported stands in (see [`merge`]).
    pub queue: Option<QueueId>,
    /// True once `queue` is the queue the contact entered.
    pub queue_entered: bool,
    pub channel: Option<Channel>,
    pub customer: Option<CustomerId>,
    pub inbound: Option<bool>,
    pub created_ms: Option<i64>,
    pub queued_ms: Option<i64>,
    pub answered_ms: Option<i64>,
    /// When the customer left (the earliest report).
    pub abandoned_ms: Option<i64>,
    pub abandon_stage: Option<AbandonStage>,
    /// When routing ended the contact unanswered.
    pub routing_ended_ms: Option<i64>,
    pub completed_ms: Option<i64>,
    pub resolved: Option<bool>,
    /// `None`: [`DEFAULT_SERVICE_LEVEL_THRESHOLD_MS`].
    pub service_level_threshold_ms: Option<i64>,
    /// `None`: [`DEFAULT_SHORT_ABANDON_THRESHOLD_MS`].
    pub short_abandon_threshold_ms: Option<i64>,
    /// The wrap-up its queue gave the agent after it (the completion
    /// says); part of its handle time.
    pub wrap_up_ms: Option<i64>,
    /// When the same customer next made contact, on any channel: the
    /// earliest creation of the customer's contacts created after this one
    /// (see [`super::fcr::link_customer_contacts`]).
    pub next_contact_ms: Option<i64>,
    /// The customer's answer to the post-contact survey.
    pub survey: Option<Survey>,
    /// When the same customer next made contact in the queue this one
    /// entered: as `next_contact_ms`, among the customer's contacts that
    /// entered the same queue.
    pub next_same_queue_contact_ms: Option<i64>,
    /// The disposition the agent completed it with (its topic).
    pub disposition: Option<String>,
    /// When the same customer next made contact that was completed with
    /// the same disposition: as `next_contact_ms`, among the customer's
    /// contacts of the same disposition.
    pub next_same_disposition_contact_ms: Option<i64>,
    /// Its tenant's first-contact window when it was created (`None`: the
    /// default, [`super::fcr::FCR_WINDOW_MS`]).
    pub fcr_window_ms: Option<i64>,
    /// Its tenant's first-contact scope when it was created (`None`: the
    /// default, any contact).
    pub fcr_scope: Option<FcrScope>,
    /// When it was first offered as a callback (the agent calls the
    /// customer back).
    pub callback_offered_ms: Option<i64>,
}

impl ContactFacts {
    /// Facts of a contact no event has been seen for yet.
    pub fn empty(tenant: TenantId, contact: ContactId) -> ContactFacts {
        ContactFacts {
            tenant,
            contact,
            queue: None,
            queue_entered: false,
            channel: None,
            customer: None,
            inbound: None,
            created_ms: None,
            queued_ms: None,
            answered_ms: None,
            abandoned_ms: None,
            abandon_stage: None,
            routing_ended_ms: None,
            completed_ms: None,
            resolved: None,
            service_level_threshold_ms: None,
            short_abandon_threshold_ms: None,
            wrap_up_ms: None,
            next_contact_ms: None,
            survey: None,
            next_same_queue_contact_ms: None,
            disposition: None,
            next_same_disposition_contact_ms: None,
            fcr_window_ms: None,
            fcr_scope: None,
            callback_offered_ms: None,
        }
    }

    /// Whether no fact of the contact is known.
    pub fn is_blank(&self) -> bool {
        self.as_update() == FactsUpdate::default()
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

    /// How the contact ended if no agent answered it, as far as known.
    /// When both the customer leaving and routing ending the contact were
    /// reported, the earlier one is what happened (the later report is a
    /// race or a consequence: a caller hanging up after being told the
    /// queue is closed); at the same instant routing's end is taken, since
    /// routing recorded it as its own decision.
    pub fn unanswered_end(&self) -> Option<UnansweredEnd> {
        match (self.abandoned_ms, self.routing_ended_ms) {
            (Some(left_ms), Some(ended_ms)) if left_ms < ended_ms => {
                Some(UnansweredEnd::CustomerLeft { at_ms: left_ms })
            }
            (_, Some(_)) => Some(UnansweredEnd::EndedByRouting),
            (Some(left_ms), None) => Some(UnansweredEnd::CustomerLeft { at_ms: left_ms }),
            (None, None) => None,
        }
    }

    /// The facts as an update, so two sets of facts of one contact can be
    /// merged (used to prove the merge is a join).
    pub fn as_update(&self) -> FactsUpdate {
        FactsUpdate {
            queue: self.queue.clone(),
            queue_entered: self.queue_entered,
            channel: self.channel,
            customer: self.customer.clone(),
            inbound: self.inbound,
            created_ms: self.created_ms,
            queued_ms: self.queued_ms,
            answered_ms: self.answered_ms,
            abandoned_ms: self.abandoned_ms,
            abandon_stage: self.abandon_stage,
            routing_ended_ms: self.routing_ended_ms,
            completed_ms: self.completed_ms,
            resolved: self.resolved,
            service_level_threshold_ms: self.service_level_threshold_ms,
            short_abandon_threshold_ms: self.short_abandon_threshold_ms,
            wrap_up_ms: self.wrap_up_ms,
            next_contact_ms: self.next_contact_ms,
            survey: self.survey,
            next_same_queue_contact_ms: self.next_same_queue_contact_ms,
            disposition: self.disposition.clone(),
            next_same_disposition_contact_ms: self.next_same_disposition_contact_ms,
            fcr_window_ms: self.fcr_window_ms,
            fcr_scope: self.fcr_scope,
            callback_offered_ms: self.callback_offered_ms,
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

/// Keeps the queue the contact entered. An entry report (`entered`) beats
/// a later one; between two reports of the same kind the smaller name wins.
/// Entry reports of one contact all name the same queue, so that is "the"
/// queue; later reports may name several (the contact was transferred), and
/// the smaller name only keeps their stand-in independent of delivery order
/// until the entry report arrives. This is the minimum of `(later, name)`
/// over all reports, hence order-insensitive and idempotent.
fn entry_queue_wins(facts: &mut ContactFacts, update: &FactsUpdate) {
    let Some(reported) = &update.queue else {
        return;
    };
    let replace = match &facts.queue {
        None => true,
        Some(known) => (!update.queue_entered, reported) < (!facts.queue_entered, known),
    };
    if replace {
        facts.queue = Some(reported.clone());
        facts.queue_entered = update.queue_entered;
    }
}

/// Folds `update` into `facts`. Every field is set once and then kept:
///
/// - the queue is the one the contact entered (`entry_queue_wins`):
///   KPIs attribute a contact to the queue it first entered, whatever
///   transfers or overflows followed;
/// - instants (`*_ms`) keep the earliest value seen. Producers send the
///   same instant in every event that carries it (an answer carries its
///   enqueue time), so this is first-write-wins; where two sources may
///   disagree by a few milliseconds (the customer leaving is reported by
///   ingestion and by routing) the earliest is the true one, and taking it
///   keeps the result independent of how the two topics interleave;
/// - the other attributes (channel, customer, direction, stage, resolved,
///   thresholds) are first-write-wins. They do not change during a
///   contact's life in API v1, so every event that carries one carries the
///   same value (thresholds come only with the enqueue, so they are the
///   first queue's, and routing reports at most one end per contact, so
///   one stage).
///
/// The PostgreSQL store implements the same rule with `LEAST`, `COALESCE`
/// and a `CASE` for the queue in its upsert.
pub fn merge(facts: &mut ContactFacts, update: &FactsUpdate) {
    entry_queue_wins(facts, update);
    first_write_wins(&mut facts.channel, &update.channel);
    first_write_wins(&mut facts.customer, &update.customer);
    first_write_wins(&mut facts.inbound, &update.inbound);
    earliest_wins(&mut facts.created_ms, update.created_ms);
    earliest_wins(&mut facts.queued_ms, update.queued_ms);
    earliest_wins(&mut facts.answered_ms, update.answered_ms);
    earliest_wins(&mut facts.abandoned_ms, update.abandoned_ms);
    first_write_wins(&mut facts.abandon_stage, &update.abandon_stage);
    earliest_wins(&mut facts.routing_ended_ms, update.routing_ended_ms);
    earliest_wins(&mut facts.completed_ms, update.completed_ms);
    first_write_wins(&mut facts.resolved, &update.resolved);
    first_write_wins(&mut facts.service_level_threshold_ms, &update.service_level_threshold_ms);
    first_write_wins(&mut facts.short_abandon_threshold_ms, &update.short_abandon_threshold_ms);
    first_write_wins(&mut facts.wrap_up_ms, &update.wrap_up_ms);
    earliest_wins(&mut facts.next_contact_ms, update.next_contact_ms);
    earliest_wins(&mut facts.next_same_queue_contact_ms, update.next_same_queue_contact_ms);
    first_write_wins(&mut facts.disposition, &update.disposition);
    earliest_wins(&mut facts.next_same_disposition_contact_ms, update.next_same_disposition_contact_ms);
    first_write_wins(&mut facts.fcr_window_ms, &update.fcr_window_ms);
    first_write_wins(&mut facts.fcr_scope, &update.fcr_scope);
    earliest_wins(&mut facts.callback_offered_ms, update.callback_offered_ms);
    facts.survey = match (facts.survey, update.survey) {
        (Some(known), Some(update)) => Some(known.min(update)),
        (known, update) => known.or(update),
    };
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
    fn a_queue_reported_after_a_transfer_never_moves_the_contact() {
        let entered = FactsUpdate { queue: Some(queue("support")), queue_entered: true, ..FactsUpdate::default() };
        let answered_after_transfer =
            FactsUpdate { queue: Some(queue("billing")), answered_ms: Some(30_000), ..FactsUpdate::default() };
        let answered_first =
            FactsUpdate { queue: Some(queue("support")), answered_ms: Some(9_000), ..FactsUpdate::default() };
        for order in [
            [entered.clone(), answered_first.clone(), answered_after_transfer.clone()],
            [answered_after_transfer.clone(), answered_first.clone(), entered.clone()],
            [answered_after_transfer.clone(), entered.clone(), answered_first.clone()],
        ] {
            let mut facts = contact_facts();
            for update in &order {
                merge(&mut facts, update);
            }
            assert_eq!((facts.queue, facts.queue_entered), (Some(queue("support")), true));
            assert_eq!(facts.answered_ms, Some(9_000), "the first answer counts");
        }
        let mut stand_in = contact_facts();
        merge(&mut stand_in, &answered_after_transfer);
        assert_eq!((stand_in.queue, stand_in.queue_entered), (Some(queue("billing")), false));
    }

    #[test]
    fn the_earlier_of_leaving_and_routing_ending_is_how_the_contact_ended() {
        let mut facts = contact_facts();
        assert_eq!(facts.unanswered_end(), None);
        facts.abandoned_ms = Some(5_000);
        assert_eq!(facts.unanswered_end(), Some(UnansweredEnd::CustomerLeft { at_ms: 5_000 }));
        facts.routing_ended_ms = Some(6_000);
        assert_eq!(facts.unanswered_end(), Some(UnansweredEnd::CustomerLeft { at_ms: 5_000 }), "left first");
        facts.routing_ended_ms = Some(5_000);
        assert_eq!(facts.unanswered_end(), Some(UnansweredEnd::EndedByRouting), "a tie is routing's end");
        facts.abandoned_ms = None;
        assert_eq!(facts.unanswered_end(), Some(UnansweredEnd::EndedByRouting));
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
            queue in proptest::option::of(prop_oneof![Just("sales"), Just("support"), Just("billing")]),
            queue_entered in any::<bool>(),
            channel in proptest::option::of(prop_oneof![Just(Channel::Voice), Just(Channel::Chat)]),
            inbound in proptest::option::of(any::<bool>()),
            created_ms in arbitrary_instant(),
            queued_ms in arbitrary_instant(),
            answered_ms in arbitrary_instant(),
            abandoned_ms in arbitrary_instant(),
            abandon_stage in proptest::option::of(prop_oneof![Just(AbandonStage::Queue), Just(AbandonStage::Offered)]),
            routing_ended_ms in arbitrary_instant(),
            completed_ms in arbitrary_instant(),
            resolved in proptest::option::of(any::<bool>()),
            service_level_threshold_ms in proptest::option::of(0_i64..30_000),
            short_abandon_threshold_ms in proptest::option::of(0_i64..10_000),
            wrap_up_ms in proptest::option::of(0_i64..120_000),
            next_contact_ms in arbitrary_instant(),
            survey in proptest::option::of((0_i64..10_000, 1_i32..=5)),
            callback_offered_ms in arbitrary_instant(),
            next_same_queue_contact_ms in arbitrary_instant(),
            next_same_disposition_contact_ms in arbitrary_instant(),
        ) -> FactsUpdate {
            FactsUpdate {
                queue: queue.map(|name| QueueId::parse(name, "queue")).transpose().unwrap_or_default(),
                queue_entered,
                channel,
                customer: None,
                inbound,
                created_ms,
                queued_ms,
                answered_ms,
                abandoned_ms,
                abandon_stage,
                routing_ended_ms,
                completed_ms,
                resolved,
                service_level_threshold_ms,
                short_abandon_threshold_ms,
                wrap_up_ms,
                next_contact_ms,
                survey: survey.map(|(at_ms, score)| Survey { at_ms, score }),
                next_same_queue_contact_ms,
                disposition: None,
                next_same_disposition_contact_ms,
                fcr_window_ms: None,
                fcr_scope: None,
                callback_offered_ms,
            }
        }
    }

    /// Updates of one contact's events: they may name different queues
    /// (transfers) and report instants independently, but agree on every
    /// other attribute, as the producers guarantee.
    fn one_contacts_updates() -> impl Strategy<Value = Vec<FactsUpdate>> {
        (arbitrary_update(), proptest::collection::vec(arbitrary_update(), 0..6)).prop_map(|(shared, updates)| {
            updates
                .into_iter()
                .map(|update| FactsUpdate {
                    queue: update.queue,
                    queue_entered: update.queue_entered,
                    created_ms: update.created_ms,
                    queued_ms: update.queued_ms,
                    answered_ms: update.answered_ms,
                    abandoned_ms: update.abandoned_ms,
                    routing_ended_ms: update.routing_ended_ms,
                    completed_ms: update.completed_ms,
                    ..shared.clone()
                })
                .collect()
        })
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

        /// Commutative over one contact's events: any delivery order gives
        /// the same facts, including the entry queue after transfers.
        #[test]
        fn merge_is_commutative_over_one_contacts_events(
            (updates, delivered) in one_contacts_updates()
                .prop_flat_map(|updates| (Just(updates.clone()), Just(updates).prop_shuffle())),
        ) {
            prop_assert_eq!(merged(&updates), merged(&delivered));
        }

        /// An entry report of the queue always beats a later report, and the
        /// invariant `queue_entered ⇒ queue known` holds.
        #[test]
        fn the_entered_queue_wins_over_later_reports(updates in proptest::collection::vec(arbitrary_update(), 0..6)) {
            let facts = merged(&updates);
            prop_assert!(!facts.queue_entered || facts.queue.is_some());
            let entered = updates.iter().filter(|update| update.queue_entered).filter_map(|update| update.queue.clone()).min();
            if let Some(entered) = entered {
                prop_assert_eq!(facts.queue, Some(entered));
                prop_assert!(facts.queue_entered);
            }
        }
    }
}
