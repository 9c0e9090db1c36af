//! Keeps customer timelines from the contacts and routing topics.
//!
//! Each event becomes a [`TimelineUpdate`] merged into the contact's entry.
//! The merge is idempotent and order-independent, so redelivered and
//! reordered events need no deduplication by event id. Free text from
//! events (subjects, dispositions) is made safe before it is stored: the
//! APIs refuse control characters, but an event written by an older
//! release, or replayed from a dead letter, must not fail a `text` column.

use std::sync::Arc;

use prost_types::Timestamp;
use switchboard_core::event::{CONTACTS_TOPIC, envelope, envelope_tenant};
use switchboard_core::names::{
    contact_name, customer_name, parse_contact, parse_conversation, parse_customer, parse_queue,
};
use switchboard_core::text::make_safe;
use switchboard_core::time::millis_from_timestamp;
use switchboard_core::{ContactId, CustomerId, Error, TenantId};
use switchboard_platform::bus::{Delivery, EventBus, publish_traced, stamp_trace};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{ContactEvent, CustomerResolved, contact_event};
use switchboard_proto::routing::v1::{RoutingEvent, routing_event};

use crate::domain::{EntryStatus, Identity, TimelineUpdate, identity_from_proto};
use crate::store::CrmStore;

/// The consumer group of the CRM service.
pub(crate) const CONSUMER_GROUP: &str = "crm";

/// The handler of the timeline consumer (both topics, from the earliest
/// record): a batch of deliveries merged in one step; the customers it
/// resolved from senders are then published (`CustomerResolved`) before
/// the batch is acknowledged, so a crash between the two publishes them
/// again on redelivery.
pub(crate) fn handler(
    store: Arc<dyn CrmStore>,
    bus: Arc<dyn EventBus>,
) -> impl Fn(Arc<[Delivery]>) -> futures::future::BoxFuture<'static, Result<(), Error>> + Send + Sync + 'static {
    move |deliveries: Arc<[Delivery]>| {
        let store = Arc::clone(&store);
        let bus = Arc::clone(&bus);
        Box::pin(async move { handle_deliveries(store.as_ref(), bus.as_ref(), &deliveries).await })
    }
}

async fn handle_deliveries(store: &dyn CrmStore, bus: &dyn EventBus, deliveries: &[Delivery]) -> Result<(), Error> {
    let mut updates = Vec::with_capacity(deliveries.len());
    let mut resolved_events = Vec::new();
    for delivery in deliveries {
        let envelope = &delivery.envelope;
        let Some(mut update) = timeline_update(envelope)? else {
            tracing::debug!(event_id = %envelope.event_id, "event does not concern timelines");
            continue;
        };
        if update.customer.is_none()
            && let Some(identity) = sender_to_resolve(envelope)?
        {
            // Ingestion took the contact while CRM could not answer: the
            // sender is resolved here, as ResolveCustomer would have.
            let customer = store.resolve_customer(&update.tenant, &identity, "").await?.customer.id;
            tracing::info!(tenant = %update.tenant, contact = %update.contact, customer = %customer, "customer resolved from the contact's sender");
            resolved_events.push(customer_resolved_event(envelope, &update.tenant, &update.contact, &customer));
            update.customer = Some(customer);
        }
        updates.push(update);
    }
    if updates.is_empty() {
        return Ok(());
    }
    for entry in store.merge_timeline_entries(&updates).await? {
        match &entry.customer {
            Some(customer) => tracing::info!(
                tenant = %entry.tenant,
                customer = %customer,
                contact = %entry.contact,
                status = entry.status.as_str(),
                "timeline updated"
            ),
            None => tracing::debug!(
                tenant = %entry.tenant,
                contact = %entry.contact,
                status = entry.status.as_str(),
                "timeline entry kept until an event names its customer"
            ),
        }
    }
    // Routing, KPI and ingestion learn the customer they were not told:
    // the preferred-agent rule, first-contact resolution and the contact's
    // record need it.
    for event in &resolved_events {
        publish_traced(bus, CONTACTS_TOPIC, event).await?;
    }
    Ok(())
}

/// `CustomerResolved` for the contact `created` made, keyed as `created`
/// (so it follows it in its partition).
fn customer_resolved_event(
    created: &EventEnvelope,
    tenant: &TenantId,
    contact: &ContactId,
    customer: &CustomerId,
) -> EventEnvelope {
    let resolved = contact_event::Kind::CustomerResolved(CustomerResolved {
        contact: contact_name(tenant, contact),
        customer: customer_name(tenant, customer),
    });
    let mut event = envelope(Some(tenant), &created.subject, Payload::Contact(ContactEvent { kind: Some(resolved) }));
    stamp_trace(&mut event);
    event
}

/// The sender of a created contact that names no customer.
fn sender_to_resolve(envelope: &EventEnvelope) -> Result<Option<Identity>, Error> {
    let Some(Payload::Contact(ContactEvent { kind: Some(contact_event::Kind::Created(created)) })) = &envelope.payload
    else {
        return Ok(None);
    };
    let Some(contact) = &created.contact else {
        return Ok(None);
    };
    if !contact.customer.is_empty() {
        return Ok(None);
    }
    identity_from_proto(contact.from.as_ref(), "created.contact.from").map(Some)
}

/// What `envelope` says about a contact's timeline entry; `None` for events
/// that say nothing (operator-level events, offers being withdrawn). Events
/// whose names contradict their envelope's tenant are INVALID_ARGUMENT.
pub(crate) fn timeline_update(envelope: &EventEnvelope) -> Result<Option<TimelineUpdate>, Error> {
    let Some(tenant) = envelope_tenant(envelope)? else {
        return Ok(None);
    };
    match &envelope.payload {
        Some(Payload::Contact(ContactEvent { kind: Some(kind) })) => contact_update(&tenant, kind),
        Some(Payload::Routing(RoutingEvent { kind: Some(kind) })) => {
            let occurred_millis = millis(envelope.occurred_at.as_ref());
            routing_update(&tenant, kind, occurred_millis)
        }
        _ => Ok(None),
    }
}

fn contact_update(tenant: &TenantId, kind: &contact_event::Kind) -> Result<Option<TimelineUpdate>, Error> {
    match kind {
        contact_event::Kind::Created(created) => {
            let Some(contact) = &created.contact else {
                return Err(Error::missing_field("created.contact"));
            };
            let mut update = new_update(tenant, &contact.name, "created.contact.name", &contact.customer)?;
            update.status = Some(EntryStatus::Received);
            update.channel = contact.channel;
            contact.queue.clone_into(&mut update.queue);
            update.subject = make_safe(&contact.subject);
            update.create_time_millis = millis(contact.create_time.as_ref());
            // Only a well-formed conversation of the contact's own tenant.
            if let Some(conversation) = contact.attributes.get("conversation")
                && parse_conversation(conversation, "conversation").is_ok_and(|(owner, _)| owner == *tenant)
            {
                conversation.clone_into(&mut update.conversation);
            }
            Ok(Some(update))
        }
        contact_event::Kind::Abandoned(abandoned) => {
            let mut update = new_update(tenant, &abandoned.contact, "abandoned.contact", "")?;
            update.status = Some(EntryStatus::Abandoned);
            update.end_time_millis = millis(abandoned.abandon_time.as_ref());
            Ok(Some(update))
        }
        // The timeline keeps one entry per contact; a conversation's
        // messages are read from ingestion's `ListMessages`, survey answers
        // are KPI's. A resolved customer is this service's own event, made
        // once the entry had it.
        contact_event::Kind::MessageAdded(_)
        | contact_event::Kind::MessageStatusChanged(_)
        | contact_event::Kind::SurveyAnswered(_)
        | contact_event::Kind::CustomerResolved(_) => Ok(None),
    }
}

/// `occurred_millis` is when routing reported the event (0 if unknown).
fn routing_update(
    tenant: &TenantId,
    kind: &routing_event::Kind,
    occurred_millis: i64,
) -> Result<Option<TimelineUpdate>, Error> {
    let update = match kind {
        routing_event::Kind::Queued(queued) => {
            let mut update = new_update(tenant, &queued.contact, "queued.contact", &queued.customer)?;
            update.status = Some(EntryStatus::Queued);
            update.channel = queued.channel;
            queued.queue.clone_into(&mut update.queue);
            update.create_time_millis = millis(queued.enqueue_time.as_ref());
            update
        }
        routing_event::Kind::Offered(offered) => {
            // The offered agent may still reject: only an answer names the
            // entry's agent.
            let mut update = new_update(tenant, &offered.contact, "offered.contact", &offered.customer)?;
            update.status = Some(EntryStatus::Offered);
            update.channel = offered.channel;
            offered.queue.clone_into(&mut update.queue);
            update.subject = make_safe(&offered.subject);
            offered.callback_number.clone_into(&mut update.callback_number);
            update
        }
        // The event names no customer: it updates the entry routing's
        // enqueue (which does, and precedes it on the contact's partition)
        // created. The status stays: a transferred contact waits again, and
        // statuses never move back.
        routing_event::Kind::Transferred(transferred) => {
            let mut update = new_update(tenant, &transferred.contact, "transferred.contact", "")?;
            let (to_tenant, _) = parse_queue(&transferred.to_queue, "transferred.to_queue")?;
            require_same_tenant(tenant, &to_tenant, "transferred.to_queue")?;
            transferred.to_queue.clone_into(&mut update.transferred_to);
            update.transfer_time_millis = occurred_millis;
            update
        }
        // Moving the status back to QUEUED would make the entry depend on
        // delivery order; the next offer or outcome follows anyway.
        routing_event::Kind::OfferWithdrawn(_) => return Ok(None),
        routing_event::Kind::Answered(answered) => {
            let mut update = new_update(tenant, &answered.contact, "answered.contact", &answered.customer)?;
            update.status = Some(EntryStatus::Answered);
            update.channel = answered.channel;
            answered.queue.clone_into(&mut update.queue);
            answered.agent.clone_into(&mut update.agent);
            update.create_time_millis = millis(answered.enqueue_time.as_ref());
            update.answer_time_millis = millis(answered.answer_time.as_ref());
            update
        }
        routing_event::Kind::Completed(completed) => {
            let mut update = new_update(tenant, &completed.contact, "completed.contact", &completed.customer)?;
            update.status = Some(EntryStatus::Completed);
            update.channel = completed.channel;
            completed.queue.clone_into(&mut update.queue);
            completed.agent.clone_into(&mut update.agent);
            update.disposition = make_safe(&completed.disposition);
            update.resolved = completed.resolved;
            update.answer_time_millis = millis(completed.answer_time.as_ref());
            update.end_time_millis = millis(completed.end_time.as_ref());
            update
        }
        routing_event::Kind::Abandoned(abandoned) => {
            let mut update = new_update(tenant, &abandoned.contact, "abandoned.contact", &abandoned.customer)?;
            update.status = Some(EntryStatus::Abandoned);
            update.channel = abandoned.channel;
            abandoned.queue.clone_into(&mut update.queue);
            update.create_time_millis = millis(abandoned.enqueue_time.as_ref());
            update.end_time_millis = millis(abandoned.abandon_time.as_ref());
            update
        }
    };
    Ok(Some(update))
}

/// An empty update of the contact `contact_name`, for the customer
/// `customer_name` if not empty; both must belong to the envelope's tenant.
fn new_update(
    tenant: &TenantId,
    contact_name: &str,
    contact_field: &str,
    customer_name: &str,
) -> Result<TimelineUpdate, Error> {
    let (contact_tenant, contact) = parse_contact(contact_name, contact_field)?;
    require_same_tenant(tenant, &contact_tenant, contact_field)?;
    let customer = customer_of(tenant, customer_name, contact_field)?;
    Ok(TimelineUpdate::new(tenant.clone(), contact, customer))
}

fn customer_of(tenant: &TenantId, customer_name: &str, contact_field: &str) -> Result<Option<CustomerId>, Error> {
    if customer_name.is_empty() {
        return Ok(None);
    }
    // The customer field sits beside the contact field in every event.
    let customer_field = match contact_field.rsplit_once('.') {
        Some((message, _)) => format!("{message}.customer"),
        None => "customer".to_owned(),
    };
    let (customer_tenant, customer) = parse_customer(customer_name, &customer_field)?;
    require_same_tenant(tenant, &customer_tenant, &customer_field)?;
    Ok(Some(customer))
}

fn require_same_tenant(envelope_tenant: &TenantId, named_tenant: &TenantId, field: &str) -> Result<(), Error> {
    if envelope_tenant == named_tenant {
        return Ok(());
    }
    Err(Error::invalid_field(field, format!("names tenant `{named_tenant}`, the envelope says `{envelope_tenant}`")))
}

fn millis(timestamp: Option<&Timestamp>) -> i64 {
    timestamp.map_or(0, millis_from_timestamp).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::event::envelope;
    use switchboard_core::names::{contact_name, customer_name};
    use switchboard_core::time::timestamp_from_millis;
    use switchboard_core::{ContactId, ErrorCode};
    use switchboard_proto::ingestion::v1::{Contact, ContactCreated};
    use switchboard_proto::routing::v1::{
        ContactCompleted, ContactOffered, ContactTransferred, OfferWithdrawn, TransferReason,
    };

    fn acme() -> TenantId {
        TenantId::parse("acme", "tenant").expect("tenant")
    }

    fn routing(tenant: &TenantId, kind: routing_event::Kind) -> EventEnvelope {
        envelope(Some(tenant), "subject", Payload::Routing(RoutingEvent { kind: Some(kind) }))
    }

    #[test]
    fn contact_created_starts_an_entry() {
        let tenant = acme();
        let contact = ContactId::generate();
        let customer = CustomerId::generate();
        let created = ContactCreated {
            contact: Some(Contact {
                name: contact_name(&tenant, &contact),
                customer: customer_name(&tenant, &customer),
                channel: 3,
                queue: "tenants/acme/queues/support".to_owned(),
                subject: "hello".to_owned(),
                create_time: Some(timestamp_from_millis(1_234)),
                ..Contact::default()
            }),
        };
        let event = ContactEvent { kind: Some(contact_event::Kind::Created(created)) };
        let update = timeline_update(&envelope(Some(&tenant), "subject", Payload::Contact(event)))
            .expect("valid")
            .expect("an update");
        assert_eq!(update.contact, contact);
        assert_eq!(update.customer, Some(customer));
        assert_eq!(update.status, Some(EntryStatus::Received));
        assert_eq!((update.channel, update.subject.as_str(), update.create_time_millis), (3, "hello", 1_234));
    }

    #[test]
    fn completion_carries_the_outcome() {
        let tenant = acme();
        let contact = ContactId::generate();
        let completed = ContactCompleted {
            contact: contact_name(&tenant, &contact),
            agent: "agents/bob".to_owned(),
            disposition: "sale".to_owned(),
            resolved: true,
            end_time: Some(timestamp_from_millis(9_000)),
            ..ContactCompleted::default()
        };
        let update = timeline_update(&routing(&tenant, routing_event::Kind::Completed(completed)))
            .expect("valid")
            .expect("an update");
        assert_eq!(update.customer, None, "an empty customer is no customer");
        assert_eq!(update.status, Some(EntryStatus::Completed));
        assert_eq!((update.agent.as_str(), update.disposition.as_str()), ("agents/bob", "sale"));
        assert!(update.resolved);
        assert_eq!(update.end_time_millis, 9_000);
    }

    #[test]
    fn names_of_another_tenant_are_rejected_with_the_field() {
        let tenant = acme();
        let globex = TenantId::parse("globex", "tenant").expect("tenant");
        let completed = ContactCompleted {
            contact: contact_name(&tenant, &ContactId::generate()),
            customer: customer_name(&globex, &CustomerId::generate()),
            ..ContactCompleted::default()
        };
        let error = timeline_update(&routing(&tenant, routing_event::Kind::Completed(completed))).expect_err("mixed");
        assert_eq!(error.code, ErrorCode::InvalidArgument);
        assert_eq!(error.field_violations[0].field, "completed.customer");
        let foreign_contact =
            ContactCompleted { contact: contact_name(&globex, &ContactId::generate()), ..ContactCompleted::default() };
        let error =
            timeline_update(&routing(&tenant, routing_event::Kind::Completed(foreign_contact))).expect_err("foreign");
        assert_eq!(error.field_violations[0].field, "completed.contact");
    }

    #[test]
    fn transfers_and_callbacks_reach_the_entry() {
        let tenant = acme();
        let contact = ContactId::generate();
        let transferred = ContactTransferred {
            contact: contact_name(&tenant, &contact),
            from_queue: "tenants/acme/queues/support".to_owned(),
            to_queue: "tenants/acme/queues/billing".to_owned(),
            from_agent: "agents/bob".to_owned(),
            reason: TransferReason::Requested as i32,
        };
        let mut event = routing(&tenant, routing_event::Kind::Transferred(transferred.clone()));
        event.occurred_at = Some(timestamp_from_millis(4_000));
        let update = timeline_update(&event).expect("valid").expect("an update");
        assert_eq!((update.status, update.customer.as_ref()), (None, None));
        assert_eq!(
            (update.transferred_to.as_str(), update.transfer_time_millis),
            ("tenants/acme/queues/billing", 4_000)
        );
        let foreign = ContactTransferred { to_queue: "tenants/globex/queues/billing".to_owned(), ..transferred };
        let error = timeline_update(&routing(&tenant, routing_event::Kind::Transferred(foreign))).expect_err("foreign");
        assert_eq!(error.field_violations[0].field, "transferred.to_queue");
        let offered = ContactOffered {
            contact: contact_name(&tenant, &contact),
            callback_number: "+15550100".to_owned(),
            ..ContactOffered::default()
        };
        let update = timeline_update(&routing(&tenant, routing_event::Kind::Offered(offered))).expect("valid");
        assert_eq!(update.map(|update| update.callback_number), Some("+15550100".to_owned()));
    }

    #[test]
    fn withdrawn_offers_and_tenantless_events_say_nothing() {
        let tenant = acme();
        let withdrawn =
            OfferWithdrawn { contact: contact_name(&tenant, &ContactId::generate()), ..OfferWithdrawn::default() };
        assert_eq!(timeline_update(&routing(&tenant, routing_event::Kind::OfferWithdrawn(withdrawn))), Ok(None));
        let operator_level = envelope(None, "alice", Payload::Routing(RoutingEvent { kind: None }));
        assert_eq!(timeline_update(&operator_level), Ok(None));
    }
}
