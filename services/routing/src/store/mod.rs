//! Routing's two stores: queue configuration (PostgreSQL, in-memory) and
//! hot routing state (Redis, in-memory). Every hot-state operation that two
//! replicas could race on is one atomic step.

pub(crate) mod codec;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
#[cfg(any(test, feature = "contract"))]
pub mod differential;
#[cfg(any(test, feature = "contract"))]
mod erasure_contract;
pub mod journal;
pub mod memory;
pub mod postgres;
pub mod queue_cache;
pub mod redis;
#[cfg(any(test, feature = "contract"))]
mod shared_view_contract;
#[cfg(any(test, feature = "contract"))]
mod statistics_contract;

use async_trait::async_trait;
use switchboard_core::{AgentId, ContactId, Error, QueueId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::routing::v1::Queue;

use crate::domain::fair_share::FairShares;
use crate::domain::{AbandonedFrom, AgentLive, AgentProfile, AnswerPace, Applied, Completion, ContactRecord};
use crate::store::journal::JournaledAgent;

/// Queue definitions per tenant.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Fails with ALREADY_EXISTS when the queue exists.
    async fn create_queue(&self, tenant: &TenantId, queue_id: &QueueId, queue: &Queue) -> Result<(), Error>;
    async fn get_queue(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<Option<Queue>, Error>;
    /// As [`QueueStore::get_queue`], never from a cache: for the API, whose
    /// callers read what they just wrote (on any replica) and update by
    /// read-modify-write.
    async fn get_queue_fresh(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<Option<Queue>, Error> {
        self.get_queue(tenant, queue_id).await
    }
    /// Up to `page.size + 1` queues ordered by id, after `page.after`.
    async fn list_queues(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<Queue>, Error>;
    /// Replaces an existing queue; false when it does not exist.
    async fn update_queue(&self, tenant: &TenantId, queue_id: &QueueId, queue: &Queue) -> Result<bool, Error>;
    /// False when it did not exist.
    async fn delete_queue(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<bool, Error>;
    /// Removes every queue of `tenant` (a deleted tenant); idempotent.
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error>;
}

/// What routing's gauges show (`switchboard_outbox_depth`,
/// `switchboard_waiting_contacts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateGauges {
    /// Outbox entries (events and snapshots) not yet relayed.
    pub outbox_depth: i64,
    /// Contacts waiting in queues, by tenant; tenants with none left out.
    pub waiting_by_tenant: std::collections::BTreeMap<TenantId, i64>,
}

/// A consistent-enough view for planning offers; reservations re-check.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub waiting: Vec<ContactRecord>,
    pub agents: Vec<AgentLive>,
    /// The tenants' fair-share tags, read with the agents.
    pub shares: FairShares,
}

/// One planned offer, with the agent as the snapshot saw it and the events
/// to append if it is reserved.
pub struct Reservation<'a> {
    pub record: &'a ContactRecord,
    pub agent: &'a AgentLive,
    pub expire_ms: i64,
    pub events: Vec<EventEnvelope>,
}

/// Builds the events of a transition from the contact before and after it.
/// They are appended to the outbox in the same atomic step as the change.
pub type EventsFor<'a> = &'a (dyn Fn(&ContactRecord, &ContactRecord) -> Vec<EventEnvelope> + Send + Sync);

/// A pure domain transition of one contact, applied by
/// [`RoutingState::change`].
pub type Change<'a> = &'a (dyn Fn(&mut ContactRecord) -> Result<(), Error> + Send + Sync);

/// One waiting line (queue and channel) right now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineStatus {
    pub waiting: i32,
    /// The contact served next.
    pub head: Option<ContactRecord>,
}

/// How long routing remembers a customer's last agent (preferred agent).
pub const LAST_AGENT_RETENTION_MS: i64 = 30 * 24 * 3_600_000;

/// For callers (tests, benchmarks) that change state without events.
pub fn no_events(_before: &ContactRecord, _after: &ContactRecord) -> Vec<EventEnvelope> {
    Vec::new()
}

/// What an outbox entry carries.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxItem {
    /// An event for the routing topic.
    Event(Box<EventEnvelope>),
    /// A contact's record after a change, for the journal.
    Snapshot(Box<ContactRecord>),
}

/// What the relay read in one round trip: the oldest pending entries, and
/// the state's generation at that moment (`None` while the state is lost),
/// so the relay can say which incarnation's outbox it relayed.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxBatch {
    pub generation: Option<String>,
    pub entries: Vec<PendingEntry>,
}

/// An outbox entry, with its position there.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    pub id: String,
    pub item: OutboxItem,
}

/// An offer whose holder should be withdrawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferRef {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub agent: AgentId,
}

/// Hot routing state, with an outbox: every change appends its events in
/// the same atomic step, and [`RoutingState::pending_outbox`] hands them to
/// the relay that publishes them, so no change is ever left unannounced.
#[async_trait]
pub trait RoutingState: Send + Sync {
    /// Adds a queued contact and appends `events`. False (nothing changed,
    /// nothing appended) when the contact is already known, in any status:
    /// enqueueing is idempotent.
    async fn enqueue(&self, record: &ContactRecord, events: &[EventEnvelope]) -> Result<bool, Error>;
    async fn get_contact(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<ContactRecord>, Error>;
    /// 1-based place in the waiting line `record` names (its queue and
    /// channel); 0 when not waiting there.
    async fn position(&self, record: &ContactRecord) -> Result<i32, Error>;
    /// Records an agent's profile and availability. Becoming available
    /// starts its idle time.
    async fn upsert_agent(&self, profile: &AgentProfile, available: bool, now_ms: i64) -> Result<(), Error>;
    /// An agent's routing view, if routing has seen it.
    async fn agent(&self, agent: &AgentId) -> Result<Option<AgentLive>, Error>;
    /// Up to `per_queue` head contacts of every non-empty waiting line (one
    /// per queue and channel) and every available agent; no agents when no
    /// contact waits (a pass has nothing to match them with, and most
    /// passes, asked for by a completion or an answer, find none).
    async fn snapshot(&self, per_queue: usize) -> Result<Snapshot, Error>;
    /// The outbox's depth and how many contacts wait, by tenant.
    async fn gauges(&self) -> Result<StateGauges, Error>;
    /// Offers `contact` to `agent` if the contact is still queued and the
    /// agent can still take it. False (nothing changed) otherwise.
    async fn reserve(
        &self,
        record: &ContactRecord,
        agent: &AgentId,
        expire_ms: i64,
        events: &[EventEnvelope],
    ) -> Result<bool, Error>;
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
        events_for: EventsFor<'_>,
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
        events_for: EventsFor<'_>,
    ) -> Result<(AgentId, ContactRecord), Error>;
    /// Ends an answered contact. When its queue has a wrap-up, the agent
    /// takes no new work until it ends ([`crate::domain::rules::wrap_up_hold_until`]),
    /// set in the same step that releases its load, so no offer slips in
    /// before presence reports the wrap-up; presence reporting AVAILABLE
    /// ends the hold.
    async fn complete(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: &AgentId,
        completion: &Completion,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(Applied, ContactRecord), Error>;
    /// [`RoutingState::accept`] of the contact `seen` shows, which the
    /// caller has just read: a store may try the change on that view
    /// first (it applies only while the view is current, and a stale or
    /// refused view is read again), sparing a read.
    async fn accept_seen(
        &self,
        seen: &ContactRecord,
        agent: &AgentId,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(Applied, ContactRecord), Error> {
        self.accept(&seen.tenant, &seen.contact, agent, now_ms, events_for).await
    }
    /// [`RoutingState::complete`] of the contact `seen` shows (see
    /// [`RoutingState::accept_seen`]).
    async fn complete_seen(
        &self,
        seen: &ContactRecord,
        agent: &AgentId,
        completion: &Completion,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(Applied, ContactRecord), Error> {
        self.complete(&seen.tenant, &seen.contact, agent, completion, now_ms, events_for).await
    }
    async fn abandon(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(Applied, Option<AbandonedFrom>, ContactRecord), Error>;
    /// Any other transition of a contact (transfer, overflow, callback,
    /// expiry), with the same compare-and-set, index and load bookkeeping
    /// and outbox as the named ones. A change that changes nothing appends
    /// nothing.
    async fn change(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        now_ms: i64,
        change: Change<'_>,
        events_for: EventsFor<'_>,
    ) -> Result<ContactRecord, Error>;
    /// Waiting contacts whose allowed wait ended at or before `now_ms`,
    /// earliest first.
    async fn expired_waits(&self, now_ms: i64, limit: usize) -> Result<Vec<(TenantId, ContactId)>, Error>;
    async fn line_status(&self, tenant: &TenantId, queue: &QueueId, channel: i32) -> Result<LineStatus, Error>;
    /// Remembers `agent` as the customer's last agent, for
    /// [`LAST_AGENT_RETENTION_MS`].
    async fn remember_agent(&self, tenant: &TenantId, customer: &str, agent: &AgentId) -> Result<(), Error>;
    async fn last_agent(&self, tenant: &TenantId, customer: &str) -> Result<Option<AgentId>, Error>;
    /// Offers whose deadline passed, oldest first.
    async fn expired_offers(&self, now_ms: i64, limit: usize) -> Result<Vec<OfferRef>, Error>;
    /// Offers currently ringing at `agent`.
    async fn offers_of_agent(&self, agent: &AgentId) -> Result<Vec<OfferRef>, Error>;
    /// Contacts `agent` answered and has not completed.
    async fn handled_by_agent(&self, agent: &AgentId) -> Result<Vec<OfferRef>, Error>;
    /// First removes `relayed` (entries the caller published and journaled
    /// since its last call, whoever leads now); then the entries appended
    /// and not yet removed (each change's events, then its snapshot),
    /// oldest first, with the generation read in the same atomic step, if
    /// `relay` holds (or now takes) the pool's relay lease for `lease_ms`;
    /// `None` while another relay holds it. Each call extends the lease.
    /// One relay at a time keeps the bus in outbox order.
    async fn pending_outbox(
        &self,
        relay: &str,
        lease_ms: i64,
        limit: usize,
        relayed: &[String],
    ) -> Result<Option<OutboxBatch>, Error>;
    /// Removes relayed entries from the outbox.
    async fn acknowledge_outbox(&self, ids: &[String]) -> Result<(), Error>;
    /// Which incarnation of the state this is: it changes whenever the
    /// state is rebuilt after a loss. Fails with UNAVAILABLE
    /// (`ROUTING_STATE_REBUILDING`) while the state is lost.
    async fn generation(&self) -> Result<String, Error>;
    /// The id of the newest outbox entry, if the outbox holds any; fails
    /// with UNAVAILABLE (`ROUTING_STATE_REBUILDING`) unless the state is
    /// still of `generation` (an empty outbox of a newer incarnation says
    /// nothing about what the older one relayed).
    async fn outbox_tail(&self, generation: &str) -> Result<Option<String>, Error>;
    /// Whether every entry up to and including `id` left the outbox of the
    /// state of `generation` (failing as [`RoutingState::outbox_tail`]).
    async fn relayed_through(&self, id: &str, generation: &str) -> Result<bool, Error>;
    /// Whether the store holds its data. False after Redis lost it (a
    /// FLUSHALL, a restart without persistence): every write then fails
    /// with UNAVAILABLE (`ROUTING_STATE_REBUILDING`) until
    /// [`RoutingState::restore`] has run.
    async fn is_whole(&self) -> Result<bool, Error>;
    /// Takes the pool's rebuild lease for `lease_ms` if it is free or held
    /// by `holder`: one replica rebuilds at a time.
    async fn lead_rebuild(&self, holder: &str, lease_ms: i64) -> Result<bool, Error>;
    /// Puts journaled contacts and agents back (idempotently: index and
    /// load bookkeeping included, loads recomputed from the contacts), then
    /// marks the store whole, with the rest of the rebuild (replaying the
    /// contacts topic, applying the agents' states) pending and the
    /// rebuild lease still held.
    async fn restore(&self, contacts: &[ContactRecord], agents: &[JournaledAgent], now_ms: i64) -> Result<(), Error>;
    /// Whether a restore ran but the rest of its rebuild has not finished
    /// (the replica doing it failed or died): another must finish it.
    async fn rebuild_pending(&self) -> Result<bool, Error>;
    /// The rebuild is complete: nothing pending, the lease released.
    async fn finish_rebuild(&self) -> Result<(), Error>;
    /// Counts an answer in the pace of its waiting line. A statistic for
    /// estimates: concurrent updates may lose one interval, never a contact.
    async fn record_answer(
        &self,
        tenant: &TenantId,
        queue: &QueueId,
        channel: i32,
        answer_ms: i64,
    ) -> Result<(), Error>;
    async fn answer_pace(&self, tenant: &TenantId, queue: &QueueId, channel: i32) -> Result<AnswerPace, Error>;
    /// Where the tenants stand in the sharing of shared agents (see
    /// [`FairShares`]); even (empty) before any sharing or after a loss.
    async fn fair_shares(&self) -> Result<FairShares, Error>;
    /// Adds each tenant's charge (what the offers a pass made cost it) to
    /// its tag, atomically per tenant, so replicas charging at once each
    /// count theirs. A statistic like the answer pace: a lost update skews
    /// one turn, never a contact.
    async fn advance_fair_shares(&self, charges: &std::collections::BTreeMap<TenantId, f64>) -> Result<(), Error>;
    /// The contacts of `tenant` that have not ended.
    async fn live_contacts(&self, tenant: &TenantId) -> Result<Vec<ContactId>, Error>;
    /// Removes what is left of `tenant` once its contacts have ended: their
    /// records, its waiting lines, answer paces, last agents and fair-share
    /// tag. Idempotent.
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error>;
}

pub(crate) fn contact_not_found(tenant: &TenantId, contact: &ContactId) -> Error {
    Error::not_found(switchboard_core::names::contact_name(tenant, contact))
}
