//! The contacts outbox. A contact (or its abandonment) is stored with the
//! id of its future event before the event is published; the request that
//! stored it publishes at once, and this relay publishes whatever is still
//! unpublished a few seconds later (the broker was down, the process died,
//! the client never retried). Every copy carries the stored event id and
//! time, so consumers see one event however often it is published.
//!
//! A publication is remembered off the request path: the marks the bus
//! acknowledged are written together every [`MARK_INTERVAL`] (and before
//! every relay round), one statement for all of them. A mark only spares
//! the relay a republish, so one lost with the process costs a duplicate
//! that consumers drop, never a missing event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::Error;
use switchboard_core::event::{CONTACTS_TOPIC, envelope_with_id};
use switchboard_core::sync::lock_unpoisoned;
use switchboard_core::time::timestamp_from_millis;
use switchboard_platform::bus::{EventBus, publish_traced};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{ContactAbandoned, ContactCreated, ContactEvent, contact_event};

use crate::store::{ContactRecord, ContactStore, Publication, PublishedEvent};

/// How long the request path has to publish before the relay steps in.
pub const RELAY_DELAY: Duration = Duration::from_secs(5);
const RELAY_BATCH: usize = 100;
/// How often the publications acknowledged since the last write are
/// written, all in one statement.
pub const MARK_INTERVAL: Duration = Duration::from_millis(200);
/// Marks kept for another try after a failed write; beyond them the relay
/// republishes (a store down that long has the relay waiting anyway).
const MAX_PENDING_MARKS: usize = 50_000;

pub struct Outbox {
    store: Arc<dyn ContactStore>,
    bus: Arc<dyn EventBus>,
    // Publications the bus acknowledged and the store does not know yet.
    pending_marks: Mutex<Vec<PublishedEvent>>,
}

impl Outbox {
    pub fn new(store: Arc<dyn ContactStore>, bus: Arc<dyn EventBus>) -> Outbox {
        Outbox { store, bus, pending_marks: Mutex::default() }
    }

    /// Writes the publications acknowledged since the last write, in one
    /// statement. On failure they are kept for the next write (up to
    /// `MAX_PENDING_MARKS`), and the error is returned.
    pub async fn write_marks(&self) -> Result<(), Error> {
        let marks = std::mem::take(&mut *lock_unpoisoned(&self.pending_marks));
        if marks.is_empty() {
            return Ok(());
        }
        let Err(error) = self.store.mark_all_published(&marks).await else {
            return Ok(());
        };
        let mut pending = lock_unpoisoned(&self.pending_marks);
        if pending.len() + marks.len() <= MAX_PENDING_MARKS {
            pending.extend(marks);
        }
        Err(error)
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

    /// Publishes `event` and remembers it once the broker acknowledged it;
    /// an event acknowledged already, whose mark awaits its write, is not
    /// published again.
    async fn publish(
        &self,
        record: &ContactRecord,
        event: &EventEnvelope,
        publication: Publication,
    ) -> Result<(), Error> {
        let mark = PublishedEvent { tenant: record.tenant.clone(), contact_id: record.contact_id.clone(), publication };
        if lock_unpoisoned(&self.pending_marks).contains(&mark) {
            return Ok(());
        }
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
        // The event is durable; remembering it can wait for the next write.
        lock_unpoisoned(&self.pending_marks).push(mark);
        Ok(())
    }

    /// Publishes the events stored more than `delay` before `now_ms` and
    /// not yet known to be on the bus; returns how many contacts it handled.
    pub async fn relay_once(&self, now_ms: i64, delay: Duration) -> Result<usize, Error> {
        let cutoff = now_ms - i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        // What the requests published is not published again.
        self.write_marks().await?;
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

    /// An outbox on memory, and one contact of `acme` stored unpublished.
    async fn outbox_with_stored_contact() -> (Outbox, Arc<dyn ContactStore>, MemoryBus, TenantId, ContactRecord) {
        let store: Arc<dyn ContactStore> = Arc::new(MemoryContactStore::new());
        let bus = MemoryBus::new();
        let outbox = Outbox::new(Arc::clone(&store), Arc::new(bus.clone()));
        let tenant = TenantId::parse("acme", "tenant").expect("tenant");
        let record = sample_record(&tenant, "req-1", Channel::Chat, "");
        store.insert(&record).await.expect("insert");
        (outbox, store, bus, tenant, record)
    }

    #[tokio::test]
    async fn the_relay_publishes_what_the_request_never_did_exactly_once() {
        // Stored, then the process died before publishing.
        let (outbox, store, bus, tenant, record) = outbox_with_stored_contact().await;

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

    #[tokio::test]
    async fn a_publication_is_remembered_by_the_next_write_and_never_relayed_again() {
        let (outbox, store, bus, tenant, record) = outbox_with_stored_contact().await;
        outbox.publish_created(&record).await.expect("publish");
        let before_write = store.get(&tenant, &record.contact_id).await.expect("get").expect("stored");
        assert!(!before_write.created_published, "the mark waits for the next write");
        outbox.publish_created(&before_write).await.expect("a retry's publish");
        let mut events = bus.subscribe("test", &[CONTACTS_TOPIC], StartFrom::Earliest).await.expect("subscribe");
        events.next().await.expect("the event");
        let again = tokio::time::timeout(std::time::Duration::from_millis(100), events.next()).await;
        assert!(again.is_err(), "published once, though its mark was not written yet");

        let later = record.create_time_millis() + 10_000;
        assert_eq!(outbox.relay_once(later, RELAY_DELAY).await.expect("relay"), 0, "the relay writes the marks first");
        let stored = store.get(&tenant, &record.contact_id).await.expect("get").expect("stored");
        assert!(stored.created_published);
        outbox.write_marks().await.expect("nothing left to write");
    }
}
