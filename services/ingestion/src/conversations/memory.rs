//! [`ConversationStore`] in memory (`dev` mode, tests): one lock over
//! everything, so each method is atomic.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use switchboard_core::identity::Identity;
use switchboard_core::names::conversation_name;
use switchboard_core::sync::lock_unpoisoned;
use switchboard_core::{ChannelId, ContactId, ConversationId, Error, MessageId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::ingestion::v1::DeliveryState;

use super::{
    Added, CloseReason, Closed, ConversationRecord, ConversationStore, Joined, MessageRecord, OutboundUpdate, edited,
    updated,
};

#[derive(Default)]
struct Tenants {
    conversations: HashMap<TenantId, BTreeMap<String, ConversationRecord>>,
    /// The open conversation of each (tenant, channel, sender).
    open: HashMap<(TenantId, ChannelId, Identity), ConversationId>,
    messages: HashMap<TenantId, BTreeMap<String, MessageRecord>>,
    by_provider_id: HashMap<(TenantId, ChannelId, String), MessageId>,
}

#[derive(Default)]
pub struct MemoryConversationStore {
    tenants: Mutex<Tenants>,
}

impl MemoryConversationStore {
    fn lock(&self) -> MutexGuard<'_, Tenants> {
        lock_unpoisoned(&self.tenants)
    }
}

fn not_found(tenant: &TenantId, conversation_id: &ConversationId) -> Error {
    Error::not_found(conversation_name(tenant, conversation_id))
}

impl Tenants {
    fn conversation_mut(
        &mut self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
    ) -> Result<&mut ConversationRecord, Error> {
        self.conversations
            .get_mut(tenant)
            .and_then(|conversations| conversations.get_mut(conversation_id.as_str()))
            .ok_or_else(|| not_found(tenant, conversation_id))
    }
}

#[async_trait]
impl ConversationStore for MemoryConversationStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        let mut tenants = self.lock();
        tenants.conversations.remove(tenant);
        tenants.open.retain(|(owner, _, _), _| owner != tenant);
        tenants.messages.remove(tenant);
        tenants.by_provider_id.retain(|(owner, _, _), _| owner != tenant);
        Ok(())
    }

    async fn open_or_join(&self, candidate: &ConversationRecord, window_ms: i64) -> Result<Joined, Error> {
        let mut tenants = self.lock();
        let key = (candidate.tenant.clone(), candidate.channel_id.clone(), candidate.customer.clone());
        if let Some(open_id) = tenants.open.get(&key).cloned() {
            let open = tenants.conversation_mut(&candidate.tenant, &open_id)?;
            if open.last_message_ms >= candidate.created_ms - window_ms {
                return Ok(Joined { conversation: open.clone(), opened: false });
            }
            open.closed = Some(Closed { at_ms: candidate.created_ms, reason: CloseReason::Inactive });
            tenants.open.remove(&key);
        }
        let conversation = ConversationRecord { contact: None, closed: None, ..candidate.clone() };
        tenants
            .conversations
            .entry(candidate.tenant.clone())
            .or_default()
            .insert(candidate.conversation_id.as_str().to_owned(), conversation.clone());
        tenants.open.insert(key, candidate.conversation_id.clone());
        Ok(Joined { conversation, opened: true })
    }

    async fn attach_contact(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
        contact: &ContactId,
    ) -> Result<ContactId, Error> {
        let mut tenants = self.lock();
        let conversation = tenants.conversation_mut(tenant, conversation_id)?;
        Ok(conversation.contact.get_or_insert_with(|| contact.clone()).clone())
    }

    async fn add_message(&self, record: &MessageRecord) -> Result<Added, Error> {
        let mut tenants = self.lock();
        if !record.message.request_id.is_empty() {
            let same_request = tenants.messages.get(&record.tenant).and_then(|messages| {
                messages.values().find(|message| {
                    message.conversation_id == record.conversation_id
                        && message.message.request_id == record.message.request_id
                })
            });
            if let Some(existing) = same_request {
                return Ok(Added::Duplicate(Box::new(existing.clone())));
            }
        }
        let provider_key = (record.tenant.clone(), record.channel_id.clone(), record.provider_message_id.clone());
        if !record.provider_message_id.is_empty()
            && let Some(existing_id) = tenants.by_provider_id.get(&provider_key)
        {
            let existing = tenants.messages.get(&record.tenant).and_then(|messages| messages.get(existing_id.as_str()));
            if let Some(existing) = existing {
                return Ok(Added::Duplicate(Box::new(existing.clone())));
            }
        }
        let conversation = tenants.conversation_mut(&record.tenant, &record.conversation_id)?;
        conversation.last_message_ms = conversation.last_message_ms.max(record.created_ms);
        if !record.provider_message_id.is_empty() {
            tenants.by_provider_id.insert(provider_key, record.message_id.clone());
        }
        tenants
            .messages
            .entry(record.tenant.clone())
            .or_default()
            .insert(record.message_id.as_str().to_owned(), record.clone());
        Ok(Added::New)
    }

    async fn find_message(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        provider_message_id: &str,
    ) -> Result<Option<MessageRecord>, Error> {
        let tenants = self.lock();
        let key = (tenant.clone(), channel_id.clone(), provider_message_id.to_owned());
        let Some(message_id) = tenants.by_provider_id.get(&key) else { return Ok(None) };
        Ok(tenants.messages.get(tenant).and_then(|messages| messages.get(message_id.as_str())).cloned())
    }

    async fn close_for_contact(&self, tenant: &TenantId, contact: &ContactId, at_ms: i64) -> Result<bool, Error> {
        let mut tenants = self.lock();
        let open_key = tenants
            .open
            .iter()
            .find(|((open_tenant, _, _), conversation_id)| {
                open_tenant == tenant
                    && tenants
                        .conversations
                        .get(tenant)
                        .and_then(|conversations| conversations.get(conversation_id.as_str()))
                        .is_some_and(|conversation| conversation.contact.as_ref() == Some(contact))
            })
            .map(|(key, conversation_id)| (key.clone(), conversation_id.clone()));
        let Some((key, conversation_id)) = open_key else { return Ok(false) };
        tenants.open.remove(&key);
        let conversation = tenants.conversation_mut(tenant, &conversation_id)?;
        conversation.closed = Some(Closed { at_ms, reason: CloseReason::ContactEnded });
        Ok(true)
    }

    async fn open_conversation(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        customer: &Identity,
    ) -> Result<Option<ConversationRecord>, Error> {
        let tenants = self.lock();
        let key = (tenant.clone(), channel_id.clone(), customer.clone());
        let Some(open_id) = tenants.open.get(&key) else { return Ok(None) };
        Ok(tenants.conversations.get(tenant).and_then(|conversations| conversations.get(open_id.as_str())).cloned())
    }

    async fn get(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
    ) -> Result<Option<ConversationRecord>, Error> {
        let tenants = self.lock();
        Ok(tenants
            .conversations
            .get(tenant)
            .and_then(|conversations| conversations.get(conversation_id.as_str()))
            .cloned())
    }

    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<ConversationRecord>, Error> {
        let tenants = self.lock();
        let Some(conversations) = tenants.conversations.get(tenant) else { return Ok(Vec::new()) };
        Ok(conversations
            .values()
            .rev()
            .filter(|conversation| {
                page.after.as_deref().is_none_or(|after| conversation.conversation_id.as_str() < after)
            })
            .take(page.size + 1)
            .cloned()
            .collect())
    }

    async fn messages(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
        page: &PageRequest,
    ) -> Result<Vec<MessageRecord>, Error> {
        let tenants = self.lock();
        let Some(messages) = tenants.messages.get(tenant) else { return Ok(Vec::new()) };
        Ok(messages
            .values()
            .filter(|message| &message.conversation_id == conversation_id)
            .filter(|message| page.after.as_deref().is_none_or(|after| message.message_id.as_str() > after))
            .take(page.size + 1)
            .cloned()
            .collect())
    }

    async fn unpublished_messages(&self, cutoff_ms: i64, limit: usize) -> Result<Vec<MessageRecord>, Error> {
        let tenants = self.lock();
        let mut pending: Vec<MessageRecord> = tenants
            .messages
            .values()
            .flat_map(BTreeMap::values)
            .filter(|message| !message.published && message.created_ms < cutoff_ms)
            .cloned()
            .collect();
        pending
            .sort_by(|left, right| left.created_ms.cmp(&right.created_ms).then(left.message_id.cmp(&right.message_id)));
        pending.truncate(limit);
        Ok(pending)
    }

    async fn edit_message(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        provider_message_id: &str,
        text: &str,
        edited_ms: i64,
    ) -> Result<Option<MessageRecord>, Error> {
        let mut tenants = self.lock();
        let key = (tenant.clone(), channel_id.clone(), provider_message_id.to_owned());
        let Some(message_id) = tenants.by_provider_id.get(&key).cloned() else { return Ok(None) };
        let Some(message) = tenants.messages.get_mut(tenant).and_then(|messages| messages.get_mut(message_id.as_str()))
        else {
            return Ok(None);
        };
        let Some(next) = edited(message, text, edited_ms) else { return Ok(None) };
        *message = next.clone();
        Ok(Some(next))
    }

    async fn find_by_request_id(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
        request_id: &str,
    ) -> Result<Option<MessageRecord>, Error> {
        let tenants = self.lock();
        let Some(messages) = tenants.messages.get(tenant) else { return Ok(None) };
        Ok(messages
            .values()
            .find(|message| &message.conversation_id == conversation_id && message.message.request_id == request_id)
            .cloned())
    }

    async fn due_outbound(&self, now_ms: i64, limit: usize) -> Result<Vec<MessageRecord>, Error> {
        let tenants = self.lock();
        let mut due: Vec<MessageRecord> = tenants
            .messages
            .values()
            .flat_map(BTreeMap::values)
            .filter(|message| message.delivery_state() == DeliveryState::Queued && message.next_attempt_ms <= now_ms)
            .cloned()
            .collect();
        due.sort_by(|left, right| left.created_ms.cmp(&right.created_ms).then(left.message_id.cmp(&right.message_id)));
        due.truncate(limit);
        Ok(due)
    }

    async fn update_outbound(
        &self,
        tenant: &TenantId,
        message_id: &MessageId,
        update: &OutboundUpdate,
    ) -> Result<Option<MessageRecord>, Error> {
        let mut tenants = self.lock();
        let Some(message) = tenants.messages.get_mut(tenant).and_then(|messages| messages.get_mut(message_id.as_str()))
        else {
            return Err(Error::not_found(format!("tenants/{tenant}/messages/{message_id}")));
        };
        let Some(next) = updated(message, update) else { return Ok(None) };
        *message = next.clone();
        if let OutboundUpdate::Sent { provider_message_id } = update {
            let key = (tenant.clone(), next.channel_id.clone(), provider_message_id.clone());
            tenants.by_provider_id.insert(key, message_id.clone());
        }
        Ok(Some(next))
    }

    async fn mark_messages_published(&self, messages: &[(TenantId, MessageId)]) -> Result<(), Error> {
        let mut tenants = self.lock();
        let mut missing = None;
        for (tenant, message_id) in messages {
            match tenants.messages.get_mut(tenant).and_then(|stored| stored.get_mut(message_id.as_str())) {
                Some(message) => message.published = true,
                None => missing = Some(format!("tenants/{tenant}/messages/{message_id}")),
            }
        }
        missing.map_or(Ok(()), |message| Err(Error::not_found(message)))
    }
}
