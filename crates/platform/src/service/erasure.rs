//! Erasing deleted tenants' data: [`Kit::erase_deleted_tenants`].
//!
//! `AccessService.DeleteTenant` only marks the tenant in the credential
//! store (its keys revoked in the same step). Every service then erases its
//! own part on a timer and records that it did; the last recording marks
//! the tenant deleted. A service that is down erases when it is back, so a
//! deletion never stops half done. For a while after, each service erases
//! again now and then, for whatever a straggler (a replica that read the
//! deletion late, a retried write) left behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use switchboard_core::{Error, TenantId};

use super::{Every, Kit};
use crate::metrics::{labels, metrics};

/// How often a service looks for tenants to erase.
const ERASURE_INTERVAL: Duration = Duration::from_secs(1);

/// How long after a deletion was asked for a service starts erasing: every
/// replica has read the deletion by then (they poll every 0.5 s), so none
/// still writes the tenant's records after the erasure.
pub const ERASURE_GRACE_MS: i64 = 3_000;

/// How long after a deletion was asked for a service still sweeps for
/// leftovers, and how often.
const SWEEP_WINDOW_MS: i64 = 120_000;
const SWEEP_EVERY_MS: i64 = 15_000;

/// What an erasure pass got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erased {
    /// Nothing of the tenant is left in this service.
    Done,
    /// The pass ended live work whose last records are still on their way
    /// (e.g. through an outbox); the next pass erases those.
    Again,
}

/// What a service erases of a deleted tenant.
#[async_trait]
pub trait TenantEraser: Send + Sync + 'static {
    /// Removes everything this service holds of `tenant`. Runs again after
    /// a failure or [`Erased::Again`], concurrently on every replica, and
    /// as a sweep after it was done, so it must be idempotent.
    async fn erase(&self, tenant: &TenantId) -> Result<Erased, Error>;
}

/// An eraser that runs one store's erasure (a future per tenant) and is
/// then done: for services whose data needs no live work ended first.
pub struct EraseWith<Erase>(pub Erase);

#[async_trait]
impl<Erase, Erasing> TenantEraser for EraseWith<Erase>
where
    Erase: Fn(TenantId) -> Erasing + Send + Sync + 'static,
    Erasing: std::future::Future<Output = Result<(), Error>> + Send,
{
    async fn erase(&self, tenant: &TenantId) -> Result<Erased, Error> {
        (self.0)(tenant.clone()).await?;
        Ok(Erased::Done)
    }
}

impl Kit {
    /// Erases, with `eraser`, every tenant being deleted that this service
    /// has not erased yet, then records the erasure in the credential
    /// store; sweeps again for a while after. One tenant's failure is
    /// logged and counted and does not hold back the others. Nothing to do
    /// without a credential store (tenants only from the file).
    pub fn erase_deleted_tenants(&mut self, eraser: Arc<dyn TenantEraser>) {
        let access = self.access();
        let Some(credentials) = access.credentials() else { return };
        let service = self.name();
        let clock = self.clock();
        let last_sweep: Arc<Mutex<HashMap<TenantId, i64>>> = Arc::default();
        self.every(Every::new("tenant-erasure", ERASURE_INTERVAL), move || {
            let (access, credentials, eraser) = (Arc::clone(&access), Arc::clone(&credentials), Arc::clone(&eraser));
            let last_sweep = Arc::clone(&last_sweep);
            let now_ms = clock.now_millis();
            async move {
                for pending in access.deletions_for(service) {
                    let since_request = now_ms - pending.request_time_ms;
                    if since_request < ERASURE_GRACE_MS {
                        continue;
                    }
                    if pending.erased_here {
                        let mut swept = switchboard_core::sync::lock_unpoisoned(&last_sweep);
                        let due = swept.get(&pending.tenant).is_none_or(|at| now_ms - at >= SWEEP_EVERY_MS);
                        if since_request > SWEEP_WINDOW_MS || !due {
                            continue;
                        }
                        swept.insert(pending.tenant.clone(), now_ms);
                    }
                    let tenant = &pending.tenant;
                    let outcome = erase_one(&*eraser, &*credentials, service, tenant, !pending.erased_here, now_ms);
                    if let Err(error) = outcome.await {
                        metrics().task_failures.get_or_create(&labels([("task", "tenant-erasure")])).inc();
                        tracing::warn!(tenant = %tenant, service, error = %error, "tenant not erased, trying again next pass");
                    }
                }
                switchboard_core::sync::lock_unpoisoned(&last_sweep).retain(|_, at| now_ms - *at <= SWEEP_WINDOW_MS);
                Ok(())
            }
        });
    }
}

/// One pass of `eraser` over `tenant`; records it when `record` and done.
async fn erase_one(
    eraser: &dyn TenantEraser,
    credentials: &dyn crate::credentials::CredentialStore,
    service: &'static str,
    tenant: &TenantId,
    record: bool,
    now_ms: i64,
) -> Result<(), Error> {
    if eraser.erase(tenant).await? == Erased::Again {
        tracing::info!(tenant = %tenant, service, "tenant's live work ended, erasing again next pass");
        return Ok(());
    }
    if record {
        let recorded = credentials.record_erasure(tenant, service, now_ms).await?;
        let pending = recorded.deletion.as_ref().map(|deletion| deletion.pending()).unwrap_or_default();
        tracing::info!(tenant = %tenant, service, pending = ?pending, "tenant's data erased");
    }
    Ok(())
}
