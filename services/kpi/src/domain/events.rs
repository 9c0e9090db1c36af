//! What each event on the contacts and routing topics says about a
//! contact's facts, and the batch recompute of all facts from an event log.

use std::collections::BTreeMap;

use prost_types::{Duration, Timestamp};
use switchboard_core::event::envelope_tenant;
use switchboard_core::names::{parse_contact, parse_customer, parse_queue};
use switchboard_core::time::{millis_from_duration, millis_from_timestamp};
use switchboard_core::{ContactId, CustomerId, Error, QueueId, TenantId};
use switchboard_proto::common::v1::{Channel, Direction};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{self as ingestion, contact_event};
use switchboard_proto::routing::v1::{self as routing, routing_event};

use super::facts::{AbandonStage, ContactFacts, FactsUpdate, Survey, merge};
use super::fcr::link_customer_contacts;
use super::settings::FcrRule;

/// One event's contribution to one contact's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactsEvent {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub update: FactsUpdate,
}

/// The facts update an event carries:
///
/// - `contacts` ContactCreated: direction (INBOUND or UNSPECIFIED is
///   inbound), creation instant, channel, the queue it entered, customer;
/// - `contacts` ContactAbandoned: the instant the customer left (the stage
///   is routing's to tell);
/// - `contacts` CustomerResolved: the customer of a contact created
///   without one (CRM resolved it from the sender later);
/// - `routing` ContactQueued: enqueue instant, the queue it entered,
///   channel, customer and the queue's thresholds;
/// - `routing` ContactAnswered: answer instant and enqueue instant;
/// - `routing` ContactAbandoned: stage, enqueue instant, and the instant
///   the customer left (reason UNSPECIFIED) or routing ended the contact
///   (any other reason: max wait with no overflow, queue closed);
/// - `routing` ContactCompleted: completion instant, resolved,
///   disposition, answer instant.
///
/// Answers, abandons and completions also name the queue the contact is in
/// at that moment, which only stands in for the entered queue (see
/// [`super::merge`]). An instant missing from the payload is the envelope's
/// `occurred_at`. `Ok(None)` for events no KPI depends on (offers,
/// withdrawn offers, transfers: a contact stays attributed to the queue it
/// first entered, presence). An event that names a contact, queue or customer of another
/// tenant than its envelope, or names none, is INVALID_ARGUMENT: it can
/// never be applied, and applying it anywhere would break tenant isolation.
pub fn facts_event(envelope: &EventEnvelope) -> Result<Option<FactsEvent>, Error> {
    let Some(payload) = &envelope.payload else {
        return Ok(None);
    };
    let occurred_ms = envelope.occurred_at.as_ref().map(millis_from_timestamp);
    let reader = match payload {
        Payload::Contact(event) => match &event.kind {
            Some(contact_event::Kind::Created(created)) => EventReader::Created(created),
            Some(contact_event::Kind::Abandoned(abandoned)) => EventReader::CustomerLeft(abandoned),
            Some(contact_event::Kind::SurveyAnswered(answered)) => EventReader::SurveyAnswered(answered),
            Some(contact_event::Kind::CustomerResolved(resolved)) => EventReader::CustomerResolved(resolved),
            // Messages are metered apart (`super::messages`).
            Some(contact_event::Kind::MessageAdded(_) | contact_event::Kind::MessageStatusChanged(_)) | None => {
                return Ok(None);
            }
        },
        Payload::Routing(event) => match &event.kind {
            Some(routing_event::Kind::Queued(queued)) => EventReader::Queued(queued),
            Some(routing_event::Kind::Answered(answered)) => EventReader::Answered(answered),
            Some(routing_event::Kind::Abandoned(abandoned)) => EventReader::Abandoned(abandoned),
            Some(routing_event::Kind::Completed(completed)) => EventReader::Completed(completed),
            Some(routing_event::Kind::Offered(offered)) if !offered.callback_number.is_empty() => {
                EventReader::CallbackOffered(offered)
            }
            Some(
                routing_event::Kind::Offered(_)
                | routing_event::Kind::OfferWithdrawn(_)
                | routing_event::Kind::Transferred(_),
            )
            | None => return Ok(None),
        },
        Payload::Presence(_) => return Ok(None),
    };
    let Some(tenant) = envelope_tenant(envelope)? else {
        return Err(Error::missing_field("envelope.tenant"));
    };
    let facts_event = reader.read(tenant, occurred_ms)?;
    Ok(Some(facts_event))
}

/// The payloads KPIs read, borrowed from the envelope.
enum EventReader<'a> {
    Created(&'a ingestion::ContactCreated),
    CustomerLeft(&'a ingestion::ContactAbandoned),
    SurveyAnswered(&'a ingestion::SurveyAnswered),
    CustomerResolved(&'a ingestion::CustomerResolved),
    Queued(&'a routing::ContactQueued),
    CallbackOffered(&'a routing::ContactOffered),
    Answered(&'a routing::ContactAnswered),
    Abandoned(&'a routing::ContactAbandoned),
    Completed(&'a routing::ContactCompleted),
}

impl EventReader<'_> {
    fn read(&self, tenant: TenantId, occurred_ms: Option<i64>) -> Result<FactsEvent, Error> {
        let (contact, update) = match self {
            EventReader::Created(created) => {
                let Some(contact) = &created.contact else {
                    return Err(Error::missing_field("contact_created.contact"));
                };
                let contact_id = owned_contact(&contact.name, "contact_created.contact.name", &tenant)?;
                let direction = Direction::try_from(contact.direction).unwrap_or(Direction::Unspecified);
                let update = FactsUpdate {
                    queue: owned_queue(&contact.queue, "contact_created.contact.queue", &tenant)?,
                    queue_entered: true,
                    channel: known_channel(contact.channel),
                    customer: owned_customer(&contact.customer, "contact_created.contact.customer", &tenant)?,
                    inbound: Some(direction != Direction::Outbound),
                    created_ms: instant(contact.create_time.as_ref(), occurred_ms),
                    ..FactsUpdate::default()
                };
                (contact_id, update)
            }
            EventReader::CustomerLeft(abandoned) => {
                let contact_id = owned_contact(&abandoned.contact, "contact_abandoned.contact", &tenant)?;
                let update = FactsUpdate {
                    abandoned_ms: instant(abandoned.abandon_time.as_ref(), occurred_ms),
                    ..FactsUpdate::default()
                };
                (contact_id, update)
            }
            EventReader::SurveyAnswered(answered) => {
                let contact_id = owned_contact(&answered.contact, "survey_answered.contact", &tenant)?;
                if !Survey::SCORES.contains(&answered.score) {
                    return Err(Error::invalid_field("survey_answered.score", "must be 1 to 5"));
                }
                let at_ms = instant(answered.answer_time.as_ref(), occurred_ms)
                    .ok_or_else(|| Error::missing_field("survey_answered.answer_time"))?;
                let update =
                    FactsUpdate { survey: Some(Survey { at_ms, score: answered.score }), ..FactsUpdate::default() };
                (contact_id, update)
            }
            EventReader::CustomerResolved(resolved) => {
                let contact_id = owned_contact(&resolved.contact, "customer_resolved.contact", &tenant)?;
                let customer = owned_customer(&resolved.customer, "customer_resolved.customer", &tenant)?
                    .ok_or_else(|| Error::missing_field("customer_resolved.customer"))?;
                (contact_id, FactsUpdate { customer: Some(customer), ..FactsUpdate::default() })
            }
            EventReader::CallbackOffered(offered) => {
                let contact_id = owned_contact(&offered.contact, "offered.contact", &tenant)?;
                let update = FactsUpdate {
                    callback_offered_ms: instant(offered.offer_time.as_ref(), occurred_ms),
                    ..FactsUpdate::default()
                };
                (contact_id, update)
            }
            EventReader::Queued(queued) => {
                let contact_id = owned_contact(&queued.contact, "queued.contact", &tenant)?;
                let update = FactsUpdate {
                    queue: owned_queue(&queued.queue, "queued.queue", &tenant)?,
                    queue_entered: true,
                    channel: known_channel(queued.channel),
                    customer: owned_customer(&queued.customer, "queued.customer", &tenant)?,
                    queued_ms: instant(queued.enqueue_time.as_ref(), occurred_ms),
                    service_level_threshold_ms: threshold(queued.service_level_threshold.as_ref()),
                    short_abandon_threshold_ms: threshold(queued.short_abandon_threshold.as_ref()),
                    ..FactsUpdate::default()
                };
                (contact_id, update)
            }
            EventReader::Answered(answered) => {
                let contact_id = owned_contact(&answered.contact, "answered.contact", &tenant)?;
                let update = FactsUpdate {
                    queue: owned_queue(&answered.queue, "answered.queue", &tenant)?,
                    channel: known_channel(answered.channel),
                    customer: owned_customer(&answered.customer, "answered.customer", &tenant)?,
                    queued_ms: answered.enqueue_time.as_ref().map(millis_from_timestamp),
                    answered_ms: instant(answered.answer_time.as_ref(), occurred_ms),
                    ..FactsUpdate::default()
                };
                (contact_id, update)
            }
            EventReader::Abandoned(abandoned) => {
                let contact_id = owned_contact(&abandoned.contact, "abandoned.contact", &tenant)?;
                let stage = match routing::AbandonStage::try_from(abandoned.stage) {
                    Ok(routing::AbandonStage::Queue) => Some(AbandonStage::Queue),
                    Ok(routing::AbandonStage::Offered) => Some(AbandonStage::Offered),
                    Ok(routing::AbandonStage::Unspecified) | Err(_) => None,
                };
                // UNSPECIFIED is the customer leaving; every other reason,
                // including ones this build does not know, is routing's
                // decision.
                let ended_ms = instant(abandoned.abandon_time.as_ref(), occurred_ms);
                let ended_by_routing = abandoned.reason != routing::EndReason::Unspecified as i32;
                let update = FactsUpdate {
                    queue: owned_queue(&abandoned.queue, "abandoned.queue", &tenant)?,
                    channel: known_channel(abandoned.channel),
                    customer: owned_customer(&abandoned.customer, "abandoned.customer", &tenant)?,
                    queued_ms: abandoned.enqueue_time.as_ref().map(millis_from_timestamp),
                    abandoned_ms: if ended_by_routing { None } else { ended_ms },
                    routing_ended_ms: if ended_by_routing { ended_ms } else { None },
                    abandon_stage: stage,
                    ..FactsUpdate::default()
                };
                (contact_id, update)
            }
            EventReader::Completed(completed) => {
                let contact_id = owned_contact(&completed.contact, "completed.contact", &tenant)?;
                let update = FactsUpdate {
                    queue: owned_queue(&completed.queue, "completed.queue", &tenant)?,
                    channel: known_channel(completed.channel),
                    customer: owned_customer(&completed.customer, "completed.customer", &tenant)?,
                    answered_ms: completed.answer_time.as_ref().map(millis_from_timestamp),
                    completed_ms: instant(completed.end_time.as_ref(), occurred_ms),
                    resolved: Some(completed.resolved),
                    // Routing refuses unsafe text; an older producer's is
                    // made safe rather than refused, as it cannot be fixed.
                    disposition: Some(completed.disposition.as_str())
                        .filter(|disposition| !disposition.is_empty())
                        .map(switchboard_core::text::make_safe),
                    // No wrap-up said is none.
                    wrap_up_ms: Some(completed.wrap_up_time.as_ref().and_then(millis_from_duration).unwrap_or(0)),
                    ..FactsUpdate::default()
                };
                (contact_id, update)
            }
        };
        Ok(FactsEvent { tenant, contact, update })
    }
}

fn tenant_mismatch(field: &str, tenant: &TenantId) -> Error {
    Error::invalid_field(field, format!("must belong to the envelope's tenant `{tenant}`"))
}

fn owned_contact(name: &str, field: &str, tenant: &TenantId) -> Result<ContactId, Error> {
    let (owner, contact) = parse_contact(name, field)?;
    if &owner != tenant {
        return Err(tenant_mismatch(field, tenant));
    }
    Ok(contact)
}

/// An optional queue name: empty is unknown.
fn owned_queue(name: &str, field: &str, tenant: &TenantId) -> Result<Option<QueueId>, Error> {
    if name.is_empty() {
        return Ok(None);
    }
    let (owner, queue) = parse_queue(name, field)?;
    if &owner != tenant {
        return Err(tenant_mismatch(field, tenant));
    }
    Ok(Some(queue))
}

/// An optional customer name: empty is unknown.
fn owned_customer(name: &str, field: &str, tenant: &TenantId) -> Result<Option<CustomerId>, Error> {
    if name.is_empty() {
        return Ok(None);
    }
    let (owner, customer) = parse_customer(name, field)?;
    if &owner != tenant {
        return Err(tenant_mismatch(field, tenant));
    }
    Ok(Some(customer))
}

/// UNSPECIFIED (and values this build does not know) carry no channel.
fn known_channel(value: i32) -> Option<Channel> {
    Channel::try_from(value).ok().filter(|channel| *channel != Channel::Unspecified)
}

fn instant(timestamp: Option<&Timestamp>, fallback_ms: Option<i64>) -> Option<i64> {
    timestamp.map(millis_from_timestamp).or(fallback_ms)
}

/// A threshold present in the event; negative ones are ignored.
fn threshold(duration: Option<&Duration>) -> Option<i64> {
    duration.and_then(millis_from_duration)
}

/// Every contact's facts, recomputed in batch from an event log exactly as
/// the live consumer builds them for tenants that never changed their KPI
/// settings: each event's update merged into its contact's facts, events
/// no KPI reads ignored, invalid events skipped.
pub fn recompute<'a>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope>,
) -> BTreeMap<(TenantId, ContactId), ContactFacts> {
    recompute_with_rules(envelopes, &BTreeMap::new())
}

/// The first-contact rule of `tenant` (the default if `rules` has none),
/// stamped on `update` when it is the contact's creation: what the contact
/// keeps (see [`super::settings`]).
pub fn stamp_fcr_rule(update: &mut FactsUpdate, tenant: &TenantId, rules: &BTreeMap<TenantId, FcrRule>) {
    if update.created_ms.is_none() {
        return;
    }
    let rule = rules.get(tenant).copied().unwrap_or_default();
    update.fcr_window_ms = Some(rule.window_ms);
    update.fcr_scope = Some(rule.scope);
}

/// As [`recompute`], each contact taking its tenant's rule in `rules`.
pub fn recompute_with_rules<'a>(
    envelopes: impl IntoIterator<Item = &'a EventEnvelope>,
    rules: &BTreeMap<TenantId, FcrRule>,
) -> BTreeMap<(TenantId, ContactId), ContactFacts> {
    let mut facts_by_contact: BTreeMap<(TenantId, ContactId), ContactFacts> = BTreeMap::new();
    for envelope in envelopes {
        let Ok(Some(FactsEvent { tenant, contact, mut update })) = facts_event(envelope) else {
            continue;
        };
        stamp_fcr_rule(&mut update, &tenant, rules);
        let facts = facts_by_contact
            .entry((tenant.clone(), contact.clone()))
            .or_insert_with(|| ContactFacts::empty(tenant, contact));
        merge(facts, &update);
    }
    // Each customer's contacts, linked as the stores link them.
    let mut by_customer: BTreeMap<(TenantId, CustomerId), Vec<&mut ContactFacts>> = BTreeMap::new();
    for ((tenant, _), facts) in &mut facts_by_contact {
        if let Some(customer) = facts.customer.clone() {
            by_customer.entry((tenant.clone(), customer)).or_default().push(facts);
        }
    }
    for contacts in by_customer.values_mut() {
        link_customer_contacts(contacts);
    }
    facts_by_contact
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::time::{duration_from_millis, timestamp_from_millis};
    use switchboard_proto::ingestion::v1::ContactEvent;
    use switchboard_proto::routing::v1::RoutingEvent;

    const CONTACT: &str = "tenants/acme/contacts/ct_0001";

    fn routing_envelope(tenant: &str, kind: routing_event::Kind) -> EventEnvelope {
        EventEnvelope {
            event_id: "event-1".to_owned(),
            tenant: tenant.to_owned(),
            occurred_at: Some(timestamp_from_millis(9_000)),
            subject: "ct_0001".to_owned(),
            payload: Some(Payload::Routing(RoutingEvent { kind: Some(kind) })),
            traceparent: String::new(),
        }
    }

    fn read(envelope: &EventEnvelope) -> FactsEvent {
        match facts_event(envelope) {
            Ok(Some(event)) => event,
            other => panic!("expected a facts event, got {other:?}"),
        }
    }

    #[test]
    fn queued_events_carry_queue_thresholds_and_enqueue_time() {
        let envelope = routing_envelope(
            "acme",
            routing_event::Kind::Queued(routing::ContactQueued {
                contact: CONTACT.to_owned(),
                queue: "tenants/acme/queues/sales".to_owned(),
                channel: Channel::Voice as i32,
                customer: String::new(),
                enqueue_time: Some(timestamp_from_millis(1_000)),
                short_abandon_threshold: Some(duration_from_millis(0)),
                service_level_threshold: None,
            }),
        );
        let event = read(&envelope);
        assert_eq!(event.tenant.as_str(), "acme");
        assert_eq!(event.contact.as_str(), "ct_0001");
        assert_eq!(event.update.queue.as_ref().map(QueueId::as_str), Some("sales"));
        assert_eq!(event.update.channel, Some(Channel::Voice));
        assert_eq!(event.update.queued_ms, Some(1_000));
        assert_eq!(event.update.short_abandon_threshold_ms, Some(0));
        assert_eq!(event.update.service_level_threshold_ms, None);
    }

    #[test]
    fn missing_instants_fall_back_to_occurred_at() {
        let envelope = routing_envelope(
            "acme",
            routing_event::Kind::Answered(routing::ContactAnswered {
                contact: CONTACT.to_owned(),
                ..routing::ContactAnswered::default()
            }),
        );
        let event = read(&envelope);
        assert_eq!(event.update.answered_ms, Some(9_000));
        assert_eq!(event.update.queued_ms, None, "an enqueue instant is never guessed");
    }

    #[test]
    fn direction_unspecified_counts_as_inbound() {
        let created = |direction: Direction| EventEnvelope {
            event_id: "event-2".to_owned(),
            tenant: "acme".to_owned(),
            occurred_at: Some(timestamp_from_millis(500)),
            subject: "ct_0001".to_owned(),
            payload: Some(Payload::Contact(ContactEvent {
                kind: Some(contact_event::Kind::Created(ingestion::ContactCreated {
                    contact: Some(ingestion::Contact {
                        name: CONTACT.to_owned(),
                        direction: direction as i32,
                        ..ingestion::Contact::default()
                    }),
                })),
            })),
            traceparent: String::new(),
        };
        assert_eq!(read(&created(Direction::Unspecified)).update.inbound, Some(true));
        assert_eq!(read(&created(Direction::Inbound)).update.inbound, Some(true));
        assert_eq!(read(&created(Direction::Outbound)).update.inbound, Some(false));
        assert_eq!(read(&created(Direction::Inbound)).update.created_ms, Some(500));
    }

    #[test]
    fn a_customer_resolved_after_intake_names_the_contacts_customer_only() {
        let resolved = |tenant: &str, customer: &str| EventEnvelope {
            event_id: "event-3".to_owned(),
            tenant: tenant.to_owned(),
            occurred_at: Some(timestamp_from_millis(700)),
            subject: "ct_0001".to_owned(),
            payload: Some(Payload::Contact(ContactEvent {
                kind: Some(contact_event::Kind::CustomerResolved(ingestion::CustomerResolved {
                    contact: CONTACT.to_owned(),
                    customer: customer.to_owned(),
                })),
            })),
            traceparent: String::new(),
        };
        let event = read(&resolved("acme", "tenants/acme/customers/cu_7"));
        assert_eq!(event.contact.as_str(), "ct_0001");
        let expected = FactsUpdate {
            customer: Some(CustomerId::parse("cu_7", "customer").expect("customer")),
            ..FactsUpdate::default()
        };
        assert_eq!(event.update, expected, "the customer and nothing else");
        let error = facts_event(&resolved("acme", "tenants/globex/customers/cu_7")).expect_err("globex's customer");
        assert_eq!(error.field_violations[0].field, "customer_resolved.customer");
        let error = facts_event(&resolved("acme", "")).expect_err("no customer");
        assert_eq!(error.field_violations[0].field, "customer_resolved.customer");
    }

    #[test]
    fn names_of_another_tenant_are_invalid() {
        let foreign_contact = routing_envelope(
            "globex",
            routing_event::Kind::Completed(routing::ContactCompleted {
                contact: CONTACT.to_owned(),
                ..routing::ContactCompleted::default()
            }),
        );
        let error = facts_event(&foreign_contact).expect_err("contact of acme under globex");
        assert_eq!(error.field_violations[0].field, "completed.contact");
        let foreign_queue = routing_envelope(
            "acme",
            routing_event::Kind::Abandoned(routing::ContactAbandoned {
                contact: CONTACT.to_owned(),
                queue: "tenants/globex/queues/sales".to_owned(),
                ..routing::ContactAbandoned::default()
            }),
        );
        let error = facts_event(&foreign_queue).expect_err("queue of globex under acme");
        assert_eq!(error.field_violations[0].field, "abandoned.queue");
        let no_tenant = routing_envelope(
            "",
            routing_event::Kind::Queued(routing::ContactQueued {
                contact: CONTACT.to_owned(),
                ..routing::ContactQueued::default()
            }),
        );
        assert!(facts_event(&no_tenant).is_err());
    }

    #[test]
    fn routing_ends_are_not_customer_abandons() {
        let abandoned = |reason: routing::EndReason| {
            routing_envelope(
                "acme",
                routing_event::Kind::Abandoned(routing::ContactAbandoned {
                    contact: CONTACT.to_owned(),
                    queue: "tenants/acme/queues/sales".to_owned(),
                    stage: routing::AbandonStage::Queue as i32,
                    enqueue_time: Some(timestamp_from_millis(1_000)),
                    abandon_time: Some(timestamp_from_millis(61_000)),
                    reason: reason as i32,
                    ..routing::ContactAbandoned::default()
                }),
            )
        };
        let left = read(&abandoned(routing::EndReason::Unspecified)).update;
        assert_eq!((left.abandoned_ms, left.routing_ended_ms), (Some(61_000), None));
        for reason in [routing::EndReason::MaxWait, routing::EndReason::Closed] {
            let ended = read(&abandoned(reason)).update;
            assert_eq!((ended.abandoned_ms, ended.routing_ended_ms), (None, Some(61_000)), "{reason:?}");
            assert_eq!((ended.abandon_stage, ended.queued_ms), (Some(AbandonStage::Queue), Some(1_000)));
            assert!(!ended.queue_entered, "the queue it ended in may not be the one it entered");
        }
    }

    #[test]
    fn only_creation_and_enqueue_report_the_entered_queue() {
        let queued = routing_envelope(
            "acme",
            routing_event::Kind::Queued(routing::ContactQueued {
                contact: CONTACT.to_owned(),
                queue: "tenants/acme/queues/sales".to_owned(),
                ..routing::ContactQueued::default()
            }),
        );
        assert!(read(&queued).update.queue_entered);
        let answered = routing_envelope(
            "acme",
            routing_event::Kind::Answered(routing::ContactAnswered {
                contact: CONTACT.to_owned(),
                queue: "tenants/acme/queues/billing".to_owned(),
                ..routing::ContactAnswered::default()
            }),
        );
        assert!(!read(&answered).update.queue_entered);
    }

    #[test]
    fn transfers_are_not_kpi_facts() {
        let transferred = routing_envelope(
            "acme",
            routing_event::Kind::Transferred(routing::ContactTransferred {
                contact: CONTACT.to_owned(),
                from_queue: "tenants/acme/queues/sales".to_owned(),
                to_queue: "tenants/acme/queues/billing".to_owned(),
                reason: routing::TransferReason::MaxWait as i32,
                ..routing::ContactTransferred::default()
            }),
        );
        assert_eq!(facts_event(&transferred), Ok(None));
    }

    #[test]
    fn offers_are_not_kpi_facts() {
        let offered = routing_envelope(
            "acme",
            routing_event::Kind::Offered(routing::ContactOffered {
                contact: CONTACT.to_owned(),
                ..routing::ContactOffered::default()
            }),
        );
        assert_eq!(facts_event(&offered), Ok(None));
        assert!(recompute([&offered]).is_empty());
    }
}
