//! Readiness that really checks each dependency. Two health names, two
//! meanings, as probes expect:
//! - each gRPC service name (e.g. `switchboard.crm.v1.CrmService`) is
//!   SERVING only while every backend the service uses answers and every
//!   consumer is healthy: readiness (also `GET /readyz`);
//! - the overall name `""` is SERVING while the process runs and NOT_SERVING
//!   once it shuts down: liveness (also `GET /healthz`). A backend outage
//!   must not restart pods.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::metrics::{labels, metrics, seconds};

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// One backend, consumer or other condition a service depends on.
#[async_trait]
pub trait DependencyCheck: Send + Sync {
    /// Names the dependency in logs and metrics (`redis`, `consumer:crm`).
    fn name(&self) -> String;
    async fn check(&self) -> anyhow::Result<()>;
}

/// Whether the service is ready, for the HTTP probes.
#[derive(Debug, Clone, Default)]
pub struct ReadyFlag(Arc<AtomicBool>);

impl ReadyFlag {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
}

/// Marks the process live, then re-checks every `interval` and publishes
/// readiness under each of `grpc_service_names` and in `ready`.
pub fn spawn_readiness(
    service: &'static str,
    reporter: HealthReporter,
    grpc_service_names: Vec<&'static str>,
    checks: Vec<Arc<dyn DependencyCheck>>,
    ready_flag: ReadyFlag,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        reporter.set_service_status("", ServingStatus::Serving).await;
        let mut last_ready = None;
        loop {
            let mut ready = true;
            for check in &checks {
                let name = check.name();
                let started = Instant::now();
                let outcome = tokio::time::timeout(CHECK_TIMEOUT, check.check()).await;
                metrics()
                    .dependency_latency
                    .get_or_create(&labels([("dependency", &name)]))
                    .observe(seconds(started.elapsed()));
                let failure = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(format!("{error:#}")),
                    Err(_) => Some("timed out".to_owned()),
                };
                let up = labels([("service", service), ("dependency", &name)]);
                metrics().dependency_up.get_or_create(&up).set(i64::from(failure.is_none()));
                if let Some(failure) = failure {
                    ready = false;
                    tracing::warn!(service, dependency = %name, error = %failure, "dependency not ready");
                }
            }
            if last_ready != Some(ready) {
                let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
                for name in &grpc_service_names {
                    reporter.set_service_status(*name, status).await;
                }
                ready_flag.set(ready);
                tracing::info!(service, ready, "readiness changed");
                last_ready = Some(ready);
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    ready_flag.set(false);
                    reporter.set_service_status("", ServingStatus::NotServing).await;
                    for name in &grpc_service_names {
                        reporter.set_service_status(*name, ServingStatus::NotServing).await;
                    }
                    return;
                }
                () = tokio::time::sleep(interval) => {}
            }
        }
    })
}
