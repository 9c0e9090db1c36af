//! The presence service: agents, their live state, and the `AgentSession`
//! stream that carries presence in and offers out. Agent definitions live
//! in PostgreSQL, live state in Redis (both in memory in `dev`).
//!
//! Serves `switchboard.presence.v1.PresenceService` and, where the
//! deployment has a credential store, `switchboard.access.v1.AccessService`
//! (tenants and API keys at runtime); consumes
//! `switchboard.routing.v1` and `switchboard.presence.v1` once per replica
//! (pushing offers to the sessions it holds) and `switchboard.routing.v1`
//! once per deployment (state side effects); on timers: wrap-up ends, lease
//! renewals, the janitor that takes lost sessions offline, the
//! agents-by-state gauge, and the erasure of deleted tenants' agents.

pub mod access_api;
mod agent_session;
pub mod agents_admin;
pub mod domain;
pub mod effects;
pub mod gauges;
pub mod grpc;
pub mod sessions;
pub mod store;
pub mod supervisor;
pub mod tenant_deletion;
mod tenant_policy_api;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::Error;
use switchboard_core::event::{CONTACTS_TOPIC, PRESENCE_TOPIC, ROUTING_TOPIC};
use switchboard_platform::bus::Delivery;
use switchboard_platform::service::{ConsumerSpec, Every, Kit, Service};
use switchboard_platform::status::grpc_code;
use switchboard_proto::access::v1::access_service_server::AccessServiceServer;
use switchboard_proto::presence::v1::presence_service_server::PresenceServiceServer;
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;

use crate::effects::WRAP_UP_SWEEP_INTERVAL;
use crate::sessions::PresenceCore;
use crate::store::memory::{MemoryAgentStore, MemoryLiveStateStore};
use crate::store::postgres::{MIGRATIONS, PostgresAgentStore};
use crate::store::redis::RedisLiveStateStore;
use crate::store::{AgentStore, LiveStateStore};
use crate::tenant_deletion::{PresenceEraser, TenantInventory};
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::ingestion::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;

/// The presence service on its stores.
pub struct Presence {
    pub agents: Arc<dyn AgentStore>,
    pub live: Arc<dyn LiveStateStore>,
}

/// The `google.rpc.Code` number of an error, for `SessionError.code`.
pub(crate) fn status_code(error: &Error) -> i32 {
    grpc_code(error.code) as i32
}

impl Service for Presence {
    const NAME: &'static str = "presence";

    fn in_memory(_kit: &mut Kit) -> Presence {
        Presence { agents: Arc::new(MemoryAgentStore::default()), live: Arc::new(MemoryLiveStateStore::default()) }
    }

    /// Agent definitions in PostgreSQL, live state in Redis.
    async fn connect(kit: &mut Kit) -> anyhow::Result<Presence> {
        let redis = kit.redis().await?;
        let postgres = kit.postgres(MIGRATIONS).await?;
        Ok(Presence {
            agents: Arc::new(PostgresAgentStore::new(postgres)),
            live: Arc::new(RedisLiveStateStore::new(redis, &kit.config().redis.pool)),
        })
    }

    async fn start(self, kit: &mut Kit) -> anyhow::Result<()> {
        let config = kit.config().clone();
        let grace = Duration::from_millis(config.presence.session_grace_ms);
        let presence = Arc::new(
            PresenceCore::new(self.agents, self.live, kit.bus(), grace, config.presence.missed_offers_threshold)
                .with_clock(kit.clock()),
        );
        let api = grpc::PresenceApi {
            presence: Arc::clone(&presence),
            access: kit.access(),
            routing: RoutingServiceClient::new(kit.channel(&config.services.routing.url)?),
            shutdown: kit.shutdown(),
        };
        kit.serve(PresenceServiceServer::new(api).max_decoding_message_size(kit.max_message_bytes()));
        if let Some(credentials) = kit.access().credentials() {
            let inventory = TenantInventory {
                routing: RoutingServiceClient::new(kit.channel(&config.services.routing.url)?),
                contacts: IngestionServiceClient::new(kit.channel(&config.services.ingestion.url)?),
                channels: ChannelServiceClient::new(kit.channel(&config.services.ingestion.url)?),
                crm: CrmServiceClient::new(kit.channel(&config.services.crm.url)?),
            };
            let access = access_api::AccessApi::new(
                kit.access(),
                Arc::clone(&credentials),
                Arc::clone(&presence.agents),
                inventory,
            );
            kit.serve(AccessServiceServer::new(access).max_decoding_message_size(kit.max_message_bytes()));
            kit.erase_deleted_tenants(Arc::new(PresenceEraser { presence: Arc::clone(&presence), credentials }));
        }

        // Every replica sees every routing and presence event (its own
        // group) and pushes the ones for agents connected to it. Only offers
        // still ringing matter, so a new group starts at the end of the
        // topics rather than replaying their history; the replica is not
        // ready (gets no agent sessions) until its consumer holds
        // partitions, so no offer falls into the join window.
        let sessions = Arc::clone(&presence);
        let pushes = ConsumerSpec::new("presence", &[ROUTING_TOPIC, PRESENCE_TOPIC, CONTACTS_TOPIC])
            .group(format!("presence-{}", config.instance_id))
            .from_latest()
            .keeping_deleted_tenants();
        kit.consume(pushes, move |delivery: Delivery| {
            let presence = Arc::clone(&sessions);
            async move { presence.on_event(delivery).await }
        })
        .await?;
        // State side effects of routing events are applied once, by the
        // replicas sharing one group (see `effects`).
        let effects = Arc::clone(&presence);
        // A deleted tenant's contacts still end on its agents: their
        // sessions and states must follow.
        let effects_spec = ConsumerSpec::new(effects::EFFECTS_GROUP, &[ROUTING_TOPIC])
            .from_latest()
            .in_background()
            .keeping_deleted_tenants();
        kit.consume(effects_spec, move |delivery: Delivery| {
            let presence = Arc::clone(&effects);
            async move { presence.on_routing_effect(delivery).await }
        })
        .await?;

        let wrap_ups = Arc::clone(&presence);
        kit.every(Every::new("presence-wrap-up-timer", WRAP_UP_SWEEP_INTERVAL), move || {
            let presence = Arc::clone(&wrap_ups);
            async move { presence.end_expired_wrap_ups().await }
        });
        let leases = Arc::clone(&presence);
        kit.every(Every::new("presence-lease-keeper", presence.lease_renewal_interval()), move || {
            let presence = Arc::clone(&leases);
            async move { presence.renew_leases().await }
        });
        let gauges = Arc::clone(&presence);
        kit.every(Every::new("presence-gauges", gauges::GAUGES_INTERVAL), move || {
            let presence = Arc::clone(&gauges);
            async move { presence.report_gauges().await }
        });
        let (ready, shutdown) = (kit.readiness(), kit.shutdown());
        kit.task("presence-janitor", presence.run_janitor(ready, shutdown));
        Ok(())
    }
}
