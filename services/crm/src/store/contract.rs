//! The contract every [`CrmStore`] must meet. The in-memory store runs it in
//! unit tests and the PostgreSQL store in `tests/postgres_store.rs`, so `dev`
//! mode behaves like production. Each check uses tenants of its own, so all
//! checks may share one store.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, ensure};
use switchboard_core::{ContactId, CustomerId, ErrorCode, TenantId};
use switchboard_test_support::unique_suffix;

use super::{CrmStore, Customer};
use crate::domain::{
    EntryStatus, Identity, IdentityKind, TimelineCursor, TimelineEntry, TimelineUpdate, normalize_identity,
};

/// Runs every check of the contract.
pub async fn run_all(store: Arc<dyn CrmStore>) -> anyhow::Result<()> {
    resolve_creates_then_finds(store.as_ref()).await.context("resolve_creates_then_finds")?;
    concurrent_resolves_agree(Arc::clone(&store)).await.context("concurrent_resolves_agree")?;
    tenants_are_isolated(store.as_ref()).await.context("tenants_are_isolated")?;
    erasing_a_tenant_leaves_the_others(store.as_ref()).await.context("erasing_a_tenant_leaves_the_others")?;
    customers_page_by_id(store.as_ref()).await.context("customers_page_by_id")?;
    timeline_merge_is_idempotent_and_listed_newest_first(store.as_ref())
        .await
        .context("timeline_merge_is_idempotent_and_listed_newest_first")?;
    concurrent_merges_lose_nothing(Arc::clone(&store)).await.context("concurrent_merges_lose_nothing")?;
    batch_merges_like_one_at_a_time(store.as_ref()).await.context("batch_merges_like_one_at_a_time")?;
    identities_learned_later_join_their_customer(store.as_ref())
        .await
        .context("identities_learned_later_join_their_customer")?;
    an_entry_is_found_by_its_contact(store.as_ref()).await.context("an_entry_is_found_by_its_contact")?;
    merged_customers_are_one(store.as_ref()).await.context("merged_customers_are_one")?;
    Ok(())
}

/// An entry of `contact` naming `customer`, created at `at_ms`.
async fn entry_of(
    store: &dyn CrmStore,
    tenant: &TenantId,
    customer: &CustomerId,
    at_ms: i64,
) -> anyhow::Result<ContactId> {
    let contact = ContactId::generate();
    let mut created = TimelineUpdate::new(tenant.clone(), contact.clone(), Some(customer.clone()));
    created.status = Some(EntryStatus::Received);
    created.create_time_millis = at_ms;
    store.merge_timeline_entry(&created).await?;
    Ok(contact)
}

/// A customer merged into another is that one from then on: its identities
/// resolve to it, its contacts (also those named later) are on its
/// timeline, it is not listed and keeps only `merged_into`; merging again
/// changes nothing; a chain of merges leads to the last survivor; a merged
/// customer takes no identity and survives no merge.
pub async fn merged_customers_are_one(store: &dyn CrmStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("merge")?;
    let visitor = Identity { kind: IdentityKind::ChatVisitor, value: "visitor-9".to_owned() };
    let by_mail = store.resolve_customer(&tenant, &email("fay@example.com")?, "Fay").await?.customer.id;
    let by_chat = store.resolve_customer(&tenant, &visitor, "").await?.customer.id;
    let mail_contact = entry_of(store, &tenant, &by_mail, 1_000).await?;
    let chat_contact = entry_of(store, &tenant, &by_chat, 2_000).await?;

    let survivor = store.merge_customers(&tenant, &by_mail, &by_chat).await?;
    ensure!(survivor.id == by_mail && survivor.merged_into.is_none(), "{survivor:?}");
    ensure!(survivor.identities.contains(&visitor) && survivor.identities.len() == 2, "both identities: {survivor:?}");
    let resolved = store.resolve_customer(&tenant, &visitor, "").await?;
    // The whole survivor, every identity of it, not only its id.
    ensure!(!resolved.created && resolved.customer == survivor, "the visitor is fay now: {resolved:?}");
    let gone = store.get_customer(&tenant, &by_chat).await?;
    ensure!(gone.merged_into.as_ref() == Some(&by_mail) && gone.identities.is_empty(), "{gone:?}");
    let listed = store.list_customers(&tenant, None, 10).await?;
    ensure!(listed.iter().map(|customer| &customer.id).eq([&by_mail]), "only fay is listed: {listed:?}");
    let late_contact = entry_of(store, &tenant, &by_chat, 3_000).await?;
    let timeline = store.list_timeline_entries(&tenant, &by_mail, None, 10).await?;
    let contacts: Vec<&ContactId> = timeline.iter().map(|entry| &entry.contact).collect();
    ensure!(contacts == [&late_contact, &chat_contact, &mail_contact], "one timeline, newest first: {contacts:?}");
    let page = store.list_timeline_entries(&tenant, &by_mail, Some(&TimelineCursor::of(&timeline[0])), 1).await?;
    ensure!(page.iter().map(|entry| &entry.contact).eq([&chat_contact]), "paged across both: {page:?}");
    ensure!(store.merge_customers(&tenant, &by_mail, &by_chat).await? == survivor, "merging again changes nothing");

    let by_phone = store
        .resolve_customer(&tenant, &normalize_identity(IdentityKind::Phone, "+1 555 010 0099", "v")?, "")
        .await?
        .customer
        .id;
    let last = store.merge_customers(&tenant, &by_phone, &by_mail).await?;
    ensure!(last.identities.len() == 3, "every identity of both: {last:?}");
    let chained = store.get_customer(&tenant, &by_chat).await?;
    ensure!(chained.merged_into.as_ref() == Some(&by_phone), "the chain leads to the last survivor: {chained:?}");
    let everything = store.list_timeline_entries(&tenant, &by_phone, None, 10).await?;
    ensure!(everything.len() == 3, "all three contacts: {everything:?}");

    let refused = store.add_identity(&tenant, &by_chat, &email("new@example.com")?).await;
    ensure!(
        refused.as_ref().is_err_and(|error| error.code == ErrorCode::FailedPrecondition
            && error.resource.as_deref() == Some(switchboard_core::names::customer_name(&tenant, &by_phone).as_str())),
        "a merged customer takes no identity, naming where it went: {refused:?}"
    );
    let into_merged = store.merge_customers(&tenant, &by_chat, &by_phone).await;
    ensure!(into_merged.is_err_and(|error| error.code == ErrorCode::FailedPrecondition), "no merge into a merged one");
    let unknown = store.merge_customers(&tenant, &by_phone, &CustomerId::generate()).await;
    ensure!(unknown.is_err_and(|error| error.code == ErrorCode::NotFound), "an unknown customer is NOT_FOUND");
    Ok(())
}

/// An entry is found by its contact before and after its customer is known,
/// with the conversation it came through; another tenant's contact of the
/// same id is not found.
pub async fn an_entry_is_found_by_its_contact(store: &dyn CrmStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("entry")?;
    let customer = store.resolve_customer(&tenant, &email("entry@example.com")?, "").await?.customer.id;
    let contact = ContactId::generate();
    ensure!(store.timeline_entry(&tenant, &contact).await?.is_none(), "no entry yet");
    let mut offered = TimelineUpdate::new(tenant.clone(), contact.clone(), None);
    offered.status = Some(EntryStatus::Offered);
    store.merge_timeline_entry(&offered).await?;
    let early = store.timeline_entry(&tenant, &contact).await?.context("an entry without its customer")?;
    ensure!(early.customer.is_none() && early.status == EntryStatus::Offered, "{early:?}");
    let mut created = TimelineUpdate::new(tenant.clone(), contact.clone(), Some(customer.clone()));
    created.status = Some(EntryStatus::Received);
    created.conversation = format!("tenants/{tenant}/conversations/cv_0123456789abcdef");
    store.merge_timeline_entry(&created).await?;
    let entry = store.timeline_entry(&tenant, &contact).await?.context("the entry")?;
    ensure!(entry.customer.as_ref() == Some(&customer), "its customer: {entry:?}");
    ensure!(entry.conversation == created.conversation, "its conversation: {entry:?}");
    let other = fresh_tenant("entry-other")?;
    ensure!(store.timeline_entry(&other, &contact).await?.is_none(), "tenants are apart");
    Ok(())
}

/// An address learned in a conversation joins its customer: resolving it
/// finds that customer from then on; attaching is idempotent; another
/// customer's address is refused naming that customer.
pub async fn identities_learned_later_join_their_customer(store: &dyn CrmStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("attach")?;
    let visitor = Identity { kind: IdentityKind::ChatVisitor, value: "visitor-7".to_owned() };
    let chat_customer = store.resolve_customer(&tenant, &visitor, "").await?.customer;
    let typed = email("Dana@Example.com")?;
    let attached = store.add_identity(&tenant, &chat_customer.id, &typed).await?;
    ensure!(attached.identities.contains(&typed) && attached.identities.contains(&visitor), "both: {attached:?}");
    let again = store.add_identity(&tenant, &chat_customer.id, &typed).await?;
    ensure!(again == attached, "attaching again changes nothing");
    let by_mail = store.resolve_customer(&tenant, &email("dana@example.com")?, "").await?;
    ensure!(!by_mail.created && by_mail.customer.id == chat_customer.id, "an e-mail from her is hers: {by_mail:?}");

    let other = store.resolve_customer(&tenant, &email("erik@example.com")?, "").await?.customer;
    let taken = store.add_identity(&tenant, &other.id, &typed).await;
    ensure!(
        taken.as_ref().is_err_and(|error| error.code == ErrorCode::FailedPrecondition
            && error.resource.as_deref()
                == Some(switchboard_core::names::customer_name(&tenant, &chat_customer.id).as_str())),
        "another customer's address is refused, naming its owner: {taken:?}"
    );
    let unknown = store.add_identity(&tenant, &CustomerId::generate(), &email("new@example.com")?).await;
    ensure!(unknown.is_err_and(|error| error.code == ErrorCode::NotFound), "an unknown customer is NOT_FOUND");
    let stranger = store.resolve_customer(&tenant, &email("new@example.com")?, "").await?;
    ensure!(stranger.created, "a refused attach attached nothing");
    Ok(())
}

/// A batch of updates of several contacts (some new, some stored, several
/// for one contact) merges to the entries one-at-a-time merging gives, and
/// each update's result is the entry as merged up to it.
pub async fn batch_merges_like_one_at_a_time(store: &dyn CrmStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("batch")?;
    let customer = store.resolve_customer(&tenant, &email("batch@example.com")?, "").await?.customer.id;
    let (first, second) = (lifecycle(&tenant, &customer, 1_000), lifecycle(&tenant, &customer, 2_000));
    store.merge_timeline_entry(&first[0]).await?;
    let batch: Vec<TimelineUpdate> =
        first.iter().skip(1).chain(second.iter()).chain(first.iter().take(1)).cloned().collect();
    let merged = store.merge_timeline_entries(&batch).await?;
    ensure!(merged.len() == batch.len(), "one entry per update: {}", merged.len());
    let mut expected: HashMap<ContactId, TimelineEntry> = HashMap::new();
    expected.insert(first[0].contact.clone(), crate::domain::apply_update(None, &first[0]));
    for (update, returned) in batch.iter().zip(&merged) {
        let entry = crate::domain::apply_update(expected.get(&update.contact), update);
        ensure!(*returned == entry, "the entry as merged up to this update: {returned:?} vs {entry:?}");
        expected.insert(update.contact.clone(), entry);
    }
    let listed = store.list_timeline_entries(&tenant, &customer, None, 10).await?;
    ensure!(listed.len() == 2, "two contacts: {listed:?}");
    for entry in listed {
        ensure!(expected.get(&entry.contact) == Some(&entry), "stored as merged: {entry:?}");
    }
    ensure!(store.merge_timeline_entries(&batch).await?.last() == merged.last(), "a replayed batch changes nothing");
    Ok(())
}

fn fresh_tenant(label: &str) -> anyhow::Result<TenantId> {
    Ok(TenantId::parse(&format!("{label}-{}", unique_suffix()), "tenant")?)
}

fn email(raw_value: &str) -> anyhow::Result<Identity> {
    Ok(normalize_identity(IdentityKind::Email, raw_value, "identity.value")?)
}

/// Differently spelled variants of one e-mail address resolve to one
/// customer, created by the first call; other addresses and other kinds with
/// the same text are other customers.
pub async fn resolve_creates_then_finds(store: &dyn CrmStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("resolve")?;
    let first = store.resolve_customer(&tenant, &email("Alice@Example.com")?, "Alice").await?;
    ensure!(first.created, "the first resolve of an identity must create the customer");
    ensure!(first.customer.display_name == "Alice", "display name not kept: {:?}", first.customer);
    ensure!(first.customer.identities == vec![email("alice@example.com")?], "identities: {:?}", first.customer);
    ensure!(first.customer.create_time_millis > 0, "create time not set: {:?}", first.customer);

    let again = store.resolve_customer(&tenant, &email("  alice@EXAMPLE.com ")?, "Somebody Else").await?;
    ensure!(!again.created, "resolving a known identity must not create a customer");
    ensure!(again.customer == first.customer, "variants resolved to {:?} and {:?}", first.customer, again.customer);

    let fetched = store.get_customer(&tenant, &first.customer.id).await?;
    ensure!(fetched == first.customer, "get returned {fetched:?}, resolve returned {:?}", first.customer);

    let other_address = store.resolve_customer(&tenant, &email("bob@example.com")?, "Bob").await?;
    ensure!(other_address.created && other_address.customer.id != first.customer.id, "bob must be a new customer");
    let same_text_other_kind = Identity { kind: IdentityKind::Social, value: "alice@example.com".to_owned() };
    let social = store.resolve_customer(&tenant, &same_text_other_kind, "").await?;
    ensure!(social.created && social.customer.id != first.customer.id, "identity kinds must not collide");

    let missing = store.get_customer(&tenant, &CustomerId::generate()).await;
    ensure!(
        missing.as_ref().is_err_and(|error| error.code == ErrorCode::NotFound),
        "an unknown customer must be NOT_FOUND, got {missing:?}"
    );
    Ok(())
}

/// Many concurrent resolves of one new identity agree on one customer, and
/// exactly one of them created it.
pub async fn concurrent_resolves_agree(store: Arc<dyn CrmStore>) -> anyhow::Result<()> {
    const CONCURRENT_RESOLVES: usize = 16;
    let tenant = fresh_tenant("race")?;
    let identity = Identity { kind: IdentityKind::Phone, value: "+15550100000".to_owned() };
    let mut tasks = Vec::new();
    for attempt in 0..CONCURRENT_RESOLVES {
        let store = Arc::clone(&store);
        let tenant = tenant.clone();
        let identity = identity.clone();
        tasks.push(tokio::spawn(async move {
            store.resolve_customer(&tenant, &identity, &format!("caller {attempt}")).await
        }));
    }
    let mut resolved = Vec::new();
    for task in tasks {
        resolved.push(task.await??);
    }
    let created_count = resolved.iter().filter(|outcome| outcome.created).count();
    ensure!(created_count == 1, "{created_count} of {CONCURRENT_RESOLVES} concurrent resolves created a customer");
    let first_id = &resolved[0].customer.id;
    ensure!(
        resolved.iter().all(|outcome| &outcome.customer.id == first_id),
        "concurrent resolves disagree: {:?}",
        resolved.iter().map(|outcome| outcome.customer.id.as_str()).collect::<Vec<_>>()
    );
    let listed = store.list_customers(&tenant, None, 100).await?;
    ensure!(listed.len() == 1, "expected one stored customer, found {}", listed.len());
    Ok(())
}

/// The same identity in two tenants is two customers, and nothing of one
/// tenant is visible through another.
pub async fn tenants_are_isolated(store: &dyn CrmStore) -> anyhow::Result<()> {
    let acme = fresh_tenant("acme")?;
    let globex = fresh_tenant("globex")?;
    let identity = email("shared@example.com")?;
    let in_acme = store.resolve_customer(&acme, &identity, "Acme's").await?;
    let in_globex = store.resolve_customer(&globex, &identity, "Globex's").await?;
    ensure!(in_acme.created && in_globex.created, "each tenant must get its own customer");
    ensure!(in_acme.customer.id != in_globex.customer.id, "two tenants share customer {}", in_acme.customer.id);

    let across = store.get_customer(&globex, &in_acme.customer.id).await;
    ensure!(
        across.as_ref().is_err_and(|error| error.code == ErrorCode::NotFound),
        "another tenant's customer must be NOT_FOUND, got {across:?}"
    );
    let globex_customers = store.list_customers(&globex, None, 100).await?;
    ensure!(
        globex_customers.iter().map(|customer| &customer.id).eq([&in_globex.customer.id]),
        "globex lists {globex_customers:?}"
    );

    let contact = ContactId::generate();
    let mut created = TimelineUpdate::new(acme.clone(), contact.clone(), Some(in_acme.customer.id.clone()));
    created.status = Some(EntryStatus::Received);
    created.create_time_millis = 1_000;
    store.merge_timeline_entry(&created).await?;
    let mut foreign = TimelineUpdate::new(globex.clone(), contact.clone(), None);
    foreign.status = Some(EntryStatus::Abandoned);
    let merged = store.merge_timeline_entry(&foreign).await?;
    ensure!(
        merged.tenant == globex && merged.customer.is_none(),
        "an update of globex must make globex's own entry, not touch acme's: {merged:?}"
    );
    let across_timeline = store.list_timeline_entries(&globex, &in_acme.customer.id, None, 100).await?;
    ensure!(across_timeline.is_empty(), "globex sees acme's timeline: {across_timeline:?}");
    let acme_timeline = store.list_timeline_entries(&acme, &in_acme.customer.id, None, 100).await?;
    ensure!(
        acme_timeline.iter().map(|entry| entry.status).eq([EntryStatus::Received]),
        "acme's entry changed: {acme_timeline:?}"
    );
    Ok(())
}

/// Erasing a tenant removes its customers, identities and timeline entries
/// (its identities resolve to new customers afterwards) and touches no
/// other tenant's; erasing again changes nothing.
pub async fn erasing_a_tenant_leaves_the_others(store: &dyn CrmStore) -> anyhow::Result<()> {
    let erased = fresh_tenant("erased")?;
    let kept = fresh_tenant("kept")?;
    let identity = email("erased@example.com")?;
    let mut customers = Vec::new();
    for tenant in [&erased, &kept] {
        let customer = store.resolve_customer(tenant, &identity, "Someone").await?.customer;
        let mut entry = TimelineUpdate::new(tenant.clone(), ContactId::generate(), Some(customer.id.clone()));
        entry.status = Some(EntryStatus::Received);
        entry.create_time_millis = 1_000;
        store.merge_timeline_entry(&entry).await?;
        customers.push((customer, entry.contact));
    }
    store.erase_tenant(&erased).await?;
    store.erase_tenant(&erased).await?;
    let [(erased_customer, erased_contact), (kept_customer, kept_contact)] = customers.as_slice() else {
        anyhow::bail!("two customers");
    };
    ensure!(store.list_customers(&erased, None, 10).await?.is_empty(), "the erased tenant lists no customers");
    ensure!(store.get_customer(&erased, &erased_customer.id).await.is_err(), "its customer is gone");
    ensure!(store.timeline_entry(&erased, erased_contact).await?.is_none(), "its timeline entry is gone");
    let again = store.resolve_customer(&erased, &identity, "Someone").await?;
    ensure!(again.created && again.customer.id != erased_customer.id, "its identity no longer resolves: {again:?}");
    ensure!(store.get_customer(&kept, &kept_customer.id).await? == *kept_customer, "the other tenant's customer stays");
    ensure!(store.timeline_entry(&kept, kept_contact).await?.is_some(), "the other tenant's entry stays");
    Ok(())
}

/// Customers list in id order, page by page, each exactly once.
pub async fn customers_page_by_id(store: &dyn CrmStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("paging")?;
    let mut created_ids = Vec::new();
    for index in 0..5 {
        let identity = Identity { kind: IdentityKind::ChatVisitor, value: format!("visitor-{index}") };
        created_ids.push(store.resolve_customer(&tenant, &identity, "").await?.customer.id);
    }
    created_ids.sort();
    let mut listed: Vec<Customer> = Vec::new();
    let mut after: Option<CustomerId> = None;
    loop {
        let page = store.list_customers(&tenant, after.as_ref(), 2).await?;
        ensure!(page.len() <= 2, "a page holds {} customers, limit was 2", page.len());
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id.clone());
        listed.extend(page);
        ensure!(listed.len() <= created_ids.len(), "paging does not terminate: {listed:?}");
    }
    let listed_ids: Vec<CustomerId> = listed.iter().map(|customer| customer.id.clone()).collect();
    ensure!(listed_ids == created_ids, "listed {listed_ids:?}, expected {created_ids:?}");
    ensure!(listed.iter().all(|customer| customer.identities.len() == 1), "identities missing: {listed:?}");
    Ok(())
}

fn lifecycle(tenant: &TenantId, customer: &CustomerId, create_time_millis: i64) -> Vec<TimelineUpdate> {
    let contact = ContactId::generate();
    let update = |status: EntryStatus| {
        let mut update = TimelineUpdate::new(tenant.clone(), contact.clone(), Some(customer.clone()));
        update.status = Some(status);
        update.channel = 1;
        update.queue = format!("tenants/{tenant}/queues/support");
        update
    };
    let mut created = update(EntryStatus::Received);
    created.subject = "billing".to_owned();
    created.create_time_millis = create_time_millis;
    let mut answered = update(EntryStatus::Answered);
    answered.agent = "agents/alice".to_owned();
    answered.answer_time_millis = create_time_millis + 20;
    let mut completed = update(EntryStatus::Completed);
    completed.agent = "agents/alice".to_owned();
    completed.disposition = "refund".to_owned();
    completed.resolved = true;
    completed.end_time_millis = create_time_millis + 90;
    let mut callback_offer = update(EntryStatus::Offered);
    callback_offer.callback_number = "+15550100".to_owned();
    // Answered, transferred, answered again: the latest transfer shows.
    let transferred = |after_millis: i64, target: &str| {
        let mut transferred = TimelineUpdate::new(tenant.clone(), contact.clone(), Some(customer.clone()));
        transferred.transferred_to = format!("tenants/{tenant}/queues/{target}");
        transferred.transfer_time_millis = create_time_millis + after_millis;
        transferred
    };
    vec![
        created,
        update(EntryStatus::Queued),
        update(EntryStatus::Offered),
        callback_offer,
        answered,
        transferred(30, "billing"),
        transferred(60, "escalations"),
        completed,
    ]
}

/// Redelivered and reordered updates give the same entries as one in-order
/// pass; timelines list newest first and page without gaps or repeats; an
/// update naming no customer is kept, unlisted, until one names it.
pub async fn timeline_merge_is_idempotent_and_listed_newest_first(store: &dyn CrmStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("timeline")?;
    let customer = store.resolve_customer(&tenant, &email("history@example.com")?, "").await?.customer.id;
    // The last two contacts share a create time, so the contact id decides.
    let lifecycles: Vec<Vec<TimelineUpdate>> =
        [1_000, 3_000, 2_000, 2_000].into_iter().map(|time| lifecycle(&tenant, &customer, time)).collect();

    for updates in &lifecycles {
        // Newest event first, then everything again in order.
        for update in updates.iter().rev().chain(updates.iter()) {
            let merged = store.merge_timeline_entry(update).await?;
            ensure!(merged.customer.as_ref() == Some(&customer), "an update naming the customer must store it");
        }
    }
    // An update racing ahead of the one that names the customer is kept,
    // unlisted, and joins the customer's timeline when the name arrives.
    let late = ContactId::generate();
    let mut early_answer = TimelineUpdate::new(tenant.clone(), late.clone(), None);
    early_answer.status = Some(EntryStatus::Answered);
    early_answer.answer_time_millis = 4_500;
    ensure!(store.merge_timeline_entry(&early_answer).await?.customer.is_none(), "no customer named yet");
    let unlisted = store.list_timeline_entries(&tenant, &customer, None, 100).await?;
    ensure!(unlisted.iter().all(|entry| entry.contact != late), "an entry without customer is not listed");
    let mut naming = TimelineUpdate::new(tenant.clone(), late.clone(), Some(customer.clone()));
    naming.status = Some(EntryStatus::Received);
    naming.create_time_millis = 500;
    let joined = store.merge_timeline_entry(&naming).await?;
    ensure!(
        joined.customer.as_ref() == Some(&customer) && joined.status == EntryStatus::Answered,
        "the early update survives the one naming the customer: {joined:?}"
    );
    let mut expected_late = joined;

    let mut expected: Vec<TimelineEntry> = Vec::new();
    for updates in &lifecycles {
        let in_order =
            updates.iter().fold(None, |entry, update| Some(crate::domain::apply_update(entry.as_ref(), update)));
        expected.push(in_order.context("lifecycle yields an entry")?);
    }
    expected_late.customer = Some(customer.clone());
    expected.push(expected_late);
    expected.sort_by_key(TimelineCursor::newest_first_key);
    let first = expected.iter().find(|entry| entry.status == EntryStatus::Completed).context("entries")?;
    ensure!(
        first.status == EntryStatus::Completed && first.resolved && first.disposition == "refund",
        "the merged entry lost its outcome: {first:?}"
    );
    ensure!(
        first.transferred_to.ends_with("/queues/escalations")
            && first.transfer_time_millis == first.create_time_millis + 60
            && first.callback_number == "+15550100",
        "the merged entry lost its transfer or callback: {first:?}"
    );

    let mut listed: Vec<TimelineEntry> = Vec::new();
    let mut after: Option<TimelineCursor> = None;
    loop {
        let page = store.list_timeline_entries(&tenant, &customer, after.as_ref(), 3).await?;
        ensure!(page.len() <= 3, "a page holds {} entries, limit was 3", page.len());
        let Some(last) = page.last() else {
            break;
        };
        after = Some(TimelineCursor::of(last));
        listed.extend(page);
        ensure!(listed.len() <= expected.len(), "paging does not terminate: {listed:?}");
    }
    ensure!(listed == expected, "listed\n{listed:#?}\nexpected\n{expected:#?}");

    let mut customer_less = TimelineUpdate::new(tenant.clone(), first.contact.clone(), None);
    customer_less.status = Some(EntryStatus::Queued);
    let unchanged = store.merge_timeline_entry(&customer_less).await?;
    ensure!(unchanged == *first, "a stale update changed a completed entry: {unchanged:?}");
    Ok(())
}

/// A contact's updates merged all at once, each twice, from concurrent
/// writers, give the entry one in-order pass gives: no update is lost to a
/// race between two first inserts or two read-merge-writes.
pub async fn concurrent_merges_lose_nothing(store: Arc<dyn CrmStore>) -> anyhow::Result<()> {
    let tenant = fresh_tenant("merge")?;
    let customer = store.resolve_customer(&tenant, &email("busy@example.com")?, "").await?.customer.id;
    let updates = lifecycle(&tenant, &customer, 5_000);
    let mut tasks = Vec::new();
    for update in updates.iter().chain(updates.iter()) {
        let store = Arc::clone(&store);
        let update = update.clone();
        tasks.push(tokio::spawn(async move { store.merge_timeline_entry(&update).await }));
    }
    for task in tasks {
        task.await??;
    }
    let expected = updates.iter().fold(None, |entry, update| Some(crate::domain::apply_update(entry.as_ref(), update)));
    let listed = store.list_timeline_entries(&tenant, &customer, None, 10).await?;
    ensure!(listed.first() == expected.as_ref() && listed.len() == 1, "concurrent merges stored {listed:#?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryCrmStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_store_meets_the_contract() {
        run_all(Arc::new(MemoryCrmStore::new())).await.expect("memory store contract");
    }
}
