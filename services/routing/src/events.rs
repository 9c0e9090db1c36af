//! The routing events of each transition, built from the contact's routing
//! record and stamped with the trace of the change: the stores append what
//! these return in the same atomic step as the change, and the relay
//! publishes them in that trace.

use switchboard_core::AgentId;
use switchboard_core::event::envelope;
use switchboard_core::names::{agent_name, contact_name, queue_name};
use switchboard_core::time::{duration_from_millis, millis_from_duration, optional_timestamp, timestamp_from_millis};
use switchboard_platform::bus::stamp_trace;
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::routing::v1::{
    AbandonStage, ContactAbandoned, ContactAnswered, ContactCompleted, ContactOffered, ContactQueued,
    ContactTransferred, OfferWithdrawn, Queue, RoutingEvent, TransferReason, WithdrawReason, routing_event,
};

use crate::domain::{ContactRecord, EndReason, RoutingStatus};
use crate::{DEFAULT_SERVICE_LEVEL_THRESHOLD_MS, DEFAULT_SHORT_ABANDON_THRESHOLD_MS};

/// An event of `record`, in the trace of the change making it (the relay
/// publishes it later, in that trace).
fn event(record: &ContactRecord, kind: routing_event::Kind) -> EventEnvelope {
    let mut event =
        envelope(Some(&record.tenant), record.contact.as_str(), Payload::Routing(RoutingEvent { kind: Some(kind) }));
    stamp_trace(&mut event);
    event
}

/// The contact entered its queue, with the queue's KPI thresholds.
pub fn queued(record: &ContactRecord, queue: &Queue) -> EventEnvelope {
    let threshold = |duration: &Option<prost_types::Duration>, default: i64| {
        duration_from_millis(duration.as_ref().and_then(millis_from_duration).unwrap_or(default))
    };
    event(
        record,
        routing_event::Kind::Queued(ContactQueued {
            contact: contact_name(&record.tenant, &record.contact),
            queue: queue_name(&record.tenant, &record.queue),
            channel: record.channel,
            customer: record.customer.clone(),
            enqueue_time: Some(timestamp_from_millis(record.enqueue_ms)),
            short_abandon_threshold: Some(threshold(
                &queue.short_abandon_threshold,
                DEFAULT_SHORT_ABANDON_THRESHOLD_MS,
            )),
            service_level_threshold: Some(threshold(
                &queue.service_level_threshold,
                DEFAULT_SERVICE_LEVEL_THRESHOLD_MS,
            )),
        }),
    )
}

pub fn offered(record: &ContactRecord, agent: &AgentId, offer_ms: i64, expire_ms: i64) -> EventEnvelope {
    event(
        record,
        routing_event::Kind::Offered(ContactOffered {
            contact: contact_name(&record.tenant, &record.contact),
            queue: queue_name(&record.tenant, &record.queue),
            channel: record.channel,
            customer: record.customer.clone(),
            agent: agent_name(agent),
            offer_time: Some(timestamp_from_millis(offer_ms)),
            expire_time: Some(timestamp_from_millis(expire_ms)),
            subject: record.subject.clone(),
            callback_number: record.rules.callback_number.clone().unwrap_or_default(),
            session_url: record.session_url.clone(),
            conversation: record.conversation.clone(),
        }),
    )
}

/// The offer `before` held ended unanswered; nothing if `before` was not
/// ringing.
pub fn withdrawn(before: &ContactRecord, reason: WithdrawReason) -> Vec<EventEnvelope> {
    let (RoutingStatus::Offered, Some(agent)) = (before.status, &before.agent) else {
        return Vec::new();
    };
    vec![event(
        before,
        routing_event::Kind::OfferWithdrawn(OfferWithdrawn {
            contact: contact_name(&before.tenant, &before.contact),
            agent: agent_name(agent),
            reason: reason as i32,
        }),
    )]
}

pub fn answered(after: &ContactRecord) -> Vec<EventEnvelope> {
    vec![event(
        after,
        routing_event::Kind::Answered(ContactAnswered {
            contact: contact_name(&after.tenant, &after.contact),
            queue: queue_name(&after.tenant, &after.queue),
            channel: after.channel,
            customer: after.customer.clone(),
            agent: after.agent.as_ref().map(agent_name).unwrap_or_default(),
            enqueue_time: Some(timestamp_from_millis(after.enqueue_ms)),
            answer_time: optional_timestamp(after.answer_ms),
        }),
    )]
}

pub fn completed(after: &ContactRecord, disposition: &str, resolved: bool) -> Vec<EventEnvelope> {
    vec![event(
        after,
        routing_event::Kind::Completed(ContactCompleted {
            contact: contact_name(&after.tenant, &after.contact),
            queue: queue_name(&after.tenant, &after.queue),
            channel: after.channel,
            customer: after.customer.clone(),
            agent: after.agent.as_ref().map(agent_name).unwrap_or_default(),
            disposition: disposition.to_owned(),
            resolved,
            answer_time: optional_timestamp(after.answer_ms),
            end_time: optional_timestamp(after.end_ms),
            wrap_up_time: (after.rules.wrap_up_ms > 0).then(|| duration_from_millis(after.rules.wrap_up_ms)),
        }),
    )]
}

/// The customer left: the ringing offer (if any) is withdrawn, and the
/// contact is abandoned from the stage it was in.
pub fn abandoned(before: &ContactRecord, after: &ContactRecord) -> Vec<EventEnvelope> {
    ended_unanswered(before, after, WithdrawReason::CustomerLeft)
}

/// The ringing offer (if any) withdrawn for `reason`, and the contact
/// abandoned from the stage it was in.
fn ended_unanswered(before: &ContactRecord, after: &ContactRecord, reason: WithdrawReason) -> Vec<EventEnvelope> {
    let mut events = withdrawn(before, reason);
    let stage = if before.status == RoutingStatus::Offered { AbandonStage::Offered } else { AbandonStage::Queue };
    events.push(event(
        after,
        routing_event::Kind::Abandoned(ContactAbandoned {
            contact: contact_name(&after.tenant, &after.contact),
            queue: queue_name(&after.tenant, &after.queue),
            channel: after.channel,
            customer: after.customer.clone(),
            stage: stage as i32,
            enqueue_time: Some(timestamp_from_millis(after.enqueue_ms)),
            abandon_time: optional_timestamp(after.end_ms),
            reason: after.rules.end_reason.map_or(0, EndReason::to_proto),
        }),
    ));
    events
}

/// A contact of a deleted tenant ended ([`crate::domain::rules::end_for_deleted_tenant`]):
/// a handled one as completed (so its agent's desktop and state let go of
/// it), any other as abandoned.
pub fn ended_for_deleted_tenant(before: &ContactRecord, after: &ContactRecord) -> Vec<EventEnvelope> {
    if before.status == RoutingStatus::Answered {
        return completed(after, TENANT_DELETED_DISPOSITION, false);
    }
    ended_unanswered(before, after, WithdrawReason::TenantDeleted)
}

/// The disposition of a handled contact its tenant's deletion ended.
pub const TENANT_DELETED_DISPOSITION: &str = "tenant-deleted";

/// The contact moved to another queue or was handed to one agent: a
/// ringing offer is withdrawn, and the move is announced with the agent
/// that held it (a ringing or answered contact's agent is released).
pub fn transferred(before: &ContactRecord, after: &ContactRecord, reason: TransferReason) -> Vec<EventEnvelope> {
    let mut events = withdrawn(before, WithdrawReason::Transferred);
    events.push(event(
        after,
        routing_event::Kind::Transferred(ContactTransferred {
            contact: contact_name(&after.tenant, &after.contact),
            from_queue: queue_name(&before.tenant, &before.queue),
            to_queue: queue_name(&after.tenant, &after.queue),
            from_agent: before.agent.as_ref().map(agent_name).unwrap_or_default(),
            reason: reason as i32,
        }),
    ));
    events
}
