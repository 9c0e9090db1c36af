//! The service kit: what every Switchboard service shares, so a service is
//! a manifest of what it serves, consumes and runs on a timer.
//!
//! A service implements [`Service`]: it opens its stores through the
//! [`Kit`] (each backend opened there is checked by readiness), then, in
//! [`Service::start`], declares
//! - gRPC APIs with [`Kit::serve`] (authenticated, with health, reflection,
//!   RED metrics and tracing, drained on shutdown),
//! - HTTP routes with [`Kit::http`] (beside `/metrics`, `/healthz` and
//!   `/readyz`),
//! - consumers with [`Kit::consume`] (at least once, transient failures
//!   retried with backoff and jitter while readiness is false, permanent
//!   ones dead-lettered, see [`consume`]),
//! - timers with [`Kit::every`] and other tasks with [`Kit::task`],
//! - what it erases of a deleted tenant with [`Kit::erase_deleted_tenants`].
//!
//! [`run`] then serves until the one shutdown token fires, stops accepting,
//! drains calls, lets every task finish its in-flight work and flushes the
//! producer. A task that fails stops the whole service (an orchestrator
//! restarts it) rather than leaving it half alive.

pub mod consume;
mod erasure;
mod http;
mod timer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use switchboard_core::clock::Clock;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

pub use self::consume::{ConsumerSpec, consume};
pub use self::erasure::{ERASURE_GRACE_MS, EraseWith, Erased, TenantEraser};
pub use self::timer::Every;
use crate::auth::AccessControl;
use crate::bus::EventBus;
use crate::config::Config;
use crate::grpc::{GrpcServer, health, serve};
use crate::postgres::{Migration, PostgresCheck, connect_migrated};
use crate::readiness::{DependencyCheck, ReadyFlag, spawn_readiness};
use crate::redis::RedisCheck;
use crate::tls::Tls;

/// A task that runs until the shutdown token fires, then finishes its
/// in-flight work (e.g. commits consumer offsets) and returns.
pub type BackgroundTask = BoxFuture<'static, Result<(), switchboard_core::Error>>;

/// Which backends the services of a process run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backends {
    /// In-process bus and in-memory stores (`switchboard dev`, tests).
    Embedded,
    /// Kafka, Redis and PostgreSQL from configuration.
    External,
}

/// One Switchboard service: its stores, and the manifest of what it runs.
pub trait Service: Sized + Send + 'static {
    /// The name logs, metrics, migrations (PostgreSQL schema) and
    /// consumer groups know it by.
    const NAME: &'static str;

    /// The service on embedded backends.
    fn in_memory(kit: &mut Kit) -> Self;

    /// The service on the configured backends; backends opened through
    /// [`Kit::postgres`] and [`Kit::redis`] are checked by readiness.
    fn connect(kit: &mut Kit) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Declares what the service serves, consumes and runs on a timer.
    fn start(self, kit: &mut Kit) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Where a service listens.
pub struct Listeners {
    pub grpc: TcpListener,
    /// `None`: no HTTP server (metrics and probes only over gRPC health).
    pub http: Option<TcpListener>,
}

/// What a service is built from and what it declares; see the module docs.
pub struct Kit {
    name: &'static str,
    config: Config,
    bus: Arc<dyn EventBus>,
    access: Arc<AccessControl>,
    shutdown: CancellationToken,
    checks: Vec<Arc<dyn DependencyCheck>>,
    routes: RoutesBuilder,
    grpc_service_names: Vec<&'static str>,
    http_routes: axum::Router,
    tasks: Vec<(String, BackgroundTask)>,
    redis: Option<ConnectionManager>,
    clock: Clock,
    ready: ReadyFlag,
    /// The process's TLS settings (`[tls]`), if any.
    tls: Option<Arc<Tls>>,
}

/// How often the shared clock is measured again against Redis.
const CLOCK_SYNC_INTERVAL: Duration = Duration::from_secs(10);

impl Kit {
    /// A kit for service `name`: readiness starts with the bus.
    pub fn new(
        name: &'static str,
        config: Config,
        bus: Arc<dyn EventBus>,
        access: Arc<AccessControl>,
        shutdown: CancellationToken,
    ) -> Kit {
        let checks: Vec<Arc<dyn DependencyCheck>> = vec![Arc::new(BusCheck(bus.clone()))];
        Kit {
            name,
            config,
            bus,
            access,
            shutdown,
            checks,
            routes: RoutesBuilder::default(),
            grpc_service_names: Vec::new(),
            http_routes: axum::Router::new(),
            tasks: Vec::new(),
            redis: None,
            clock: Clock::system(),
            ready: ReadyFlag::default(),
            tls: None,
        }
    }

    /// The kit serving and calling over `tls` (see [`Tls`]).
    pub fn with_tls(mut self, tls: Option<Arc<Tls>>) -> Kit {
        self.tls = tls;
        self
    }

    /// A channel to another service at `url` (`services.<svc>.url`), over
    /// TLS when it is `https://`.
    pub fn channel(&self, url: &str) -> anyhow::Result<tonic::transport::Channel> {
        crate::grpc::lazy_channel(url, self.tls.as_ref())
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn bus(&self) -> Arc<dyn EventBus> {
        self.bus.clone()
    }

    pub fn access(&self) -> Arc<AccessControl> {
        self.access.clone()
    }

    /// The process's one cancellation token.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The largest request any API of the service decodes.
    pub fn max_message_bytes(&self) -> usize {
        self.config.grpc.max_message_bytes
    }

    /// A PostgreSQL pool with the service's migrations applied (schema
    /// named after the service), checked by readiness.
    pub async fn postgres(&mut self, migrations: &[Migration]) -> anyhow::Result<Pool> {
        let pool = connect_migrated(&self.config.postgres, self.name, migrations).await?;
        self.check(PostgresCheck(pool.clone()));
        Ok(pool)
    }

    /// The service's Redis connection (one per service, multiplexed),
    /// checked by readiness.
    pub async fn redis(&mut self) -> anyhow::Result<ConnectionManager> {
        if let Some(connection) = &self.redis {
            return Ok(connection.clone());
        }
        let redis = &self.config.redis;
        let connection = crate::redis::connect_trusting(&redis.url, redis.ca_file.as_deref()).await?;
        self.check(RedisCheck(connection.clone()));
        self.redis = Some(connection.clone());
        // Redis's clock becomes the one every replica reads (see `clock`).
        crate::redis::sync_clock(&connection, &self.clock).await?;
        let (sync_connection, clock) = (connection.clone(), self.clock.clone());
        self.every(Every::new("clock-sync", CLOCK_SYNC_INTERVAL), move || {
            let (connection, clock) = (sync_connection.clone(), clock.clone());
            async move { crate::redis::sync_clock(&connection, &clock).await.map(|_sample| ()) }
        });
        Ok(connection)
    }

    /// The clock replicas agree on: Redis's once [`Kit::redis`] connected
    /// (measured again every 10 s), the host's otherwise. Leases, offer
    /// expiry and wait deadlines read it.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// Whether the service is ready (every check passes), for tasks that
    /// must not act before it is.
    pub fn readiness(&self) -> ReadyFlag {
        self.ready.clone()
    }

    /// The readiness conditions declared so far.
    pub fn readiness_checks(&self) -> &[Arc<dyn DependencyCheck>] {
        &self.checks
    }

    /// Adds a readiness condition.
    pub fn check(&mut self, check: impl DependencyCheck + 'static) {
        self.checks.push(Arc::new(check));
    }

    /// Serves a gRPC API: every call authenticated by the access layer
    /// (the principal is in the request extensions), its readiness
    /// reported under the API's name.
    pub fn serve<S>(&mut self, server: S)
    where
        S: tower::Service<
                tonic::codegen::http::Request<tonic::body::Body>,
                Response = tonic::codegen::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.grpc_service_names.push(S::NAME);
        let authenticated = tonic::service::interceptor::InterceptedService::new(server, self.access.interceptor());
        self.routes.add_service(authenticated);
    }

    /// Adds HTTP routes to the service's HTTP server.
    pub fn http(&mut self, router: axum::Router) {
        let routes = std::mem::take(&mut self.http_routes);
        self.http_routes = routes.merge(router);
    }

    /// Runs `task` in the background until shutdown.
    pub fn task(
        &mut self,
        name: impl Into<String>,
        task: impl Future<Output = Result<(), switchboard_core::Error>> + Send + 'static,
    ) {
        self.tasks.push((name.into(), Box::pin(task)));
    }
}

/// Builds the service on `backends` and runs it until shutdown.
pub async fn launch<S: Service>(mut kit: Kit, backends: Backends, listeners: Listeners) -> anyhow::Result<()> {
    let service = match backends {
        Backends::Embedded => S::in_memory(&mut kit),
        Backends::External => S::connect(&mut kit).await?,
    };
    run(kit, service, listeners).await
}

/// Runs a built service until shutdown, then drains and stops.
pub async fn run<S: Service>(mut kit: Kit, service: S, listeners: Listeners) -> anyhow::Result<()> {
    service.start(&mut kit).await?;
    let Kit { name, config, bus, shutdown, checks, routes, grpc_service_names, http_routes, tasks, ready, tls, .. } =
        kit;
    let (reporter, health_service) = health();
    let readiness = spawn_readiness(
        name,
        reporter,
        grpc_service_names.clone(),
        checks,
        ready.clone(),
        Duration::from_secs(2),
        shutdown.clone(),
    );
    let mut running = Vec::new();
    for (task_name, task) in tasks {
        running.push(spawn_supervised(task_name, task, shutdown.clone()));
    }
    if let Some(listener) = listeners.http {
        let router = http::router(http_routes, ready.clone());
        let http_server = Box::pin(http::serve(name, listener, router, shutdown.clone(), tls.clone()));
        running.push(spawn_supervised(format!("{name}-http"), http_server, shutdown.clone()));
    }
    let server = GrpcServer { service_name: name, listener: listeners.grpc, routes, grpc_service_names };
    let served = serve(server, &config.grpc, health_service, shutdown.clone(), tls).await;
    shutdown.cancel();
    let mut first_task_failure = None;
    for task in running {
        if let Ok((task_name, Err(error))) = task.await {
            first_task_failure.get_or_insert_with(|| anyhow::anyhow!("{task_name}: {error}"));
        }
    }
    if let Err(error) = bus.flush().await {
        tracing::warn!(service = name, error = %error, "producer flush failed");
    }
    let _ = readiness.await;
    served?;
    match first_task_failure {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// Spawns a task whose failure or panic stops the service: a service
/// without its consumer or timer is not a service.
fn spawn_supervised(
    task_name: String,
    task: BackgroundTask,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<(String, Result<(), switchboard_core::Error>)> {
    let handle = tokio::spawn(task);
    tokio::spawn(async move {
        let outcome = match handle.await {
            Ok(outcome) => outcome,
            Err(join_error) => Err(switchboard_core::Error::internal(format!("task panicked: {join_error}"))),
        };
        if let Err(error) = &outcome {
            tracing::error!(task = %task_name, error = %error, "background task failed, stopping the service");
            shutdown.cancel();
        }
        (task_name, outcome)
    })
}

/// A dependency check on the event bus.
pub struct BusCheck(pub Arc<dyn EventBus>);

#[async_trait::async_trait]
impl DependencyCheck for BusCheck {
    fn name(&self) -> String {
        "kafka".to_owned()
    }

    async fn check(&self) -> anyhow::Result<()> {
        Ok(self.0.check().await?)
    }
}
