//! Switchboard ingestion: every customer contact enters here. A contact is
//! validated and normalised (`domain`), deduplicated by request id and by
//! provider message id, checked against its routing queue, attached to its
//! CRM customer, stored (`store`) and published on `switchboard.contacts.v1`
//! for routing (`grpc`).

pub mod domain;
pub mod grpc;
pub mod outbox;
pub mod store;

use std::sync::Arc;

use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::EventBus;
use switchboard_platform::grpc::lazy_channel;
use switchboard_platform::postgres::{PostgresCheck, connect_migrated};
use switchboard_platform::service::{Backplane, run_service};
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::ingestion::v1::ingestion_service_server::IngestionServiceServer;
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::service::interceptor::InterceptedService;

use crate::grpc::IngestionApi;
use crate::outbox::Outbox;
use crate::store::ContactStore;
use crate::store::memory::MemoryContactStore;
use crate::store::postgres::{MIGRATIONS, PostgresContactStore};

/// The name migrations and logs know this service by.
pub const SERVICE_NAME: &str = "ingestion";

/// The backends the service runs on.
pub struct Deps {
    pub store: Arc<dyn ContactStore>,
    pub backplane: Backplane,
}

impl Deps {
    /// An in-memory store on the given bus, for `dev` mode and tests.
    pub fn in_memory(bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> Deps {
        Deps { store: Arc::new(MemoryContactStore::new()), backplane: Backplane::new(bus, access) }
    }

    /// A PostgreSQL pool from `config.postgres` with the service's
    /// migrations applied (schema `ingestion`), on the given bus.
    pub async fn connect(config: &Config, bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> anyhow::Result<Deps> {
        let pool = connect_migrated(&config.postgres, SERVICE_NAME, MIGRATIONS).await?;
        let backplane = Backplane::new(bus, access).with_check(PostgresCheck(pool.clone()));
        Ok(Deps { store: Arc::new(PostgresContactStore::new(pool)), backplane })
    }
}

/// How often the outbox relay looks for unpublished events.
const RELAY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves the ingestion API and runs the outbox relay on `listener` until
/// `shutdown` fires, then drains in-flight calls and flushes the producer.
pub async fn run(config: Config, deps: Deps, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let routing = RoutingServiceClient::new(lazy_channel(&config.services.routing.url)?);
    let crm = CrmServiceClient::new(lazy_channel(&config.services.crm.url)?);
    let outbox = Arc::new(Outbox::new(Arc::clone(&deps.store), Arc::clone(&deps.backplane.bus)));
    let relay = Arc::clone(&outbox).run_relay(RELAY_INTERVAL, shutdown.clone());
    let api = IngestionApi::new(deps.store, outbox, Arc::clone(&deps.backplane.access), routing, crm);
    let server = IngestionServiceServer::new(api).max_decoding_message_size(config.grpc.max_message_bytes);
    let mut routes = RoutesBuilder::default();
    routes.add_service(InterceptedService::new(server, deps.backplane.access.interceptor()));
    let parts = deps.backplane.into_parts(
        "ingestion",
        "switchboard.ingestion.v1.IngestionService",
        routes,
        vec![("ingestion-outbox-relay", Box::pin(relay))],
    );
    run_service(&config, parts, listener, shutdown).await
}
