//! Routing's two stores: queue configuration (PostgreSQL, in-memory) and
//! hot routing state (Redis, in-memory). Every hot-state operation that two
//! replicas could race on is one atomic step.

pub mod contract;
pub mod memory;
pub mod postgres;
pub mod redis;

use async_trait::async_trait;
use switchboard_core::{AgentId, ContactId, Error, QueueId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::routing::v1::Queue;

use crate::domain::{AbandonedFrom, AgentLive, AgentProfile, Applied, ContactRecord};

/// Queue definitions per tenant.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Fails with ALREADY_EXISTS when the queue exists.
    async fn create_queue(&self, tenant: &TenantId, queue_id: &QueueId, queue: &Queue) -> Result<(), Error>;
    async fn get_queue(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<Option<Queue>, Error>;
    /// Up to `page.size + 1` queues ordered by id, after `page.after`.
    async fn list_queues(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<Queue>, Error>;
    /// Replaces an existing queue; false when it does not exist.
    async fn update_queue(&self, tenant: &TenantId, queue_id: &QueueId, queue: &Queue) -> Result<bool, Error>;
    /// False when it did not exist.
    async fn delete_queue(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<bool, Error>;
}

/// A consistent-enough view for planning offers; reservations re-check.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub waiting: Vec<ContactRecord>,
    pub agents: Vec<AgentLive>,
}

/// One planned offer, with the agent as the snapshot saw it.
pub struct Reservation<'a> {
    pub record: &'a ContactRecord,
    pub agent: &'a AgentLive,
    pub expire_ms: i64,
}

/// An offer whose holder should be withdrawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferRef {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub agent: AgentId,
}

/// Hot routing state.
#[async_trait]
pub trait RoutingState: Send + Sync {
    /// Adds a queued contact. False when the contact is already known (in
    /// any status): enqueueing is idempotent.
    async fn enqueue(&self, record: &ContactRecord) -> Result<bool, Error>;
    async fn get_contact(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<ContactRecord>, Error>;
    /// 1-based place in its waiting line (its queue and channel); 0 when
    /// not waiting.
    async fn position(&self, record: &ContactRecord) -> Result<i32, Error>;
    /// Records an agent's profile and availability. Becoming available
    /// starts its idle time.
    async fn upsert_agent(&self, profile: &AgentProfile, available: bool, now_ms: i64) -> Result<(), Error>;
    /// Up to `per_queue` head contacts of every non-empty waiting line (one
    /// per queue and channel) and every available agent.
    async fn snapshot(&self, per_queue: usize) -> Result<Snapshot, Error>;
    /// Offers `contact` to `agent` if the contact is still queued and the
    /// agent can still take it. False (nothing changed) otherwise.
    async fn reserve(&self, record: &ContactRecord, agent: &AgentId, expire_ms: i64) -> Result<bool, Error>;
    /// [`RoutingState::reserve`] for several planned offers at once, each
    /// still one atomic check-and-set; the agent's tenants and capacity are
    /// taken from the snapshot the plan was made on. One result per entry.
    async fn reserve_batch(&self, batch: &[Reservation<'_>]) -> Result<Vec<bool>, Error>;
    async fn accept(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: &AgentId,
        now_ms: i64,
    ) -> Result<(Applied, ContactRecord), Error>;
    /// Ends an offer unanswered; the contact regains its place. With
    /// `agent`, only that agent's offer; with `expired_by`, only an offer
    /// already expired at that instant. Returns the agent that held it.
    async fn withdraw(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: Option<&AgentId>,
        expired_by: Option<i64>,
        now_ms: i64,
    ) -> Result<(AgentId, ContactRecord), Error>;
    async fn complete(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: &AgentId,
        now_ms: i64,
    ) -> Result<(Applied, ContactRecord), Error>;
    async fn abandon(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        now_ms: i64,
    ) -> Result<(Applied, Option<AbandonedFrom>, ContactRecord), Error>;
    /// Offers whose deadline passed, oldest first.
    async fn expired_offers(&self, now_ms: i64, limit: usize) -> Result<Vec<OfferRef>, Error>;
    /// Offers currently ringing at `agent`.
    async fn offers_of_agent(&self, agent: &AgentId) -> Result<Vec<OfferRef>, Error>;
}

pub(crate) fn contact_not_found(tenant: &TenantId, contact: &ContactId) -> Error {
    Error::not_found(switchboard_core::names::contact_name(tenant, contact))
}
