//! The routing service: per-tenant queues, matching waiting contacts to
//! available agents, offers with timeouts, and contact outcomes. Hot state
//! lives in Redis (or memory in `dev`), queue definitions in PostgreSQL.
//!
//! Serves `switchboard.routing.v1.RoutingService`; consumes
//! `switchboard.contacts.v1` and `switchboard.presence.v1` (group
//! `routing`); on timers: matching (also whenever a change asks for it),
//! the outbox relay, the offer-timeout sweep and the max-wait sweep.

pub mod domain;
pub mod engine;
pub mod events;
mod flows;
pub mod grpc;
pub mod queue_config;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::event::{CONTACTS_TOPIC, PRESENCE_TOPIC};
use switchboard_platform::bus::Delivery;
use switchboard_platform::service::{ConsumerSpec, Every, Kit, Service};
use switchboard_proto::routing::v1::routing_service_server::RoutingServiceServer;

use crate::engine::{Engine, MATCH_TICK, RELAY_TICK};
use crate::store::memory::{MemoryQueueStore, MemoryRoutingState};
use crate::store::postgres::{MIGRATIONS, PostgresQueueStore};
use crate::store::redis::RedisRoutingState;
use crate::store::{QueueStore, RoutingState};

pub const DEFAULT_SERVICE_LEVEL_THRESHOLD_MS: i64 = 20_000;
pub const DEFAULT_SHORT_ABANDON_THRESHOLD_MS: i64 = 5_000;
pub const DEFAULT_OFFER_TIMEOUT_MS: i64 = 30_000;

/// The routing service on its stores.
pub struct Routing {
    pub state: Arc<dyn RoutingState>,
    pub queues: Arc<dyn QueueStore>,
}

impl Service for Routing {
    const NAME: &'static str = "routing";

    fn in_memory(_kit: &mut Kit) -> Routing {
        Routing { state: Arc::new(MemoryRoutingState::default()), queues: Arc::new(MemoryQueueStore::default()) }
    }

    /// Redis for hot state and PostgreSQL (migrated) for queue definitions.
    async fn connect(kit: &mut Kit) -> anyhow::Result<Routing> {
        let redis = kit.redis().await?;
        let postgres = kit.postgres(MIGRATIONS).await?;
        Ok(Routing {
            state: Arc::new(RedisRoutingState::new(redis, &kit.config().redis.pool)),
            queues: Arc::new(PostgresQueueStore::new(postgres)),
        })
    }

    async fn start(self, kit: &mut Kit) -> anyhow::Result<()> {
        let engine = Arc::new(Engine::new(self.state, self.queues, kit.bus()));
        let api = grpc::RoutingApi { engine: Arc::clone(&engine), access: kit.access() };
        kit.serve(RoutingServiceServer::new(api).max_decoding_message_size(kit.max_message_bytes()));

        let consumer_engine = Arc::clone(&engine);
        kit.consume(ConsumerSpec::new("routing", &[CONTACTS_TOPIC, PRESENCE_TOPIC]), move |delivery: Delivery| {
            let engine = Arc::clone(&consumer_engine);
            async move { engine.handle(delivery).await }
        })
        .await?;

        let matcher = Arc::clone(&engine);
        kit.every(Every::new("routing-matcher", MATCH_TICK).woken_by(Arc::clone(&engine.match_requested)), move || {
            let engine = Arc::clone(&matcher);
            async move { engine.match_until_idle().await }
        });
        // The relay runs once more at shutdown so nothing this replica did waits.
        let relay = Arc::clone(&engine);
        let relay_id = kit.config().instance_id.clone();
        let relay_every = Every::new("routing-outbox-relay", RELAY_TICK).woken_by(Arc::clone(&engine.relay_requested));
        kit.every(relay_every.and_at_shutdown(), move || {
            let (engine, relay_id) = (Arc::clone(&relay), relay_id.clone());
            async move { engine.relay_once(&relay_id).await.map(|_relayed| ()) }
        });
        let sweep_interval = Duration::from_millis(kit.config().routing.offer_sweep_interval_ms);
        let offers = Arc::clone(&engine);
        kit.every(Every::new("routing-offer-sweeper", sweep_interval), move || {
            let engine = Arc::clone(&offers);
            async move { engine.sweep_offers().await }
        });
        let waits = engine;
        kit.every(Every::new("routing-wait-sweeper", sweep_interval), move || {
            let engine = Arc::clone(&waits);
            async move { engine.sweep_waits().await }
        });
        Ok(())
    }
}
