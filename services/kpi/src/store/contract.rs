//! The contract every [`KpiStore`] passes, run by the unit tests against
//! the in-memory store and by `tests/postgres_store.rs` against a real
//! PostgreSQL; plus synthetic contact stories (consistent event sequences
//! of one contact) that the contract, the domain property tests and the
//! service tests share. Each check returns an error naming what broke.

use switchboard_core::event::{CONTACTS_TOPIC, ROUTING_TOPIC};
use switchboard_core::names::{contact_name, customer_name, queue_name};
use switchboard_core::time::{duration_from_millis, timestamp_from_millis};
use switchboard_core::{ContactId, CustomerId, Error, QueueId, TenantId};
use switchboard_proto::common::v1::{Channel, Direction};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{self as ingestion, ContactEvent, contact_event};
use switchboard_proto::routing::v1::{self as routing, RoutingEvent, routing_event};

use super::{KpiStore, apply_event};
use crate::domain::{
    AbandonStage, ContactFacts, FactsFilter, FactsUpdate, INTERVAL_MS, ServiceLevelVariant, intervals, recompute,
    summarize,
};

/// How a synthetic contact ends (or does not yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoryOutcome {
    /// Still in queue.
    Waiting,
    /// Answered after `wait_ms` in queue; then maybe completed after
    /// `(handle_ms, resolved)`.
    Answered { wait_ms: i64, completion: Option<(i64, bool)> },
    /// The customer left after `wait_ms`. Ingestion reports the instant;
    /// routing (for a queued contact) reports it `routing_lag_ms` later.
    Abandoned { wait_ms: i64, stage: AbandonStage, routing_lag_ms: i64 },
    /// Answered after `wait_ms` while the customer hung up: both recorded.
    AnsweredWhileLeaving { wait_ms: i64 },
}

/// One contact's life, from which its events are derived consistently
/// (every event that carries an attribute carries the same value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactStory {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub queue: QueueId,
    pub channel: Channel,
    pub direction: Direction,
    pub created_ms: i64,
    /// From creation to enqueue. `None`: never queued, which only an
    /// abandon can follow; other outcomes then enqueue at creation.
    pub queue_delay_ms: Option<i64>,
    pub outcome: StoryOutcome,
    pub short_abandon_threshold_ms: Option<i64>,
    pub service_level_threshold_ms: Option<i64>,
}

impl ContactStory {
    fn enqueue_ms(&self) -> Option<i64> {
        match (&self.outcome, self.queue_delay_ms) {
            (_, Some(delay_ms)) => Some(self.created_ms + delay_ms),
            (StoryOutcome::Abandoned { .. }, None) => None,
            (_, None) => Some(self.created_ms),
        }
    }

    fn envelope(&self, label: &str, occurred_ms: i64, payload: Payload) -> EventEnvelope {
        EventEnvelope {
            event_id: format!("{}-{label}", self.contact),
            tenant: self.tenant.as_str().to_owned(),
            occurred_at: Some(timestamp_from_millis(occurred_ms)),
            subject: self.contact.as_str().to_owned(),
            payload: Some(payload),
        }
    }

    fn routing(&self, label: &str, occurred_ms: i64, kind: routing_event::Kind) -> (&'static str, EventEnvelope) {
        let payload = Payload::Routing(RoutingEvent { kind: Some(kind) });
        (ROUTING_TOPIC, self.envelope(label, occurred_ms, payload))
    }

    fn customer_left(&self, left_ms: i64) -> (&'static str, EventEnvelope) {
        let abandoned = ingestion::ContactAbandoned {
            contact: contact_name(&self.tenant, &self.contact),
            reason: "caller hung up".to_owned(),
            abandon_time: Some(timestamp_from_millis(left_ms)),
        };
        let payload = Payload::Contact(ContactEvent { kind: Some(contact_event::Kind::Abandoned(abandoned)) });
        (CONTACTS_TOPIC, self.envelope("left", left_ms, payload))
    }

    /// The events of this contact with their topics, in the order the
    /// platform publishes them.
    pub fn events(&self) -> Vec<(&'static str, EventEnvelope)> {
        let contact = contact_name(&self.tenant, &self.contact);
        let queue = queue_name(&self.tenant, &self.queue);
        let customer_suffix = self.contact.as_str().trim_start_matches(ContactId::PREFIX);
        let customer = CustomerId::parse(&format!("{}{customer_suffix}", CustomerId::PREFIX), "customer")
            .map(|customer| customer_name(&self.tenant, &customer))
            .unwrap_or_default();
        let channel = self.channel as i32;
        let created = ingestion::ContactCreated {
            contact: Some(ingestion::Contact {
                name: contact.clone(),
                channel,
                direction: self.direction as i32,
                queue: queue.clone(),
                customer: customer.clone(),
                create_time: Some(timestamp_from_millis(self.created_ms)),
                ..ingestion::Contact::default()
            }),
        };
        let created_payload = Payload::Contact(ContactEvent { kind: Some(contact_event::Kind::Created(created)) });
        let mut events = vec![(CONTACTS_TOPIC, self.envelope("created", self.created_ms, created_payload))];
        let Some(enqueue_ms) = self.enqueue_ms() else {
            if let StoryOutcome::Abandoned { wait_ms, .. } = self.outcome {
                events.push(self.customer_left(self.created_ms + wait_ms));
            }
            return events;
        };
        let enqueue_time = Some(timestamp_from_millis(enqueue_ms));
        let queued = routing::ContactQueued {
            contact: contact.clone(),
            queue: queue.clone(),
            channel,
            customer: customer.clone(),
            enqueue_time,
            short_abandon_threshold: self.short_abandon_threshold_ms.map(duration_from_millis),
            service_level_threshold: self.service_level_threshold_ms.map(duration_from_millis),
        };
        events.push(self.routing("queued", enqueue_ms, routing_event::Kind::Queued(queued)));
        let answered = |answer_ms: i64| routing::ContactAnswered {
            contact: contact.clone(),
            queue: queue.clone(),
            channel,
            customer: customer.clone(),
            agent: "agents/alice".to_owned(),
            enqueue_time,
            answer_time: Some(timestamp_from_millis(answer_ms)),
        };
        match self.outcome {
            StoryOutcome::Waiting => {}
            StoryOutcome::Answered { wait_ms, completion } => {
                let answer_ms = enqueue_ms + wait_ms;
                events.push(self.routing("answered", answer_ms, routing_event::Kind::Answered(answered(answer_ms))));
                if let Some((handle_ms, resolved)) = completion {
                    let completed = routing::ContactCompleted {
                        contact: contact.clone(),
                        queue: queue.clone(),
                        channel,
                        customer: customer.clone(),
                        agent: "agents/alice".to_owned(),
                        disposition: "order-status".to_owned(),
                        resolved,
                        answer_time: Some(timestamp_from_millis(answer_ms)),
                        end_time: Some(timestamp_from_millis(answer_ms + handle_ms)),
                        wrap_up_time: None,
                    };
                    let kind = routing_event::Kind::Completed(completed);
                    events.push(self.routing("completed", answer_ms + handle_ms, kind));
                }
            }
            StoryOutcome::Abandoned { wait_ms, stage, routing_lag_ms } => {
                let left_ms = enqueue_ms + wait_ms;
                events.push(self.customer_left(left_ms));
                let abandoned = routing::ContactAbandoned {
                    contact: contact.clone(),
                    queue: queue.clone(),
                    channel,
                    customer: customer.clone(),
                    stage: match stage {
                        AbandonStage::Queue => routing::AbandonStage::Queue as i32,
                        AbandonStage::Offered => routing::AbandonStage::Offered as i32,
                    },
                    enqueue_time,
                    abandon_time: Some(timestamp_from_millis(left_ms + routing_lag_ms)),
                };
                let kind = routing_event::Kind::Abandoned(abandoned);
                events.push(self.routing("abandoned", left_ms + routing_lag_ms, kind));
            }
            StoryOutcome::AnsweredWhileLeaving { wait_ms } => {
                let answer_ms = enqueue_ms + wait_ms;
                events.push(self.routing("answered", answer_ms, routing_event::Kind::Answered(answered(answer_ms))));
                events.push(self.customer_left(answer_ms));
            }
        }
        events
    }
}

/// SplitMix64: a tiny deterministic generator, so a failing seed replays.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// Uniform enough in `0..bound` for test data (`bound` > 0).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn millis_below(&mut self, bound_ms: i64) -> i64 {
        i64::try_from(self.below(u64::try_from(bound_ms).unwrap_or(1))).unwrap_or(0)
    }

    fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// `count` random stories of `tenant`, reproducible from `seed`, arriving
/// over one hour (four intervals) on three queues and four channels.
pub fn random_stories(tenant: &TenantId, count: u32, seed: u64) -> Vec<ContactStory> {
    let mut random = SplitMix64(seed);
    let queues = ["sales", "support", "billing"];
    let channels = [Channel::Voice, Channel::Chat, Channel::Email, Channel::Sms];
    let hour_start_ms = 1_763_900_000_000 - 1_763_900_000_000 % INTERVAL_MS;
    let mut stories = Vec::new();
    for number in 0..count {
        let (Ok(contact), Ok(queue)) = (
            ContactId::parse(&format!("ct_{seed:x}n{number:05}"), "contact"),
            QueueId::parse(queues[random.below(3) as usize], "queue"),
        ) else {
            continue;
        };
        let wait_ms = random.millis_below(40_000);
        let stage = if random.percent(30) { AbandonStage::Offered } else { AbandonStage::Queue };
        let outcome = match random.below(10) {
            0 | 1 => StoryOutcome::Waiting,
            2 | 3 => StoryOutcome::Answered { wait_ms, completion: None },
            4..=6 => {
                StoryOutcome::Answered { wait_ms, completion: Some((random.millis_below(600_000), random.percent(70))) }
            }
            7 | 8 => StoryOutcome::Abandoned { wait_ms, stage, routing_lag_ms: random.millis_below(50) },
            _ => StoryOutcome::AnsweredWhileLeaving { wait_ms },
        };
        stories.push(ContactStory {
            tenant: tenant.clone(),
            contact,
            queue,
            channel: channels[random.below(4) as usize],
            direction: if random.percent(10) { Direction::Outbound } else { Direction::Inbound },
            created_ms: hour_start_ms + random.millis_below(4 * INTERVAL_MS),
            queue_delay_ms: random.percent(90).then(|| random.millis_below(2_000)),
            outcome,
            short_abandon_threshold_ms: random.percent(50).then(|| random.millis_below(8_000)),
            service_level_threshold_ms: random.percent(50).then(|| 5_000 + random.millis_below(25_000)),
        });
    }
    stories
}

/// `events` in a random delivery order (reproducible from `seed`) with
/// about a fifth of them delivered a second time, later.
pub fn shuffled_with_duplicates(events: &[EventEnvelope], seed: u64) -> Vec<EventEnvelope> {
    let mut random = SplitMix64(seed ^ 0x5EED);
    let mut delivery = events.to_vec();
    for index in (1..delivery.len()).rev() {
        delivery.swap(index, random.below(index as u64 + 1) as usize);
    }
    for (index, event) in events.iter().enumerate() {
        if random.percent(20) {
            let later = index + random.below((delivery.len() - index) as u64 + 1) as usize;
            delivery.insert(later.min(delivery.len()), event.clone());
        }
    }
    delivery
}

fn broken(what: &str) -> Error {
    Error::internal(format!("kpi store contract broken: {what}"))
}

fn expect_equal<T: PartialEq + std::fmt::Debug>(actual: &T, expected: &T, what: &str) -> Result<(), Error> {
    if actual == expected {
        return Ok(());
    }
    Err(broken(&format!("{what}\n  actual:   {actual:?}\n  expected: {expected:?}")))
}

/// Compares facts row by row and names only the first difference, so a
/// failure on hundreds of contacts stays readable.
fn expect_same_facts(actual: &[ContactFacts], expected: &[ContactFacts], what: &str) -> Result<(), Error> {
    for (actual_facts, expected_facts) in actual.iter().zip(expected) {
        expect_equal(actual_facts, expected_facts, &format!("{what}: first differing contact"))?;
    }
    let actual_ids: Vec<&str> = actual.iter().map(|facts| facts.contact.as_str()).collect();
    let expected_ids: Vec<&str> = expected.iter().map(|facts| facts.contact.as_str()).collect();
    expect_equal(&actual_ids, &expected_ids, &format!("{what}: contacts"))
}

fn tenant(name: &str) -> Result<TenantId, Error> {
    TenantId::parse(name, "tenant")
}

fn contact(id: &str) -> Result<ContactId, Error> {
    ContactId::parse(id, "contact")
}

fn queue(id: &str) -> Result<QueueId, Error> {
    QueueId::parse(id, "queue")
}

/// Attributes are first-write-wins, instants earliest-wins, and every
/// column survives a round trip.
pub async fn merges_like_the_domain(store: &dyn KpiStore) -> Result<(), Error> {
    let tenant = tenant("contract-merge")?;
    let contact = contact("ct_merge0001")?;
    let updates = [
        FactsUpdate {
            queue: Some(queue("sales")?),
            queued_ms: Some(2_000),
            short_abandon_threshold_ms: Some(0),
            ..FactsUpdate::default()
        },
        FactsUpdate {
            queue: Some(queue("support")?),
            channel: Some(Channel::Voice),
            inbound: Some(true),
            queued_ms: Some(1_000),
            answered_ms: Some(9_000),
            ..FactsUpdate::default()
        },
        FactsUpdate {
            customer: Some(CustomerId::parse("cu_merge0001", "customer")?),
            created_ms: Some(900),
            queued_ms: Some(3_000),
            answered_ms: Some(8_000),
            abandoned_ms: Some(8_500),
            abandon_stage: Some(AbandonStage::Offered),
            completed_ms: Some(60_000),
            resolved: Some(true),
            service_level_threshold_ms: Some(15_000),
            short_abandon_threshold_ms: Some(7_000),
            ..FactsUpdate::default()
        },
        FactsUpdate { inbound: Some(false), resolved: Some(false), ..FactsUpdate::default() },
    ];
    let mut expected = ContactFacts::empty(tenant.clone(), contact.clone());
    for update in &updates {
        store.apply(&tenant, &contact, update.clone()).await?;
        crate::domain::merge(&mut expected, update);
    }
    let loaded = store.load(&tenant, &FactsFilter::default()).await?;
    expect_equal(&loaded, &vec![expected.clone()], "facts after four merges")?;
    expect_equal(&expected.queue, &Some(queue("sales")?), "queue is first-write-wins")?;
    expect_equal(&expected.queued_ms, &Some(1_000), "enqueue instant is earliest-wins")?;
    expect_equal(&expected.inbound, &Some(true), "direction is first-write-wins")?;
    Ok(())
}

/// A tenant sees only its own contacts, even under the same contact id.
pub async fn isolates_tenants(store: &dyn KpiStore) -> Result<(), Error> {
    let acme = tenant("contract-acme")?;
    let globex = tenant("contract-globex")?;
    let shared_contact = contact("ct_shared0001")?;
    store.apply(&acme, &shared_contact, FactsUpdate { queued_ms: Some(1_000), ..FactsUpdate::default() }).await?;
    store.apply(&globex, &shared_contact, FactsUpdate { queued_ms: Some(2_000), ..FactsUpdate::default() }).await?;
    let acme_facts = store.load(&acme, &FactsFilter::default()).await?;
    let globex_facts = store.load(&globex, &FactsFilter::default()).await?;
    expect_equal(&acme_facts.len(), &1, "acme has one contact")?;
    expect_equal(&acme_facts[0].tenant, &acme, "acme's facts are acme's")?;
    expect_equal(&acme_facts[0].queued_ms, &Some(1_000), "acme's update stays acme's")?;
    expect_equal(&globex_facts.len(), &1, "globex has one contact")?;
    expect_equal(&globex_facts[0].queued_ms, &Some(2_000), "globex's update stays globex's")?;
    let unknown = store.load(&tenant("contract-initech")?, &FactsFilter::default()).await?;
    expect_equal(&unknown, &Vec::new(), "a tenant without events has no facts")
}

/// Queue, channel and half-open arrival ranges select like
/// [`FactsFilter::matches`]; arrival follows a late creation instant.
pub async fn filters_by_queue_channel_and_arrival(store: &dyn KpiStore) -> Result<(), Error> {
    let tenant = tenant("contract-filter")?;
    let rows = [
        ("ct_filter0001", Some("sales"), Some(Channel::Voice), Some(1_000), None),
        ("ct_filter0002", Some("support"), Some(Channel::Chat), Some(2_000), None),
        ("ct_filter0003", Some("sales"), Some(Channel::Chat), None, Some(3_000)),
        ("ct_filter0004", None, None, None, None),
    ];
    for (contact_id, queue_id, channel, created_ms, queued_ms) in rows {
        let update = FactsUpdate {
            queue: queue_id.map(queue).transpose()?,
            channel,
            created_ms,
            queued_ms,
            answered_ms: Some(10_000),
            ..FactsUpdate::default()
        };
        store.apply(&tenant, &contact(contact_id)?, update).await?;
    }
    let tenant = &tenant;
    let selected = |filter: FactsFilter| async move {
        let facts = store.load(tenant, &filter).await?;
        Ok::<Vec<String>, Error>(facts.iter().map(|facts| facts.contact.as_str().to_owned()).collect())
    };
    let ids = |numbers: &[u32]| numbers.iter().map(|number| format!("ct_filter{number:04}")).collect::<Vec<_>>();
    let range = |start, end| FactsFilter { arrival_start_ms: start, arrival_end_ms: end, ..FactsFilter::default() };
    expect_equal(&selected(FactsFilter::default()).await?, &ids(&[1, 2, 3, 4]), "no filter")?;
    let sales = FactsFilter { queue: Some(queue("sales")?), ..FactsFilter::default() };
    expect_equal(&selected(sales.clone()).await?, &ids(&[1, 3]), "queue sales")?;
    let chat = FactsFilter { channel: Some(Channel::Chat), ..FactsFilter::default() };
    expect_equal(&selected(chat).await?, &ids(&[2, 3]), "channel chat")?;
    let sales_chat = FactsFilter { channel: Some(Channel::Chat), ..sales };
    expect_equal(&selected(sales_chat).await?, &ids(&[3]), "queue sales on chat")?;
    expect_equal(&selected(range(Some(2_000), None)).await?, &ids(&[2, 3]), "from 2000")?;
    expect_equal(&selected(range(None, Some(2_000))).await?, &ids(&[1]), "before 2000")?;
    expect_equal(&selected(range(Some(1_000), Some(3_000))).await?, &ids(&[1, 2]), "[1000, 3000)")?;
    let created_earlier = FactsUpdate { created_ms: Some(500), ..FactsUpdate::default() };
    store.apply(tenant, &contact("ct_filter0003")?, created_earlier).await?;
    expect_equal(&selected(range(Some(1_000), None)).await?, &ids(&[1, 2]), "arrival moves to creation")?;
    expect_equal(&selected(range(None, Some(1_000))).await?, &ids(&[3]), "arrival is now 500")
}

/// Replaying every event, in another order, changes no facts.
pub async fn replays_change_nothing(store: &dyn KpiStore) -> Result<(), Error> {
    let tenant = tenant("contract-replay")?;
    let events: Vec<EventEnvelope> =
        random_stories(&tenant, 30, 7).iter().flat_map(ContactStory::events).map(|(_, envelope)| envelope).collect();
    for envelope in &events {
        apply_event(store, envelope).await?;
    }
    let first = store.load(&tenant, &FactsFilter::default()).await?;
    for envelope in events.iter().rev() {
        apply_event(store, envelope).await?;
    }
    let replayed = store.load(&tenant, &FactsFilter::default()).await?;
    expect_same_facts(&replayed, &first, "facts after a reversed replay")?;
    let recomputed: Vec<ContactFacts> = recompute(&events).into_values().collect();
    expect_same_facts(&first, &recomputed, "live facts vs batch recompute")
}

/// Every check above, each on its own tenants.
pub async fn run_all(store: &dyn KpiStore) -> Result<(), Error> {
    merges_like_the_domain(store).await?;
    isolates_tenants(store).await?;
    filters_by_queue_channel_and_arrival(store).await?;
    replays_change_nothing(store).await
}

/// The same random event sequence (shuffled, with duplicates) applied to
/// `reference` and `candidate` gives identical facts and identical KPIs,
/// under several filters, and both equal the batch recompute of the log in
/// publish order.
pub async fn differential(reference: &dyn KpiStore, candidate: &dyn KpiStore, seed: u64) -> Result<(), Error> {
    let tenant = tenant(&format!("differential-{seed}"))?;
    let events: Vec<EventEnvelope> =
        random_stories(&tenant, 60, seed).iter().flat_map(ContactStory::events).map(|(_, envelope)| envelope).collect();
    for envelope in shuffled_with_duplicates(&events, seed) {
        apply_event(reference, &envelope).await?;
        apply_event(candidate, &envelope).await?;
    }
    let recomputed: Vec<ContactFacts> = recompute(&events).into_values().collect();
    let first_arrival_ms = recomputed.iter().filter_map(ContactFacts::arrival_ms).min().unwrap_or(0);
    let filters = [
        FactsFilter::default(),
        FactsFilter { queue: Some(queue("sales")?), ..FactsFilter::default() },
        FactsFilter { channel: Some(Channel::Voice), ..FactsFilter::default() },
        FactsFilter {
            queue: Some(queue("support")?),
            arrival_start_ms: Some(first_arrival_ms + INTERVAL_MS),
            arrival_end_ms: Some(first_arrival_ms + 3 * INTERVAL_MS),
            ..FactsFilter::default()
        },
    ];
    for filter in &filters {
        let from_reference = reference.load(&tenant, filter).await?;
        let from_candidate = candidate.load(&tenant, filter).await?;
        let what = format!("seed {seed}, filter {filter:?}");
        expect_same_facts(&from_candidate, &from_reference, &format!("facts, {what}"))?;
        let expected: Vec<ContactFacts> = recomputed.iter().filter(|facts| filter.matches(facts)).cloned().collect();
        expect_same_facts(&from_reference, &expected, &format!("live facts vs batch recompute, {what}"))?;
        for variant in [ServiceLevelVariant::AbandonsPenalise, ServiceLevelVariant::AnsweredOnly] {
            expect_equal(
                &summarize(&from_candidate, variant).to_proto(),
                &summarize(&from_reference, variant).to_proto(),
                &format!("summary, {what}"),
            )?;
            expect_equal(
                &intervals(&from_candidate, variant),
                &intervals(&from_reference, variant),
                &format!("intervals, {what}"),
            )?;
        }
    }
    Ok(())
}
