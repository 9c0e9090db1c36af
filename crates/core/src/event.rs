//! Event topics and the envelope every record carries.

use prost::Message;
use switchboard_proto::events::v1::{EventEnvelope, event_envelope::Payload};
use switchboard_proto::ingestion::v1::CustomerResolved;

use crate::error::Error;
use crate::ids::{ContactId, CustomerId, TenantId};
use crate::names::{parse_contact, parse_customer};
use crate::time::{now_millis, timestamp_from_millis};

/// Contacts as ingested, and customers leaving.
pub const CONTACTS_TOPIC: &str = "switchboard.contacts.v1";
/// Routing decisions and contact outcomes.
pub const ROUTING_TOPIC: &str = "switchboard.routing.v1";
/// Agent state changes.
pub const PRESENCE_TOPIC: &str = "switchboard.presence.v1";

/// Records a consumer could never handle ([`DeadLetter`](switchboard_proto::events::v1::DeadLetter)).
pub const DEAD_LETTER_TOPIC: &str = "switchboard.deadletter.v1";

pub const ALL_TOPICS: [&str; 4] = [CONTACTS_TOPIC, ROUTING_TOPIC, PRESENCE_TOPIC, DEAD_LETTER_TOPIC];

/// Builds an envelope with a fresh UUIDv7 event id, stamped now.
/// `tenant` is `None` only for operator-level events (agent presence).
pub fn envelope(tenant: Option<&TenantId>, subject: &str, payload: Payload) -> EventEnvelope {
    envelope_with_id(tenant, subject, payload, &new_event_id(), now_millis())
}

/// A fresh UUIDv7 event id.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Builds an envelope with a given id and time: a producer that stores
/// them with its side effect republishes an identical event on retry.
pub fn envelope_with_id(
    tenant: Option<&TenantId>,
    subject: &str,
    payload: Payload,
    event_id: &str,
    occurred_at_millis: i64,
) -> EventEnvelope {
    EventEnvelope {
        event_id: event_id.to_owned(),
        tenant: tenant.map(|tenant| tenant.as_str().to_owned()).unwrap_or_default(),
        occurred_at: Some(timestamp_from_millis(occurred_at_millis)),
        subject: subject.to_owned(),
        payload: Some(payload),
        traceparent: String::new(),
    }
}

pub fn encode(envelope: &EventEnvelope) -> Vec<u8> {
    envelope.encode_to_vec()
}

/// Decodes a record; a record without id or payload is malformed.
pub fn decode(bytes: &[u8]) -> Result<EventEnvelope, Error> {
    let envelope = EventEnvelope::decode(bytes).map_err(|error| {
        Error::invalid_field("record.value", format!("not an EventEnvelope: {error}")).with_reason("MALFORMED_RECORD")
    })?;
    if envelope.event_id.is_empty() || envelope.payload.is_none() {
        return Err(
            Error::invalid_field("record.value", "envelope lacks event_id or payload").with_reason("MALFORMED_RECORD")
        );
    }
    Ok(envelope)
}

/// The contact and customer a `CustomerResolved` in an envelope of
/// `tenant` names. INVALID_ARGUMENT if either is malformed or belongs to
/// another tenant: such an event can never be applied.
pub fn customer_resolved_names(
    tenant: &TenantId,
    resolved: &CustomerResolved,
) -> Result<(ContactId, CustomerId), Error> {
    let (contact_tenant, contact) = parse_contact(&resolved.contact, "customer_resolved.contact")?;
    let (customer_tenant, customer) = parse_customer(&resolved.customer, "customer_resolved.customer")?;
    if contact_tenant != *tenant || customer_tenant != *tenant {
        return Err(Error::invalid_field("customer_resolved", "names another tenant than its envelope"));
    }
    Ok((contact, customer))
}

/// The tenant of an envelope, parsed; `None` for operator-level events.
pub fn envelope_tenant(envelope: &EventEnvelope) -> Result<Option<TenantId>, Error> {
    if envelope.tenant.is_empty() {
        return Ok(None);
    }
    TenantId::parse(&envelope.tenant, "envelope.tenant").map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::presence::v1::{AgentStateChanged, PresenceEvent, presence_event};

    #[test]
    fn envelopes_round_trip_and_reject_garbage() {
        let payload = Payload::Presence(PresenceEvent {
            kind: Some(presence_event::Kind::StateChanged(AgentStateChanged::default())),
        });
        let original = envelope(None, "alice", payload);
        assert_eq!(decode(&encode(&original)), Ok(original));
        assert!(decode(b"\xff\xff\xff").is_err());
        assert!(decode(&EventEnvelope::default().encode_to_vec()).is_err());
    }
}
