//! Outbound messages, metered for usage: every message sent to a customer
//! on the tenant's behalf (an agent's reply, or a notification once its
//! conversation has a contact), read from ingestion's `MessageAdded`
//! events and counted once by its id in the month it was created, whatever
//! the provider later reports (the platform did the sending).

use std::collections::BTreeMap;

use switchboard_core::event::envelope_tenant;
use switchboard_core::names::parse_conversation;
use switchboard_core::time::millis_from_timestamp;
use switchboard_core::{Error, MessageId, TenantId};
use switchboard_proto::common::v1::{Channel, Direction};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::contact_event;

/// One message sent to a customer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutboundMessage {
    pub tenant: TenantId,
    pub message: MessageId,
    /// `None` when the event did not say (a producer before usage metering).
    pub channel: Option<Channel>,
    /// When Switchboard stored it (its `create_time`; an edit republishes
    /// the message with the same one).
    pub created_ms: i64,
}

/// The outbound message an event reports, if it reports one: a
/// `MessageAdded` whose message is OUTBOUND. A message of another tenant
/// than the envelope's, or with no name or creation time, is
/// INVALID_ARGUMENT.
pub fn outbound_message(envelope: &EventEnvelope) -> Result<Option<OutboundMessage>, Error> {
    let Some(Payload::Contact(event)) = &envelope.payload else {
        return Ok(None);
    };
    let Some(contact_event::Kind::MessageAdded(added)) = &event.kind else {
        return Ok(None);
    };
    let Some(message) = added.message.as_ref().filter(|message| message.direction == Direction::Outbound as i32) else {
        return Ok(None);
    };
    let Some(tenant) = envelope_tenant(envelope)? else {
        return Err(Error::missing_field("envelope.tenant"));
    };
    let (conversation, id) = message
        .name
        .rsplit_once("/messages/")
        .ok_or_else(|| Error::invalid_field("message_added.message.name", "must name a conversation's message"))?;
    let (owner, _) = parse_conversation(conversation, "message_added.message.name")?;
    if owner != tenant {
        return Err(Error::invalid_field("message_added.message.name", format!("must belong to tenant `{tenant}`")));
    }
    let created_ms = message
        .create_time
        .as_ref()
        .map(millis_from_timestamp)
        .ok_or_else(|| Error::missing_field("message_added.message.create_time"))?;
    Ok(Some(OutboundMessage {
        tenant,
        message: MessageId::parse(id, "message_added.message.name")?,
        channel: Channel::try_from(added.channel_kind).ok().filter(|channel| *channel != Channel::Unspecified),
        created_ms,
    }))
}

/// Outbound messages per channel (`None`: not said), each message once:
/// what every store's count must equal.
pub fn count_by_channel<'a>(
    messages: impl IntoIterator<Item = &'a OutboundMessage>,
    tenant: &TenantId,
    start_ms: i64,
    end_ms: i64,
) -> BTreeMap<Option<Channel>, i64> {
    let mut first_report: BTreeMap<&MessageId, &OutboundMessage> = BTreeMap::new();
    for message in messages.into_iter().filter(|message| &message.tenant == tenant) {
        first_report.entry(&message.message).or_insert(message);
    }
    let mut counts = BTreeMap::new();
    for message in first_report.values().filter(|message| (start_ms..end_ms).contains(&message.created_ms)) {
        *counts.entry(message.channel).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::event::envelope;
    use switchboard_core::names::message_name;
    use switchboard_core::time::timestamp_from_millis;
    use switchboard_core::{ContactId, ConversationId};
    use switchboard_proto::ingestion::v1::{ContactEvent, Message, MessageAdded};

    fn added(tenant: &str, name_tenant: &str, direction: Direction) -> EventEnvelope {
        let tenant = TenantId::parse(tenant, "tenant").expect("tenant");
        let owner = TenantId::parse(name_tenant, "tenant").expect("tenant");
        let conversation = ConversationId::generate();
        let contact = ContactId::generate();
        let message = Message {
            name: message_name(&owner, &conversation, &MessageId::generate()),
            direction: direction as i32,
            create_time: Some(timestamp_from_millis(5_000)),
            ..Message::default()
        };
        let added = MessageAdded {
            conversation: String::new(),
            contact: String::new(),
            message: Some(message),
            channel_kind: Channel::Sms as i32,
        };
        let event = ContactEvent { kind: Some(contact_event::Kind::MessageAdded(added)) };
        envelope(Some(&tenant), contact.as_str(), Payload::Contact(event))
    }

    #[test]
    fn outbound_messages_are_read_and_inbound_ones_ignored() {
        let read = outbound_message(&added("acme", "acme", Direction::Outbound)).expect("valid").expect("outbound");
        assert_eq!((read.tenant.as_str(), read.channel, read.created_ms), ("acme", Some(Channel::Sms), 5_000));
        assert_eq!(outbound_message(&added("acme", "acme", Direction::Inbound)).expect("valid"), None);
    }

    #[test]
    fn a_message_of_another_tenant_is_refused() {
        let refused = outbound_message(&added("acme", "globex", Direction::Outbound)).expect_err("foreign");
        assert_eq!(refused.code, switchboard_core::ErrorCode::InvalidArgument);
    }

    #[test]
    fn each_message_counts_once_in_the_month_it_was_created() {
        let message = outbound_message(&added("acme", "acme", Direction::Outbound)).expect("valid").expect("outbound");
        let edited = OutboundMessage { channel: Some(Channel::Sms), ..message.clone() };
        let tenant = message.tenant.clone();
        let counts = count_by_channel([&message, &edited, &message], &tenant, 0, 10_000);
        assert_eq!(counts, BTreeMap::from([(Some(Channel::Sms), 1)]));
        assert!(count_by_channel([&message], &tenant, 5_001, 10_000).is_empty(), "created before the range");
        let globex = TenantId::parse("globex", "tenant").expect("tenant");
        assert!(count_by_channel([&message], &globex, 0, 10_000).is_empty(), "another tenant's");
    }
}
