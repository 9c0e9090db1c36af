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
        Ok(Erased::Done)
    }
}

async fn end_live_contact(engine: &Engine, tenant: &TenantId, contact: &ContactId) -> Result<(), Error> {
    let now_ms = engine.clock.now_millis();
    let end = |record: &mut ContactRecord| end_for_deleted_tenant(record, now_ms);
    let ended = engine.state.change(tenant, contact, now_ms, &end, &events::ended_for_deleted_tenant).await;
    // Ended meanwhile (by its agent, its customer, or another replica).
    unless_resolved_meanwhile(ended).map(drop)
}
