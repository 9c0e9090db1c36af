//! What routing erases of a deleted tenant. Its live contacts end first,
//! through the same transition and outbox as any other end, so their agents
//! are freed and told (a ringing offer withdrawn, a handled contact
//! completed); the next pass, once their last events are on their way,
//! removes the rest: the records and lines in the hot state, the queues and
//! the journal's copies.

use std::sync::Arc;

use async_trait::async_trait;
use switchboard_core::{ContactId, Error, TenantId};
use switchboard_platform::service::{Erased, TenantEraser};

use crate::domain::ContactRecord;
use crate::domain::rules::end_for_deleted_tenant;
use crate::engine::{Engine, unless_resolved_meanwhile};
use crate::events;

pub struct RoutingEraser(pub Arc<Engine>);

#[async_trait]
impl TenantEraser for RoutingEraser {
    async fn erase(&self, tenant: &TenantId) -> Result<Erased, Error> {
        let engine = &self.0;
        let live = engine.state.live_contacts(tenant).await?;
        if !live.is_empty() {
            for contact in &live {
                end_live_contact(engine, tenant, contact).await?;
            }
            tracing::info!(tenant = %tenant, ended = live.len(), "deleted tenant's live contacts ended");
            engine.changed();
            engine.request_match();
            return Ok(Erased::Again);
        }
        engine.state.erase_tenant(tenant).await?;
        engine.queues.erase_tenant(tenant).await?;
        engine.journal.erase_tenant(tenant).await?;
        forget_tenant_in_profiles(engine, tenant).await?;
        Ok(Erased::Done)
    }
}

/// Agents' profiles (in the hot state and the journal) stop naming the
/// tenant: presence republishes a shared agent's new profile, but an agent
/// of only that tenant is deleted there and never republished.
async fn forget_tenant_in_profiles(engine: &Engine, tenant: &TenantId) -> Result<(), Error> {
    for journaled in engine.journal.agents().await? {
        if !journaled.profile.tenants.contains(tenant) {
            continue;
        }
        let mut profile = journaled.profile.clone();
        profile.tenants.retain(|served| served != tenant);
        profile.tenant_skills.retain(|(served, _), _| served != tenant);
        let live = engine.state.agent(&profile.agent).await?;
        let available = live.is_some_and(|live| live.available) && !profile.tenants.is_empty();
        engine.state.upsert_agent(&profile, available, engine.clock.now_millis()).await?;
        engine.journal.record_agent(&profile, journaled.state).await?;
    }
    Ok(())
}

async fn end_live_contact(engine: &Engine, tenant: &TenantId, contact: &ContactId) -> Result<(), Error> {
    let now_ms = engine.clock.now_millis();
    let end = |record: &mut ContactRecord| end_for_deleted_tenant(record, now_ms);
    let ended = engine.state.change(tenant, contact, now_ms, &end, &events::ended_for_deleted_tenant).await;
    // Ended meanwhile (by its agent, its customer, or another replica).
    unless_resolved_meanwhile(ended).map(drop)
}
