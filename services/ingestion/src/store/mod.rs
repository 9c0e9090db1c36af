//! Where ingested contacts live: the [`ContactStore`] port, with an
//! in-memory implementation (`dev` mode, tests) and a PostgreSQL one, both
//! held to the same [`contract`] suite.

pub mod channels;
#[cfg(any(test, feature = "contract"))]
pub mod channels_contract;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod memory;
pub mod postgres;

use async_trait::async_trait;
use switchboard_core::time::{millis_from_timestamp, timestamp_from_millis};
use switchboard_core::{ContactId, Error, TenantId};
use switchboard_proto::ingestion::v1::Contact;

/// A fresh event id in the envelope's format (UUIDv7), minted when the
/// change is stored so the event keeps it however often it is published.
pub fn mint_event_id() -> String {
    switchboard_core::event::new_event_id()
}

/// One contact as the store keeps it, with what ingestion needs to know
/// about its events.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRecord {
    pub tenant: TenantId,
    pub contact_id: ContactId,
    /// The client's idempotency key; unique within the tenant.
    pub request_id: String,
    /// The contact as clients see it: `name`, `customer` and `create_time`
    /// are set; `abandon_time` is set exactly when `abandonment` is.
    pub contact: Contact,
    /// The event id of `ContactCreated`, minted with the contact, so every
    /// (re)publication carries the same id and consumers drop the copies.
    pub created_event_id: String,
    /// Whether `ContactCreated` is known to be on the bus.
    pub created_published: bool,
    pub abandonment: Option<Abandonment>,
}

/// The customer left before an agent answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandonment {
    pub abandon_time_millis: i64,
    pub reason: String,
    /// The event id of `ContactAbandoned`, minted with the abandonment.
    pub event_id: String,
    /// Whether `ContactAbandoned` is known to be on the bus.
    pub published: bool,
}

impl ContactRecord {
    /// Creation time of the contact, in milliseconds since the epoch.
    pub fn create_time_millis(&self) -> i64 {
        self.contact.create_time.as_ref().map_or(0, millis_from_timestamp)
    }

    /// The channel the provider message id is unique on.
    pub fn channel(&self) -> i32 {
        self.contact.channel
    }

    /// The provider's id of the contact; empty when the channel gave none.
    pub fn provider_message_id(&self) -> &str {
        &self.contact.provider_message_id
    }

    /// When the oldest of its events not known to be on the bus happened:
    /// the creation, else the abandonment; `None` when all are published.
    pub fn unpublished_since_millis(&self) -> Option<i64> {
        if !self.created_published {
            return Some(self.create_time_millis());
        }
        self.abandonment
            .as_ref()
            .filter(|abandonment| !abandonment.published)
            .map(|abandonment| abandonment.abandon_time_millis)
    }

    /// The record with `abandonment` recorded and reflected in the contact.
    pub fn with_abandonment(mut self, abandonment: Option<Abandonment>) -> ContactRecord {
        self.contact.abandon_time =
            abandonment.as_ref().map(|abandonment| timestamp_from_millis(abandonment.abandon_time_millis));
        self.abandonment = abandonment;
        self
    }
}

/// What [`ContactStore::insert`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// The record is stored.
    Inserted,
    /// The tenant already had this contact (same request id, or same
    /// non-empty provider message id on the same channel); nothing was
    /// written and this is the stored one.
    Existing(Box<ContactRecord>),
}

/// Which event of a contact reached the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publication {
    Created,
    Abandoned,
}

/// An event of a contact that reached the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedEvent {
    pub tenant: TenantId,
    pub contact_id: ContactId,
    pub publication: Publication,
}

/// What [`ContactStore::set_abandoned`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct AbandonOutcome {
    /// The contact after the call.
    pub record: ContactRecord,
    /// False when the contact was already abandoned (and kept its first
    /// abandon time and reason).
    pub changed: bool,
}

/// Contacts by tenant. Every lookup takes the tenant: a contact of another
/// tenant is indistinguishable from one that does not exist.
#[async_trait]
pub trait ContactStore: Send + Sync + 'static {
    /// Stores `record` unless its tenant already has a contact with the same
    /// `request_id`, or with the same non-empty provider message id on the
    /// same channel. Atomic: of concurrent inserts that collide, exactly one
    /// is `Inserted` and every other returns `Existing` with that one.
    async fn insert(&self, record: &ContactRecord) -> Result<InsertOutcome, Error>;

    /// Remembers that an event of the contact is on the bus. NOT_FOUND if
    /// the tenant has no such contact.
    async fn mark_published(
        &self,
        tenant: &TenantId,
        contact_id: &ContactId,
        publication: Publication,
    ) -> Result<(), Error> {
        let mark = PublishedEvent { tenant: tenant.clone(), contact_id: contact_id.clone(), publication };
        self.mark_all_published(&[mark]).await
    }

    /// [`ContactStore::mark_published`] for every event of `published`, in
    /// one step where the store can; NOT_FOUND (after marking the others)
    /// if a tenant has no such contact.
    async fn mark_all_published(&self, published: &[PublishedEvent]) -> Result<(), Error>;

    async fn get(&self, tenant: &TenantId, contact_id: &ContactId) -> Result<Option<ContactRecord>, Error>;

    /// Up to `limit` contacts of `tenant`, newest first (by contact id, a
    /// UUIDv7, so by creation time), only those with an id strictly below
    /// `before_contact_id` when given.
    async fn list(
        &self,
        tenant: &TenantId,
        before_contact_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ContactRecord>, Error>;

    async fn find_by_request_id(&self, tenant: &TenantId, request_id: &str) -> Result<Option<ContactRecord>, Error>;

    /// The contact with this non-empty provider message id on `channel`.
    async fn find_by_provider_message_id(
        &self,
        tenant: &TenantId,
        channel: i32,
        provider_message_id: &str,
    ) -> Result<Option<ContactRecord>, Error>;

    /// Contacts of every tenant with an event not known to be on the bus
    /// (created, or abandoned) whose change happened before
    /// `changed_before_ms`, oldest first, at most `limit`. For the outbox
    /// relay; each record carries its tenant.
    async fn unpublished(&self, changed_before_ms: i64, limit: usize) -> Result<Vec<ContactRecord>, Error>;

    /// Records `abandonment` (unpublished, whatever its `published` says),
    /// unless the contact is already abandoned. `None` if the tenant has no
    /// such contact.
    async fn set_abandoned(
        &self,
        tenant: &TenantId,
        contact_id: &ContactId,
        abandonment: &Abandonment,
    ) -> Result<Option<AbandonOutcome>, Error>;

    /// Gives the contact the customer CRM resolved after intake, unless it
    /// has one already. True when the contact took it; false when it kept
    /// its own, or the tenant has no such contact.
    async fn attach_customer(&self, tenant: &TenantId, contact_id: &ContactId, customer: &str) -> Result<bool, Error>;

    /// Removes every contact (and its unpublished events) of `tenant` (a deleted tenant); idempotent.
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error>;
}
