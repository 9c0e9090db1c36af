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
use switchboard_platform::metrics::{labels, metrics};

use crate::engine::Engine;
use crate::store::OutboxItem;

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

/// A round of this replica's relay that drained the outbox: every entry
/// appended before round `round` began, to the state of `generation`, is
/// published and journaled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Drained {
    round: u64,
    /// `None` when the state was lost, or its generation changed, during
    /// the round: then it vouches for nothing.
    generation: Option<String>,
}

impl Drained {
    /// Whether this vouches for a change made to the state of `generation`
    /// before its caller saw `rounds_begun` rounds begun: only a round that
    /// began after that read the outbox past the change.
    fn covers(&self, rounds_begun: u64, generation: &str) -> bool {
        self.round > rounds_begun && self.generation.as_deref() == Some(generation)
    }
}

impl Engine {
    /// One round: publishes the outbox in order while this relay leads it,
    /// until it is drained; returns how many events went out. A batch is
    /// handed to the producer at once, in outbox order (the idempotent
    /// producer keeps that order per partition), and its delivery reports
    /// are awaited together. Entries are removed only up to the first event
    /// the broker did not acknowledge, after the snapshots among them
    /// reached the journal, so a failure retries it and what followed it
    /// (consumers are idempotent by event id) and the journal never runs
    /// ahead of the bus. Relayed entries are removed by the next read of
    /// the outbox, in the same round trip (the next batch, or the next
    /// round: at most a [`RELAY_TICK`] later, or
    /// [`Engine::remove_relayed`] at shutdown). A round that drains the
    /// outbox says so to the callers waiting here ([`Engine::durably`]),
    /// with the generation its batches were read in.
    pub async fn relay_once(&self, relay: &str) -> Result<usize, Error> {
        // Read before the first batch: every change finished before this
        // is in a batch of this round, or was relayed before it.
        let round = self.relay_rounds_begun.fetch_add(1, Ordering::SeqCst) + 1;
        let mut relayed = 0;
        let mut round_generation: Option<Option<String>> = None;
        let mut unremoved = std::mem::take(&mut *lock_unpoisoned(&self.relayed_unremoved));
        loop {
            let removing = std::mem::take(&mut unremoved);
            let batch = match self.state.pending_outbox(relay, RELAY_LEASE_MS, RELAY_BATCH, &removing).await {
                Ok(batch) => batch,
                Err(error) => {
                    self.keep_unremoved(removing);
                    return Err(error);
                }
            };
            self.relay_leading.store(batch.is_some(), Ordering::Relaxed);
            let Some(batch) = batch else {
                return Ok(relayed);
            };
            let generation = match round_generation.take() {
                Some(earlier) if earlier != batch.generation => None,
                _ => batch.generation,
            };
            round_generation = Some(generation.clone());
            let pending = batch.entries;
            if pending.is_empty() {
                self.drained.send_replace(Drained { round, generation });
                return Ok(relayed);
            }
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
            unremoved = pending[..prefix].iter().map(|entry| entry.id.clone()).collect();
            let published = events.iter().take_while(|(index, _)| *index < prefix).count();
            count_published(published);
            relayed += published;
            if let Some(Err(error)) = deliveries.into_iter().find(Result::is_err) {
                self.keep_unremoved(unremoved);
                return Err(error);
            }
            // A short batch was all there was: the outbox is drained. A
            // change made since then woke the relay again (its notification
            // is kept), and other replicas' changes are seen on the next
            // tick; reading again now would find nothing, one round trip
            // per change.
            if pending.len() < RELAY_BATCH {
                self.keep_unremoved(unremoved);
                self.drained.send_replace(Drained { round, generation });
                return Ok(relayed);
            }
        }
    }

    /// Removes what the relay published and journaled and left in the
    /// outbox for its next read: at shutdown, so the next relay does not
    /// publish it again.
    pub async fn remove_relayed(&self) -> Result<(), Error> {
        let unremoved = std::mem::take(&mut *lock_unpoisoned(&self.relayed_unremoved));
        if let Err(error) = self.state.acknowledge_outbox(&unremoved).await {
            self.keep_unremoved(unremoved);
            return Err(error);
        }
        Ok(())
    }

    /// Leaves `ids` for the relay's next read of the outbox to remove.
    fn keep_unremoved(&self, ids: Vec<String>) {
        lock_unpoisoned(&self.relayed_unremoved).extend(ids);
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
        // The change is made: any round this replica's relay begins from
        // now on reads past it.
        let made_before_round = self.relay_rounds_begun.load(Ordering::SeqCst);
        self.changed();
        let deadline = tokio::time::Instant::now() + RELAY_WAIT;
        let mut drained = self.drained.subscribe();
        let mut tail: Option<Option<String>> = None;
        let mut poll_due = false;
        loop {
            // Woken when this replica's relay drains the outbox; the store is
            // asked only every RELAY_POLL_MAX, when another replica's relay
            // may lead (its answer is generation-checked too).
            if drained.borrow_and_update().covers(made_before_round, generation) {
                return Ok(());
            }
            if poll_due {
                let newest = match &tail {
                    Some(newest) => newest.clone(),
                    None => tail.insert(self.state.outbox_tail(generation).await?).clone(),
                };
                let Some(newest) = newest else {
                    return Ok(());
                };
                if self.state.relayed_through(&newest, generation).await? {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::unavailable("the change is made but not yet published; retry the request")
                    .with_reason("NOT_YET_PUBLISHED"));
            }
            let poll_interval =
                if self.relay_leading.load(Ordering::Relaxed) { RELAY_POLL_LEADING } else { RELAY_POLL_MAX };
            poll_due = tokio::select! {
                // The engine, and so the sender, outlives this wait.
                _changed = drained.changed() => false,
                () = tokio::time::sleep(poll_interval) => true,
            };
        }
    }
}

/// Counts a batch's published events, and the batch if it had any
/// (`switchboard_relay_batches_total`, `switchboard_relayed_events_total`):
/// their ratio is how many events a batch carries.
fn count_published(published: usize) {
    if published == 0 {
        return;
    }
    let service = labels([("service", "routing")]);
    let metrics = metrics();
    metrics.relay_batches.get_or_create(&service).inc();
    metrics.relayed_events.get_or_create(&service).inc_by(u64::try_from(published).unwrap_or(u64::MAX));
}

#[cfg(test)]
mod tests {
    use super::Drained;

    #[test]
    fn a_drained_round_vouches_only_for_changes_made_before_it_began_in_its_generation() {
        let drained = Drained { round: 7, generation: Some("g1".to_owned()) };
        assert!(drained.covers(6, "g1"), "round 7 began after the change saw round 6 begun");
        assert!(!drained.covers(7, "g1"), "round 7 may have read its batch before the change");
        assert!(!drained.covers(6, "g2"), "another incarnation's outbox says nothing of this change");
        let lost = Drained { round: 9, generation: None };
        assert!(!lost.covers(6, "g1"), "a round during a loss vouches for nothing");
    }
}
