//! Switchboard ingestion: every customer contact enters here. A contact is
//! validated and normalised (`domain`), deduplicated by request id and by
//! provider message id, checked against its routing queue, attached to its
//! CRM customer, stored (`store`) and published on `switchboard.contacts.v1`
//! for routing (`grpc`).

pub mod domain;
pub mod grpc;
pub mod store;

use std::sync::Arc;

use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::EventBus;
use switchboard_platform::grpc::lazy_channel;
use switchboard_platform::postgres::{PostgresCheck, migrate, pool};
use switchboard_platform::readiness::DependencyCheck;
use switchboard_platform::service::{BusCheck, ServiceParts, run_service};
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::ingestion::v1::ingestion_service_server::IngestionServiceServer;
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::service::interceptor::InterceptedService;

use crate::grpc::IngestionApi;
use crate::store::ContactStore;
use crate::store::memory::MemoryContactStore;
use crate::store::postgres::{MIGRATIONS, PostgresContactStore};

/// The name migrations and logs know this service by.
pub const SERVICE_NAME: &str = "ingestion";

/// The backends the service runs on.
pub struct Deps {
    pub store: Arc<dyn ContactStore>,
    pub bus: Arc<dyn EventBus>,
    pub access: Arc<AccessControl>,
    /// What readiness checks before the service reports SERVING.
    pub checks: Vec<Arc<dyn DependencyCheck>>,
}

impl Deps {
    /// An in-memory store on the given bus, for `dev` mode and tests.
    pub fn in_memory(bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> Deps {
        let checks: Vec<Arc<dyn DependencyCheck>> = vec![Arc::new(BusCheck(Arc::clone(&bus)))];
        Deps { store: Arc::new(MemoryContactStore::new()), bus, access, checks }
    }

    /// A PostgreSQL pool from `config.postgres` with the service's
    /// migrations applied (schema `ingestion`), on the given bus.
    pub async fn connect(config: &Config, bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> anyhow::Result<Deps> {
        let pool = pool(&config.postgres)?;
        migrate(&pool, SERVICE_NAME, MIGRATIONS).await?;
        let checks: Vec<Arc<dyn DependencyCheck>> =
            vec![Arc::new(PostgresCheck(pool.clone())), Arc::new(BusCheck(Arc::clone(&bus)))];
        Ok(Deps { store: Arc::new(PostgresContactStore::new(pool)), bus, access, checks })
    }
}

/// Serves the ingestion API on `listener` until `shutdown` fires, then
/// drains in-flight calls and flushes the producer.
pub async fn run(config: Config, deps: Deps, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let routing = RoutingServiceClient::new(lazy_channel(&config.services.routing.url)?);
    let crm = CrmServiceClient::new(lazy_channel(&config.services.crm.url)?);
    let api = IngestionApi::new(deps.store, Arc::clone(&deps.bus), Arc::clone(&deps.access), routing, crm);
    let server = IngestionServiceServer::new(api).max_decoding_message_size(config.grpc.max_message_bytes);
    let mut routes = RoutesBuilder::default();
    // Outermost, so it sees the rejection of an oversized request whatever
    // layer inside produced it.
    routes.add_service(InterceptedService::new(server, deps.access.interceptor()));
    let parts = ServiceParts {
        service_name: SERVICE_NAME,
        grpc_service_names: vec!["switchboard.ingestion.v1.IngestionService"],
        routes,
        checks: deps.checks,
        background: vec![],
        bus: deps.bus,
    };
    run_service(&config, parts, listener, shutdown).await
}
