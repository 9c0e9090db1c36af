//! Readiness that really checks each dependency. Two health names, two
//! meanings, as probes expect:
//! - each gRPC service name (e.g. `switchboard.crm.v1.CrmService`) is
//!   SERVING only while every backend the service uses answers: readiness;
//! - the overall name `""` is SERVING while the process runs and NOT_SERVING
//!   once it shuts down: liveness. A backend outage must not restart pods.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// One backend a service depends on.
#[async_trait]
pub trait DependencyCheck: Send + Sync {
    fn name(&self) -> &'static str;
    async fn check(&self) -> anyhow::Result<()>;
}

/// Marks the process live, then re-checks every `interval` and publishes
/// readiness under each of `grpc_service_names`.
pub fn spawn_readiness(
    reporter: HealthReporter,
    grpc_service_names: Vec<&'static str>,
    checks: Vec<Arc<dyn DependencyCheck>>,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        reporter.set_service_status("", ServingStatus::Serving).await;
        let mut last_ready = None;
        loop {
            let mut ready = true;
            for check in &checks {
                let outcome = tokio::time::timeout(Duration::from_secs(5), check.check()).await;
                let failure = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error.to_string()),
                    Err(_) => Some("timed out".to_owned()),
                };
                if let Some(failure) = failure {
                    ready = false;
                    tracing::warn!(dependency = check.name(), error = %failure, "dependency not ready");
                }
            }
            if last_ready != Some(ready) {
                let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
                for name in &grpc_service_names {
                    reporter.set_service_status(*name, status).await;
                }
                tracing::info!(ready, "readiness changed");
                last_ready = Some(ready);
            }
            tokio::select! {
                () = shutdown.cancelled() => {
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
