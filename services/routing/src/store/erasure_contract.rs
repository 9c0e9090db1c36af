//! The part of the routing-state contract about deleted tenants: their live
//! contacts are found and, once ended, everything left of them goes, while
//! every other tenant's state stays.

use std::collections::BTreeMap;

use switchboard_core::{AgentId, ContactId, Error, QueueId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::routing::v1::Queue;

use super::contract::{check, sample_profile, sample_record};
use super::{QueueStore, RoutingState};
use crate::domain::rules::end_for_deleted_tenant;
use crate::domain::{ContactRecord, RoutingStatus};
use crate::events;

const CHAT: i32 = 3;

fn fresh_tenant(label: &str) -> Result<TenantId, Error> {
    TenantId::parse(&format!("{label}-{}", switchboard_test_support::unique_suffix()), "tenant")
}

/// A waiting contact and a ringing one of the erased tenant, and a waiting
/// one of another tenant, on one shared agent: the erased tenant's live
/// contacts are exactly its two; ending them frees the agent; erasing
/// leaves nothing of it (records, lines, answer pace, fair-share tag) and
/// all of the other tenant's; erasing again changes nothing.
pub async fn erasure_contract(state: &dyn RoutingState) -> Result<(), Error> {
    let erased = fresh_tenant("erased")?;
    let kept = fresh_tenant("kept")?;
    let queue = QueueId::parse("support", "queue")?;
    let waiting = sample_record(&erased, &queue, CHAT, 0, 1);
    let ringing = sample_record(&erased, &queue, CHAT, 0, 2);
    let other = sample_record(&kept, &queue, CHAT, 0, 3);
    for record in [&waiting, &ringing, &other] {
        state.enqueue(record, &[]).await?;
    }
    let agent = AgentId::parse(&format!("shared-{}", switchboard_test_support::unique_suffix()), "agent")?;
    state.upsert_agent(&sample_profile(&agent, &[&erased, &kept], 2, 0), true, 10).await?;
    check(state.reserve(&ringing, &agent, 60_000, &[]).await?, "the ringing contact is offered")?;
    state.record_answer(&erased, &queue, CHAT, 5_000).await?;
    state.advance_fair_shares(&BTreeMap::from([(erased.clone(), 1.0), (kept.clone(), 1.0)])).await?;

    let mut live = state.live_contacts(&erased).await?;
    live.sort();
    let mut expected: Vec<ContactId> = vec![waiting.contact.clone(), ringing.contact.clone()];
    expected.sort();
    check(live == expected, "the erased tenant's live contacts are its waiting and ringing ones")?;
    for contact in &live {
        let end = |record: &mut ContactRecord| end_for_deleted_tenant(record, 100);
        state.change(&erased, contact, 100, &end, &events::ended_for_deleted_tenant).await?;
    }
    check(state.live_contacts(&erased).await?.is_empty(), "ended, none is live")?;
    let freed = state.agent(&agent).await?.ok_or_else(|| Error::internal("agent known"))?;
    check(freed.total_load() == 0, "the agent's offer of the erased tenant is released")?;

    state.erase_tenant(&erased).await?;
    state.erase_tenant(&erased).await?;
    for contact in [&waiting.contact, &ringing.contact] {
        check(state.get_contact(&erased, contact).await?.is_none(), "its contacts' records are gone")?;
    }
    check(state.answer_pace(&erased, &queue, CHAT).await?.last_answer_ms == 0, "its answer pace is gone")?;
    let shares = state.fair_shares().await?;
    check(!shares.tag_by_tenant.contains_key(&erased), "its fair-share tag is gone")?;
    check(shares.tag_by_tenant.contains_key(&kept), "the other tenant's tag stays")?;
    let kept_record = state.get_contact(&kept, &other.contact).await?;
    check(
        kept_record.is_some_and(|record| record.status == RoutingStatus::Queued),
        "the other tenant's contact waits",
    )?;
    check(state.position(&other).await? == 1, "first in its line")?;
    let gauges = state.gauges().await?;
    check(!gauges.waiting_by_tenant.contains_key(&erased), "nothing of it waits")?;
    Ok(())
}

/// Erasing a tenant's queues leaves every other tenant's.
pub async fn queue_store_erasure_contract(store: &dyn QueueStore) -> Result<(), Error> {
    let erased = fresh_tenant("erased")?;
    let kept = fresh_tenant("kept")?;
    let queue = QueueId::parse("support", "queue")?;
    for tenant in [&erased, &kept] {
        let named = Queue { name: format!("tenants/{tenant}/queues/support"), ..Queue::default() };
        store.create_queue(tenant, &queue, &named).await?;
    }
    store.erase_tenant(&erased).await?;
    store.erase_tenant(&erased).await?;
    check(store.get_queue_fresh(&erased, &queue).await?.is_none(), "the erased tenant's queue is gone")?;
    check(store.list_queues(&erased, &PageRequest::first(10)).await?.is_empty(), "it lists none")?;
    check(store.get_queue_fresh(&kept, &queue).await?.is_some(), "the other tenant's queue stays")
}
