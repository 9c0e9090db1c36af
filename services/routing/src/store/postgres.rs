//! Queue definitions in PostgreSQL (schema `routing`), stored as the
//! encoded `Queue` message keyed by tenant and queue id.

use async_trait::async_trait;
use deadpool_postgres::Pool;
use prost::Message;
use switchboard_core::{Error, QueueId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_platform::postgres::{CachedStatements, Migration, erase_tenant_rows, pg_error};
use switchboard_proto::routing::v1::Queue;

use super::QueueStore;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: "0001_queues",
        sql: "CREATE SCHEMA IF NOT EXISTS routing;
          CREATE TABLE routing.queues (
              tenant text NOT NULL,
              queue_id text NOT NULL,
              body bytea NOT NULL,
              PRIMARY KEY (tenant, queue_id));",
    },
    // The journal (see `journal.rs`): contacts' snapshots per routing pool,
    // terminal ones until pruned, and agents' profiles.
    Migration {
        version: "0002_journal",
        sql: "CREATE TABLE routing.journal (
              pool text NOT NULL,
              tenant text NOT NULL,
              contact_id text NOT NULL,
              revision bigint NOT NULL,
              terminal boolean NOT NULL,
              end_ms bigint NOT NULL,
              snapshot text NOT NULL,
              PRIMARY KEY (pool, tenant, contact_id));
          CREATE INDEX journal_ended ON routing.journal (pool, end_ms) WHERE terminal;
          CREATE TABLE routing.agents (
              pool text NOT NULL,
              agent_id text NOT NULL,
              profile text NOT NULL,
              state integer NOT NULL,
              PRIMARY KEY (pool, agent_id));",
    },
    // A contact's row is rewritten by each of its changes: room left on
    // every page lets those that keep `terminal` update in place (HOT),
    // without new index entries.
    Migration { version: "0003_journal_fillfactor", sql: "ALTER TABLE routing.journal SET (fillfactor = 70);" },
];

pub struct PostgresQueueStore {
    pool: Pool,
}

impl PostgresQueueStore {
    pub fn new(pool: Pool) -> PostgresQueueStore {
        PostgresQueueStore { pool }
    }
}

fn decode(body: &[u8]) -> Result<Queue, Error> {
    Queue::decode(body).map_err(|error| Error::internal(format!("stored queue does not decode: {error}")))
}

#[async_trait]
impl QueueStore for PostgresQueueStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        erase_tenant_rows(&self.pool, &["routing.queues"], tenant).await.map(drop)
    }

    async fn create_queue(&self, tenant: &TenantId, queue_id: &QueueId, queue: &Queue) -> Result<(), Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let inserted = client
            .execute_cached(
                "INSERT INTO routing.queues (tenant, queue_id, body) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, queue_id) DO NOTHING",
                &[&tenant.as_str(), &queue_id.as_str(), &queue.encode_to_vec()],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            return Err(Error::already_exists(queue.name.clone()));
        }
        Ok(())
    }

    async fn get_queue(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<Option<Queue>, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let row = client
            .query_opt_cached(
                "SELECT body FROM routing.queues WHERE tenant = $1 AND queue_id = $2",
                &[&tenant.as_str(), &queue_id.as_str()],
            )
            .await
            .map_err(pg_error)?;
        row.map(|row| decode(row.get::<_, &[u8]>(0))).transpose()
    }

    async fn list_queues(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<Queue>, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let after = page.after.clone().unwrap_or_default();
        let limit = i64::try_from(page.size + 1).unwrap_or(i64::MAX);
        let rows = client
            .query_cached(
                "SELECT body FROM routing.queues WHERE tenant = $1 AND queue_id > $2 ORDER BY queue_id LIMIT $3",
                &[&tenant.as_str(), &after, &limit],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(|row| decode(row.get::<_, &[u8]>(0))).collect()
    }

    async fn update_queue(&self, tenant: &TenantId, queue_id: &QueueId, queue: &Queue) -> Result<bool, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let updated = client
            .execute_cached(
                "UPDATE routing.queues SET body = $3 WHERE tenant = $1 AND queue_id = $2",
                &[&tenant.as_str(), &queue_id.as_str(), &queue.encode_to_vec()],
            )
            .await
            .map_err(pg_error)?;
        Ok(updated == 1)
    }

    async fn delete_queue(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<bool, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let deleted = client
            .execute_cached(
                "DELETE FROM routing.queues WHERE tenant = $1 AND queue_id = $2",
                &[&tenant.as_str(), &queue_id.as_str()],
            )
            .await
            .map_err(pg_error)?;
        Ok(deleted == 1)
    }
}
