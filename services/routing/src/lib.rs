//! The routing service: per-tenant queues, matching waiting contacts to
//! available agents, offers with timeouts, and contact outcomes. Hot state
//! lives in Redis (or memory in `dev`), queue definitions in PostgreSQL.
//!
//! Serves `switchboard.routing.v1.RoutingService`; consumes
//! `switchboard.contacts.v1` and `switchboard.presence.v1` (group
//! `routing`); on timers: matching (also whenever a change asks for it),
//! the outbox relay, the offer-timeout sweep, the max-wait sweep, the guard
//! that rebuilds the hot state when Redis loses it, journal pruning, the
//! gauges (outbox depth, contacts waiting by tenant), and the erasure of
//! deleted tenants (their live contacts ended first).

pub mod domain;
pub mod engine;
mod erasure;
pub mod events;
mod flows;
pub mod gauges;
pub mod grpc;
pub mod matcher;
pub mod queue_config;
pub mod recovery;
pub mod relay;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::event::{CONTACTS_TOPIC, PRESENCE_TOPIC};
use switchboard_platform::bus::Delivery;
use switchboard_platform::service::{ConsumerSpec, Every, Kit, Service};
use switchboard_proto::routing::v1::routing_service_server::RoutingServiceServer;

use crate::engine::Engine;
use crate::erasure::RoutingEraser;
use crate::gauges::GAUGES_INTERVAL;
use crate::matcher::MATCH_TICK;
use crate::recovery::StateWhole;
use crate::relay::RELAY_TICK;
use crate::store::journal::{MemoryJournal, PostgresJournal, RoutingJournal};
use crate::store::memory::{MemoryQueueStore, MemoryRoutingState};
use crate::store::postgres::{MIGRATIONS, PostgresQueueStore};
use crate::store::queue_cache::CachedQueueStore;
use crate::store::redis::{RedisRoutingState, TERMINAL_RETENTION_MS};
use crate::store::{QueueStore, RoutingState};

/// How often the guard looks whether Redis still holds the routing state.
const STATE_GUARD_INTERVAL: Duration = Duration::from_secs(1);
/// How often ended contacts older than the retention leave the journal.
const JOURNAL_PRUNE_INTERVAL: Duration = Duration::from_secs(3_600);

pub const DEFAULT_SERVICE_LEVEL_THRESHOLD_MS: i64 = 20_000;
pub const DEFAULT_SHORT_ABANDON_THRESHOLD_MS: i64 = 5_000;
pub const DEFAULT_OFFER_TIMEOUT_MS: i64 = 30_000;

/// The routing service on its stores.
pub struct Routing {
    pub state: Arc<dyn RoutingState>,
    pub queues: Arc<dyn QueueStore>,
    pub journal: Arc<dyn RoutingJournal>,
}

impl Service for Routing {
    const NAME: &'static str = "routing";

    fn in_memory(_kit: &mut Kit) -> Routing {
        Routing {
            state: Arc::new(MemoryRoutingState::default()),
            queues: Arc::new(MemoryQueueStore::default()),
            journal: Arc::new(MemoryJournal::default()),
        }
    }

    /// Redis for hot state, PostgreSQL (migrated) for queue definitions and
    /// the journal.
    async fn connect(kit: &mut Kit) -> anyhow::Result<Routing> {
        let redis = kit.redis().await?;
        let postgres = kit.postgres(MIGRATIONS).await?;
        let pool = kit.config().redis.pool.clone();
        Ok(Routing {
            state: Arc::new(RedisRoutingState::new(redis, &pool)),
            queues: Arc::new(CachedQueueStore::new(Arc::new(PostgresQueueStore::new(postgres.clone())))),
            journal: Arc::new(PostgresJournal::new(postgres, &pool)),
        })
    }

    async fn start(self, kit: &mut Kit) -> anyhow::Result<()> {
        let engine = Arc::new(
            Engine::new(self.state, self.queues, self.journal, kit.bus())?
                .with_clock(kit.clock())
                .with_access(kit.access()),
        );
        // Ready from the first look when the state is already whole (in
        // memory, or a Redis that kept it); the guard below rebuilds it
        // otherwise.
        engine.look_whole().await?;
        kit.check(StateWhole(Arc::clone(&engine)));
        let api = grpc::RoutingApi { engine: Arc::clone(&engine), access: kit.access() };
        kit.serve(RoutingServiceServer::new(api).max_decoding_message_size(kit.max_message_bytes()));

        let consumer_engine = Arc::clone(&engine);
        // Contacts and agents are independent of one another: a burst is taken
        // in concurrently, each contact's and each agent's records in order.
        // What it could not take in while the state was lost is retried as
        // soon as the state is whole again.
        let intake = ConsumerSpec::new("routing", &[CONTACTS_TOPIC, PRESENCE_TOPIC])
            .concurrent_by_key()
            .retrying_early_when(Arc::clone(&engine.state_restored));
        kit.consume(intake, move |delivery: Delivery| {
            let engine = Arc::clone(&consumer_engine);
            async move { engine.handle(delivery).await }
        })
        .await?;

        let matcher = Arc::clone(&engine);
        kit.every(Every::new("routing-matcher", MATCH_TICK).woken_by(Arc::clone(&engine.match_requested)), move || {
            let engine = Arc::clone(&matcher);
            async move { engine.match_until_idle().await }
        });
        // The relay runs once more at shutdown so nothing this replica did
        // waits, and then removes what it relayed.
        let relay = Arc::clone(&engine);
        let relay_id = kit.config().instance_id.clone();
        let shutdown = kit.shutdown();
        let relay_every = Every::new("routing-outbox-relay", RELAY_TICK)
            .woken_by(Arc::clone(&engine.relay_requested))
            .paced(Duration::from_millis(kit.config().routing.relay_interval_ms));
        kit.every(relay_every.and_at_shutdown(), move || {
            let (engine, relay_id, shutdown) = (Arc::clone(&relay), relay_id.clone(), shutdown.clone());
            async move {
                engine.relay_once(&relay_id).await?;
                if shutdown.is_cancelled() {
                    engine.remove_relayed().await?;
                }
                Ok(())
            }
        });
        let sweep_interval = Duration::from_millis(kit.config().routing.offer_sweep_interval_ms);
        let offers = Arc::clone(&engine);
        kit.every(Every::new("routing-offer-sweeper", sweep_interval), move || {
            let engine = Arc::clone(&offers);
            async move { engine.sweep_offers().await }
        });
        let waits = Arc::clone(&engine);
        kit.every(Every::new("routing-wait-sweeper", sweep_interval), move || {
            let engine = Arc::clone(&waits);
            async move { engine.sweep_waits().await }
        });
        let guard = Arc::clone(&engine);
        let replica = kit.config().instance_id.clone();
        kit.every(Every::new("routing-state-guard", STATE_GUARD_INTERVAL), move || {
            let (engine, replica) = (Arc::clone(&guard), replica.clone());
            async move { engine.keep_state_whole(&replica).await }
        });
        kit.erase_deleted_tenants(Arc::new(RoutingEraser(Arc::clone(&engine))));
        engine.reported_tenants.include(kit.config().auth.tenants.iter().map(String::as_str));
        let gauges = Arc::clone(&engine);
        kit.every(Every::new("routing-gauges", GAUGES_INTERVAL), move || {
            let engine = Arc::clone(&gauges);
            async move { engine.report_gauges().await }
        });
        let journal = Arc::clone(&engine.journal);
        kit.every(Every::new("routing-journal-prune", JOURNAL_PRUNE_INTERVAL), move || {
            let journal = Arc::clone(&journal);
            let before_ms = switchboard_core::time::now_millis() - TERMINAL_RETENTION_MS;
            async move { journal.prune(before_ms).await.map(|pruned| tracing::info!(pruned, "journal pruned")) }
        });
        Ok(())
    }
}
