//! Routing's gauges, refreshed on a timer: the outbox's depth (events and
//! snapshots not yet relayed) and the contacts waiting, by tenant.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use switchboard_core::{Error, TenantId};
use switchboard_platform::metrics::{labels, metrics};

use crate::engine::Engine;

/// How often the gauges are read from the state store.
pub const GAUGES_INTERVAL: Duration = Duration::from_secs(5);

/// Tenants whose waiting gauge is shown: the deployment's (configured or
/// made at runtime), and any other seen waiting, so one whose queues empty
/// reads 0 rather than its last count.
#[derive(Debug, Default)]
pub struct ReportedTenants(Mutex<BTreeSet<TenantId>>);

impl ReportedTenants {
    /// Shows `tenants` (the configured ones) from the first refresh on.
    pub fn include<'a>(&self, tenants: impl IntoIterator<Item = &'a str>) {
        let mut reported = switchboard_core::sync::lock_unpoisoned(&self.0);
        reported.extend(tenants.into_iter().filter_map(|tenant| TenantId::parse(tenant, "tenant").ok()));
    }
}

impl Engine {
    /// One refresh of the gauges.
    pub async fn report_gauges(&self) -> Result<(), Error> {
        let gauges = self.state.gauges().await?;
        let metrics = metrics();
        metrics.outbox_depth.get_or_create(&labels([("service", "routing")])).set(gauges.outbox_depth);
        let mut reported = switchboard_core::sync::lock_unpoisoned(&self.reported_tenants.0);
        reported.extend(gauges.waiting_by_tenant.keys().cloned());
        // Tenants made at runtime read 0 from the first refresh on, not only
        // once something of theirs waited.
        if let Some(access) = &self.access {
            reported.extend(access.active_tenants());
        }
        for tenant in reported.iter() {
            let waiting = gauges.waiting_by_tenant.get(tenant).copied().unwrap_or(0);
            metrics.waiting_contacts.get_or_create(&labels([("tenant", tenant.as_str())])).set(waiting);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use switchboard_platform::auth::AccessControl;
    use switchboard_platform::bus::memory::MemoryBus;
    use switchboard_platform::config::AuthConfig;
    use switchboard_platform::credentials::{CredentialStore, MemoryCredentialStore, TenantPolicy, TenantRecord};

    use super::*;
    use crate::store::journal::MemoryJournal;
    use crate::store::memory::{MemoryQueueStore, MemoryRoutingState};

    #[tokio::test]
    async fn a_tenant_made_at_runtime_reads_zero_waiting_from_the_first_refresh() {
        let credentials = Arc::new(MemoryCredentialStore::new());
        let tenant = TenantId::parse("runtime-gauge", "t").expect("tenant");
        let record = TenantRecord {
            id: tenant.clone(),
            display_name: "made at runtime".to_owned(),
            suspended: false,
            policy: TenantPolicy::default(),
            create_time_ms: 1,
            update_time_ms: 1,
            deletion: None,
        };
        credentials.create_tenant(&record).await.expect("tenant");
        let access = AccessControl::with_credentials(&AuthConfig::default(), credentials).expect("access");
        access.refresh().await.expect("read");
        let engine = Engine::new(
            Arc::new(MemoryRoutingState::default()),
            Arc::new(MemoryQueueStore::default()),
            Arc::new(MemoryJournal::default()),
            Arc::new(MemoryBus::new()),
        )
        .expect("engine")
        .with_access(access);
        engine.report_gauges().await.expect("gauges");
        let exposition = metrics().render();
        assert!(
            exposition.lines().any(|line| line == "switchboard_waiting_contacts{tenant=\"runtime-gauge\"} 0"),
            "the runtime tenant is shown before anything of it waits"
        );
    }
}
