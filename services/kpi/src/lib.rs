//! The KPI service: aggregates the contacts and routing event streams into
//! per-contact facts and serves exact contact-center KPIs (CAR, LCR, ASA,
//! service level and their counts) per tenant, queue, channel, time range
//! and 15-minute interval. The definitions are in [`domain`].

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
use switchboard_proto::kpi::v1::kpi_service_server::KpiServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::service::interceptor::InterceptedService;

use crate::grpc::KpiGrpc;
use crate::store::postgres::{MIGRATION_SERVICE, MIGRATIONS};
use crate::store::{KpiStore, MemoryKpiStore, PostgresKpiStore};

/// The fully-qualified name of the API, for health and reflection.
pub const GRPC_SERVICE_NAME: &str = "switchboard.kpi.v1.KpiService";

/// What the service runs on.
pub struct Deps {
    pub store: Arc<dyn KpiStore>,
    pub backplane: Backplane,
}

impl Deps {
    /// An in-memory store (`dev` mode and tests) on `bus`.
    pub fn in_memory(bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> Deps {
        Deps { store: Arc::new(MemoryKpiStore::new()), backplane: Backplane::new(bus, access) }
    }

    /// A PostgreSQL store from `config.postgres`, its migrations applied
    /// (service `kpi`, schema `kpi`), on `bus`.
    pub async fn connect(config: &Config, bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> anyhow::Result<Deps> {
        let pool = connect_migrated(&config.postgres, MIGRATION_SERVICE, MIGRATIONS).await?;
        let backplane = Backplane::new(bus, access).with_check(PostgresCheck(pool.clone()));
        Ok(Deps { store: Arc::new(PostgresKpiStore::new(pool)), backplane })
    }
}

/// Serves the KPI API on `listener` and runs the consumer until `shutdown`.
pub async fn run(config: Config, deps: Deps, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let api = KpiGrpc::new(Arc::clone(&deps.store), Arc::clone(&deps.backplane.access));
    let mut routes = RoutesBuilder::default();
    routes.add_service(InterceptedService::new(
        KpiServiceServer::new(api).max_decoding_message_size(config.grpc.max_message_bytes),
        deps.backplane.access.interceptor(),
    ));
    let consumer = consumer::run(Arc::clone(&deps.store), Arc::clone(&deps.backplane.bus), shutdown.clone());
    let parts = deps.backplane.into_parts("kpi", GRPC_SERVICE_NAME, routes, vec![("kpi-consumer", Box::pin(consumer))]);
    run_service(&config, parts, listener, shutdown).await
}
