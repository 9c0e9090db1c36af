//! The behaviour every [`ContactStore`] must have. The in-memory store runs
//! it as a unit test, the PostgreSQL store as an integration test against a
//! real server. Each check uses tenants of its own, so the suite runs on
//! one store, empty or not.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, ensure};
use futures::future::join_all;
use switchboard_core::time::{now_millis, timestamp_from_millis};
use switchboard_core::{ContactId, TenantId, names};
use switchboard_proto::common::v1::{Channel, CustomerIdentity, Direction, IdentityKind};
use switchboard_proto::ingestion::v1::Contact;
use switchboard_test_support::unique_suffix;

use super::{Abandonment, ContactRecord, ContactStore, InsertOutcome, Publication, mint_event_id};

/// Runs every check of the contract against `store`.
pub async fn run_contract_suite(store: Arc<dyn ContactStore>) -> anyhow::Result<()> {
    let store = store.as_ref();
    inserted_contacts_round_trip(store).await.context("inserted_contacts_round_trip")?;
    request_ids_are_unique_per_tenant(store).await.context("request_ids_are_unique_per_tenant")?;
    provider_message_ids_are_unique_per_channel(store).await.context("provider_message_ids_are_unique_per_channel")?;
    concurrent_duplicates_make_one_contact(store).await.context("concurrent_duplicates_make_one_contact")?;
    tenants_are_isolated(store).await.context("tenants_are_isolated")?;
    erasing_a_tenant_leaves_the_others(store).await.context("erasing_a_tenant_leaves_the_others")?;
    publications_are_remembered(store).await.context("publications_are_remembered")?;
    lists_are_newest_first_and_paginate(store).await.context("lists_are_newest_first_and_paginate")?;
    abandoning_happens_once(store).await.context("abandoning_happens_once")?;
    a_customer_resolved_later_is_attached_once(store).await.context("a_customer_resolved_later_is_attached_once")?;
    unpublished_events_are_found_for_the_relay(store).await.context("unpublished_events_are_found_for_the_relay")?;
    Ok(())
}

/// Erasing a tenant removes its contacts and their unpublished events (the
/// relay no longer finds them), frees its request ids, and leaves every
/// other tenant's contacts; erasing again changes nothing.
async fn erasing_a_tenant_leaves_the_others(store: &dyn ContactStore) -> anyhow::Result<()> {
    let erased = fresh_tenant("erased")?;
    let kept = fresh_tenant("kept")?;
    let erased_record = sample_record(&erased, "request-1", Channel::Sms, "");
    let kept_record = sample_record(&kept, "request-1", Channel::Sms, "");
    store.insert(&erased_record).await?;
    store.insert(&kept_record).await?;
    store.erase_tenant(&erased).await?;
    store.erase_tenant(&erased).await?;
    ensure!(store.get(&erased, &erased_record.contact_id).await?.is_none(), "the erased tenant's contact is gone");
    let pending = store.unpublished(now_millis() + 60_000, 10_000).await?;
    ensure!(pending.iter().all(|record| record.tenant != erased), "none of its events is left to relay");
    ensure!(store.get(&kept, &kept_record.contact_id).await?.is_some(), "the other tenant's contact stays");
    let reused = store.insert(&sample_record(&erased, "request-1", Channel::Sms, "")).await?;
    ensure!(matches!(reused, InsertOutcome::Inserted), "its request id is free again: {reused:?}");
    Ok(())
}

/// A tenant no other check (or run) uses.
pub fn fresh_tenant(label: &str) -> anyhow::Result<TenantId> {
    Ok(TenantId::parse(&format!("{label}-{}", unique_suffix()), "tenant")?)
}

/// A contact of `tenant` as ingestion would store it, with a fresh id.
pub fn sample_record(
    tenant: &TenantId,
    request_id: &str,
    channel: Channel,
    provider_message_id: &str,
) -> ContactRecord {
    let contact_id = ContactId::generate();
    let contact = Contact {
        name: names::contact_name(tenant, &contact_id),
        channel: channel as i32,
        direction: Direction::Inbound as i32,
        from: Some(CustomerIdentity { kind: IdentityKind::Phone as i32, value: "+15550100".to_owned() }),
        queue: format!("tenants/{tenant}/queues/support"),
        customer: format!("tenants/{tenant}/customers/cu_0123456789abcdef"),
        subject: "where is my order".to_owned(),
        body: "order 42 did not arrive".to_owned(),
        attributes: HashMap::from([("order".to_owned(), "42".to_owned())]),
        priority: 7,
        provider_message_id: provider_message_id.to_owned(),
        create_time: Some(timestamp_from_millis(now_millis())),
        abandon_time: None,
        session_url: String::new(),
        ended_in_self_service: false,
    };
    ContactRecord {
        tenant: tenant.clone(),
        contact_id,
        request_id: request_id.to_owned(),
        contact,
        created_event_id: mint_event_id(),
        created_published: false,
        abandonment: None,
    }
}

/// An unpublished abandonment at `abandon_time_millis`.
pub fn sample_abandonment(abandon_time_millis: i64, reason: &str) -> Abandonment {
    Abandonment { abandon_time_millis, reason: reason.to_owned(), event_id: mint_event_id(), published: false }
}

fn existing_id(outcome: &InsertOutcome) -> Option<&ContactId> {
    match outcome {
        InsertOutcome::Inserted => None,
        InsertOutcome::Existing(existing) => Some(&existing.contact_id),
    }
}

async fn inserted_contacts_round_trip(store: &dyn ContactStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("roundtrip")?;
    let record = sample_record(&tenant, "req-1", Channel::Email, "msg-1");
    ensure!(store.insert(&record).await? == InsertOutcome::Inserted, "first insert must insert");
    ensure!(store.get(&tenant, &record.contact_id).await?.as_ref() == Some(&record), "get returns what was stored");
    ensure!(store.find_by_request_id(&tenant, "req-1").await?.as_ref() == Some(&record), "found by request id");
    let by_provider = store.find_by_provider_message_id(&tenant, Channel::Email as i32, "msg-1").await?;
    ensure!(by_provider.as_ref() == Some(&record), "found by provider message id");
    ensure!(store.get(&tenant, &ContactId::generate()).await?.is_none(), "unknown id is absent");
    ensure!(store.find_by_request_id(&tenant, "req-2").await?.is_none(), "unknown request id is absent");
    ensure!(
        store.find_by_provider_message_id(&tenant, Channel::Sms as i32, "msg-1").await?.is_none(),
        "provider message ids are per channel"
    );
    ensure!(
        store.find_by_provider_message_id(&tenant, Channel::Email as i32, "").await?.is_none(),
        "an empty provider message id finds nothing"
    );
    Ok(())
}

async fn request_ids_are_unique_per_tenant(store: &dyn ContactStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("requestid")?;
    let first = sample_record(&tenant, "req-1", Channel::Chat, "");
    let retry = sample_record(&tenant, "req-1", Channel::Voice, "other");
    store.insert(&first).await?;
    let outcome = store.insert(&retry).await?;
    ensure!(existing_id(&outcome) == Some(&first.contact_id), "retry returns the first contact, got {outcome:?}");
    ensure!(store.get(&tenant, &retry.contact_id).await?.is_none(), "the retry wrote nothing");
    ensure!(store.list(&tenant, None, 10).await?.len() == 1, "one contact");
    Ok(())
}

async fn provider_message_ids_are_unique_per_channel(store: &dyn ContactStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("provider")?;
    let first = sample_record(&tenant, "req-1", Channel::Sms, "sms-7");
    store.insert(&first).await?;
    let redelivered = sample_record(&tenant, "req-2", Channel::Sms, "sms-7");
    let outcome = store.insert(&redelivered).await?;
    ensure!(existing_id(&outcome) == Some(&first.contact_id), "same provider id and channel dedupes");
    let other_channel = sample_record(&tenant, "req-3", Channel::Email, "sms-7");
    ensure!(store.insert(&other_channel).await? == InsertOutcome::Inserted, "other channel is another contact");
    for request_id in ["req-4", "req-5"] {
        let without_provider_id = sample_record(&tenant, request_id, Channel::Sms, "");
        ensure!(
            store.insert(&without_provider_id).await? == InsertOutcome::Inserted,
            "empty provider ids never collide"
        );
    }
    ensure!(store.list(&tenant, None, 10).await?.len() == 4, "four contacts");
    Ok(())
}

async fn concurrent_duplicates_make_one_contact(store: &dyn ContactStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("concurrent")?;
    let attempts: Vec<ContactRecord> =
        (0..8).map(|_| sample_record(&tenant, "same-request", Channel::Voice, "")).collect();
    let outcomes = join_all(attempts.iter().map(|record| store.insert(record))).await;
    let mut inserted = Vec::new();
    let mut existing = Vec::new();
    for (record, outcome) in attempts.iter().zip(outcomes) {
        match outcome? {
            InsertOutcome::Inserted => inserted.push(record.contact_id.clone()),
            InsertOutcome::Existing(found) => existing.push(found.contact_id),
        }
    }
    ensure!(inserted.len() == 1, "exactly one insert wins, got {}", inserted.len());
    ensure!(existing.iter().all(|contact_id| contact_id == &inserted[0]), "every loser sees the winner");
    let stored = store.list(&tenant, None, 100).await?;
    ensure!(stored.len() == 1 && stored[0].contact_id == inserted[0], "one contact stored");
    Ok(())
}

async fn tenants_are_isolated(store: &dyn ContactStore) -> anyhow::Result<()> {
    let acme = fresh_tenant("acme")?;
    let globex = fresh_tenant("globex")?;
    let acme_record = sample_record(&acme, "req-1", Channel::Email, "msg-1");
    let globex_record = sample_record(&globex, "req-1", Channel::Email, "msg-1");
    ensure!(store.insert(&acme_record).await? == InsertOutcome::Inserted, "acme inserts");
    ensure!(store.insert(&globex_record).await? == InsertOutcome::Inserted, "same keys in another tenant insert");
    ensure!(store.get(&globex, &acme_record.contact_id).await?.is_none(), "globex cannot get acme's contact");
    let globex_listing = store.list(&globex, None, 100).await?;
    ensure!(
        globex_listing.iter().map(|record| &record.contact_id).collect::<Vec<_>>() == vec![&globex_record.contact_id],
        "globex lists only its own"
    );
    ensure!(
        store.find_by_request_id(&globex, "req-1").await?.map(|record| record.contact_id)
            == Some(globex_record.contact_id.clone()),
        "request ids resolve within the tenant"
    );
    ensure!(
        store.set_abandoned(&globex, &acme_record.contact_id, &sample_abandonment(now_millis(), "x")).await?.is_none(),
        "globex cannot abandon acme's contact"
    );
    ensure!(
        store.mark_published(&globex, &acme_record.contact_id, Publication::Created).await.is_err(),
        "globex cannot mark acme's contact"
    );
    let acme_after = store.get(&acme, &acme_record.contact_id).await?;
    ensure!(acme_after.as_ref() == Some(&acme_record), "acme's contact is untouched");
    Ok(())
}

async fn publications_are_remembered(store: &dyn ContactStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("publish")?;
    let record = sample_record(&tenant, "req-1", Channel::Chat, "");
    store.insert(&record).await?;
    store.mark_published(&tenant, &record.contact_id, Publication::Created).await?;
    let stored = store.get(&tenant, &record.contact_id).await?.context("stored")?;
    ensure!(stored.created_published, "created is published");
    store.set_abandoned(&tenant, &record.contact_id, &sample_abandonment(now_millis(), "hung up")).await?;
    let stored = store.get(&tenant, &record.contact_id).await?.context("stored")?;
    ensure!(stored.abandonment.as_ref().is_some_and(|abandonment| !abandonment.published), "abandon not yet out");
    store.mark_published(&tenant, &record.contact_id, Publication::Abandoned).await?;
    let stored = store.get(&tenant, &record.contact_id).await?.context("stored")?;
    ensure!(stored.abandonment.as_ref().is_some_and(|abandonment| abandonment.published), "abandon published");
    ensure!(stored.created_published, "created stays published");
    ensure!(
        store.mark_published(&tenant, &ContactId::generate(), Publication::Created).await.is_err(),
        "unknown contact cannot be marked"
    );
    Ok(())
}

async fn unpublished_events_are_found_for_the_relay(store: &dyn ContactStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("relay")?;
    let never_published = sample_record(&tenant, "req-a", Channel::Chat, "");
    let published = sample_record(&tenant, "req-b", Channel::Chat, "");
    let abandon_unpublished = sample_record(&tenant, "req-c", Channel::Chat, "");
    for record in [&never_published, &published, &abandon_unpublished] {
        store.insert(record).await?;
    }
    for record in [&published, &abandon_unpublished] {
        store.mark_published(&tenant, &record.contact_id, Publication::Created).await?;
    }
    let abandon_time = now_millis();
    store.set_abandoned(&tenant, &abandon_unpublished.contact_id, &sample_abandonment(abandon_time, "left")).await?;
    let pending_of_tenant = |records: Vec<ContactRecord>| -> Vec<ContactId> {
        records.into_iter().filter(|record| record.tenant == tenant).map(|record| record.contact_id).collect()
    };
    let pending = pending_of_tenant(store.unpublished(abandon_time + 1_000, 1_000).await?);
    ensure!(pending.contains(&never_published.contact_id), "an unpublished creation is pending");
    ensure!(pending.contains(&abandon_unpublished.contact_id), "an unpublished abandonment is pending");
    ensure!(!pending.contains(&published.contact_id), "a fully published contact is not");
    let too_recent = pending_of_tenant(store.unpublished(never_published.create_time_millis(), 1_000).await?);
    ensure!(!too_recent.contains(&never_published.contact_id), "changes newer than the cutoff wait");
    store.mark_published(&tenant, &never_published.contact_id, Publication::Created).await?;
    store.mark_published(&tenant, &abandon_unpublished.contact_id, Publication::Abandoned).await?;
    ensure!(
        pending_of_tenant(store.unpublished(abandon_time + 1_000, 1_000).await?).is_empty(),
        "nothing is pending once published"
    );
    Ok(())
}

async fn lists_are_newest_first_and_paginate(store: &dyn ContactStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("listing")?;
    ensure!(store.list(&tenant, None, 10).await?.is_empty(), "a new tenant has no contacts");
    let mut created = Vec::new();
    for index in 0..5 {
        let record = sample_record(&tenant, &format!("req-{index}"), Channel::Chat, "");
        store.insert(&record).await?;
        created.push(record.contact_id);
    }
    let newest_first: Vec<ContactId> = created.iter().rev().cloned().collect();
    let mut listed = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = store.list(&tenant, before.as_deref(), 2).await?;
        ensure!(page.len() <= 2, "a page respects the limit");
        let Some(last) = page.last() else { break };
        before = Some(last.contact_id.as_str().to_owned());
        listed.extend(page.into_iter().map(|record| record.contact_id));
    }
    ensure!(listed == newest_first, "pages chain newest first: {listed:?} vs {newest_first:?}");
    let all = store.list(&tenant, None, 100).await?;
    ensure!(all.len() == 5, "limit above the count returns all");
    Ok(())
}

async fn abandoning_happens_once(store: &dyn ContactStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("abandon")?;
    let record = sample_record(&tenant, "req-1", Channel::Voice, "");
    store.insert(&record).await?;
    let first_time = record.create_time_millis() + 5_000;
    let first_abandonment = sample_abandonment(first_time, "caller hung up");
    let first = store.set_abandoned(&tenant, &record.contact_id, &first_abandonment).await?;
    let first = first.context("known contact")?;
    ensure!(first.changed, "first abandon changes the contact");
    let abandonment = first.record.abandonment.clone().context("abandonment recorded")?;
    ensure!(abandonment == first_abandonment, "recorded as given: {abandonment:?}");
    ensure!(first.record.contact.abandon_time == Some(timestamp_from_millis(first_time)), "contact shows it");
    let second_abandonment = sample_abandonment(first_time + 1_000, "again");
    let second = store.set_abandoned(&tenant, &record.contact_id, &second_abandonment).await?;
    let second = second.context("known contact")?;
    ensure!(!second.changed, "second abandon changes nothing");
    ensure!(second.record == first.record, "first abandon time, reason and event id are kept");
    let stored = store.get(&tenant, &record.contact_id).await?;
    ensure!(stored.as_ref() == Some(&first.record), "get shows the abandonment");
    ensure!(
        store.set_abandoned(&tenant, &ContactId::generate(), &first_abandonment).await?.is_none(),
        "unknown contact"
    );
    Ok(())
}

/// A contact stored without a customer takes the one CRM resolved later,
/// and keeps it (a second, different one is refused); a contact with a
/// customer keeps its own; another tenant's contact is not found.
async fn a_customer_resolved_later_is_attached_once(store: &dyn ContactStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("late-customer")?;
    let mut record = sample_record(&tenant, "req-late", Channel::Chat, "");
    record.contact.customer = String::new();
    store.insert(&record).await?;
    let resolved = format!("tenants/{tenant}/customers/cu_late");
    ensure!(store.attach_customer(&tenant, &record.contact_id, &resolved).await?, "an empty customer is filled");
    let stored = store.get(&tenant, &record.contact_id).await?.context("stored contact")?;
    ensure!(stored.contact.customer == resolved, "the record shows it: {:?}", stored.contact.customer);
    let mut expected = record.contact.clone();
    expected.customer.clone_from(&resolved);
    ensure!(stored.contact == expected, "nothing else of the contact changed");
    let other = format!("tenants/{tenant}/customers/cu_other");
    ensure!(!store.attach_customer(&tenant, &record.contact_id, &other).await?, "a second customer is refused");
    let stored = store.get(&tenant, &record.contact_id).await?.context("stored contact")?;
    ensure!(stored.contact.customer == resolved, "the first is kept");
    let known = sample_record(&tenant, "req-known", Channel::Chat, "");
    store.insert(&known).await?;
    ensure!(!store.attach_customer(&tenant, &known.contact_id, &resolved).await?, "a known customer is kept");
    let stranger = fresh_tenant("stranger")?;
    ensure!(!store.attach_customer(&stranger, &record.contact_id, &resolved).await?, "another tenant's contact");
    ensure!(!store.attach_customer(&tenant, &ContactId::generate(), &resolved).await?, "unknown contact");
    Ok(())
}
