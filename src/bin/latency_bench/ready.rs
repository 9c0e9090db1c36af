//! Readiness of the services under test, through their gRPC health.

use std::time::Duration;

use switchboard_platform::Config;
use tokio::time::Instant;

/// Waits until every service reports its API ready (gRPC health, which
/// follows each service's readiness checks), or fails at `deadline`.
pub async fn all_ready(config: &Config, deadline: Instant) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let apis = [
        (&config.services.ingestion.url, "switchboard.ingestion.v1.IngestionService"),
        (&config.services.routing.url, "switchboard.routing.v1.RoutingService"),
        (&config.services.presence.url, "switchboard.presence.v1.PresenceService"),
        (&config.services.crm.url, "switchboard.crm.v1.CrmService"),
        (&config.services.kpi.url, "switchboard.kpi.v1.KpiService"),
    ];
    for (url, api) in apis {
        let mut health = HealthClient::new(crate::channel(url)?);
        loop {
            let request = HealthCheckRequest { service: api.to_owned() };
            let status = health.check(request).await.map(|response| response.into_inner().status);
            if status.as_ref().is_ok_and(|status| *status == ServingStatus::Serving as i32) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{api} never reported ready: {status:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
