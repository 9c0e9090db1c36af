//! The routing journal: the durable copy of routing's hot state, from which
//! the Redis state is rebuilt when Redis loses its data.
//!
//! Every change of a contact appends its snapshot to the outbox in the same
//! atomic step as the change; the relay writes the snapshots of what it
//! published here (the newest revision of each contact wins), so the journal
//! holds every contact as far as its events reached the bus. Agents are
//! written through as routing learns their state. Terminal contacts stay for
//! [`super::redis::TERMINAL_RETENTION_MS`], so a rebuild (or a replayed
//! event) does not bring an ended contact back.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use switchboard_core::sync::lock_unpoisoned as lock;
use switchboard_core::{AgentId, ContactId, Error, TenantId};
use switchboard_platform::postgres::{CachedStatements, pg_error};
use switchboard_proto::presence::v1::AgentState;

use super::codec;
use crate::domain::{AgentProfile, ContactRecord};

/// An agent as the journal keeps it: its profile and its last state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournaledAgent {
    pub profile: AgentProfile,
    pub state: AgentState,
}

#[async_trait]
pub trait RoutingJournal: Send + Sync {
    /// Keeps each record unless the journal holds a newer revision of its
    /// contact.
    async fn record_contacts(&self, records: &[ContactRecord]) -> Result<(), Error>;
    /// Every contact the journal holds, terminal ones included.
    async fn contacts(&self) -> Result<Vec<ContactRecord>, Error>;
    /// The agent's latest profile and state.
    async fn record_agent(&self, profile: &AgentProfile, state: AgentState) -> Result<(), Error>;
    async fn agents(&self) -> Result<Vec<JournaledAgent>, Error>;
    /// Forgets terminal contacts that ended before `before_ms`; returns how
    /// many.
    async fn prune(&self, before_ms: i64) -> Result<u64, Error>;
    /// Forgets every contact of `tenant` (a deleted tenant); idempotent.
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error>;
}

/// The journal of `dev` mode and of tests.
#[derive(Default)]
pub struct MemoryJournal {
    contacts: Mutex<HashMap<(TenantId, ContactId), ContactRecord>>,
    agents: Mutex<HashMap<AgentId, JournaledAgent>>,
}

#[async_trait]
impl RoutingJournal for MemoryJournal {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        lock(&self.contacts).retain(|(owner, _), _| owner != tenant);
        Ok(())
    }

    async fn record_contacts(&self, records: &[ContactRecord]) -> Result<(), Error> {
        let mut contacts = lock(&self.contacts);
        for record in records {
            let key = (record.tenant.clone(), record.contact.clone());
            if contacts.get(&key).is_none_or(|stored| stored.revision <= record.revision) {
                contacts.insert(key, record.clone());
            }
        }
        Ok(())
    }

    async fn contacts(&self) -> Result<Vec<ContactRecord>, Error> {
        Ok(lock(&self.contacts).values().cloned().collect())
    }

    async fn record_agent(&self, profile: &AgentProfile, state: AgentState) -> Result<(), Error> {
        lock(&self.agents).insert(profile.agent.clone(), JournaledAgent { profile: profile.clone(), state });
        Ok(())
    }

    async fn agents(&self) -> Result<Vec<JournaledAgent>, Error> {
        Ok(lock(&self.agents).values().cloned().collect())
    }

    async fn prune(&self, before_ms: i64) -> Result<u64, Error> {
        let mut contacts = lock(&self.contacts);
        let before = contacts.len();
        contacts.retain(|_, record| !(record.status.is_terminal() && record.end_ms < before_ms));
        Ok((before - contacts.len()) as u64)
    }
}

/// The journal in PostgreSQL, per routing pool.
pub struct PostgresJournal {
    pool: Pool,
    routing_pool: String,
}

impl PostgresJournal {
    /// The journal of routing pool `routing_pool` (the Redis pool's name).
    pub fn new(pool: Pool, routing_pool: &str) -> PostgresJournal {
        PostgresJournal { pool, routing_pool: routing_pool.to_owned() }
    }
}

#[async_trait]
impl RoutingJournal for PostgresJournal {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        client
            .execute_cached(
                "DELETE FROM routing.journal WHERE pool = $1 AND tenant = $2",
                &[&self.routing_pool, &tenant.as_str()],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn record_contacts(&self, records: &[ContactRecord]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        // One statement for the batch; the newest revision per contact only
        // (a statement may not update a row twice).
        let mut newest: HashMap<(&TenantId, &ContactId), &ContactRecord> = HashMap::new();
        for record in records {
            let key = (&record.tenant, &record.contact);
            if newest.get(&key).is_none_or(|stored| stored.revision <= record.revision) {
                newest.insert(key, record);
            }
        }
        let mut tenants = Vec::with_capacity(newest.len());
        let mut contacts = Vec::with_capacity(newest.len());
        let mut revisions = Vec::with_capacity(newest.len());
        let mut terminals = Vec::with_capacity(newest.len());
        let mut ends = Vec::with_capacity(newest.len());
        let mut snapshots = Vec::with_capacity(newest.len());
        for record in newest.values() {
            tenants.push(record.tenant.as_str());
            contacts.push(record.contact.as_str());
            revisions.push(record.revision);
            terminals.push(record.status.is_terminal());
            ends.push(record.end_ms);
            snapshots.push(codec::snapshot_json(record, record.revision)?);
        }
        let client = self.pool.get().await.map_err(pg_error)?;
        client
            .execute_cached(
                "INSERT INTO routing.journal (pool, tenant, contact_id, revision, terminal, end_ms, snapshot)
                 SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::boolean[], $6::bigint[], $7::text[])
                 ON CONFLICT (pool, tenant, contact_id) DO UPDATE
                 SET revision = excluded.revision, terminal = excluded.terminal, end_ms = excluded.end_ms,
                     snapshot = excluded.snapshot
                 WHERE routing.journal.revision < excluded.revision",
                &[&self.routing_pool, &tenants, &contacts, &revisions, &terminals, &ends, &snapshots],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn contacts(&self) -> Result<Vec<ContactRecord>, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let rows = client
            .query_cached("SELECT snapshot FROM routing.journal WHERE pool = $1", &[&self.routing_pool])
            .await
            .map_err(pg_error)?;
        rows.iter().map(|row| codec::decode_snapshot(row.get::<_, &str>(0))).collect()
    }

    async fn record_agent(&self, profile: &AgentProfile, state: AgentState) -> Result<(), Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        client
            .execute_cached(
                "INSERT INTO routing.agents (pool, agent_id, profile, state) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (pool, agent_id) DO UPDATE SET profile = excluded.profile, state = excluded.state",
                &[&self.routing_pool, &profile.agent.as_str(), &codec::profile_json(profile)?, &(state as i32)],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn agents(&self) -> Result<Vec<JournaledAgent>, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let rows = client
            .query_cached("SELECT agent_id, profile, state FROM routing.agents WHERE pool = $1", &[&self.routing_pool])
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                let profile = codec::decode_profile(row.get::<_, &str>(0), row.get::<_, &str>(1))?;
                // As when it was journaled (see `Engine::on_agent_state`).
                let state = AgentState::try_from(row.get::<_, i32>(2)).unwrap_or_default();
                Ok(JournaledAgent { profile, state })
            })
            .collect()
    }

    async fn prune(&self, before_ms: i64) -> Result<u64, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        client
            .execute_cached(
                "DELETE FROM routing.journal WHERE pool = $1 AND terminal AND end_ms < $2",
                &[&self.routing_pool, &before_ms],
            )
            .await
            .map_err(pg_error)
    }
}
