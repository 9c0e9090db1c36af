//! The routing service: per-tenant queues, matching waiting contacts to
//! available agents, offers with timeouts, and contact outcomes. Hot state
//! lives in Redis (or memory in `dev`), queue definitions in PostgreSQL.

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
use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::{EventBus, StartFrom, run_consumer};
use switchboard_platform::postgres::{PostgresCheck, connect_migrated};
use switchboard_platform::redis::{RedisCheck, connect};
use switchboard_platform::service::{Backplane, run_service};
use switchboard_proto::routing::v1::routing_service_server::RoutingServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

use crate::engine::Engine;
use crate::store::memory::{MemoryQueueStore, MemoryRoutingState};
use crate::store::postgres::{MIGRATIONS, PostgresQueueStore};
use crate::store::redis::RedisRoutingState;
use crate::store::{QueueStore, RoutingState};

pub const DEFAULT_SERVICE_LEVEL_THRESHOLD_MS: i64 = 20_000;
pub const DEFAULT_SHORT_ABANDON_THRESHOLD_MS: i64 = 5_000;
pub const DEFAULT_OFFER_TIMEOUT_MS: i64 = 30_000;

pub struct Deps {
    pub state: Arc<dyn RoutingState>,
    pub queues: Arc<dyn QueueStore>,
    pub backplane: Backplane,
}

impl Deps {
    /// Embedded backends for `switchboard dev`.
    pub fn in_memory(bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> Deps {
        Deps {
            state: Arc::new(MemoryRoutingState::default()),
            queues: Arc::new(MemoryQueueStore::default()),
            backplane: Backplane::new(bus, access),
        }
    }

    /// Redis for hot state and PostgreSQL (migrated) for queue definitions.
    pub async fn connect(config: &Config, bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> anyhow::Result<Deps> {
        let redis = connect(&config.redis.url).await?;
        let postgres = connect_migrated(&config.postgres, "routing", MIGRATIONS).await?;
        Ok(Deps {
            state: Arc::new(RedisRoutingState::new(redis.clone(), &config.redis.pool)),
            queues: Arc::new(PostgresQueueStore::new(postgres.clone())),
            backplane: Backplane::new(bus, access).with_check(RedisCheck(redis)).with_check(PostgresCheck(postgres)),
        })
    }
}

/// Serves RoutingService and runs the consumer, the matcher and the offer
/// sweeper until `shutdown`.
pub async fn run(config: Config, deps: Deps, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let engine = Arc::new(Engine::new(deps.state, deps.queues, deps.backplane.bus.clone()));
    let subscription =
        deps.backplane.bus.subscribe("routing", &[CONTACTS_TOPIC, PRESENCE_TOPIC], StartFrom::Earliest).await?;
    let consumer = {
        let engine = engine.clone();
        let shutdown = shutdown.clone();
        async move {
            run_consumer(
                "routing",
                subscription,
                move |delivery| {
                    let engine = engine.clone();
                    async move { engine.handle(delivery).await }
                },
                shutdown,
            )
            .await
        }
    };
    let matcher = engine.clone().run_matcher(shutdown.clone());
    let relay = engine.clone().run_relay(config.instance_id.clone(), shutdown.clone());
    let sweep_interval = Duration::from_millis(config.routing.offer_sweep_interval_ms);
    let sweeper = engine.clone().run_offer_sweeper(sweep_interval, shutdown.clone());
    let wait_sweeper = engine.clone().run_wait_sweeper(sweep_interval, shutdown.clone());

    let api = grpc::RoutingApi { engine, access: deps.backplane.access.clone() };
    let server = RoutingServiceServer::new(api).max_decoding_message_size(config.grpc.max_message_bytes);
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(InterceptedService::new(server, deps.backplane.access.interceptor()));
    let parts = deps.backplane.into_parts(
        "routing",
        "switchboard.routing.v1.RoutingService",
        routes,
        vec![
            ("routing-consumer", Box::pin(consumer)),
            ("routing-matcher", Box::pin(matcher)),
            ("routing-outbox-relay", Box::pin(relay)),
            ("routing-offer-sweeper", Box::pin(sweeper)),
            ("routing-wait-sweeper", Box::pin(wait_sweeper)),
        ],
    );
    run_service(&config, parts, listener, shutdown).await
}
