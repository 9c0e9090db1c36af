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
use switchboard_platform::postgres::{PostgresCheck, connect_migrated};
use switchboard_platform::service::{Backplane, run_service};
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
    pub backplane: Backplane,
}

impl Deps {
    /// Embedded backends for `switchboard dev`.
    pub fn in_memory(bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> Deps {
        Deps { store: Arc::new(MemoryCrmStore::new()), backplane: Backplane::new(bus, access) }
    }

    /// Real backends: a PostgreSQL pool from `config.postgres` with the CRM
    /// schema migrated, and the given (Kafka) bus.
    pub async fn connect(config: &Config, bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> anyhow::Result<Deps> {
        let pool =
            connect_migrated(&config.postgres, store::postgres::MIGRATION_SERVICE, store::postgres::MIGRATIONS).await?;
        let backplane = Backplane::new(bus, access).with_check(PostgresCheck(pool.clone()));
        Ok(Deps { store: Arc::new(PostgresCrmStore::new(pool)), backplane })
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
    let api = grpc::CrmApi::new(Arc::clone(&deps.store), Arc::clone(&deps.backplane.access));
    let server = CrmServiceServer::new(api).max_decoding_message_size(config.grpc.max_message_bytes);
    let mut routes = RoutesBuilder::default();
    routes.add_service(InterceptedService::new(server, deps.backplane.access.interceptor()));
    let consumer = consumer::run(Arc::clone(&deps.store), Arc::clone(&deps.backplane.bus), shutdown.clone());
    let parts = deps.backplane.into_parts("crm", GRPC_SERVICE_NAME, routes, vec![("crm-consumer", Box::pin(consumer))]);
    run_service(&config, parts, listener, shutdown).await
}
