//! The presence service: agents, their live state, and the `AgentSession`
//! stream that carries presence in and offers out. Agent definitions live
//! in PostgreSQL, live state in Redis (both in memory in `dev`).

pub mod domain;
pub mod effects;
pub mod grpc;
pub mod sessions;
pub mod store;
pub mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::Error;
use switchboard_core::event::{PRESENCE_TOPIC, ROUTING_TOPIC};
use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::{AssignmentCheck, EventBus, StartFrom, run_consumer};
use switchboard_platform::grpc::lazy_channel;
use switchboard_platform::postgres::{PostgresCheck, connect_migrated};
use switchboard_platform::redis::{RedisCheck, connect};
use switchboard_platform::service::{Backplane, run_service};
use switchboard_platform::status::grpc_code;
use switchboard_proto::presence::v1::presence_service_server::PresenceServiceServer;
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

use crate::sessions::Presence;
use crate::store::memory::{MemoryAgentStore, MemoryLiveStateStore};
use crate::store::postgres::{MIGRATIONS, PostgresAgentStore};
use crate::store::redis::RedisLiveStateStore;
use crate::store::{AgentStore, LiveStateStore};

pub struct Deps {
    pub agents: Arc<dyn AgentStore>,
    pub live: Arc<dyn LiveStateStore>,
    pub backplane: Backplane,
}

impl Deps {
    pub fn in_memory(bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> Deps {
        Deps {
            agents: Arc::new(MemoryAgentStore::default()),
            live: Arc::new(MemoryLiveStateStore::default()),
            backplane: Backplane::new(bus, access),
        }
    }

    pub async fn connect(config: &Config, bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> anyhow::Result<Deps> {
        let redis = connect(&config.redis.url).await?;
        let postgres = connect_migrated(&config.postgres, "presence", MIGRATIONS).await?;
        Ok(Deps {
            agents: Arc::new(PostgresAgentStore::new(postgres.clone())),
            live: Arc::new(RedisLiveStateStore::new(redis.clone(), &config.redis.pool)),
            backplane: Backplane::new(bus, access).with_check(RedisCheck(redis)).with_check(PostgresCheck(postgres)),
        })
    }
}

/// The `google.rpc.Code` number of an error, for `SessionError.code`.
pub(crate) fn status_code(error: &Error) -> i32 {
    grpc_code(error.code) as i32
}

/// Serves PresenceService and pushes offers to connected agents until
/// `shutdown`.
pub async fn run(
    config: Config,
    mut deps: Deps,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let grace = Duration::from_millis(config.presence.session_grace_ms);
    let presence = Arc::new(Presence::new(
        deps.agents,
        deps.live,
        deps.backplane.bus.clone(),
        grace,
        config.presence.missed_offers_threshold,
    ));
    // Every replica sees every routing and presence event (its own group)
    // and pushes the ones for agents connected to it. Only offers still
    // ringing matter, so a new group starts at the end of the topics rather
    // than replaying their history; the replica is not ready (gets no agent
    // sessions) until its consumer holds partitions, so no offer falls into
    // the join window.
    let group = format!("presence-{}", config.instance_id);
    let subscription =
        deps.backplane.bus.subscribe(&group, &[ROUTING_TOPIC, PRESENCE_TOPIC], StartFrom::Latest).await?;
    let subscription_assignment = subscription.assignment();
    deps.backplane.checks.push(Arc::new(AssignmentCheck(subscription_assignment.clone())));
    let consumer = {
        let presence = presence.clone();
        let shutdown = shutdown.clone();
        async move {
            run_consumer(
                "presence",
                subscription,
                move |delivery| {
                    let presence = presence.clone();
                    async move { presence.on_event(delivery).await }
                },
                shutdown,
            )
            .await
        }
    };
    // State side effects of routing events are applied once, by the
    // replicas sharing one group (see `effects`).
    let effects_subscription =
        deps.backplane.bus.subscribe(effects::EFFECTS_GROUP, &[ROUTING_TOPIC], StartFrom::Latest).await?;
    let effects = {
        let presence = presence.clone();
        let shutdown = shutdown.clone();
        async move {
            run_consumer(
                "presence-effects",
                effects_subscription,
                move |delivery| {
                    let presence = presence.clone();
                    async move { presence.on_routing_effect(delivery).await }
                },
                shutdown,
            )
            .await
        }
    };
    let wrap_up_timer = presence.clone().run_wrap_up_timer(shutdown.clone());
    let keeper = presence.clone().run_lease_keeper(shutdown.clone());
    let janitor = presence.clone().run_janitor(subscription_assignment, shutdown.clone());
    let api = grpc::PresenceApi {
        presence,
        access: deps.backplane.access.clone(),
        routing: RoutingServiceClient::new(lazy_channel(&config.services.routing.url)?),
        shutdown: shutdown.clone(),
    };
    let server = PresenceServiceServer::new(api).max_decoding_message_size(config.grpc.max_message_bytes);
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(InterceptedService::new(server, deps.backplane.access.interceptor()));
    let parts = deps.backplane.into_parts(
        "presence",
        "switchboard.presence.v1.PresenceService",
        routes,
        vec![
            ("presence-consumer", Box::pin(consumer)),
            ("presence-lease-keeper", Box::pin(keeper)),
            ("presence-janitor", Box::pin(janitor)),
            ("presence-effects", Box::pin(effects)),
            ("presence-wrap-up-timer", Box::pin(wrap_up_timer)),
        ],
    );
    run_service(&config, parts, listener, shutdown).await
}
