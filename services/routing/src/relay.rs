//! The routing relay: publishes the outbox (each change's events, in
//! order) and writes the snapshots it carries to the journal, while this
//! replica holds the pool's relay lease.
//!
//! Fenced: the lease is renewed before every batch and lasts
//! [`RELAY_LEASE_MS`]; the relay publishes on a producer whose deliveries
//! succeed or fail within [`RELAY_DELIVERY_TIMEOUT`], well inside the lease.
//! A relay that stalls (a slow broker, a paused process) therefore never
//! has records in flight once another replica takes the lease over, so two
//! relays never interleave one contact's events.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;
use switchboard_core::Error;
use switchboard_core::event::ROUTING_TOPIC;
use switchboard_core::sync::lock_unpoisoned;
use switchboard_platform::bus::publish_traced;

use crate::engine::Engine;
use crate::store::{OutboxItem, outbox_position};

/// How long one relay leads a pool's outbox without renewing.
pub const RELAY_LEASE_MS: i64 = 5_000;
/// How long the relay's producer may take to get a record acknowledged
/// before the delivery fails (and the record is retried from the outbox).
pub const RELAY_DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the relay looks at the outbox when nothing woke it: other
/// replicas' changes wait at most this long (their callers wait for them,
/// see [`Engine::durably`]).
pub const RELAY_TICK: Duration = Duration::from_millis(25);
const RELAY_BATCH: usize = 1_024;
/// How long the journal may take to record a batch's snapshots.
const JOURNAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a caller waits for its change to be published.
const RELAY_WAIT: Duration = Duration::from_secs(5);
/// How often a caller asks the store whether its change was relayed while
/// another replica's relay leads: that relay cannot wake it.
const RELAY_POLL_MAX: Duration = Duration::from_millis(20);
/// The same while this replica's relay leads, which wakes the caller as it
/// passes the change: only in case the lease moved meanwhile. (Polling at
/// the short interval here made every caller of a backlog ask Redis every
/// 20 ms, a cost that grew with the backlog.)
const RELAY_POLL_LEADING: Duration = Duration::from_millis(250);

impl Engine {
    /// Publishes the outbox in order while this relay leads it; returns how
    /// many events went out. A batch is handed to the producer at once, in
    /// outbox order (the idempotent producer keeps that order per
    /// partition), and its delivery reports are awaited together. Entries
    /// are removed only up to the first event the broker did not
    /// acknowledge, after the snapshots among them reached the journal, so a
    /// failure retries it and what followed it (consumers are idempotent by
    /// event id) and the journal never runs ahead of the bus.
    pub async fn relay_once(&self, relay: &str) -> Result<usize, Error> {
        let mut relayed = 0;
        loop {
            let pending = self.state.pending_outbox(relay, RELAY_LEASE_MS, RELAY_BATCH).await?;
            self.relay_leading.store(pending.is_some(), Ordering::Relaxed);
            let Some(pending) = pending.filter(|pending| !pending.is_empty()) else {
                return Ok(relayed);
            };
            let events: Vec<(usize, _)> = pending
                .iter()
                .enumerate()
                .filter_map(|(index, entry)| match &entry.item {
                    OutboxItem::Event(envelope) => Some((index, envelope)),
                    OutboxItem::Snapshot(_) => None,
                })
                .collect();
            let deliveries = join_all(
                events.iter().map(|(_, envelope)| publish_traced(self.relay_bus.as_ref(), ROUTING_TOPIC, envelope)),
            )
            .await;
            let failed_at = events.iter().zip(&deliveries).find(|(_, delivery)| delivery.is_err());
            let prefix = failed_at.map_or(pending.len(), |((index, _), _)| *index);
            // A deleted tenant's contacts are not journaled again: its
            // erasure may have emptied the journal already.
            let deleted = |tenant: &switchboard_core::TenantId| {
                self.access.as_ref().is_some_and(|access| access.is_deleted_tenant(tenant))
            };
            let snapshots: Vec<_> = pending[..prefix]
                .iter()
                .filter_map(|entry| match &entry.item {
                    OutboxItem::Snapshot(record) if !deleted(&record.tenant) => Some((**record).clone()),
                    OutboxItem::Snapshot(_) | OutboxItem::Event(_) => None,
                })
                .collect();
            // Bounded, so a batch ends within the lease (a rebuild waits
            // that long for batches in flight before it reads the journal).
            tokio::time::timeout(JOURNAL_WRITE_TIMEOUT, self.journal.record_contacts(&snapshots)).await.map_err(
                |_| Error::unavailable("the journal did not answer in time").with_reason("DATABASE_UNAVAILABLE"),
            )??;
            let acknowledged: Vec<String> = pending[..prefix].iter().map(|entry| entry.id.clone()).collect();
            self.state.acknowledge_outbox(&acknowledged).await?;
            if let Some(last) = acknowledged.last() {
                self.relayed.send_replace(outbox_position(last));
            }
            relayed += events.iter().take_while(|(index, _)| *index < prefix).count();
            if let Some(Err(error)) = deliveries.into_iter().find(Result::is_err) {
                return Err(error);
            }
            // A short batch was all there was: a change made since then
            // woke the relay again (its notification is kept), and other
            // replicas' changes are seen on the next tick; reading again
            // now would find nothing, one round trip per change.
            if pending.len() < RELAY_BATCH {
                return Ok(relayed);
            }
        }
    }

    /// Runs `change` (an API transition) and answers only once everything
    /// in the outbox then, the change included, is published and
    /// journaled: an answer to a caller is an acknowledgement that outlives
    /// a loss of Redis. A change not relayed in time, or whose state was
    /// lost meanwhile (Redis lost its data, even if already rebuilt: the
    /// generation differs), is reported UNAVAILABLE; the change may stand,
    /// and the caller's retry (transitions are idempotent) waits again.
    ///
    /// The generation need not be read right before the change: any value
    /// the marker had before it will do, since every restore sets a new
    /// one. A value read by an earlier transition is reused, so a loss and
    /// rebuild since then fails this call (UNAVAILABLE, the retry reads the
    /// new generation), and never lets a lost change pass for relayed.
    pub(crate) async fn durably<T>(&self, change: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        let known = lock_unpoisoned(&self.known_generation).clone();
        let generation = match known {
            Some(generation) => generation,
            None => self.state.generation().await?,
        };
        let outcome = async {
            let outcome = change.await?;
            self.await_relayed(&generation).await?;
            Ok(outcome)
        }
        .await;
        *lock_unpoisoned(&self.known_generation) = outcome.is_ok().then_some(generation);
        outcome
    }

    async fn await_relayed(&self, generation: &str) -> Result<(), Error> {
        let Some(tail) = self.state.outbox_tail(generation).await? else {
            return Ok(());
        };
        self.changed();
        let tail_position = outbox_position(&tail);
        let deadline = tokio::time::Instant::now() + RELAY_WAIT;
        let mut relayed = self.relayed.subscribe();
        let mut poll_due = false;
        loop {
            // Woken when this replica's relay acknowledges a batch; the
            // store is asked once that batch passed the change (the only
            // answer that counts is its generation-checked one), or every
            // RELAY_POLL_MAX, when another replica's relay may have.
            let passed_here = *relayed.borrow_and_update() >= tail_position;
            if (passed_here || poll_due) && self.state.relayed_through(&tail, generation).await? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::unavailable("the change is made but not yet published; retry the request")
                    .with_reason("NOT_YET_PUBLISHED"));
            }
            let poll_interval =
                if self.relay_leading.load(Ordering::Relaxed) { RELAY_POLL_LEADING } else { RELAY_POLL_MAX };
            poll_due = tokio::select! {
                // The engine, and so the sender, outlives this wait.
                _changed = relayed.changed() => false,
                () = tokio::time::sleep(poll_interval) => true,
            };
        }
    }
}
