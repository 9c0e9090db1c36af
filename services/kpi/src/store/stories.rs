//! Synthetic contact stories: consistent event sequences of one contact
//! (every event that carries an attribute carries the same value, a
//! transferred contact's later events name its new queue), shared by the
//! store contract, the domain property tests and the service tests.

use switchboard_core::event::{CONTACTS_TOPIC, ROUTING_TOPIC};
use switchboard_core::names::{contact_name, customer_name, queue_name};
use switchboard_core::time::{duration_from_millis, timestamp_from_millis};
use switchboard_core::{ContactId, CustomerId, QueueId, TenantId};
use switchboard_proto::common::v1::{Channel, Direction};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{self as ingestion, ContactEvent, contact_event};
use switchboard_proto::routing::v1::{self as routing, RoutingEvent, routing_event};

use crate::domain::{AbandonStage, INTERVAL_MS};

/// The queue a contact answered in `AnsweredAgainAfterTransfer` is
/// transferred to.
pub const TRANSFER_QUEUE: &str = "escalations";

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
    /// Routing ended it after `wait_ms` for `reason` (max wait or closed).
    /// With `customer_left_offset_ms`, ingestion also reports the customer
    /// leaving that long after routing's end (negative: the customer left
    /// first and routing had not seen it yet).
    EndedByRouting { wait_ms: i64, reason: routing::EndReason, customer_left_offset_ms: Option<i64> },
    /// Answered by alice after `wait_ms`, transferred a second later to
    /// [`TRANSFER_QUEUE`], answered there by bob `second_wait_ms` later and
    /// completed `handle_ms` after that: one answer for KPIs, the first.
    AnsweredAgainAfterTransfer { wait_ms: i64, second_wait_ms: i64, handle_ms: i64 },
}

/// One contact's life, from which its events are derived consistently
/// (every event that carries an attribute carries the same value, except
/// the queue, which follows transfers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactStory {
    pub tenant: TenantId,
    pub contact: ContactId,
    /// The queue the contact enters.
    pub queue: QueueId,
    /// The queue it overflows to on entering `queue` (closed queue with an
    /// overflow), before anything else happens to it.
    pub overflow_to: Option<QueueId>,
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

/// The names a story's routing events share.
struct Names {
    contact: String,
    customer: String,
    channel: i32,
    enqueue_time: Option<prost_types::Timestamp>,
}

impl Names {
    fn answered(&self, queue: &str, agent: &str, answer_ms: i64) -> routing_event::Kind {
        routing_event::Kind::Answered(routing::ContactAnswered {
            contact: self.contact.clone(),
            queue: queue.to_owned(),
            channel: self.channel,
            customer: self.customer.clone(),
            agent: agent.to_owned(),
            enqueue_time: self.enqueue_time,
            answer_time: Some(timestamp_from_millis(answer_ms)),
        })
    }

    fn callback_offered(&self, queue: &str, agent: &str, offer_ms: i64) -> routing_event::Kind {
        routing_event::Kind::Offered(routing::ContactOffered {
            contact: self.contact.clone(),
            queue: queue.to_owned(),
            channel: self.channel,
            customer: self.customer.clone(),
            agent: agent.to_owned(),
            offer_time: Some(timestamp_from_millis(offer_ms)),
            callback_number: "+15550100".to_owned(),
            ..routing::ContactOffered::default()
        })
    }

    /// The agent's disposition: `billing-refund` when the contact id's
    /// next-to-last character is odd (`1`, `3`…, `a`, `c`…), else
    /// `order-status`, so stories cover both topics.
    fn disposition(&self) -> &'static str {
        let topic = self.contact.chars().rev().nth(1).map_or(0, u32::from);
        if topic % 2 == 1 { "billing-refund" } else { "order-status" }
    }

    fn completed(&self, queue: &str, agent: &str, answer_ms: i64, end_ms: i64, resolved: bool) -> routing_event::Kind {
        routing_event::Kind::Completed(routing::ContactCompleted {
            contact: self.contact.clone(),
            queue: queue.to_owned(),
            channel: self.channel,
            customer: self.customer.clone(),
            agent: agent.to_owned(),
            disposition: self.disposition().to_owned(),
            resolved,
            answer_time: Some(timestamp_from_millis(answer_ms)),
            end_time: Some(timestamp_from_millis(end_ms)),
            wrap_up_time: None,
        })
    }

    fn abandoned(
        &self,
        queue: &str,
        stage: AbandonStage,
        at_ms: i64,
        reason: routing::EndReason,
    ) -> routing_event::Kind {
        routing_event::Kind::Abandoned(routing::ContactAbandoned {
            contact: self.contact.clone(),
            queue: queue.to_owned(),
            channel: self.channel,
            customer: self.customer.clone(),
            stage: match stage {
                AbandonStage::Queue => routing::AbandonStage::Queue as i32,
                AbandonStage::Offered => routing::AbandonStage::Offered as i32,
            },
            enqueue_time: self.enqueue_time,
            abandon_time: Some(timestamp_from_millis(at_ms)),
            reason: reason as i32,
        })
    }

    fn transferred(&self, from: &str, to: &str, agent: &str, reason: routing::TransferReason) -> routing_event::Kind {
        routing_event::Kind::Transferred(routing::ContactTransferred {
            contact: self.contact.clone(),
            from_queue: from.to_owned(),
            to_queue: to.to_owned(),
            from_agent: agent.to_owned(),
            reason: reason as i32,
        })
    }
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
            traceparent: String::new(),
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

    fn survey_answered(&self, answer_ms: i64, score: i32) -> (&'static str, EventEnvelope) {
        let answered = ingestion::SurveyAnswered {
            contact: contact_name(&self.tenant, &self.contact),
            score,
            answer_time: Some(timestamp_from_millis(answer_ms)),
        };
        let payload = Payload::Contact(ContactEvent { kind: Some(contact_event::Kind::SurveyAnswered(answered)) });
        (CONTACTS_TOPIC, self.envelope("surveyed", answer_ms, payload))
    }

    /// The events of this contact with their topics, in the order the
    /// platform publishes them.
    pub fn events(&self) -> Vec<(&'static str, EventEnvelope)> {
        let contact = contact_name(&self.tenant, &self.contact);
        let entered_queue = queue_name(&self.tenant, &self.queue);
        // Customers come back: contacts whose ids end alike are one
        // customer's (for first-contact resolution).
        let customer_suffix = self.contact.as_str().chars().last().unwrap_or('0');
        let customer = CustomerId::parse(&format!("{}{customer_suffix}", CustomerId::PREFIX), "customer")
            .map(|customer| customer_name(&self.tenant, &customer))
            .unwrap_or_default();
        let channel = self.channel as i32;
        let created = ingestion::ContactCreated {
            contact: Some(ingestion::Contact {
                name: contact.clone(),
                channel,
                direction: self.direction as i32,
                queue: entered_queue.clone(),
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
        let names = Names { contact, customer, channel, enqueue_time: Some(timestamp_from_millis(enqueue_ms)) };
        let queued = routing::ContactQueued {
            contact: names.contact.clone(),
            queue: entered_queue.clone(),
            channel,
            customer: names.customer.clone(),
            enqueue_time: names.enqueue_time,
            short_abandon_threshold: self.short_abandon_threshold_ms.map(duration_from_millis),
            service_level_threshold: self.service_level_threshold_ms.map(duration_from_millis),
        };
        events.push(self.routing("queued", enqueue_ms, routing_event::Kind::Queued(queued)));
        let queue = match &self.overflow_to {
            Some(target) => {
                let target = queue_name(&self.tenant, target);
                let overflow = names.transferred(&entered_queue, &target, "", routing::TransferReason::Closed);
                events.push(self.routing("overflowed", enqueue_ms, overflow));
                target
            }
            None => entered_queue,
        };
        let alice = "agents/alice";
        match self.outcome {
            StoryOutcome::Waiting => {}
            StoryOutcome::Answered { wait_ms, completion } => {
                let answer_ms = enqueue_ms + wait_ms;
                // One in four is a queued callback: offered to call back.
                if wait_ms % 4 == 0 {
                    events.push(self.routing("offered", answer_ms, names.callback_offered(&queue, alice, answer_ms)));
                }
                events.push(self.routing("answered", answer_ms, names.answered(&queue, alice, answer_ms)));
                if let Some((handle_ms, resolved)) = completion {
                    let end_ms = answer_ms + handle_ms;
                    let completed = names.completed(&queue, alice, answer_ms, end_ms, resolved);
                    events.push(self.routing("completed", end_ms, completed));
                    // Two customers in three answer the survey a minute later,
                    // with a score the handle time picks.
                    if handle_ms % 3 != 0 {
                        let score = i32::try_from(1 + handle_ms / 1_000 % 5).unwrap_or(3);
                        events.push(self.survey_answered(end_ms + 60_000, score));
                    }
                }
            }
            StoryOutcome::Abandoned { wait_ms, stage, routing_lag_ms } => {
                let left_ms = enqueue_ms + wait_ms;
                events.push(self.customer_left(left_ms));
                let routing_ms = left_ms + routing_lag_ms;
                let abandoned = names.abandoned(&queue, stage, routing_ms, routing::EndReason::Unspecified);
                events.push(self.routing("abandoned", routing_ms, abandoned));
            }
            StoryOutcome::AnsweredWhileLeaving { wait_ms } => {
                let answer_ms = enqueue_ms + wait_ms;
                events.push(self.routing("answered", answer_ms, names.answered(&queue, alice, answer_ms)));
                events.push(self.customer_left(answer_ms));
            }
            StoryOutcome::EndedByRouting { wait_ms, reason, customer_left_offset_ms } => {
                let ended_ms = enqueue_ms + wait_ms;
                let ended = names.abandoned(&queue, AbandonStage::Queue, ended_ms, reason);
                events.push(self.routing("ended", ended_ms, ended));
                if let Some(offset_ms) = customer_left_offset_ms {
                    events.push(self.customer_left(ended_ms + offset_ms));
                }
            }
            StoryOutcome::AnsweredAgainAfterTransfer { wait_ms, second_wait_ms, handle_ms } => {
                let (bob, escalations) = ("agents/bob", format!("tenants/{}/queues/{TRANSFER_QUEUE}", self.tenant));
                let first_answer_ms = enqueue_ms + wait_ms;
                let transfer_ms = first_answer_ms + 1_000;
                let second_answer_ms = transfer_ms + second_wait_ms;
                let end_ms = second_answer_ms + handle_ms;
                events.extend([
                    self.routing("answered", first_answer_ms, names.answered(&queue, alice, first_answer_ms)),
                    self.routing(
                        "transferred",
                        transfer_ms,
                        names.transferred(&queue, &escalations, alice, routing::TransferReason::Requested),
                    ),
                    self.routing(
                        "answered-again",
                        second_answer_ms,
                        names.answered(&escalations, bob, second_answer_ms),
                    ),
                    self.routing(
                        "completed",
                        end_ms,
                        names.completed(&escalations, bob, second_answer_ms, end_ms, true),
                    ),
                ]);
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
        let queue_index = random.below(3) as usize;
        let overflow_index = random.percent(15).then(|| (queue_index + 1 + random.below(2) as usize) % 3);
        let (Ok(contact), Ok(queue), Ok(overflow_to)) = (
            ContactId::parse(&format!("ct_{seed:x}n{number:05}"), "contact"),
            QueueId::parse(queues[queue_index], "queue"),
            overflow_index.map(|index| QueueId::parse(queues[index], "queue")).transpose(),
        ) else {
            continue;
        };
        let wait_ms = random.millis_below(40_000);
        let stage = if random.percent(30) { AbandonStage::Offered } else { AbandonStage::Queue };
        let outcome = match random.below(13) {
            0 | 1 => StoryOutcome::Waiting,
            2 | 3 => StoryOutcome::Answered { wait_ms, completion: None },
            4..=6 => {
                StoryOutcome::Answered { wait_ms, completion: Some((random.millis_below(600_000), random.percent(70))) }
            }
            7 | 8 => StoryOutcome::Abandoned { wait_ms, stage, routing_lag_ms: random.millis_below(50) },
            9 => StoryOutcome::AnsweredWhileLeaving { wait_ms },
            10 | 11 => StoryOutcome::EndedByRouting {
                wait_ms,
                reason: if random.percent(50) { routing::EndReason::MaxWait } else { routing::EndReason::Closed },
                customer_left_offset_ms: random.percent(40).then(|| random.millis_below(6_000) - 3_000),
            },
            _ => StoryOutcome::AnsweredAgainAfterTransfer {
                wait_ms,
                second_wait_ms: random.millis_below(40_000),
                handle_ms: random.millis_below(600_000),
            },
        };
        stories.push(ContactStory {
            tenant: tenant.clone(),
            contact,
            queue,
            overflow_to,
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
