//! The lifecycle every service shares: serve gRPC (with health and
//! reflection), keep readiness current, run background tasks (consumers,
//! timers) and, on shutdown, stop accepting, drain calls, let background
//! tasks commit, and flush the producer.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use crate::auth::AccessControl;
use crate::bus::EventBus;
use crate::config::Config;
use crate::grpc::{GrpcServer, health, serve};
use crate::readiness::{DependencyCheck, spawn_readiness};

/// A task that runs until the shutdown token fires, then finishes its
/// in-flight work (e.g. commits consumer offsets) and returns.
pub type BackgroundTask = BoxFuture<'static, Result<(), switchboard_core::Error>>;

pub struct ServiceParts {
    pub service_name: &'static str,
    /// Fully-qualified gRPC service names, for per-service health.
    pub grpc_service_names: Vec<&'static str>,
    pub routes: RoutesBuilder,
    pub checks: Vec<Arc<dyn DependencyCheck>>,
    pub background: Vec<(&'static str, BackgroundTask)>,
    pub bus: Arc<dyn EventBus>,
}

/// Runs a service until `shutdown` fires.
pub async fn run_service(
    config: &Config,
    parts: ServiceParts,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (reporter, health_service) = health();
    let readiness =
        spawn_readiness(reporter, parts.grpc_service_names, parts.checks, Duration::from_secs(2), shutdown.clone());
    let mut tasks = Vec::new();
    for (task_name, task) in parts.background {
        let task_shutdown = shutdown.clone();
        let handle = tokio::spawn(task);
        // A service without its consumer or matcher is not a service: when a
        // task fails or panics, the whole service stops (and the process
        // exits non-zero, so an orchestrator restarts it).
        tasks.push(tokio::spawn(async move {
            let outcome = match handle.await {
                Ok(outcome) => outcome,
                Err(join_error) => Err(switchboard_core::Error::internal(format!("task panicked: {join_error}"))),
            };
            if let Err(error) = &outcome {
                tracing::error!(task = task_name, error = %error, "background task failed");
                task_shutdown.cancel();
            }
            (task_name, outcome)
        }));
    }
    let server = GrpcServer { service_name: parts.service_name, listener, routes: parts.routes };
    let served = serve(server, &config.grpc, health_service, shutdown.clone()).await;
    shutdown.cancel();
    let mut first_task_failure = None;
    for task in tasks {
        if let Ok((task_name, Err(error))) = task.await {
            first_task_failure.get_or_insert_with(|| anyhow::anyhow!("{task_name}: {error}"));
        }
    }
    if let Err(error) = parts.bus.flush().await {
        tracing::warn!(service = parts.service_name, error = %error, "producer flush failed");
    }
    let _ = readiness.await;
    served?;
    match first_task_failure {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// What every service runs on besides its own stores: the event bus,
/// access control, and the readiness checks of every backend it uses.
pub struct Backplane {
    pub bus: Arc<dyn EventBus>,
    pub access: Arc<AccessControl>,
    pub checks: Vec<Arc<dyn DependencyCheck>>,
}

impl Backplane {
    /// Readiness starts with the bus; add each other backend with
    /// [`Backplane::with_check`].
    pub fn new(bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> Backplane {
        let checks: Vec<Arc<dyn DependencyCheck>> = vec![Arc::new(BusCheck(bus.clone()))];
        Backplane { bus, access, checks }
    }

    pub fn with_check(mut self, check: impl DependencyCheck + 'static) -> Backplane {
        self.checks.push(Arc::new(check));
        self
    }

    /// The parts `run_service` needs, for a service with these routes and
    /// background tasks.
    pub fn into_parts(
        self,
        service_name: &'static str,
        grpc_service_name: &'static str,
        routes: RoutesBuilder,
        background: Vec<(&'static str, BackgroundTask)>,
    ) -> ServiceParts {
        ServiceParts {
            service_name,
            grpc_service_names: vec![grpc_service_name],
            routes,
            checks: self.checks,
            background,
            bus: self.bus,
        }
    }
}

/// A dependency check on the event bus.
pub struct BusCheck(pub Arc<dyn EventBus>);

#[async_trait::async_trait]
impl DependencyCheck for BusCheck {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn check(&self) -> anyhow::Result<()> {
        Ok(self.0.check().await?)
    }
}
