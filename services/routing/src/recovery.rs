//! Redis losing routing's state (a FLUSHALL, a restart without
//! persistence): detected within a second by a guard on a timer (and by
//! every write, which fails with `ROUTING_STATE_REBUILDING` until the state
//! is whole), and rebuilt by one replica from durable state:
//! 1. the journal: every contact as far as its events reached the bus, and
//!    every agent's last profile and state;
//! 2. the contacts topic: contacts taken after their snapshot reached the
//!    journal (or before their first one did) are enqueued again by the
//!    consumer's own idempotent handler, keeping their age;
//! 3. the agents' states, applied again: offers ringing at an agent that is
//!    no longer available go back to their queues, work of an offline
//!    agent is recovered.
//!
//! Changes acknowledged to callers were published and journaled before the
//! answer ([`Engine::durably`]), so a rebuild never forgets an answer
//! or a completion a desktop was told about; offers that only Redis knew
//! were never seen by anyone. Every contact still ends exactly once.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use switchboard_core::Error;
use switchboard_core::event::CONTACTS_TOPIC;
use switchboard_platform::bus::{Received, Scan, decode_record};
use switchboard_platform::readiness::DependencyCheck;

use crate::engine::Engine;
use crate::relay::RELAY_LEASE_MS;
use crate::store::journal::JournaledAgent;
use crate::store::redis::TERMINAL_RETENTION_MS;

/// How long a replica may take to rebuild before another may take over.
const REBUILD_LEASE_MS: i64 = 60_000;

impl Engine {
    /// Whether the state store holds its data now, and no rebuild is left
    /// unfinished; remembered for readiness.
    pub async fn look_whole(&self) -> Result<bool, Error> {
        let whole = self.state.is_whole().await? && !self.state.rebuild_pending().await?;
        self.set_whole(whole);
        Ok(whole)
    }

    /// Remembers whether the state is whole; when it becomes whole again,
    /// wakes what waits for that (see [`Engine::state_restored`]).
    fn set_whole(&self, whole: bool) {
        if !self.whole.swap(whole, Ordering::AcqRel) && whole {
            self.state_restored.notify_waiters();
        }
    }

    /// One look, run on a timer: when the state store lost its data, this
    /// replica rebuilds it if no other replica is already doing so; when a
    /// rebuild was left unfinished (its replica failed or died after the
    /// restore), this replica finishes it.
    pub async fn keep_state_whole(&self, replica: &str) -> Result<(), Error> {
        if self.state.is_whole().await? {
            if !self.state.rebuild_pending().await? {
                self.set_whole(true);
                return Ok(());
            }
            if !self.state.lead_rebuild(replica, REBUILD_LEASE_MS).await? {
                return Ok(());
            }
            tracing::warn!("routing state restored but its rebuild unfinished, finishing it");
            let agents = self.journal.agents().await?;
            return self.finish_rebuild(0, &agents).await;
        }
        if self.whole.swap(false, Ordering::AcqRel) {
            tracing::error!("routing state lost in redis: every write waits until it is rebuilt");
        }
        if !self.state.lead_rebuild(replica, REBUILD_LEASE_MS).await? {
            tracing::info!("another replica is rebuilding the routing state");
            return Ok(());
        }
        // A relay may be between publishing a batch and journaling its
        // snapshots (the lease it held is gone with the data): every batch
        // ends within a lease, so the journal is read only after one. An
        // empty journal is a new deployment's: nothing was ever relayed.
        let mut contacts = self.journal.contacts().await?;
        if !contacts.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(RELAY_LEASE_MS.unsigned_abs())).await;
            contacts = self.journal.contacts().await?;
        }
        let now = self.clock.now_millis();
        let agents = self.journal.agents().await?;
        self.state.restore(&contacts, &agents, now).await?;
        self.finish_rebuild(contacts.len(), &agents).await
    }

    /// The rest of a rebuild, after the restore; idempotent, so a failure
    /// half-way leaves it pending and the next look runs it again.
    async fn finish_rebuild(&self, restored_contacts: usize, agents: &[JournaledAgent]) -> Result<(), Error> {
        let replayed = self.replay_contacts(self.clock.now_millis()).await?;
        for agent in agents {
            self.apply_agent_state(&agent.profile, agent.state).await?;
        }
        self.state.finish_rebuild().await?;
        self.set_whole(true);
        tracing::warn!(
            contacts = restored_contacts,
            agents = agents.len(),
            replayed,
            "routing state rebuilt from the journal and the contacts topic"
        );
        self.changed();
        self.request_match();
        Ok(())
    }

    /// Hands every contacts-topic record of the retention period to the
    /// consumer's handler again; returns how many. Contacts the journal put
    /// back are known and left alone (enqueueing is idempotent).
    async fn replay_contacts(&self, now_ms: i64) -> Result<usize, Error> {
        let oldest_ms = now_ms - TERMINAL_RETENTION_MS;
        let mut deliveries = Vec::new();
        self.bus
            .scan(CONTACTS_TOPIC, &mut |record| {
                if let Received::Event(delivery) = decode_record(record)
                    && delivery.envelope.occurred_at.as_ref().map_or(0, switchboard_core::time::millis_from_timestamp)
                        >= oldest_ms
                {
                    deliveries.push(*delivery);
                }
                Scan::Continue
            })
            .await?;
        let count = deliveries.len();
        for delivery in deliveries {
            match self.handle(delivery).await {
                Ok(()) => {}
                // Dead-lettered by the consumer already; nothing to redo.
                Err(error) if !error.is_transient() => {
                    tracing::warn!(error = %error, "replayed contact event cannot be handled, skipped");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(count)
    }
}

/// Readiness: false while the routing state is lost and being rebuilt.
pub struct StateWhole(pub std::sync::Arc<Engine>);

#[async_trait]
impl DependencyCheck for StateWhole {
    fn name(&self) -> String {
        "routing-state".to_owned()
    }

    async fn check(&self) -> anyhow::Result<()> {
        if self.0.whole.load(Ordering::Acquire) {
            return Ok(());
        }
        anyhow::bail!("redis lost the routing state; it is being rebuilt")
    }
}
