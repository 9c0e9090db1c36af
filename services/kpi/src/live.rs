//! Live boards: a tenant's live figures read once every
//! [`LIVE_READ_INTERVAL`] for all of this replica's watchers of it, and
//! handed on only when they change. Serves `KpiService.WatchLiveKpis` and
//! the wallboard's event stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::time::now_millis;
use switchboard_core::{Error, TenantId};
use switchboard_platform::auth::AccessControl;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::live::{LiveFigures, day_start_ms};
use crate::store::{KpiStore, live_figures};

/// How often a watched tenant's figures are read again: a change shows
/// within this long (plus the event's way to the store).
pub const LIVE_READ_INTERVAL: Duration = Duration::from_millis(500);

type Figures = Option<Arc<LiveFigures>>;

/// The boards this replica keeps, one per tenant and day start that
/// someone watches.
pub struct LiveBoards {
    store: Arc<dyn KpiStore>,
    boards: Mutex<HashMap<(TenantId, i64), watch::Receiver<Figures>>>,
    shutdown: CancellationToken,
}

impl LiveBoards {
    pub fn new(store: Arc<dyn KpiStore>, shutdown: CancellationToken) -> Arc<LiveBoards> {
        Arc::new(LiveBoards { store, boards: Mutex::default(), shutdown })
    }

    /// The figures of `tenant` (today starting `utc_offset_ms` off UTC
    /// midnight), as they change; the first read already made if the board
    /// was being read.
    pub fn watch(self: &Arc<Self>, tenant: &TenantId, utc_offset_ms: i64) -> watch::Receiver<Figures> {
        let key = (tenant.clone(), utc_offset_ms);
        let mut boards = switchboard_core::sync::lock_unpoisoned(&self.boards);
        if let Some(receiver) = boards.get(&key)
            && receiver.has_changed().is_ok()
        {
            return receiver.clone();
        }
        let (sender, receiver) = watch::channel(None);
        boards.insert(key.clone(), receiver.clone());
        tokio::spawn(Arc::clone(self).read_while_watched(key, sender));
        receiver
    }

    /// Reads the board's figures until nobody watches it any more.
    async fn read_while_watched(self: Arc<Self>, key: (TenantId, i64), sender: watch::Sender<Figures>) {
        let (tenant, utc_offset_ms) = &key;
        loop {
            let day_start = day_start_ms(now_millis(), *utc_offset_ms);
            match live_figures(self.store.as_ref(), tenant, day_start).await {
                Ok(figures) => {
                    sender.send_if_modified(|current| {
                        let changed = current.as_deref() != Some(&figures);
                        if changed {
                            *current = Some(Arc::new(figures));
                        }
                        changed
                    });
                }
                Err(error) => tracing::warn!(tenant = %tenant, error = %error, "live figures not read, trying again"),
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(LIVE_READ_INTERVAL) => {}
            }
            let mut boards = switchboard_core::sync::lock_unpoisoned(&self.boards);
            // The registry's own receiver is the one left: nobody watches.
            if sender.receiver_count() <= 1 {
                boards.remove(&key);
                return;
            }
        }
    }
}

/// A watcher taking one tenant's figures.
pub type Delivered = futures::future::BoxFuture<'static, Result<(), Error>>;

/// Which tenants a watch covers.
#[derive(Debug, Clone)]
pub enum Watched {
    One(TenantId),
    /// Every tenant in service, as tenants come and go (operator admins).
    All,
}

/// Hands every change of the watched tenants' figures to `deliver` (first
/// the current ones), until `deliver` fails; a watcher that reads slowly
/// gets the latest figures, never a backlog.
pub async fn follow(
    boards: &Arc<LiveBoards>,
    access: &AccessControl,
    watched: &Watched,
    utc_offset_ms: i64,
    mut deliver: impl FnMut(TenantId, Arc<LiveFigures>) -> Delivered,
) -> Result<(), Error> {
    let mut receivers: HashMap<TenantId, watch::Receiver<Figures>> = HashMap::new();
    loop {
        let tenants = match watched {
            Watched::One(tenant) => vec![tenant.clone()],
            Watched::All => access.active_tenants(),
        };
        receivers.retain(|tenant, _| tenants.contains(tenant));
        for tenant in tenants {
            let receiver = receivers.entry(tenant.clone()).or_insert_with(|| {
                let mut receiver = boards.watch(&tenant, utc_offset_ms);
                receiver.mark_changed();
                receiver
            });
            if receiver.has_changed().unwrap_or(false) {
                let figures = receiver.borrow_and_update().clone();
                if let Some(figures) = figures {
                    deliver(tenant.clone(), figures).await?;
                }
            }
        }
        tokio::time::sleep(LIVE_READ_INTERVAL / 2).await;
    }
}

/// The tenants a `WatchLiveKpis` request may watch, and its day's offset
/// from UTC, checked: one tenant the caller reads, or (empty `parent`)
/// every tenant, for operator admins.
pub fn watched(
    access: &AccessControl,
    principal: &switchboard_core::Principal,
    parent: &str,
    utc_offset: Option<&prost_types::Duration>,
) -> Result<(Watched, i64), Error> {
    let watched = if parent.is_empty() {
        principal.authorize_operator().map_err(|_| {
            Error::permission_denied(format!(
                "an empty `parent` watches every tenant, which only an operator admin may; key `{}` names its \
                 tenant: `tenants/{{tenant}}`",
                principal.key_name
            ))
        })?;
        Watched::All
    } else {
        let tenant = switchboard_core::names::parse_tenant(parent, "parent")?;
        access.authorize_read(principal, &tenant)?;
        Watched::One(tenant)
    };
    let utc_offset_ms = match utc_offset {
        None => 0,
        Some(offset) => switchboard_core::time::checked_duration_millis(offset)
            .ok()
            .filter(|offset_ms| crate::domain::live::valid_utc_offset(*offset_ms))
            .ok_or_else(|| {
                Error::invalid_field("utc_offset", "must be whole 15 minutes, at most 14 hours either way")
            })?,
    };
    Ok((watched, utc_offset_ms))
}
