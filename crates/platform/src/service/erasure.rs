//! Erasing deleted tenants' data: [`Kit::erase_deleted_tenants`].
//!
//! `AccessService.DeleteTenant` only marks the tenant in the credential
//! store (its keys revoked in the same step). Every service then erases its
//! own part on a timer and records that it did; the last recording marks
//! the tenant deleted. A service that is down erases when it is back, so a
//! deletion never stops half done.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_core::{Error, TenantId};

use super::{Every, Kit};

/// How often a service looks for tenants to erase.
const ERASURE_INTERVAL: Duration = Duration::from_secs(1);

/// How long after a deletion was asked for a service starts erasing: every
/// replica has read the deletion by then (they poll every 0.5 s), so none
/// still writes the tenant's records after the erasure.
pub const ERASURE_GRACE_MS: i64 = 3_000;

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
    /// a failure or [`Erased::Again`], and concurrently on every replica,
    /// so it must be idempotent.
    async fn erase(&self, tenant: &TenantId) -> Result<Erased, Error>;
}

impl Kit {
    /// Erases, with `eraser`, every tenant being deleted that this service
    /// has not erased yet, then records the erasure in the credential
    /// store. Nothing to do without one (tenants only from the file).
    pub fn erase_deleted_tenants(&mut self, eraser: Arc<dyn TenantEraser>) {
        let access = self.access();
        let Some(credentials) = access.credentials() else { return };
        let service = self.name();
        let clock = self.clock();
        self.every(Every::new("tenant-erasure", ERASURE_INTERVAL), move || {
            let (access, credentials, eraser) = (Arc::clone(&access), Arc::clone(&credentials), Arc::clone(&eraser));
            let now_ms = clock.now_millis();
            async move {
                for (tenant, request_time_ms) in access.awaiting_erasure_by(service) {
                    if now_ms < request_time_ms + ERASURE_GRACE_MS {
                        continue;
                    }
                    if eraser.erase(&tenant).await? == Erased::Again {
                        tracing::info!(tenant = %tenant, service, "tenant's live work ended, erasing again next pass");
                        continue;
                    }
                    let recorded = credentials.record_erasure(&tenant, service, now_ms).await?;
                    let pending = recorded.deletion.as_ref().map(|deletion| deletion.pending()).unwrap_or_default();
                    tracing::info!(tenant = %tenant, service, pending = ?pending, "tenant's data erased");
                    access.refresh().await?;
                }
                Ok(())
            }
        });
    }
}
