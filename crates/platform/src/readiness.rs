//! Readiness that really checks each dependency: the health status of a
//! service is SERVING only while every backend it uses answers.

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

/// Re-checks every `interval` and publishes the result under the overall
/// health name `""` and under each of `grpc_service_names`.
pub fn spawn_readiness(
    reporter: HealthReporter,
    grpc_service_names: Vec<&'static str>,
    checks: Vec<Arc<dyn DependencyCheck>>,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
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
                reporter.set_service_status("", status).await;
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
