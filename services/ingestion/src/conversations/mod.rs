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
pub mod memory;
pub mod postgres;

use async_trait::async_trait;
use switchboard_core::identity::Identity;
use switchboard_core::{ChannelId, ContactId, ConversationId, Error, MessageId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::ingestion::v1::Message;

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
    /// already is `Duplicate`, and nothing changes.
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
    async fn get(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
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
    async fn mark_message_published(&self, tenant: &TenantId, message_id: &MessageId) -> Result<(), Error>;
}
