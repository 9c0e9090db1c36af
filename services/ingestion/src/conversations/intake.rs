//! A customer's message, from a channel's webhook to its conversation: the
//! message joins (or opens) the sender's conversation, a new conversation
//! gets a contact to route, the message is stored once per provider id and
//! published as `MessageAdded` (keyed by the contact, after its creation);
//! and routing's terminal events close the conversation of their contact.
//!
//! Outbox by retry, as for contacts: every step is idempotent, a message's
//! event id is minted when it is stored, a provider's redelivery publishes
//! what an earlier attempt could not, and the relay publishes stragglers.

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::event::{CONTACTS_TOPIC, envelope_with_id};
use switchboard_core::identity::identity_to_proto;
use switchboard_core::names::{conversation_name, message_name, parse_contact};
use switchboard_core::time::{
    millis_from_duration, millis_from_timestamp, now_millis, std_duration_millis, timestamp_from_millis,
};
use switchboard_core::{ChannelId, ContactId, Error, MessageId, TenantId};
use switchboard_platform::bus::{Delivery, EventBus, publish_traced};
use switchboard_platform::group_commit::GroupCommit;
use switchboard_proto::common::v1::Direction;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{
    Attachment, Channel as ChannelResource, ContactEvent, CreateContactRequest, Message, MessageAdded, contact_event,
};
use switchboard_proto::routing::v1::routing_event;

use super::{Added, ConversationRecord, ConversationStore, DEFAULT_WINDOW_MS, Joined, MessageRecord};
use crate::channels::InboundMessage;
use crate::grpc::IngestionApi;
use crate::webhooks::contact_request;

/// How long the request path has to publish a message's event before the
/// relay steps in.
pub const MESSAGE_RELAY_DELAY: Duration = Duration::from_secs(5);
const RELAY_BATCH: usize = 100;

/// What became of an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// It opened a conversation (and its contact).
    Opened,
    /// It joined the sender's open conversation.
    Joined,
    /// The provider delivered it before; nothing new was stored.
    Duplicate,
}

impl Taken {
    pub fn label(self) -> &'static str {
        match self {
            Taken::Opened => "opened",
            Taken::Joined => "joined",
            Taken::Duplicate => "duplicate",
        }
    }
}

pub struct ConversationIntake {
    pub conversations: Arc<dyn ConversationStore>,
    pub contacts: Arc<IngestionApi>,
    pub bus: Arc<dyn EventBus>,
    /// Woken when a message to a customer is queued: the connector's cue.
    pub sends: Arc<tokio::sync::Notify>,
    /// Concurrent publications are remembered in one write.
    pub publication_marks: GroupCommit<(TenantId, MessageId)>,
    /// The web chat sockets of this replica, woken by every new message
    /// and change of state in their conversation.
    pub chat_wakeups: Arc<crate::webchat::ChatWakeups>,
}

/// A channel's conversation window, in milliseconds.
pub fn window_ms(channel: &ChannelResource) -> i64 {
    // Validated when the channel was saved.
    channel.conversation_window.as_ref().and_then(millis_from_duration).unwrap_or(DEFAULT_WINDOW_MS)
}

impl ConversationIntake {
    /// Takes one customer message of `channel` in.
    pub async fn take(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        channel: &ChannelResource,
        message: InboundMessage,
    ) -> Result<Taken, Error> {
        // Nothing is written for a suspended or deleted tenant, whichever
        // way the message came (webhook, open chat socket, mailbox).
        self.contacts.require_tenant(tenant)?;
        let provider_message_id = format!("{channel_id}/{}", message.provider_message_id);
        if let Some(stored) = self.conversations.find_message(tenant, channel_id, &provider_message_id).await? {
            self.publish_if_pending(&stored).await?;
            return Ok(Taken::Duplicate);
        }
        let now = now_millis();
        let candidate =
            ConversationRecord::opening(tenant, channel_id, message.channel as i32, message.from.clone(), now);
        let mut joined = match self.open_thread(tenant, channel_id, &message.replied_to).await? {
            Some(conversation) => Joined { conversation, opened: false },
            None => self.conversations.open_or_join(&candidate, window_ms(channel)).await?,
        };
        // Its contact may have ended before routing's event closed it: a
        // message after the end is the customer's next contact, not a line
        // added to one nobody holds any more.
        if let Some(contact) = joined.conversation.contact.clone().filter(|_| !joined.opened)
            && self.contacts.contact_ended(tenant, &contact).await
        {
            self.conversations.close_for_contact(tenant, &contact, now).await?;
            joined = self.conversations.open_or_join(&candidate, window_ms(channel)).await?;
        }
        let conversation = joined.conversation;
        let contact = match &conversation.contact {
            Some(contact) => contact.clone(),
            // Opened now, or opened by an attempt that stopped before its
            // contact was recorded: the request id names the conversation,
            // so this finds that attempt's contact if it made one.
            None => self.contact_for(&conversation, channel, &message).await?,
        };
        let record = message_record(&conversation, &provider_message_id, message, now);
        match self.conversations.add_message(&record).await? {
            Added::New => self.publish(&record, Some(&contact), conversation.channel_kind).await?,
            Added::Duplicate(stored) => {
                self.publish_if_pending(&stored).await?;
                return Ok(Taken::Duplicate);
            }
        }
        self.chat_wakeups.wake(tenant, &conversation.conversation_id);
        tracing::info!(
            tenant = %tenant,
            channel = %channel_id,
            conversation = %conversation.conversation_id,
            contact = %contact,
            opened = joined.opened,
            "message added to its conversation"
        );
        Ok(if joined.opened { Taken::Opened } else { Taken::Joined })
    }

    /// The open conversation that holds the nearest message `replied_to`
    /// names (e-mail threading), whatever its window; `None` when none
    /// does.
    async fn open_thread(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        replied_to: &[String],
    ) -> Result<Option<ConversationRecord>, Error> {
        for id in replied_to {
            let provider_message_id = format!("{channel_id}/{id}");
            let Some(earlier) = self.conversations.find_message(tenant, channel_id, &provider_message_id).await? else {
                continue;
            };
            let conversation = self.conversations.get(tenant, &earlier.conversation_id).await?;
            return Ok(
                conversation.filter(|conversation| conversation.closed.is_none() && conversation.contact.is_some())
            );
        }
        Ok(None)
    }

    /// Creates (or finds) the conversation's contact and records it.
    async fn contact_for(
        &self,
        conversation: &ConversationRecord,
        channel: &ChannelResource,
        message: &InboundMessage,
    ) -> Result<ContactId, Error> {
        let request_id = format!("conversation-{}", conversation.conversation_id);
        let mut request: CreateContactRequest =
            contact_request(&conversation.tenant, &conversation.channel_id, channel, message, request_id);
        if let Some(contact) = request.contact.as_mut() {
            let name = conversation_name(&conversation.tenant, &conversation.conversation_id);
            contact.attributes.insert("conversation".to_owned(), name);
        }
        let contact = self.contacts.create_for_conversation(request).await?;
        let (_, contact_id) = parse_contact(&contact.name, "contact.name")?;
        self.conversations.attach_contact(&conversation.tenant, &conversation.conversation_id, &contact_id).await
    }

    pub(super) async fn publish_if_pending(&self, stored: &MessageRecord) -> Result<(), Error> {
        if stored.published {
            return Ok(());
        }
        match self.conversations.get(&stored.tenant, &stored.conversation_id).await? {
            Some(conversation) => self.publish(stored, conversation.contact.as_ref(), conversation.channel_kind).await,
            // Its conversation is gone (its tenant erased): nothing to say.
            None => Ok(()),
        }
    }

    /// Publishes the message's `MessageAdded` (of a conversation on a
    /// `channel_kind` channel, whose contact is `contact`) and remembers it.
    /// A message of a conversation with no contact yet (a notification the
    /// customer has not answered) is published with no contact, keyed by
    /// its conversation: usage meters it, and the agent who later takes
    /// the conversation reads it with `ListMessages`.
    pub(super) async fn publish(
        &self,
        record: &MessageRecord,
        contact: Option<&ContactId>,
        channel_kind: i32,
    ) -> Result<(), Error> {
        let added = MessageAdded {
            conversation: conversation_name(&record.tenant, &record.conversation_id),
            contact: contact
                .map(|contact| switchboard_core::names::contact_name(&record.tenant, contact))
                .unwrap_or_default(),
            message: Some(record.message.clone()),
            channel_kind,
        };
        let key = contact.map_or(record.conversation_id.as_str(), ContactId::as_str);
        let event = envelope_with_id(
            Some(&record.tenant),
            key,
            Payload::Contact(ContactEvent { kind: Some(contact_event::Kind::MessageAdded(added)) }),
            &record.event_id,
            record.created_ms,
        );
        publish_traced(self.bus.as_ref(), CONTACTS_TOPIC, &event).await.map_err(|error| {
            Error::unavailable(format!("the message is stored but its event is not yet published ({})", error.message))
        })?;
        // Once on the bus, a failure to remember it only republishes it.
        let mark = (record.tenant.clone(), record.message_id.clone());
        let marked = self
            .publication_marks
            .submit(mark, |marks| async move { self.conversations.mark_messages_published(&marks).await })
            .await;
        if let Err(error) = marked {
            tracing::warn!(tenant = %record.tenant, message = %record.message_id, error = %error, "recording the publication failed");
        }
        Ok(())
    }

    /// Publishes the events of messages stored more than `delay` ago and
    /// not yet on the bus; returns how many it looked at.
    pub async fn relay_once(&self, delay: Duration) -> Result<usize, Error> {
        let cutoff = now_millis() - std_duration_millis(delay);
        let pending = self.conversations.unpublished_messages(cutoff, RELAY_BATCH).await?;
        for stored in &pending {
            self.publish_if_pending(stored).await?;
        }
        Ok(pending.len())
    }

    /// Closes the conversations of the contacts routing ended (completed,
    /// abandoned, or ended unanswered) in `deliveries`, together; other
    /// events change nothing.
    pub async fn on_routing_events(&self, deliveries: &[Delivery]) -> Result<(), Error> {
        let mut ended = Vec::new();
        for delivery in deliveries {
            ended.extend(ended_contact(delivery)?);
        }
        if ended.is_empty() {
            return Ok(());
        }
        let closed = self.conversations.close_for_contacts(&ended).await?;
        tracing::debug!(ended = ended.len(), closed, "conversations closed with their contacts");
        Ok(())
    }
}

/// The contact a routing event ended, with its tenant and the time.
fn ended_contact(delivery: &Delivery) -> Result<Option<(TenantId, ContactId, i64)>, Error> {
    let envelope = &delivery.envelope;
    let Some(Payload::Routing(event)) = &envelope.payload else { return Ok(None) };
    let contact = match &event.kind {
        Some(routing_event::Kind::Completed(completed)) => &completed.contact,
        Some(routing_event::Kind::Abandoned(abandoned)) => &abandoned.contact,
        _ => return Ok(None),
    };
    let (tenant, contact) = parse_contact(contact, "contact")?;
    if envelope.tenant != tenant.as_str() {
        return Err(Error::invalid_field("contact", "names another tenant than its envelope"));
    }
    let at_ms = envelope.occurred_at.as_ref().map_or_else(now_millis, millis_from_timestamp);
    Ok(Some((tenant, contact, at_ms)))
}

/// The stored form of an inbound message of `conversation`.
fn message_record(
    conversation: &ConversationRecord,
    provider_message_id: &str,
    message: InboundMessage,
    now: i64,
) -> MessageRecord {
    let message_id = MessageId::generate();
    let author = identity_to_proto(&message.from);
    MessageRecord {
        tenant: conversation.tenant.clone(),
        conversation_id: conversation.conversation_id.clone(),
        message_id: message_id.clone(),
        channel_id: conversation.channel_id.clone(),
        provider_message_id: provider_message_id.to_owned(),
        message: Message {
            name: message_name(&conversation.tenant, &conversation.conversation_id, &message_id),
            direction: Direction::Inbound as i32,
            author: author.value,
            text: message.text,
            attachments: message
                .attachments
                .into_iter()
                .map(|attachment| Attachment {
                    content_type: attachment.content_type,
                    reference: attachment.reference,
                    file_name: attachment.file_name,
                    size_bytes: attachment.size_bytes.unwrap_or_default(),
                    caption: attachment.caption,
                })
                .collect(),
            provider_message_id: provider_message_id.to_owned(),
            create_time: Some(timestamp_from_millis(now)),
            send_time: message.sent_at_ms.map(timestamp_from_millis),
            author_display_name: message.display_name,
            subject: message.subject,
            ..Message::default()
        },
        created_ms: now,
        event_id: switchboard_core::event::new_event_id(),
        published: false,
        attempts: 0,
        next_attempt_ms: 0,
    }
}
