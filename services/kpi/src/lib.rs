//! The KPI service: aggregates the contacts and routing event streams into
//! per-contact facts and serves exact contact-center KPIs (CAR, LCR, ASA,
//! service level and their counts) per tenant, queue, channel, time range
//! and 15-minute interval. The definitions are in [`domain`].
//!
//! Serves `switchboard.kpi.v1.KpiService` (summaries, intervals, agent
//! KPIs, usage, live figures), the wallboard and `/usage.csv`; consumes
//! `switchboard.contacts.v1`, `switchboard.routing.v1` and
//! `switchboard.presence.v1` (group `kpi`) into contact facts, agents'
//! timelines and counts; erases the figures of deleted tenants.

pub mod agents;
pub mod domain;
pub mod grpc;
pub mod live;
pub mod settings_api;
pub mod store;
pub mod surveys;
pub mod usage;
pub mod wallboard;

use std::sync::Arc;

use switchboard_core::event::{CONTACTS_TOPIC, PRESENCE_TOPIC, ROUTING_TOPIC};
use switchboard_platform::bus::Delivery;
use switchboard_platform::service::{ConsumerSpec, EraseWith, Kit, Service};
use switchboard_proto::kpi::v1::kpi_service_server::KpiServiceServer;

use crate::grpc::KpiGrpc;
use crate::store::postgres::MIGRATIONS;
use crate::store::{KpiStore, MemoryKpiStore, PostgresKpiStore, apply_events_except};

/// The consumer group; a new group starts from the earliest record, so a
/// fresh deployment (or a rebuilt store) aggregates the whole retained log.
pub const CONSUMER_GROUP: &str = "kpi";

/// The KPI service on its store.
pub struct Kpi {
    pub store: Arc<dyn KpiStore>,
}

impl Service for Kpi {
    const NAME: &'static str = "kpi";

    fn in_memory(_kit: &mut Kit) -> Kpi {
        Kpi { store: Arc::new(MemoryKpiStore::new()) }
    }

    async fn connect(kit: &mut Kit) -> anyhow::Result<Kpi> {
        let pool = kit.postgres(MIGRATIONS).await?;
        Ok(Kpi { store: Arc::new(PostgresKpiStore::connect(pool).await?) })
    }

    async fn start(self, kit: &mut Kit) -> anyhow::Result<()> {
        let api = KpiGrpc::new(Arc::clone(&self.store), kit.access(), kit.bus(), kit.shutdown());
        kit.http(wallboard::router(kit.access(), api.live_boards()));
        kit.http(usage::router(Arc::clone(&self.store), kit.access()));
        kit.serve(KpiServiceServer::new(api).max_decoding_message_size(kit.max_message_bytes()));
        // Deliveries are at least once and the merge is idempotent, so a
        // redelivered event needs no deduplication by id: it sets nothing
        // that is not already set.
        // A deleted tenant's facts.
        let facts = Arc::clone(&self.store);
        kit.erase_deleted_tenants(Arc::new(EraseWith(move |tenant| {
            let facts = Arc::clone(&facts);
            async move { facts.erase_tenant(&tenant).await }
        })));
        let (store, access) = (self.store, kit.access());
        let facts = ConsumerSpec::new(CONSUMER_GROUP, &[CONTACTS_TOPIC, ROUTING_TOPIC, PRESENCE_TOPIC]).as_projection();
        kit.consume_batches(facts, move |deliveries: Arc<[Delivery]>| {
            let (store, access) = (Arc::clone(&store), Arc::clone(&access));
            async move {
                let envelopes: Vec<_> = deliveries.iter().map(|delivery| &delivery.envelope).collect();
                let deleted = |tenant: &switchboard_core::TenantId| access.is_deleted_tenant(tenant);
                apply_events_except(store.as_ref(), &envelopes, &deleted).await
            }
        })
        .await?;
        Ok(())
    }
}
