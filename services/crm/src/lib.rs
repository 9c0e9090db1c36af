//! The CRM service: one customer across every channel. Resolves the
//! identities channels report (phone, e-mail, chat visitor, …) to customers
//! of a tenant, and keeps each customer's timeline of contacts from the
//! contacts and routing events.

pub mod domain;
pub mod grpc;
pub mod store;

mod consumer;

use std::sync::Arc;

use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::EventBus;
use switchboard_platform::postgres::{PostgresCheck, pool};
use switchboard_platform::readiness::DependencyCheck;
use switchboard_platform::service::{BusCheck, ServiceParts, run_service};
use switchboard_proto::crm::v1::crm_service_server::CrmServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::service::interceptor::InterceptedService;

use crate::store::{CrmStore, MemoryCrmStore, PostgresCrmStore};

/// The fully-qualified name of the gRPC service, for health and reflection.
pub const GRPC_SERVICE_NAME: &str = "switchboard.crm.v1.CrmService";

/// The backends the CRM service runs on.
pub struct Deps {
    pub store: Arc<dyn CrmStore>,
    pub bus: Arc<dyn EventBus>,
    pub access: Arc<AccessControl>,
    /// Readiness checks: the bus, and PostgreSQL in real mode.
    pub checks: Vec<Arc<dyn DependencyCheck>>,
}

impl Deps {
    /// Embedded backends for `switchboard dev`.
    pub fn in_memory(bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> Deps {
        let checks: Vec<Arc<dyn DependencyCheck>> = vec![Arc::new(BusCheck(Arc::clone(&bus)))];
        Deps { store: Arc::new(MemoryCrmStore::new()), bus, access, checks }
    }

    /// Real backends: a PostgreSQL pool from `config.postgres` with the CRM
    /// schema migrated, and the given (Kafka) bus.
    pub async fn connect(config: &Config, bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> anyhow::Result<Deps> {
        let pool = pool(&config.postgres)?;
        store::postgres::migrate_schema(&pool).await?;
        let checks: Vec<Arc<dyn DependencyCheck>> =
            vec![Arc::new(BusCheck(Arc::clone(&bus))), Arc::new(PostgresCheck(pool.clone()))];
        Ok(Deps { store: Arc::new(PostgresCrmStore::new(pool)), bus, access, checks })
    }
}

/// Serves CrmService on `listener` and runs the timeline consumer until
/// `shutdown`.
pub async fn run(
    config: Config,
    deps: Deps,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let api = grpc::CrmApi::new(Arc::clone(&deps.store), Arc::clone(&deps.access));
    let server = CrmServiceServer::new(api).max_decoding_message_size(config.grpc.max_message_bytes);
    let mut routes = RoutesBuilder::default();
    routes.add_service(InterceptedService::new(server, deps.access.interceptor()));
    let consumer = consumer::run(Arc::clone(&deps.store), Arc::clone(&deps.bus), shutdown.clone());
    let parts = ServiceParts {
        service_name: "crm",
        grpc_service_names: vec![GRPC_SERVICE_NAME],
        routes,
        checks: deps.checks,
        background: vec![("crm-consumer", Box::pin(consumer))],
        bus: deps.bus,
    };
    run_service(&config, parts, listener, shutdown).await
}
