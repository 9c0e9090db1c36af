//! The contacts outbox. A contact (or its abandonment) is stored with the
//! id of its future event before the event is published; the request that
//! stored it publishes at once, and this relay publishes whatever is still
//! unpublished a few seconds later (the broker was down, the process died,
//! the client never retried). Every copy carries the stored event id and
//! time, so consumers see one event however often it is published.

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::Error;
use switchboard_core::event::{CONTACTS_TOPIC, envelope_with_id};
use switchboard_core::time::timestamp_from_millis;
use switchboard_platform::bus::{EventBus, publish_traced};
use switchboard_platform::group_commit::GroupCommit;
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{ContactAbandoned, ContactCreated, ContactEvent, contact_event};

use crate::store::{ContactRecord, ContactStore, Publication, PublishedEvent};

/// How long the request path has to publish before the relay steps in.
pub const RELAY_DELAY: Duration = Duration::from_secs(5);
const RELAY_BATCH: usize = 100;

pub struct Outbox {
    store: Arc<dyn ContactStore>,
    bus: Arc<dyn EventBus>,
    // Concurrent requests remember their publications in one write.
    publication_marks: GroupCommit<PublishedEvent>,
}

impl Outbox {
    pub fn new(store: Arc<dyn ContactStore>, bus: Arc<dyn EventBus>) -> Outbox {
        Outbox { store, bus, publication_marks: GroupCommit::default() }
    }

    pub async fn publish_created(&self, record: &ContactRecord) -> Result<(), Error> {
        let mut created = record.contact.clone();
        // The created event carries the contact as it was created.
        created.abandon_time = None;
        let kind = contact_event::Kind::Created(ContactCreated { contact: Some(created) });
        let event = contact_event_envelope(record, &record.created_event_id, record.create_time_millis(), kind);
        self.publish(record, &event, Publication::Created).await
    }

    pub async fn publish_abandoned(&self, record: &ContactRecord) -> Result<(), Error> {
        let Some(abandonment) = &record.abandonment else {
            return Err(Error::internal("publishing the abandon of a contact that is not abandoned"));
        };
        let kind = contact_event::Kind::Abandoned(ContactAbandoned {
            contact: record.contact.name.clone(),
            reason: abandonment.reason.clone(),
            abandon_time: Some(timestamp_from_millis(abandonment.abandon_time_millis)),
        });
        let event = contact_event_envelope(record, &abandonment.event_id, abandonment.abandon_time_millis, kind);
        self.publish(record, &event, Publication::Abandoned).await
    }

    /// Publishes `event` and remembers it once the broker acknowledged it.
    async fn publish(
        &self,
        record: &ContactRecord,
        event: &EventEnvelope,
        publication: Publication,
    ) -> Result<(), Error> {
        if let Err(error) = publish_traced(self.bus.as_ref(), CONTACTS_TOPIC, event).await {
            tracing::warn!(
                tenant = %record.tenant,
                contact = %record.contact_id,
                event = ?publication,
                error = %error,
                "publishing the contact event failed"
            );
            return Err(Error::unavailable(format!(
                "the contact is stored but its event is not yet published ({}); retry with the same request",
                error.message
            )));
        }
        // The event is durable: a failure to remember it only means a later
        // retry publishes it again, so it does not fail this call.
        let mark = PublishedEvent { tenant: record.tenant.clone(), contact_id: record.contact_id.clone(), publication };
        let marked = self
            .publication_marks
            .submit(mark, |marks| async move { self.store.mark_all_published(&marks).await })
            .await;
        if let Err(error) = marked {
            tracing::warn!(
                tenant = %record.tenant,
                contact = %record.contact_id,
                event = ?publication,
                error = %error,
                "recording the publication failed"
            );
        }
        Ok(())
    }

    /// Publishes the events stored more than `delay` before `now_ms` and
    /// not yet known to be on the bus; returns how many contacts it handled.
    pub async fn relay_once(&self, now_ms: i64, delay: Duration) -> Result<usize, Error> {
        let cutoff = now_ms - i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let pending = self.store.unpublished(cutoff, RELAY_BATCH).await?;
        for record in &pending {
            // Created before abandoned: consumers of one contact see them in order.
            if !record.created_published {
                self.publish_created(record).await?;
            }
            if record.abandonment.as_ref().is_some_and(|abandonment| !abandonment.published) {
                self.publish_abandoned(record).await?;
            }
            tracing::info!(tenant = %record.tenant, contact = %record.contact_id, "outbox relayed an unpublished event");
        }
        Ok(pending.len())
    }
}

/// The envelope of one event of the contact, keyed by its id. Built from
/// stored values only, so a republished copy equals the first.
fn contact_event_envelope(
    record: &ContactRecord,
    event_id: &str,
    occurred_at_millis: i64,
    kind: contact_event::Kind,
) -> EventEnvelope {
    envelope_with_id(
        Some(&record.tenant),
        record.contact_id.as_str(),
        Payload::Contact(ContactEvent { kind: Some(kind) }),
        event_id,
        occurred_at_millis,
    )
}

#[cfg(test)]
mod tests {
    use switchboard_core::TenantId;
    use switchboard_platform::bus::StartFrom;
    use switchboard_platform::bus::memory::MemoryBus;
    use switchboard_proto::common::v1::Channel;

    use super::*;
    use crate::store::contract::sample_record;
    use crate::store::memory::MemoryContactStore;

    #[tokio::test]
    async fn the_relay_publishes_what_the_request_never_did_exactly_once() {
        let store: Arc<dyn ContactStore> = Arc::new(MemoryContactStore::new());
        let bus = MemoryBus::new();
        let outbox = Outbox::new(Arc::clone(&store), Arc::new(bus.clone()));
        let tenant = TenantId::parse("acme", "tenant").expect("tenant");
        // Stored, then the process died before publishing.
        let record = sample_record(&tenant, "req-1", Channel::Chat, "");
        store.insert(&record).await.expect("insert");

        let too_early = outbox.relay_once(record.create_time_millis(), RELAY_DELAY).await.expect("relay");
        assert_eq!(too_early, 0, "the request path gets its chance first");
        let later = record.create_time_millis() + 10_000;
        assert_eq!(outbox.relay_once(later, RELAY_DELAY).await.expect("relay"), 1);
        assert_eq!(outbox.relay_once(later, RELAY_DELAY).await.expect("relay"), 0, "published once");

        let mut events = bus.subscribe("test", &[CONTACTS_TOPIC], StartFrom::Earliest).await.expect("subscribe");
        let delivery = events.next().await.expect("the relayed event");
        assert_eq!(delivery.envelope.event_id, record.created_event_id, "the stored event id, so copies dedupe");
        let stored = store.get(&tenant, &record.contact_id).await.expect("get").expect("stored");
        assert!(stored.created_published);
    }
}
