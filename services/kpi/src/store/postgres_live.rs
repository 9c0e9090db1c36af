//! The live figures in PostgreSQL: agents' states (`kpi.agent_states`,
//! written from presence events) and the contacts waiting now (a partial
//! index on the facts of waiting contacts, so reading them costs the
//! contacts waiting, not the history).

use std::collections::BTreeMap;

use switchboard_core::names::tenant_name;
use switchboard_core::{Error, TenantId};
use switchboard_platform::postgres::{CachedStatements, Migration, pg_error};
use switchboard_proto::presence::v1::AgentState;

use crate::domain::live::AgentStateUpdate;

/// `0004_live`: agents' states, and the index of waiting contacts.
pub const LIVE_MIGRATION: Migration = Migration {
    version: "0004_live",
    sql: "
        CREATE TABLE kpi.agent_states (
            agent text PRIMARY KEY,
            -- `tenants/{tenant}` names, as presence gives them.
            tenants text[] NOT NULL,
            state integer NOT NULL,
            since_ms bigint NOT NULL
        );
        CREATE INDEX agent_states_tenants ON kpi.agent_states USING gin (tenants);
        CREATE INDEX contact_facts_waiting ON kpi.contact_facts (tenant, queued_ms)
            WHERE queued_ms IS NOT NULL AND answered_ms IS NULL AND abandoned_ms IS NULL
              AND routing_ended_ms IS NULL AND completed_ms IS NULL;
    ",
};

/// Records each update that supersedes its agent's stored state.
pub(super) async fn write_agent_states(
    client: &impl CachedStatements,
    updates: &[AgentStateUpdate],
) -> Result<(), Error> {
    // One per agent, the one that supersedes the others.
    let mut latest: BTreeMap<&str, &AgentStateUpdate> = BTreeMap::new();
    for update in updates {
        let agent = update.agent.as_str();
        if latest.get(agent).is_none_or(|known| update.supersedes(known.at_ms, known.state)) {
            latest.insert(agent, update);
        }
    }
    for (agent, update) in latest {
        let tenants: Vec<String> = update.tenants.iter().map(tenant_name).collect();
        client
            .execute_cached(
                "INSERT INTO kpi.agent_states AS stored (agent, tenants, state, since_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (agent) DO UPDATE SET tenants = EXCLUDED.tenants, state = EXCLUDED.state,
                     since_ms = EXCLUDED.since_ms
                 WHERE (EXCLUDED.since_ms, EXCLUDED.state) >= (stored.since_ms, stored.state)",
                &[&agent, &tenants, &(update.state as i32), &update.at_ms],
            )
            .await
            .map_err(pg_error)?;
    }
    Ok(())
}

/// Online agents serving `tenant`, by state.
pub(super) async fn read_agents_by_state(
    client: &impl CachedStatements,
    tenant: &TenantId,
) -> Result<BTreeMap<i32, i64>, Error> {
    let rows = client
        .query_cached(
            "SELECT state, count(*) FROM kpi.agent_states WHERE $1 = ANY(tenants) AND state > $2 GROUP BY state",
            &[&tenant_name(tenant), &(AgentState::Offline as i32)],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows.iter().map(|row| (row.get::<_, i32>(0), row.get::<_, i64>(1))).collect())
}

/// How many of `tenant`'s contacts wait now, and since when the longest.
pub(super) async fn read_waiting(
    client: &impl CachedStatements,
    tenant: &TenantId,
) -> Result<(i64, Option<i64>), Error> {
    let row = client
        .query_one_cached(
            "SELECT count(*), min(queued_ms) FROM kpi.contact_facts
             WHERE tenant = $1 AND queued_ms IS NOT NULL AND answered_ms IS NULL AND abandoned_ms IS NULL
               AND routing_ended_ms IS NULL AND completed_ms IS NULL",
            &[&tenant.as_str()],
        )
        .await
        .map_err(pg_error)?;
    Ok((row.get(0), row.get(1)))
}

/// Agents stop naming a deleted tenant.
pub(super) async fn forget_tenant_in_agent_states(
    client: &impl CachedStatements,
    tenant: &TenantId,
) -> Result<(), Error> {
    let name = tenant_name(tenant);
    client
        .execute_cached(
            "UPDATE kpi.agent_states SET tenants = array_remove(tenants, $1) WHERE $1 = ANY(tenants)",
            &[&name],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}
