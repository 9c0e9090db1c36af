//! The behaviour every [`CallStore`] must have: run on memory as a unit
//! test and on PostgreSQL in `tests/postgres_store.rs`.

use anyhow::{Context, ensure};
use switchboard_core::identity::{Identity, IdentityKind};
use switchboard_core::{AgentId, ChannelId, ContactId, TenantId};

use super::{CallRecord, CallStore, Stage};
use crate::channels::cti::HangupCause;
use crate::store::contract::fresh_tenant;

/// Runs every check against `store`.
pub async fn run_call_contract(store: &dyn CallStore) -> anyhow::Result<()> {
    calls_round_trip_and_update_by_revision(store).await.context("calls_round_trip_and_update_by_revision")?;
    endpoints_are_set_and_forgotten(store).await.context("endpoints_are_set_and_forgotten")?;
    erasing_a_tenant_leaves_the_others(store).await.context("erasing_a_tenant_leaves_the_others")?;
    Ok(())
}

/// A new call of `tenant` on channel `pbx`, in the IVR.
fn sample_call(tenant: &TenantId, call_id: &str) -> anyhow::Result<CallRecord> {
    Ok(CallRecord {
        tenant: tenant.clone(),
        channel_id: ChannelId::parse("pbx", "channel_id")?,
        call_id: call_id.to_owned(),
        from: Identity { kind: IdentityKind::Phone, value: "+15550100042".to_owned() },
        to: "+15550100".to_owned(),
        stage: Stage::Ivr,
        contact: None,
        agent: None,
        created_ms: 1_000,
        answered_ms: None,
        held_ms: 0,
        ended_in_ivr: false,
        transfers: Vec::new(),
    })
}

async fn calls_round_trip_and_update_by_revision(store: &dyn CallStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("calls")?;
    let call = sample_call(&tenant, "1700000000.42")?;
    let channel_id = call.channel_id.clone();
    ensure!(store.insert(&call).await?, "a new call is stored");
    ensure!(!store.insert(&call).await?, "once");
    let stored = store.get(&tenant, &channel_id, &call.call_id).await?.context("found")?;
    ensure!(stored.call == call && stored.revision == 1, "it comes back whole at revision 1: {stored:?}");
    let on_hold = CallRecord {
        stage: Stage::OnHold { since_ms: 5_000 },
        contact: Some(ContactId::generate()),
        agent: Some(AgentId::parse("alice", "agent")?),
        answered_ms: Some(4_000),
        transfers: vec![("ext 204".to_owned(), 4_500)],
        ..call.clone()
    };
    ensure!(store.update(&on_hold, 1).await?, "an update at the read revision applies");
    ensure!(!store.update(&call, 1).await?, "a second one at the same revision does not");
    let stored = store.get(&tenant, &channel_id, &call.call_id).await?.context("found")?;
    ensure!(stored.call == on_hold && stored.revision == 2, "every field kept: {stored:?}");
    let ended = CallRecord {
        stage: Stage::Ended { at_ms: 9_000, cause: HangupCause::Cancel },
        ended_in_ivr: true,
        held_ms: 4_000,
        ..on_hold
    };
    ensure!(store.update(&ended, 2).await?, "ended");
    let stored = store.get(&tenant, &channel_id, &call.call_id).await?.context("found")?;
    ensure!(stored.call == ended, "the end and its cause kept: {stored:?}");
    let other = fresh_tenant("calls-other")?;
    ensure!(store.get(&other, &channel_id, &call.call_id).await?.is_none(), "tenants are apart");
    Ok(())
}

async fn endpoints_are_set_and_forgotten(store: &dyn CallStore) -> anyhow::Result<()> {
    let agent = AgentId::parse(&format!("agent-{}", switchboard_test_support::unique_suffix()), "agent")?;
    ensure!(store.endpoint(&agent).await?.is_empty(), "unknown at first");
    store.set_endpoint(&agent, "sip:alice@pbx.example.com").await?;
    store.set_endpoint(&agent, "204").await?;
    ensure!(store.endpoint(&agent).await? == "204", "the latest one");
    store.set_endpoint(&agent, "").await?;
    ensure!(store.endpoint(&agent).await?.is_empty(), "an empty one forgets it");
    Ok(())
}

/// Erasing a tenant removes its calls and no other tenant's.
async fn erasing_a_tenant_leaves_the_others(store: &dyn CallStore) -> anyhow::Result<()> {
    let erased = fresh_tenant("calls-erased")?;
    let kept = fresh_tenant("calls-kept")?;
    let channel_id = ChannelId::parse("pbx", "channel_id")?;
    let stored = store.insert(&sample_call(&erased, "1700000000.7")?).await?
        && store.insert(&sample_call(&kept, "1700000000.7")?).await?;
    ensure!(stored, "both stored");
    store.erase_tenant(&erased).await?;
    store.erase_tenant(&erased).await?;
    ensure!(store.get(&erased, &channel_id, "1700000000.7").await?.is_none(), "the erased tenant's call is gone");
    ensure!(store.get(&kept, &channel_id, "1700000000.7").await?.is_some(), "the other tenant's call stays");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::memory::MemoryCallStore;

    #[tokio::test]
    async fn memory_store_meets_the_contract() {
        run_call_contract(&MemoryCallStore::default()).await.expect("contract");
    }
}
