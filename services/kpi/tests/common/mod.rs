//! A KPI service on an ephemeral port with a real tonic client, for the
//! integration tests.

// Each test binary uses part of the harness; helpers outside `#[test]`
// functions are not covered by clippy.toml's allow-*-in-tests.
#![allow(dead_code, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use switchboard_kpi::Kpi;
use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::EventBus;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::config::{ApiKeyConfig, AuthConfig};
use switchboard_platform::service::{Kit, Service};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use switchboard_proto::kpi::v1::{GetKpiSummaryRequest, KpiFilter, KpiSummary};
use tonic::Status;
use tonic::transport::Channel;

pub const ACME_READER_KEY: &str = "acme-reader-secret";
pub const GLOBEX_READER_KEY: &str = "globex-reader-secret";
pub const OPERATOR_KEY: &str = "operator-secret";

/// How long a condition on the live aggregate may take to hold.
pub const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(15);

fn api_key(name: &str, key: &str, role: &str, tenant: Option<&str>) -> ApiKeyConfig {
    ApiKeyConfig::for_key(name, key, role, tenant, None)
}

/// Tenants acme and globex, a reader key for each and an operator key.
pub fn config() -> Config {
    let config = Config {
        auth: AuthConfig {
            tenants: vec!["acme".to_owned(), "globex".to_owned()],
            api_keys: vec![
                api_key("acme-reader", ACME_READER_KEY, "tenant_reader", Some("acme")),
                api_key("globex-reader", GLOBEX_READER_KEY, "tenant_reader", Some("globex")),
                api_key("operator", OPERATOR_KEY, "operator_admin", None),
            ],
            service_key: None,
            rate_limit: Default::default(),
            tenant_policies: Default::default(),
            oidc: None,
        },
        ..Config::default()
    };
    config.validate().expect("test config is valid");
    config
}

pub fn access(config: &Config) -> Arc<AccessControl> {
    AccessControl::from_config(&config.auth).expect("access control")
}

pub struct RunningService {
    pub client: KpiServiceClient<Channel>,
    pub service: switchboard_test_support::RunningService,
}

impl RunningService {
    /// Stops the service and checks it shut down cleanly.
    pub async fn stop(self) {
        self.service.stop().await;
    }
}

/// A kit for the KPI service on `bus`.
pub fn kit(config: &Config, bus: &MemoryBus) -> Kit {
    switchboard_test_support::kit::<Kpi>(config.clone(), Arc::new(bus.clone()), access(config))
}

/// Runs `kpi` on 127.0.0.1:0 and connects a client.
pub async fn start(kit: Kit, kpi: Kpi) -> RunningService {
    let service = switchboard_test_support::start_service(kit, kpi).await;
    // The listener is bound, so the connection is accepted as soon as the
    // server starts serving.
    let client = KpiServiceClient::connect(service.url()).await.expect("connect");
    RunningService { client, service }
}

/// An in-memory service on a fresh in-process bus.
pub async fn start_in_memory() -> (RunningService, MemoryBus) {
    let bus = MemoryBus::new();
    let mut kit = kit(&config(), &bus);
    let kpi = Kpi::in_memory(&mut kit);
    (start(kit, kpi).await, bus)
}

pub async fn publish(bus: &dyn EventBus, events: &[(&'static str, EventEnvelope)]) {
    for (topic, envelope) in events {
        bus.publish(topic, envelope).await.expect("publish");
    }
}

pub use switchboard_test_support::authorized;

pub fn tenant_filter(tenant: &str) -> KpiFilter {
    KpiFilter { parent: format!("tenants/{tenant}"), ..KpiFilter::default() }
}

pub async fn summary(
    client: &mut KpiServiceClient<Channel>,
    key: &str,
    filter: KpiFilter,
) -> Result<KpiSummary, Status> {
    let request = authorized(key, GetKpiSummaryRequest { filter: Some(filter) });
    client.get_kpi_summary(request).await.map(tonic::Response::into_inner)
}

/// Polls GetKpiSummary until `settled` holds for the live aggregate, and
/// returns that summary; fails after [`CONVERGENCE_TIMEOUT`].
pub async fn wait_for_summary(
    client: &mut KpiServiceClient<Channel>,
    key: &str,
    filter: KpiFilter,
    settled: impl Fn(&KpiSummary) -> bool,
) -> KpiSummary {
    let deadline = tokio::time::Instant::now() + CONVERGENCE_TIMEOUT;
    loop {
        let current = summary(client, key, filter.clone()).await.expect("GetKpiSummary");
        if settled(&current) {
            return current;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("the live aggregate did not settle within {CONVERGENCE_TIMEOUT:?}; last summary {current:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
