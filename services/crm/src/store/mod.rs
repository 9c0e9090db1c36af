//! Where customers, their identities and their timelines live. One trait,
//! [`CrmStore`], with an in-memory implementation for `switchboard dev` and a
//! PostgreSQL one for production; both pass the suite in [`contract`].

#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod memory;
pub mod postgres;
mod postgres_customers;

use async_trait::async_trait;
use switchboard_core::{ContactId, CustomerId, Error, TenantId};

use crate::domain::{Identity, TimelineCursor, TimelineEntry, TimelineUpdate};

pub use memory::MemoryCrmStore;
pub use postgres::PostgresCrmStore;

/// A customer of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub tenant: TenantId,
    pub id: CustomerId,
    pub display_name: String,
    /// Sorted by kind, then value.
    pub identities: Vec<Identity>,
    pub create_time_millis: i64,
    /// Set once merged into another customer, which has its identities
    /// and timeline from then on (it has none left).
    pub merged_into: Option<CustomerId>,
}

/// The refusal to change a customer merged into `survivor`.
pub fn customer_merged(tenant: &TenantId, customer: &CustomerId, survivor: &CustomerId) -> Error {
    Error::failed_precondition(format!(
        "customer `{}` was merged into `{}`",
        switchboard_core::names::customer_name(tenant, customer),
        switchboard_core::names::customer_name(tenant, survivor)
    ))
    .with_reason("CUSTOMER_MERGED")
    .with_resource(switchboard_core::names::customer_name(tenant, survivor))
}

/// The refusal of an identity another customer has.
pub fn identity_taken(tenant: &TenantId, owner: &CustomerId) -> Error {
    Error::failed_precondition("another customer has this identity")
        .with_reason("IDENTITY_TAKEN")
        .with_field_violation("identity", "belongs to another customer")
        .with_resource(switchboard_core::names::customer_name(tenant, owner))
}

/// The outcome of [`CrmStore::resolve_customer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCustomer {
    pub customer: Customer,
    /// True when this call created the customer.
    pub created: bool,
}

#[async_trait]
pub trait CrmStore: Send + Sync + 'static {
    /// The customer of `tenant` known by `identity` (already normalised),
    /// created with `display_name` if there is none. Atomic: concurrent
    /// calls with the same identity all return the same customer, and
    /// exactly one of them reports `created`.
    async fn resolve_customer(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        display_name: &str,
    ) -> Result<ResolvedCustomer, Error>;

    /// Attaches `identity` (already normalised) to `customer`: done when it
    /// has it already; NOT_FOUND if there is no such customer;
    /// FAILED_PRECONDITION `IDENTITY_TAKEN` naming the other customer if
    /// another has it. Atomic against concurrent resolves and attaches.
    async fn add_identity(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
        identity: &Identity,
    ) -> Result<Customer, Error>;

    /// Merges `merged` into `survivor`, atomically: `merged`'s identities
    /// become `survivor`'s (so do the customers merged into it before), its
    /// timeline entries are listed on `survivor`'s timeline, and it keeps
    /// only `merged_into`. Returns `survivor`. Merging again what is merged
    /// already changes nothing; NOT_FOUND if either does not exist;
    /// FAILED_PRECONDITION `CUSTOMER_MERGED` if either was merged into
    /// another customer. The caller checks the two differ.
    async fn merge_customers(
        &self,
        tenant: &TenantId,
        survivor: &CustomerId,
        merged: &CustomerId,
    ) -> Result<Customer, Error>;

    /// The customer `customer` of `tenant`; NOT_FOUND naming its resource
    /// name if `tenant` has no such customer.
    async fn get_customer(&self, tenant: &TenantId, customer: &CustomerId) -> Result<Customer, Error>;

    /// At most `limit` customers of `tenant` ordered by id (bytewise), each
    /// with an id strictly greater than `after`; those merged into another
    /// are not listed.
    async fn list_customers(
        &self,
        tenant: &TenantId,
        after: Option<&CustomerId>,
        limit: usize,
    ) -> Result<Vec<Customer>, Error>;

    /// Merges `update` into the entry of its (tenant, contact) with
    /// [`crate::domain::apply_update`], atomically, and returns the entry as
    /// stored. An entry whose customer is not known yet is stored too, and
    /// listed once an update names the customer.
    async fn merge_timeline_entry(&self, update: &TimelineUpdate) -> Result<TimelineEntry, Error>;

    /// Merges every update of `updates` in order, as
    /// [`CrmStore::merge_timeline_entry`] does; returns each update's entry
    /// as merged. PostgreSQL merges them all or none; this default one by
    /// one, so a failure half-way leaves the first merged, which the retry
    /// merges again harmlessly (a merge is idempotent).
    async fn merge_timeline_entries(&self, updates: &[TimelineUpdate]) -> Result<Vec<TimelineEntry>, Error> {
        let mut merged = Vec::with_capacity(updates.len());
        for update in updates {
            merged.push(self.merge_timeline_entry(update).await?);
        }
        Ok(merged)
    }

    /// The entry of `contact`, whether or not its customer is known yet
    /// (its customer as the event named it, maybe merged since).
    async fn timeline_entry(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<TimelineEntry>, Error>;

    /// At most `limit` entries of `customer`'s timeline (with those of the
    /// customers merged into it), newest first (create
    /// time, then contact id, both descending), each listed after `after`.
    /// An unknown customer has an empty timeline.
    async fn list_timeline_entries(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
        after: Option<&TimelineCursor>,
        limit: usize,
    ) -> Result<Vec<TimelineEntry>, Error>;

    /// Removes every customer, identity and timeline entry of `tenant` (a
    /// deleted tenant); idempotent.
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error>;
}
