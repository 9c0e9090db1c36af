//! The live aggregate: every contacts and routing event merged into the
//! store's facts as it arrives.

use std::sync::Arc;

use switchboard_core::Error;
use switchboard_core::event::{CONTACTS_TOPIC, ROUTING_TOPIC};
use switchboard_platform::bus::{Delivery, EventBus, StartFrom, run_consumer};
use tokio_util::sync::CancellationToken;

use crate::store::{KpiStore, apply_event};

/// The consumer group; a new group starts from the earliest record, so a
/// fresh deployment (or a rebuilt store) aggregates the whole retained log.
pub(crate) const CONSUMER_GROUP: &str = "kpi";

/// Consumes until `shutdown`. Deliveries are at least once and the merge
/// is idempotent, so a redelivered event needs no deduplication by id: it
/// sets nothing that is not already set.
pub(crate) async fn run(
    store: Arc<dyn KpiStore>,
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let subscription = bus.subscribe(CONSUMER_GROUP, &[CONTACTS_TOPIC, ROUTING_TOPIC], StartFrom::Earliest).await?;
    tracing::info!(group = CONSUMER_GROUP, "kpi consumer subscribed");
    let handler = move |delivery: Delivery| {
        let store = Arc::clone(&store);
        async move { apply_event(store.as_ref(), &delivery.envelope).await }
    };
    run_consumer("kpi", subscription, handler, shutdown).await
}
