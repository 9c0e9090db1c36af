//! Conversations and their messages: the [`ConversationStore`] port, in
//! memory here and in PostgreSQL in [`postgres`], both held to
//! [`contract`].
//!
//! A customer's message joins the open conversation of its sender on its
//! channel while that conversation's last message is within the channel's
//! window; otherwise the stale one closes (`INACTIVE`) and a new one opens,
//! which is what makes a new contact to route. A conversation also closes
//! when its contact ends (`CONTACT_ENDED`). At most one conversation per
//! (tenant, channel, sender) is open at a time, whatever races.

#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod intake;
pub mod mailbox;
pub mod memory;
pub mod postgres;
pub mod replies;

use async_trait::async_trait;
use switchboard_core::identity::Identity;
use switchboard_core::{ChannelId, ContactId, ConversationId, Error, MessageId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::ingestion::v1::{DeliveryState, Message};

/// How long a conversation stays open without a message, unless its
/// channel says otherwise.
pub const DEFAULT_WINDOW_MS: i64 = 24 * 3_600_000;

/// Why a conversation closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Its contact was completed, abandoned or ended by routing.
    ContactEnded,
    /// No message came within its channel's window.
    Inactive,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ContactEnded => "CONTACT_ENDED",
            CloseReason::Inactive => "INACTIVE",
        }
    }

    pub fn parse(value: &str) -> Option<CloseReason> {
        [CloseReason::ContactEnded, CloseReason::Inactive].into_iter().find(|reason| reason.as_str() == value)
    }
}

/// A closed conversation's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    pub at_ms: i64,
    pub reason: CloseReason,
}

/// One conversation as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRecord {
    pub tenant: TenantId,
    pub conversation_id: ConversationId,
    pub channel_id: ChannelId,
    /// The `switchboard.common.v1.Channel` number of its messages.
    pub channel_kind: i32,
    pub customer: Identity,
    /// The contact routed for it; `None` until it is created.
    pub contact: Option<ContactId>,
    pub created_ms: i64,
    pub last_message_ms: i64,
    pub closed: Option<Closed>,
}

/// One message as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub tenant: TenantId,
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub channel_id: ChannelId,
    /// Scoped by the channel; unique per (tenant, channel) when not empty.
    pub provider_message_id: String,
    /// The message as clients see it (name included).
    pub message: Message,
    pub created_ms: i64,
    /// The id of its `MessageAdded` event, minted when it is stored.
    pub event_id: String,
    /// Whether its event is on the bus.
    pub published: bool,
    /// Outbound messages: the connector's attempts so far.
    pub attempts: u32,
    /// Outbound messages while QUEUED: when the next attempt is due.
    pub next_attempt_ms: i64,
}

impl MessageRecord {
    pub fn delivery_state(&self) -> DeliveryState {
        DeliveryState::try_from(self.message.delivery_state).unwrap_or(DeliveryState::Unspecified)
    }
}

/// What happened to an outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundUpdate {
    /// The provider accepted it under this (channel-scoped) id.
    Sent { provider_message_id: String },
    /// An attempt failed transiently; try again at `next_attempt_ms`.
    RetryAt { next_attempt_ms: i64, reason: String },
    /// The provider refused it, or the attempts ran out.
    Failed { reason: String },
    /// The provider reported it delivered or read (or failed after it was
    /// sent).
    Reported { state: DeliveryState, reason: String },
}

impl OutboundUpdate {
    /// What happened, without the provider's text: for logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            OutboundUpdate::Sent { .. } => "sent",
            OutboundUpdate::RetryAt { .. } => "retry",
            OutboundUpdate::Failed { .. } => "failed",
            OutboundUpdate::Reported { .. } => "reported",
        }
    }
}

/// Whether an outbound message in state `current` may move to `next`:
/// forward only (QUEUED, SENT, DELIVERED, READ), and FAILED only before
/// anything reached the customer.
pub fn moves_forward(current: DeliveryState, next: DeliveryState) -> bool {
    match next {
        DeliveryState::Failed => matches!(current, DeliveryState::Queued | DeliveryState::Sent),
        DeliveryState::Unspecified => false,
        _ => current != DeliveryState::Failed && (next as i32) > (current as i32),
    }
}

/// `record` with the customer's edit `text` at `edited_ms`; `None` when a
/// later (or the same) edit is there already.
pub fn edited(record: &MessageRecord, text: &str, edited_ms: i64) -> Option<MessageRecord> {
    let known_ms = record.message.edit_time.as_ref().map(switchboard_core::time::millis_from_timestamp);
    if known_ms.is_some_and(|known_ms| known_ms >= edited_ms) {
        return None;
    }
    let mut next = record.clone();
    text.clone_into(&mut next.message.text);
    next.message.edit_time = Some(switchboard_core::time::timestamp_from_millis(edited_ms));
    Some(next)
}

/// `record` after `update`; `None` when the update changes nothing.
pub fn updated(record: &MessageRecord, update: &OutboundUpdate) -> Option<MessageRecord> {
    let mut next = record.clone();
    let current = record.delivery_state();
    match update {
        OutboundUpdate::Sent { provider_message_id } => {
            if !moves_forward(current, DeliveryState::Sent) {
                return None;
            }
            next.message.delivery_state = DeliveryState::Sent as i32;
            next.provider_message_id.clone_from(provider_message_id);
            next.message.provider_message_id.clone_from(provider_message_id);
            next.attempts += 1;
        }
        OutboundUpdate::RetryAt { next_attempt_ms, reason } => {
            if current != DeliveryState::Queued {
                return None;
            }
            next.attempts += 1;
            next.next_attempt_ms = *next_attempt_ms;
            next.message.failure_reason.clone_from(reason);
        }
        OutboundUpdate::Failed { reason } => {
            if !moves_forward(current, DeliveryState::Failed) {
                return None;
            }
            next.attempts += u32::from(current == DeliveryState::Queued);
            next.message.delivery_state = DeliveryState::Failed as i32;
            next.message.failure_reason.clone_from(reason);
        }
        OutboundUpdate::Reported { state, reason } => {
            if !moves_forward(current, *state) {
                return None;
            }
            next.message.delivery_state = *state as i32;
            if *state == DeliveryState::Failed {
                next.message.failure_reason.clone_from(reason);
            }
        }
    }
    Some(next)
}

/// What [`ConversationStore::open_or_join`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub conversation: ConversationRecord,
    /// True when `conversation` was opened by this call.
    pub opened: bool,
}

/// What [`ConversationStore::add_message`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Added {
    New,
    /// The channel already has a message with this provider message id:
    /// the stored one.
    Duplicate(Box<MessageRecord>),
}

impl ConversationRecord {
    /// A conversation of `customer` on the channel as it would open now:
    /// no contact yet, not closed (the store joins an open one instead).
    pub fn opening(
        tenant: &TenantId,
        channel_id: &ChannelId,
        channel_kind: i32,
        customer: Identity,
        now_ms: i64,
    ) -> ConversationRecord {
        ConversationRecord {
            tenant: tenant.clone(),
            conversation_id: ConversationId::generate(),
            channel_id: channel_id.clone(),
            channel_kind,
            customer,
            contact: None,
            created_ms: now_ms,
            last_message_ms: now_ms,
            closed: None,
        }
    }
}

/// Conversations and messages by tenant. Every lookup takes the tenant.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// The open conversation of `candidate`'s sender on its channel if its
    /// last message is at most `window_ms` before `candidate.created_ms`;
    /// otherwise closes that one (`INACTIVE`) and stores `candidate` (open,
    /// without a contact). Atomic: of concurrent calls for one sender, one
    /// opens and the others join it.
    async fn open_or_join(&self, candidate: &ConversationRecord, window_ms: i64) -> Result<Joined, Error>;
    /// Records the conversation's contact, unless one is recorded already;
    /// returns the one recorded.
    async fn attach_contact(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
        contact: &ContactId,
    ) -> Result<ContactId, Error>;
    /// Stores a message of an existing conversation and moves its last
    /// message time (never back); a provider message id the channel has
    /// already, or a request id the conversation has already, is
    /// `Duplicate`, and nothing changes.
    async fn add_message(&self, record: &MessageRecord) -> Result<Added, Error>;
    /// The message of the channel with this provider message id.
    async fn find_message(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        provider_message_id: &str,
    ) -> Result<Option<MessageRecord>, Error>;
    /// Closes the open conversation of the contact (`CONTACT_ENDED`);
    /// false when none is open.
    async fn close_for_contact(&self, tenant: &TenantId, contact: &ContactId, at_ms: i64) -> Result<bool, Error>;
    /// [`ConversationStore::close_for_contact`] for every (tenant, contact,
    /// time), in one step where the store can; how many it closed.
    async fn close_for_contacts(&self, ended: &[(TenantId, ContactId, i64)]) -> Result<usize, Error> {
        let mut closed = 0;
        for (tenant, contact, at_ms) in ended {
            closed += usize::from(self.close_for_contact(tenant, contact, *at_ms).await?);
        }
        Ok(closed)
    }
    async fn get(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
    ) -> Result<Option<ConversationRecord>, Error>;
    /// The open conversation of `customer` on the channel, whatever its
    /// window.
    async fn open_conversation(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        customer: &Identity,
    ) -> Result<Option<ConversationRecord>, Error>;
    /// Up to `page.size + 1` conversations, newest first, with ids below
    /// `page.after`.
    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<ConversationRecord>, Error>;
    /// Up to `page.size + 1` messages of the conversation, oldest first,
    /// with ids above `page.after`.
    async fn messages(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
        page: &PageRequest,
    ) -> Result<Vec<MessageRecord>, Error>;
    /// Messages stored before `cutoff_ms` whose events are not on the bus,
    /// oldest first, for the outbox relay.
    async fn unpublished_messages(&self, cutoff_ms: i64, limit: usize) -> Result<Vec<MessageRecord>, Error>;
    async fn mark_message_published(&self, tenant: &TenantId, message_id: &MessageId) -> Result<(), Error> {
        self.mark_messages_published(&[(tenant.clone(), message_id.clone())]).await
    }
    /// [`ConversationStore::mark_message_published`] for every message, in
    /// one step where the store can; NOT_FOUND (after marking the others)
    /// if one does not exist.
    async fn mark_messages_published(&self, messages: &[(TenantId, MessageId)]) -> Result<(), Error>;
    /// Replaces the text of the channel's message with this provider id by
    /// the customer's edit, unless a later edit is stored already; the
    /// message after it, or `None` when there is no such message or the
    /// edit is older.
    async fn edit_message(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        provider_message_id: &str,
        text: &str,
        edited_ms: i64,
    ) -> Result<Option<MessageRecord>, Error>;
    /// The outbound message of the conversation sent with `request_id`.
    async fn find_by_request_id(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
        request_id: &str,
    ) -> Result<Option<MessageRecord>, Error>;
    /// QUEUED outbound messages whose next attempt is due at `now_ms`,
    /// oldest first.
    async fn due_outbound(&self, now_ms: i64, limit: usize) -> Result<Vec<MessageRecord>, Error>;
    /// Applies `update` to the outbound message as [`updated`] does, in one
    /// atomic step; the message after it, or `None` when nothing changed.
    async fn update_outbound(
        &self,
        tenant: &TenantId,
        message_id: &MessageId,
        update: &OutboundUpdate,
    ) -> Result<Option<MessageRecord>, Error>;

    /// Removes every conversation and message (and its pending deliveries) of `tenant` (a deleted tenant); idempotent.
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error>;
}
