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

/// Tenants whose waiting gauge is shown: the deployment's, and any other
/// seen waiting, so one whose queues empty reads 0 rather than its last
/// count.
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
        for tenant in reported.iter() {
            let waiting = gauges.waiting_by_tenant.get(tenant).copied().unwrap_or(0);
            metrics.waiting_contacts.get_or_create(&labels([("tenant", tenant.as_str())])).set(waiting);
        }
        Ok(())
    }
}
