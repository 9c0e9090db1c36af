//! The behaviour every [`ConversationStore`] must have: run on memory as a
//! unit test and on PostgreSQL in `tests/postgres_store.rs`. Each check uses
//! tenants of its own.

use std::sync::Arc;

use anyhow::{Context, ensure};
use switchboard_core::identity::{Identity, IdentityKind};
use switchboard_core::{ChannelId, ContactId, ConversationId, MessageId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::ingestion::v1::Message;

use switchboard_proto::ingestion::v1::DeliveryState;

use super::{Added, CloseReason, ConversationRecord, ConversationStore, MessageRecord, OutboundUpdate};
use crate::store::contract::fresh_tenant;

const HOUR_MS: i64 = 3_600_000;

/// Runs every check against `store`.
pub async fn run_conversation_contract(store: Arc<dyn ConversationStore>) -> anyhow::Result<()> {
    messages_join_the_open_conversation(store.as_ref()).await.context("messages_join_the_open_conversation")?;
    an_inactive_conversation_gives_way(store.as_ref()).await.context("an_inactive_conversation_gives_way")?;
    an_ended_contact_closes_its_conversation(store.as_ref())
        .await
        .context("an_ended_contact_closes_its_conversation")?;
    provider_ids_are_stored_once(store.as_ref()).await.context("provider_ids_are_stored_once")?;
    concurrent_opens_make_one_conversation(Arc::clone(&store))
        .await
        .context("concurrent_opens_make_one_conversation")?;
    unpublished_messages_are_found_for_the_relay(store.as_ref())
        .await
        .context("unpublished_messages_are_found_for_the_relay")?;
    tenants_are_isolated(store.as_ref()).await.context("tenants_are_isolated")?;
    erasing_a_tenant_leaves_the_others(store.as_ref()).await.context("erasing_a_tenant_leaves_the_others")?;
    outbound_messages_only_move_forward(store.as_ref()).await.context("outbound_messages_only_move_forward")?;
    Ok(())
}

fn phone(value: &str) -> Identity {
    Identity { kind: IdentityKind::Phone, value: value.to_owned() }
}

/// A new conversation of `customer` on channel `sms` at `at_ms`.
pub fn candidate(tenant: &TenantId, customer: &Identity, at_ms: i64) -> anyhow::Result<ConversationRecord> {
    Ok(ConversationRecord {
        tenant: tenant.clone(),
        conversation_id: ConversationId::generate(),
        channel_id: ChannelId::parse("sms", "channel")?,
        channel_kind: switchboard_proto::common::v1::Channel::Sms as i32,
        customer: customer.clone(),
        contact: None,
        created_ms: at_ms,
        last_message_ms: at_ms,
        closed: None,
    })
}

/// A message of `conversation` with provider id `provider_id` at `at_ms`.
pub fn message(conversation: &ConversationRecord, provider_id: &str, at_ms: i64) -> MessageRecord {
    MessageRecord {
        tenant: conversation.tenant.clone(),
        conversation_id: conversation.conversation_id.clone(),
        message_id: MessageId::generate(),
        channel_id: conversation.channel_id.clone(),
        provider_message_id: provider_id.to_owned(),
        message: Message { text: format!("text of {provider_id}"), ..Message::default() },
        created_ms: at_ms,
        event_id: switchboard_core::event::new_event_id(),
        published: false,
        attempts: 0,
        next_attempt_ms: 0,
    }
}

async fn messages_join_the_open_conversation(store: &dyn ConversationStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("conversations-join")?;
    let ann = phone("+15550001");
    let first = store.open_or_join(&candidate(&tenant, &ann, 1_000)?, HOUR_MS).await?;
    ensure!(first.opened && first.conversation.contact.is_none(), "the first message opens one");
    let contact = ContactId::generate();
    let attached = store.attach_contact(&tenant, &first.conversation.conversation_id, &contact).await?;
    ensure!(attached == contact, "the contact is attached");
    let other = store.attach_contact(&tenant, &first.conversation.conversation_id, &ContactId::generate()).await?;
    ensure!(other == contact, "a second attach keeps the first contact");
    ensure!(store.add_message(&message(&first.conversation, "m1", 1_000)).await? == Added::New, "stored");

    let second = store.open_or_join(&candidate(&tenant, &ann, 1_000 + HOUR_MS / 2)?, HOUR_MS).await?;
    ensure!(!second.opened, "a message within the window joins");
    ensure!(second.conversation.conversation_id == first.conversation.conversation_id, "the same conversation");
    ensure!(second.conversation.contact.as_ref() == Some(&contact), "with its contact");
    store.add_message(&message(&second.conversation, "m2", 1_000 + HOUR_MS / 2)).await?;
    let bob = store.open_or_join(&candidate(&tenant, &phone("+15550002"), 2_000)?, HOUR_MS).await?;
    ensure!(bob.opened, "another sender has a conversation of its own");
    let channel = &first.conversation.channel_id;
    let open = store.open_conversation(&tenant, channel, &ann).await?.context("ann's open conversation")?;
    ensure!(open.conversation_id == first.conversation.conversation_id, "found by its sender: {open:?}");
    ensure!(store.open_conversation(&tenant, channel, &phone("+15550003")).await?.is_none(), "none for a stranger");

    let messages =
        store.messages(&tenant, &first.conversation.conversation_id, &PageRequest::resume_after(10, None)).await?;
    let texts: Vec<&str> = messages.iter().map(|message| message.message.text.as_str()).collect();
    ensure!(texts == ["text of m1", "text of m2"], "messages oldest first: {texts:?}");
    let page =
        store.messages(&tenant, &first.conversation.conversation_id, &PageRequest::resume_after(1, None)).await?;
    let rest = PageRequest::resume_after(1, Some(page[0].message_id.as_str()));
    let rest = store.messages(&tenant, &first.conversation.conversation_id, &rest).await?;
    ensure!(rest.len() == 1 && rest[0].message.text == "text of m2", "messages page after a key");
    let stored = store.get(&tenant, &first.conversation.conversation_id).await?.context("stored")?;
    ensure!(stored.last_message_ms == 1_000 + HOUR_MS / 2, "the last message time moved: {stored:?}");
    let listed = store.list(&tenant, &PageRequest::resume_after(10, None)).await?;
    ensure!(listed.len() == 2 && listed[0].conversation_id == bob.conversation.conversation_id, "newest first");
    Ok(())
}

async fn an_inactive_conversation_gives_way(store: &dyn ConversationStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("conversations-inactive")?;
    let ann = phone("+15550003");
    let first = store.open_or_join(&candidate(&tenant, &ann, 0)?, HOUR_MS).await?;
    let later = store.open_or_join(&candidate(&tenant, &ann, HOUR_MS + 1)?, HOUR_MS).await?;
    ensure!(later.opened, "a message after the window opens a new conversation");
    let old = store.get(&tenant, &first.conversation.conversation_id).await?.context("kept")?;
    let closed = old.closed.context("the old one is closed")?;
    ensure!(closed.reason == CloseReason::Inactive && closed.at_ms == HOUR_MS + 1, "as inactive: {closed:?}");
    Ok(())
}

async fn an_ended_contact_closes_its_conversation(store: &dyn ConversationStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("conversations-ended")?;
    let ann = phone("+15550004");
    let first = store.open_or_join(&candidate(&tenant, &ann, 0)?, HOUR_MS).await?;
    let contact = ContactId::generate();
    store.attach_contact(&tenant, &first.conversation.conversation_id, &contact).await?;
    ensure!(store.close_for_contact(&tenant, &contact, 500).await?, "the contact's conversation closes");
    ensure!(!store.close_for_contact(&tenant, &contact, 600).await?, "once");
    let closed = store.get(&tenant, &first.conversation.conversation_id).await?.context("kept")?.closed;
    ensure!(closed.is_some_and(|closed| closed.reason == CloseReason::ContactEnded && closed.at_ms == 500), "ended");
    let channel = &first.conversation.channel_id;
    ensure!(store.open_conversation(&tenant, channel, &ann).await?.is_none(), "a closed conversation is not open");
    let next = store.open_or_join(&candidate(&tenant, &ann, 700)?, HOUR_MS).await?;
    ensure!(next.opened, "the next message opens a new conversation, within the window or not");

    let bob = store.open_or_join(&candidate(&tenant, &phone("+15550010"), 0)?, HOUR_MS).await?;
    let (ann_contact, bob_contact) = (ContactId::generate(), ContactId::generate());
    store.attach_contact(&tenant, &next.conversation.conversation_id, &ann_contact).await?;
    store.attach_contact(&tenant, &bob.conversation.conversation_id, &bob_contact).await?;
    let ended = [
        (tenant.clone(), ann_contact.clone(), 800),
        (tenant.clone(), bob_contact, 900),
        (tenant.clone(), ContactId::generate(), 900),
    ];
    ensure!(store.close_for_contacts(&ended).await? == 2, "a batch closes each open conversation of its contacts");
    ensure!(store.close_for_contacts(&ended).await? == 0, "once");
    let closed = store.get(&tenant, &next.conversation.conversation_id).await?.context("kept")?.closed;
    ensure!(closed.is_some_and(|closed| closed.at_ms == 800), "at its contact's end: {closed:?}");
    Ok(())
}

async fn provider_ids_are_stored_once(store: &dyn ConversationStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("conversations-dedupe")?;
    let joined = store.open_or_join(&candidate(&tenant, &phone("+15550005"), 0)?, HOUR_MS).await?;
    let original = message(&joined.conversation, "sms/SM1", 10);
    ensure!(store.add_message(&original).await? == Added::New, "stored");
    let again = store.add_message(&message(&joined.conversation, "sms/SM1", 20)).await?;
    ensure!(again == Added::Duplicate(Box::new(original.clone())), "a redelivery is the stored message: {again:?}");
    let found = store.find_message(&tenant, &original.channel_id, "sms/SM1").await?;
    ensure!(found.as_ref() == Some(&original), "found by provider id");
    ensure!(store.find_message(&tenant, &original.channel_id, "sms/SM2").await?.is_none(), "others are absent");
    let stored = store.get(&tenant, &joined.conversation.conversation_id).await?.context("kept")?;
    ensure!(stored.last_message_ms == 10, "a duplicate moves nothing");
    let edited = store.edit_message(&tenant, &original.channel_id, "sms/SM1", "fixed text", 50).await?;
    ensure!(edited.is_some_and(|edited| edited.message.text == "fixed text"), "an edit replaces the text");
    let stale = store.edit_message(&tenant, &original.channel_id, "sms/SM1", "older edit", 40).await?;
    ensure!(stale.is_none(), "an older edit changes nothing");
    let kept = store.find_message(&tenant, &original.channel_id, "sms/SM1").await?.context("kept")?;
    ensure!(kept.message.text == "fixed text" && kept.message.edit_time.is_some(), "the latest edit is kept: {kept:?}");
    ensure!(store.edit_message(&tenant, &original.channel_id, "sms/none", "x", 60).await?.is_none(), "no such message");
    let nowhere = ConversationRecord { conversation_id: ConversationId::generate(), ..joined.conversation.clone() };
    let orphan = store.add_message(&message(&nowhere, "sms/SM3", 30)).await;
    ensure!(
        orphan.is_err_and(|error| error.code == switchboard_core::ErrorCode::NotFound),
        "a message of no conversation is NOT_FOUND"
    );
    ensure!(store.find_message(&tenant, &original.channel_id, "sms/SM3").await?.is_none(), "and is not stored");
    Ok(())
}

async fn concurrent_opens_make_one_conversation(store: Arc<dyn ConversationStore>) -> anyhow::Result<()> {
    let tenant = fresh_tenant("conversations-race")?;
    let ann = phone("+15550006");
    let mut tasks = Vec::new();
    for at_ms in 0..8 {
        let (store, candidate) = (Arc::clone(&store), candidate(&tenant, &ann, at_ms)?);
        tasks.push(tokio::spawn(async move { store.open_or_join(&candidate, HOUR_MS).await }));
    }
    let mut opened = 0;
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let joined = task.await??;
        opened += usize::from(joined.opened);
        ids.insert(joined.conversation.conversation_id);
    }
    ensure!(opened == 1 && ids.len() == 1, "one opened, every other joined it ({opened} opened, {} ids)", ids.len());
    Ok(())
}

async fn unpublished_messages_are_found_for_the_relay(store: &dyn ConversationStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("conversations-relay")?;
    let joined = store.open_or_join(&candidate(&tenant, &phone("+15550007"), 0)?, HOUR_MS).await?;
    let old = message(&joined.conversation, "relay-1", 100);
    store.add_message(&old).await?;
    store.add_message(&message(&joined.conversation, "relay-2", 5_000)).await?;
    let pending = store.unpublished_messages(1_000, 100).await?;
    ensure!(pending.iter().any(|message| message.message_id == old.message_id), "the old one is pending");
    ensure!(pending.iter().all(|message| message.created_ms < 1_000), "only those before the cutoff");
    store.mark_message_published(&tenant, &old.message_id).await?;
    let pending = store.unpublished_messages(1_000, 100).await?;
    ensure!(pending.iter().all(|message| message.message_id != old.message_id), "published ones are not");
    Ok(())
}

async fn tenants_are_isolated(store: &dyn ConversationStore) -> anyhow::Result<()> {
    let acme = fresh_tenant("conversations-acme")?;
    let globex = fresh_tenant("conversations-globex")?;
    let ann = phone("+15550008");
    let acme_one = store.open_or_join(&candidate(&acme, &ann, 0)?, HOUR_MS).await?;
    let globex_one = store.open_or_join(&candidate(&globex, &ann, 0)?, HOUR_MS).await?;
    ensure!(globex_one.opened, "the same phone on the same channel id of another tenant is its own conversation");
    ensure!(store.get(&globex, &acme_one.conversation.conversation_id).await?.is_none(), "not readable across");
    store.add_message(&message(&acme_one.conversation, "shared-id", 1)).await?;
    let globex_message = store.add_message(&message(&globex_one.conversation, "shared-id", 1)).await?;
    ensure!(globex_message == Added::New, "provider ids are per tenant");
    let empty = PageRequest::resume_after(10, None);
    let leaked = store.messages(&globex, &acme_one.conversation.conversation_id, &empty).await?;
    ensure!(leaked.is_empty(), "no messages across tenants");
    Ok(())
}

/// Erasing a tenant removes its conversations, messages and pending
/// deliveries (the same sender then opens a new conversation), and no other
/// tenant's; erasing again changes nothing.
async fn erasing_a_tenant_leaves_the_others(store: &dyn ConversationStore) -> anyhow::Result<()> {
    let erased = fresh_tenant("conversations-erased")?;
    let kept = fresh_tenant("conversations-kept")?;
    let ann = phone("+15550010");
    let mut opened = Vec::new();
    for tenant in [&erased, &kept] {
        let joined = store.open_or_join(&candidate(tenant, &ann, 0)?, HOUR_MS).await?;
        store.add_message(&message(&joined.conversation, "erase-me", 1)).await?;
        store.add_message(&outbound(&joined.conversation, "reply", 2)).await?;
        opened.push(joined.conversation);
    }
    store.erase_tenant(&erased).await?;
    store.erase_tenant(&erased).await?;
    let everything = PageRequest::resume_after(10, None);
    ensure!(store.list(&erased, &everything).await?.is_empty(), "no conversations of the erased tenant");
    ensure!(store.get(&erased, &opened[0].conversation_id).await?.is_none(), "its conversation is gone");
    ensure!(store.messages(&erased, &opened[0].conversation_id, &everything).await?.is_empty(), "its messages too");
    let due = store.due_outbound(i64::MAX, 1_000).await?;
    ensure!(due.iter().all(|pending| pending.tenant != erased), "no delivery of it is pending");
    let again = store.open_or_join(&candidate(&erased, &ann, 10)?, HOUR_MS).await?;
    ensure!(again.opened, "the same sender opens a new conversation");
    ensure!(store.get(&kept, &opened[1].conversation_id).await?.is_some(), "the other tenant's conversation stays");
    let kept_messages = store.messages(&kept, &opened[1].conversation_id, &everything).await?;
    ensure!(kept_messages.len() == 2, "with its messages: {kept_messages:?}");
    Ok(())
}

/// An outbound message of `conversation` queued at `at_ms` with `request_id`.
pub fn outbound(conversation: &ConversationRecord, request_id: &str, at_ms: i64) -> MessageRecord {
    let mut record = message(conversation, "", at_ms);
    record.message.direction = switchboard_proto::common::v1::Direction::Outbound as i32;
    record.message.delivery_state = DeliveryState::Queued as i32;
    record.message.request_id = request_id.to_owned();
    record.next_attempt_ms = at_ms;
    record
}

async fn outbound_messages_only_move_forward(store: &dyn ConversationStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("conversations-outbound")?;
    let joined = store.open_or_join(&candidate(&tenant, &phone("+15550009"), 0)?, HOUR_MS).await?;
    let reply = outbound(&joined.conversation, "reply-1", 100);
    ensure!(store.add_message(&reply).await? == Added::New, "queued");
    let again = store.add_message(&outbound(&joined.conversation, "reply-1", 200)).await?;
    ensure!(again == Added::Duplicate(Box::new(reply.clone())), "a request id is one message: {again:?}");
    let found = store.find_by_request_id(&tenant, &joined.conversation.conversation_id, "reply-1").await?;
    ensure!(found.as_ref() == Some(&reply), "found by request id");

    let due = store.due_outbound(100, 100).await?;
    ensure!(due.iter().any(|message| message.message_id == reply.message_id), "due at its time");
    let retry = OutboundUpdate::RetryAt { next_attempt_ms: 5_000, reason: "HTTP 503".to_owned() };
    let retried = store.update_outbound(&tenant, &reply.message_id, &retry).await?.context("a retry is a change")?;
    ensure!(retried.attempts == 1 && retried.next_attempt_ms == 5_000, "the attempt counts: {retried:?}");
    ensure!(
        store.due_outbound(4_999, 100).await?.iter().all(|message| message.message_id != reply.message_id),
        "not due before its next attempt"
    );
    let sent = OutboundUpdate::Sent { provider_message_id: "sms/SM42".to_owned() };
    let sent = store.update_outbound(&tenant, &reply.message_id, &sent).await?.context("sent")?;
    ensure!(sent.delivery_state() == DeliveryState::Sent && sent.attempts == 2, "sent on the second attempt");
    ensure!(
        store
            .find_message(&tenant, &sent.channel_id, "sms/SM42")
            .await?
            .is_some_and(|found| found.message_id == reply.message_id),
        "found by the provider's id once sent"
    );
    let delivered = OutboundUpdate::Reported { state: DeliveryState::Delivered, reason: String::new() };
    ensure!(store.update_outbound(&tenant, &reply.message_id, &delivered).await?.is_some(), "delivered");
    let late_sent = OutboundUpdate::Reported { state: DeliveryState::Sent, reason: String::new() };
    ensure!(store.update_outbound(&tenant, &reply.message_id, &late_sent).await?.is_none(), "never back");
    let late_failure = OutboundUpdate::Reported { state: DeliveryState::Failed, reason: "x".to_owned() };
    ensure!(
        store.update_outbound(&tenant, &reply.message_id, &late_failure).await?.is_none(),
        "no failure once delivered"
    );
    ensure!(
        store.due_outbound(i64::MAX, 100).await?.iter().all(|message| message.message_id != reply.message_id),
        "a sent message is never due again"
    );
    let refused = outbound(&joined.conversation, "reply-2", 300);
    store.add_message(&refused).await?;
    let failed = OutboundUpdate::Failed { reason: "HTTP 400: Invalid 'To'".to_owned() };
    let failed = store.update_outbound(&tenant, &refused.message_id, &failed).await?.context("failed")?;
    ensure!(failed.message.failure_reason == "HTTP 400: Invalid 'To'", "the reason is kept");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::memory::MemoryConversationStore;

    #[tokio::test]
    async fn memory_conversation_store_passes_the_contract() {
        super::run_conversation_contract(Arc::new(MemoryConversationStore::default())).await.expect("contract");
    }
}
