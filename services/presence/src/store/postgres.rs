//! Agent definitions in PostgreSQL (schema `presence`), with the tenants an
//! agent serves in an indexed array for per-tenant listing.

use async_trait::async_trait;
use deadpool_postgres::Pool;
use prost::Message;
use switchboard_core::{AgentId, Error, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_platform::postgres::{CachedStatements, Migration, pg_error};
use switchboard_proto::presence::v1::Agent;

use super::AgentStore;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: "0001_agents",
    sql: "CREATE SCHEMA IF NOT EXISTS presence;
          CREATE TABLE presence.agents (
              agent_id text PRIMARY KEY,
              tenants text[] NOT NULL,
              body bytea NOT NULL);
          CREATE INDEX agents_tenants ON presence.agents USING gin (tenants);",
}];

pub struct PostgresAgentStore {
    pool: Pool,
}

impl PostgresAgentStore {
    pub fn new(pool: Pool) -> PostgresAgentStore {
        PostgresAgentStore { pool }
    }
}

fn decode(body: &[u8]) -> Result<Agent, Error> {
    Agent::decode(body).map_err(|error| Error::internal(format!("stored agent does not decode: {error}")))
}

#[async_trait]
impl AgentStore for PostgresAgentStore {
    async fn create_agent(&self, agent_id: &AgentId, agent: &Agent) -> Result<(), Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let inserted = client
            .execute_cached(
                "INSERT INTO presence.agents (agent_id, tenants, body) VALUES ($1, $2, $3)
                 ON CONFLICT (agent_id) DO NOTHING",
                &[&agent_id.as_str(), &agent.tenants, &agent.encode_to_vec()],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            return Err(Error::already_exists(agent.name.clone()));
        }
        Ok(())
    }

    async fn get_agent(&self, agent_id: &AgentId) -> Result<Option<Agent>, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let row = client
            .query_opt_cached("SELECT body FROM presence.agents WHERE agent_id = $1", &[&agent_id.as_str()])
            .await
            .map_err(pg_error)?;
        row.map(|row| decode(row.get::<_, &[u8]>(0))).transpose()
    }

    async fn list_agents(&self, tenant: Option<&TenantId>, page: &PageRequest) -> Result<Vec<Agent>, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let after = page.after.clone().unwrap_or_default();
        let limit = i64::try_from(page.size + 1).unwrap_or(i64::MAX);
        let tenant_name = tenant.map(switchboard_core::names::tenant_name);
        let rows = client
            .query_cached(
                "SELECT body FROM presence.agents
                 WHERE agent_id > $1 AND ($2::text IS NULL OR tenants @> ARRAY[$2::text])
                 ORDER BY agent_id LIMIT $3",
                &[&after, &tenant_name, &limit],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(|row| decode(row.get::<_, &[u8]>(0))).collect()
    }

    async fn update_agent(&self, agent_id: &AgentId, agent: &Agent) -> Result<bool, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let updated = client
            .execute_cached(
                "UPDATE presence.agents SET tenants = $2, body = $3 WHERE agent_id = $1",
                &[&agent_id.as_str(), &agent.tenants, &agent.encode_to_vec()],
            )
            .await
            .map_err(pg_error)?;
        Ok(updated == 1)
    }

    async fn delete_agent(&self, agent_id: &AgentId) -> Result<bool, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let deleted = client
            .execute_cached("DELETE FROM presence.agents WHERE agent_id = $1", &[&agent_id.as_str()])
            .await
            .map_err(pg_error)?;
        Ok(deleted == 1)
    }
}
