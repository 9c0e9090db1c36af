//! Messages to the customer: a reply (or a notification) is stored QUEUED,
//! idempotent on its request id, and published as `MessageAdded`; the
//! [`Connector`] hands it to the channel's provider, retrying transient
//! failures with backoff, at most [`SENDS_PER_SECOND`] a second per
//! channel; providers' delivery reports move it on. Every change of state
//! is published as `MessageStatusChanged`.
//!
//! Toward the provider, delivery is at least once: a process that dies
//! after the provider accepted a message and before that was recorded sends
//! it again on restart (none of the providers takes an idempotency key for
//! a send).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::event::{CONTACTS_TOPIC, envelope};
use switchboard_core::names::{contact_name, conversation_name, message_name};
use switchboard_core::sync::lock_unpoisoned;
use switchboard_core::time::{now_millis, timestamp_from_millis};
use switchboard_core::{ChannelId, Error, MessageId, TenantId};
use switchboard_platform::bus::publish_traced;
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::common::v1::Direction;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::{
    ContactEvent, DeliveryState, EmailSettings, Message, MessageStatusChanged, contact_event,
};

use super::intake::ConversationIntake;
use super::{Added, ConversationRecord, MessageRecord, OutboundUpdate};
use crate::channel_settings::{MailProtocol, mail_endpoint, meta_account, telegram_bot, twilio_account};
use crate::channels::email::{self, EmailReply};
use crate::channels::{
    DeliveryState as ReportedState, DeliveryUpdate, MessageEdit, OutboundMessage, OutboundRequest, meta, telegram,
    twilio,
};
use crate::egress::{Egress, refusal_in};
use crate::mail::{self, MailFailure};
use crate::store::channels::ChannelStore;

/// Sends per second per channel, at most.
pub const SENDS_PER_SECOND: u32 = 10;
/// Attempts before a message is FAILED.
pub const MAX_ATTEMPTS: u32 = 8;
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const DUE_BATCH: usize = 50;
/// The messages of a conversation an e-mail reply is threaded under, at most.
const THREAD_MESSAGES: usize = 200;

/// The wait before attempt `attempts + 1`: 1 s, 2 s, 4 s … at most 5 min.
pub fn backoff_ms(attempts: u32) -> i64 {
    1_000_i64.saturating_mul(1_i64 << attempts.min(20)).min(300_000)
}

impl ConversationIntake {
    /// Stores `text` from `author` to the customer of `conversation`,
    /// QUEUED, and publishes it; a retry with the same `request_id`
    /// returns the first call's message (FAILED_PRECONDITION when its text
    /// differs).
    pub async fn reply(
        &self,
        conversation: &ConversationRecord,
        author: &str,
        text: &str,
        request_id: &str,
    ) -> Result<MessageRecord, Error> {
        let tenant = &conversation.tenant;
        // A retry's insert finds the first call's message (`Added::Duplicate`).
        let now = now_millis();
        let message_id = MessageId::generate();
        let record = MessageRecord {
            tenant: tenant.clone(),
            conversation_id: conversation.conversation_id.clone(),
            message_id: message_id.clone(),
            channel_id: conversation.channel_id.clone(),
            provider_message_id: String::new(),
            message: Message {
                name: message_name(tenant, &conversation.conversation_id, &message_id),
                direction: Direction::Outbound as i32,
                author: author.to_owned(),
                text: text.to_owned(),
                create_time: Some(timestamp_from_millis(now)),
                delivery_state: DeliveryState::Queued as i32,
                request_id: request_id.to_owned(),
                ..Message::default()
            },
            created_ms: now,
            event_id: switchboard_core::event::new_event_id(),
            published: false,
            attempts: 0,
            next_attempt_ms: now,
        };
        match self.conversations.add_message(&record).await? {
            Added::Duplicate(stored) => {
                let stored = same_reply(*stored, text, request_id)?;
                // A retry after a failed publication publishes it now.
                self.publish_if_pending(&stored).await?;
                Ok(stored)
            }
            Added::New => {
                self.publish(&record, conversation.contact.as_ref(), conversation.channel_kind).await?;
                self.sends.notify_one();
                tracing::info!(tenant = %tenant, conversation = %conversation.conversation_id, message = %message_id, "reply queued");
                Ok(record)
            }
        }
    }

    /// Applies a customer's edit to the message it names; false when the
    /// channel has no such message (or a later edit is stored). The edited
    /// message is published again as `MessageAdded`, with the same name and
    /// its `edit_time` set.
    pub async fn apply_edit(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        edit: MessageEdit,
    ) -> Result<bool, Error> {
        let provider_message_id = format!("{channel_id}/{}", edit.provider_message_id);
        let edited_ms = edit.edited_at_ms.unwrap_or_else(now_millis);
        let edited =
            self.conversations.edit_message(tenant, channel_id, &provider_message_id, &edit.text, edited_ms).await?;
        let Some(mut edited) = edited else { return Ok(false) };
        if let Some(conversation) = self.conversations.get(tenant, &edited.conversation_id).await? {
            // A new event for the edit (the stored event id is the original's).
            edited.event_id = switchboard_core::event::new_event_id();
            edited.created_ms = edited_ms;
            self.publish(&edited, conversation.contact.as_ref(), conversation.channel_kind).await?;
        }
        Ok(true)
    }

    /// Applies a provider's delivery report to the outbound message it
    /// names; false when the channel sent no such message.
    pub async fn apply_report(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        report: DeliveryUpdate,
    ) -> Result<bool, Error> {
        let provider_message_id = format!("{channel_id}/{}", report.provider_message_id);
        let Some(stored) = self.conversations.find_message(tenant, channel_id, &provider_message_id).await? else {
            return Ok(false);
        };
        let (state, reason) = match report.state {
            ReportedState::Sent => (DeliveryState::Sent, String::new()),
            ReportedState::Delivered => (DeliveryState::Delivered, String::new()),
            ReportedState::Read => (DeliveryState::Read, String::new()),
            ReportedState::Failed { reason } => (DeliveryState::Failed, reason),
        };
        let update = OutboundUpdate::Reported { state, reason };
        if let Some(next) = self.conversations.update_outbound(tenant, &stored.message_id, &update).await? {
            self.publish_status(&next).await;
        }
        Ok(true)
    }

    /// Publishes the message's new delivery state. A status event lost to a
    /// broker outage is logged, not retried: `ListMessages` is the record.
    pub async fn publish_status(&self, record: &MessageRecord) {
        let Ok(Some(conversation)) = self.conversations.get(&record.tenant, &record.conversation_id).await else {
            return;
        };
        let Some(contact) = conversation.contact else { return };
        let changed = MessageStatusChanged {
            conversation: conversation_name(&record.tenant, &record.conversation_id),
            contact: contact_name(&record.tenant, &contact),
            message: record.message.name.clone(),
            delivery_state: record.message.delivery_state,
            failure_reason: record.message.failure_reason.clone(),
        };
        let kind = contact_event::Kind::MessageStatusChanged(changed);
        let event =
            envelope(Some(&record.tenant), contact.as_str(), Payload::Contact(ContactEvent { kind: Some(kind) }));
        if let Err(error) = publish_traced(self.bus.as_ref(), CONTACTS_TOPIC, &event).await {
            tracing::warn!(tenant = %record.tenant, message = %record.message_id, error = %error, "message status not published");
        }
    }
}

fn same_reply(stored: MessageRecord, text: &str, request_id: &str) -> Result<MessageRecord, Error> {
    if stored.message.text == text {
        return Ok(stored);
    }
    Err(Error::failed_precondition(format!(
        "request_id `{request_id}` was already used for another message; use a new request_id for a new message"
    ))
    .with_reason("REQUEST_ID_REUSED")
    .with_field_violation("request_id", "was already used with a different text")
    .with_resource(stored.message.name))
}

/// Reads the provider's id of a sent message from its API's answer.
type SentMessageId = fn(&[u8]) -> Option<String>;

/// What one attempt came to.
enum Attempt {
    Accepted { provider_message_id: String },
    Transient(String),
    Refused(String),
}

/// Hands QUEUED messages to their channel's provider.
pub struct Connector {
    pub intake: Arc<ConversationIntake>,
    pub channels: Arc<dyn ChannelStore>,
    pub http: reqwest::Client,
    /// What providers' API URLs and mail servers may be.
    pub egress: Egress,
    /// Sends this second per (tenant, channel): (second, count).
    sent_this_second: Mutex<HashMap<(TenantId, ChannelId), (i64, u32)>>,
}

impl Connector {
    pub fn new(
        intake: Arc<ConversationIntake>,
        channels: Arc<dyn ChannelStore>,
        egress: Egress,
    ) -> Result<Connector, Error> {
        let http =
            egress.http_client(ATTEMPT_TIMEOUT).map_err(|error| Error::internal(format!("the connectors' {error}")))?;
        Ok(Connector { intake, channels, http, egress, sent_this_second: Mutex::new(HashMap::new()) })
    }

    /// Attempts every due message (within each channel's rate); returns how
    /// many it attempted.
    pub async fn send_due(&self) -> Result<usize, Error> {
        let now = now_millis();
        let due = self.intake.conversations.due_outbound(now, DUE_BATCH).await?;
        let mut attempted = 0;
        for record in due {
            if !self.take_send_slot(&record.tenant, &record.channel_id, now) {
                continue;
            }
            attempted += 1;
            let update = match self.attempt(&record).await {
                Attempt::Accepted { provider_message_id } => {
                    OutboundUpdate::Sent { provider_message_id: format!("{}/{provider_message_id}", record.channel_id) }
                }
                Attempt::Refused(reason) => OutboundUpdate::Failed { reason },
                Attempt::Transient(reason) if record.attempts + 1 >= MAX_ATTEMPTS => {
                    OutboundUpdate::Failed { reason: format!("gave up after {MAX_ATTEMPTS} attempts: {reason}") }
                }
                Attempt::Transient(reason) => {
                    OutboundUpdate::RetryAt { next_attempt_ms: now_millis() + backoff_ms(record.attempts), reason }
                }
            };
            // The provider's reason stays on the message (it may quote the
            // recipient's address or number): the log says only the outcome.
            tracing::info!(tenant = %record.tenant, message = %record.message_id, outcome = update.outcome(), "message attempt");
            let next = self.intake.conversations.update_outbound(&record.tenant, &record.message_id, &update).await?;
            self.intake.chat_wakeups.wake(&record.tenant, &record.conversation_id);
            if let Some(next) = next.filter(|next| next.message.delivery_state != record.message.delivery_state) {
                self.intake.publish_status(&next).await;
            }
        }
        Ok(attempted)
    }

    fn take_send_slot(&self, tenant: &TenantId, channel_id: &ChannelId, now_ms: i64) -> bool {
        let mut sent = lock_unpoisoned(&self.sent_this_second);
        let slot = sent.entry((tenant.clone(), channel_id.clone())).or_insert((now_ms / 1000, 0));
        if slot.0 != now_ms / 1000 {
            *slot = (now_ms / 1000, 0);
        }
        if slot.1 >= SENDS_PER_SECOND {
            return false;
        }
        slot.1 += 1;
        true
    }

    async fn attempt(&self, record: &MessageRecord) -> Attempt {
        let channel = match self.intake.channels_of(self.channels.as_ref(), record).await {
            Ok(Some(channel)) => channel,
            Ok(None) => return Attempt::Refused("the channel no longer exists or is disabled".to_owned()),
            Err(error) => return Attempt::Transient(error.message),
        };
        let (display_name, provider, recipient) = channel;
        let message = OutboundMessage {
            to: recipient,
            text: record.message.text.clone(),
            idempotency_key: record.message_id.to_string(),
        };
        let (request, read_id): (OutboundRequest, SentMessageId) = match &provider {
            Provider::Cti(_) => return Attempt::Refused("a call takes no text replies".to_owned()),
            Provider::WebForm(_) | Provider::Social(_) => {
                return Attempt::Refused("this channel takes no replies; answer by e-mail or phone".to_owned());
            }
            Provider::Email(settings) => return self.attempt_email(record, settings, display_name, message).await,
            // The visitor's sockets read it from the store (woken by the
            // state change); a socket that shows it reports it delivered.
            Provider::WebChat(_) => return Attempt::Accepted { provider_message_id: record.message_id.to_string() },
            Provider::Twilio(settings) => {
                (twilio::build_send(&twilio_account(settings), &message), twilio::sent_message_id)
            }
            Provider::Meta(settings) => (meta::build_send(&meta_account(settings), &message), meta::sent_message_id),
            Provider::Telegram(settings) => {
                (telegram::build_send(&telegram_bot(settings), &message), telegram::sent_message_id)
            }
        };
        if let Err(reason) = self.egress.check_url(&request.url) {
            return Attempt::Refused(reason);
        }
        let mut builder = self.http.post(&request.url).body(request.body);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(error) => match refusal_in(&error) {
                Some(reason) => return Attempt::Refused(reason),
                None => return Attempt::Transient(format!("the provider did not answer: {error}")),
            },
        };
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            return Attempt::Accepted { provider_message_id: read_id(&body).unwrap_or_default() };
        }
        let reason = format!("HTTP {}: {}", status.as_u16(), provider_error(&body));
        if status.as_u16() == 429 || status.is_server_error() {
            Attempt::Transient(reason)
        } else {
            Attempt::Refused(reason)
        }
    }
}

impl Connector {
    /// Sends an e-mail reply by SMTP, threaded under the conversation's
    /// messages. Its `Message-ID` is the provider message id.
    async fn attempt_email(
        &self,
        record: &MessageRecord,
        settings: &EmailSettings,
        display_name: String,
        message: OutboundMessage,
    ) -> Attempt {
        let Some(smtp) = &settings.smtp else {
            return Attempt::Refused("the channel has no SMTP server for replies".to_owned());
        };
        let page = PageRequest::resume_after(THREAD_MESSAGES, None);
        let earlier = match self.intake.conversations.messages(&record.tenant, &record.conversation_id, &page).await {
            Ok(earlier) => earlier,
            Err(error) => return Attempt::Transient(error.message),
        };
        let channel_prefix = format!("{}/", record.channel_id);
        let thread = earlier
            .iter()
            .filter(|earlier| earlier.message_id != record.message_id)
            .filter_map(|earlier| earlier.provider_message_id.strip_prefix(&channel_prefix).map(str::to_owned))
            .collect();
        let subject = earlier
            .iter()
            .rev()
            .find(|earlier| !earlier.message.subject.is_empty())
            .map(|earlier| earlier.message.subject.clone())
            .unwrap_or_default();
        let reply = EmailReply {
            from_address: settings.address.clone(),
            from_name: display_name,
            to_address: message.to,
            subject,
            text: message.text,
            id: message.idempotency_key,
            thread,
        };
        let built = match email::build_reply(&reply) {
            Ok(built) => built,
            Err(reason) => return Attempt::Refused(reason),
        };
        match mail::send(&mail_endpoint(smtp, MailProtocol::Smtp), self.egress, built).await {
            Ok(()) => Attempt::Accepted { provider_message_id: email::reply_message_id(&reply) },
            Err(MailFailure::Permanent(reason)) => Attempt::Refused(reason),
            Err(MailFailure::Transient(reason)) => Attempt::Transient(reason),
        }
    }
}

impl ConversationIntake {
    /// The display name and provider settings of the message's channel and
    /// the customer's address there; `None` when the channel is gone or
    /// disabled.
    async fn channels_of(
        &self,
        channels: &dyn ChannelStore,
        record: &MessageRecord,
    ) -> Result<Option<(String, Provider, String)>, Error> {
        let Some(stored) = channels.get(&record.tenant, &record.channel_id).await? else { return Ok(None) };
        let Some(provider) = stored.channel.provider.filter(|_| !stored.channel.disabled) else { return Ok(None) };
        let Some(conversation) = self.conversations.get(&record.tenant, &record.conversation_id).await? else {
            return Ok(None);
        };
        // Provider-scoped handles are `provider:id`; phones are as they are.
        let address = conversation.customer.value;
        let recipient = match address.split_once(':') {
            Some((_, id)) => id.to_owned(),
            None => address,
        };
        Ok(Some((stored.channel.display_name, provider, recipient)))
    }
}

/// The provider's own words for a refusal, when its answer has them
/// (Twilio `message`, Meta `error.message`, Telegram `description`).
fn provider_error(body: &[u8]) -> String {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    };
    let said = answer
        .get("message")
        .or_else(|| answer.get("error").and_then(|error| error.get("message")))
        .or_else(|| answer.get("description"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("no reason given");
    crate::channels::safe_text(&said.chars().take(500).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff_ms(0), 1_000);
        assert_eq!(backoff_ms(3), 8_000);
        assert_eq!(backoff_ms(40), 300_000);
    }

    #[test]
    fn provider_errors_are_read_from_each_format() {
        assert_eq!(
            provider_error(br#"{"code":21211,"message":"Invalid 'To' Phone Number"}"#),
            "Invalid 'To' Phone Number"
        );
        assert_eq!(
            provider_error(br#"{"error":{"message":"(#131030) Recipient not in allowed list"}}"#),
            "(#131030) Recipient not in allowed list"
        );
        assert_eq!(
            provider_error(br#"{"ok":false,"description":"Forbidden: bot was blocked by the user"}"#),
            "Forbidden: bot was blocked by the user"
        );
        assert_eq!(provider_error(b"<html>bad gateway</html>"), "<html>bad gateway</html>");
    }
}
