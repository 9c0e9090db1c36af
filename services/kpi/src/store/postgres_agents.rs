//! Agent KPIs in PostgreSQL (see [`crate::domain::agents`]): agents'
//! state changes (`kpi.agent_state_changes`), the closed spans by tenant,
//! agent, interval, state and reason (`kpi.agent_state_time`), routing
//! counts by tenant, agent and interval (`kpi.agent_counts`), and the ids
//! of the events counted (`kpi.agent_events_counted`).
//!
//! A change is inserted under a transaction-scoped advisory lock on its
//! agent (taken in agent order), so two replicas inserting changes of one
//! agent see each other's; its neighbours are read in the order of
//! [`crate::domain::agents::ChangeOrder`] (reasons compare bytewise, by
//! the "C" collation).

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::{Pool, Transaction};
use switchboard_core::names::{parse_tenant, tenant_name};
use switchboard_core::{AgentId, Error, TenantId};
use switchboard_platform::postgres::{CachedStatements, Migration, erase_tenant_rows, pg_error};
use switchboard_proto::presence::v1::AgentState;
use tokio_postgres::Row;

use crate::domain::agents::{
    AgentCounts, AgentEvent, AgentFigures, AgentPage, StateTime, StoredAgentFigures, insertion_deltas,
};
use crate::domain::live::AgentStateUpdate;

/// `0007_agent_kpis`.
pub const AGENTS_MIGRATION: Migration = Migration {
    version: "0007_agent_kpis",
    sql: r#"
        CREATE TABLE kpi.agent_state_changes (
            agent text NOT NULL,
            at_ms bigint NOT NULL,
            state integer NOT NULL,
            reason text COLLATE "C" NOT NULL,
            -- `tenants/{tenant}` names, as presence gives them.
            tenants text[] NOT NULL,
            PRIMARY KEY (agent, at_ms, state, reason)
        );
        CREATE INDEX agent_state_changes_tenants ON kpi.agent_state_changes USING gin (tenants);
        CREATE TABLE kpi.agent_last_changes (LIKE kpi.agent_state_changes INCLUDING ALL);
        ALTER TABLE kpi.agent_last_changes DROP CONSTRAINT agent_last_changes_pkey;
        ALTER TABLE kpi.agent_last_changes ADD PRIMARY KEY (agent);
        CREATE TABLE kpi.agent_state_time (
            tenant text NOT NULL,
            agent text NOT NULL,
            interval_start_ms bigint NOT NULL,
            state integer NOT NULL,
            reason text COLLATE "C" NOT NULL,
            ms bigint NOT NULL,
            PRIMARY KEY (tenant, interval_start_ms, agent, state, reason)
        );
        CREATE TABLE kpi.agent_counts (
            tenant text NOT NULL,
            agent text NOT NULL,
            interval_start_ms bigint NOT NULL,
            offered bigint NOT NULL,
            answered bigint NOT NULL,
            rejected bigint NOT NULL,
            timed_out bigint NOT NULL,
            transfers bigint NOT NULL,
            callbacks bigint NOT NULL,
            handled bigint NOT NULL,
            handle_ms bigint NOT NULL,
            PRIMARY KEY (tenant, interval_start_ms, agent)
        );
        CREATE TABLE kpi.agent_events_counted (event_id text PRIMARY KEY, tenant text NOT NULL);
        CREATE INDEX agent_events_counted_tenant ON kpi.agent_events_counted (tenant);
    "#,
};

fn change_from_row(row: &Row) -> Result<AgentStateUpdate, Error> {
    let tenants: Vec<String> = row.get("tenants");
    Ok(AgentStateUpdate {
        agent: AgentId::parse(row.get::<_, &str>("agent"), "agent")?,
        tenants: tenants.iter().map(|name| parse_tenant(name, "tenants")).collect::<Result<_, _>>()?,
        state: AgentState::try_from(row.get::<_, i32>("state")).unwrap_or(AgentState::Unspecified),
        reason: row.get("reason"),
        at_ms: row.get("at_ms"),
    })
}

/// Inserts the changes not stored yet, moving their spans.
pub(super) async fn insert_state_changes(pool: &Pool, changes: &[AgentStateUpdate]) -> Result<(), Error> {
    let mut client = pool.get().await.map_err(pg_error)?;
    let transaction = client.transaction().await.map_err(pg_error)?;
    insert_state_changes_in(&transaction, changes).await?;
    transaction.commit().await.map_err(pg_error)
}

async fn insert_state_changes_in(transaction: &Transaction<'_>, changes: &[AgentStateUpdate]) -> Result<(), Error> {
    let mut ordered: Vec<&AgentStateUpdate> = changes.iter().collect();
    ordered.sort_by(|left, right| (&left.agent, left.order()).cmp(&(&right.agent, right.order())));
    let agents: BTreeSet<&str> = ordered.iter().map(|change| change.agent.as_str()).collect();
    for agent in agents {
        transaction
            .execute_cached("SELECT pg_advisory_xact_lock(hashtextextended('kpi.agent:' || $1, 0))", &[&agent])
            .await
            .map_err(pg_error)?;
    }
    let mut deltas = StateTime::new();
    for change in ordered {
        let (agent, state, tenants) = (change.agent.as_str(), change.state as i32, tenant_names(&change.tenants));
        let inserted = transaction
            .execute_cached(
                "INSERT INTO kpi.agent_state_changes (agent, at_ms, state, reason, tenants) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
                &[&agent, &change.at_ms, &state, &change.reason, &tenants],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            continue;
        }
        let previous = transaction
            .query_opt_cached(
                "SELECT agent, at_ms, state, reason, tenants FROM kpi.agent_state_changes
                 WHERE agent = $1 AND (at_ms, state, reason) < ($2, $3, $4)
                 ORDER BY at_ms DESC, state DESC, reason DESC LIMIT 1",
                &[&agent, &change.at_ms, &state, &change.reason],
            )
            .await
            .map_err(pg_error)?
            .map(|row| change_from_row(&row))
            .transpose()?;
        let next_at_ms: Option<i64> = transaction
            .query_opt_cached(
                "SELECT at_ms FROM kpi.agent_state_changes
                 WHERE agent = $1 AND (at_ms, state, reason) > ($2, $3, $4)
                 ORDER BY at_ms, state, reason LIMIT 1",
                &[&agent, &change.at_ms, &state, &change.reason],
            )
            .await
            .map_err(pg_error)?
            .map(|row| row.get(0));
        for (key, delta) in insertion_deltas(previous.as_ref(), change, next_at_ms) {
            *deltas.entry(key).or_default() += delta;
        }
        if next_at_ms.is_none() {
            transaction
                .execute_cached(
                    "INSERT INTO kpi.agent_last_changes (agent, at_ms, state, reason, tenants) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (agent) DO UPDATE SET at_ms = EXCLUDED.at_ms, state = EXCLUDED.state,
                         reason = EXCLUDED.reason, tenants = EXCLUDED.tenants",
                    &[&agent, &change.at_ms, &state, &change.reason, &tenants],
                )
                .await
                .map_err(pg_error)?;
        }
    }
    add_state_time(transaction, &deltas).await
}

fn tenant_names(tenants: &[TenantId]) -> Vec<String> {
    tenants.iter().map(tenant_name).collect()
}

async fn add_state_time(client: &impl CachedStatements, deltas: &StateTime) -> Result<(), Error> {
    let deltas: Vec<_> = deltas.iter().filter(|(_, ms)| **ms != 0).collect();
    if deltas.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = deltas.iter().map(|(key, _)| key.tenant.as_str()).collect();
    let agents: Vec<&str> = deltas.iter().map(|(key, _)| key.agent.as_str()).collect();
    let intervals: Vec<i64> = deltas.iter().map(|(key, _)| key.interval_start_ms).collect();
    let states: Vec<i32> = deltas.iter().map(|(key, _)| key.state).collect();
    let reasons: Vec<&str> = deltas.iter().map(|(key, _)| key.reason.as_str()).collect();
    let millis: Vec<i64> = deltas.iter().map(|(_, ms)| **ms).collect();
    client
        .execute_cached(
            "INSERT INTO kpi.agent_state_time AS stored (tenant, agent, interval_start_ms, state, reason, ms)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int4[], $5::text[], $6::int8[])
             ON CONFLICT (tenant, interval_start_ms, agent, state, reason) DO UPDATE SET ms = stored.ms + EXCLUDED.ms",
            &[&tenants, &agents, &intervals, &states, &reasons, &millis],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// Adds the counts of the events not counted yet.
pub(super) async fn count_agent_events(pool: &Pool, events: &[AgentEvent]) -> Result<(), Error> {
    let mut client = pool.get().await.map_err(pg_error)?;
    let transaction = client.transaction().await.map_err(pg_error)?;
    count_agent_events_in(&transaction, events).await?;
    transaction.commit().await.map_err(pg_error)
}

async fn count_agent_events_in(transaction: &Transaction<'_>, events: &[AgentEvent]) -> Result<(), Error> {
    let mut by_id: BTreeMap<&str, &AgentEvent> = BTreeMap::new();
    for event in events {
        by_id.entry(event.event_id.as_str()).or_insert(event);
    }
    let ids: Vec<&str> = by_id.keys().copied().collect();
    let tenants: Vec<&str> = by_id.values().map(|event| event.tenant.as_str()).collect();
    let new_ids: BTreeSet<String> = transaction
        .query_cached(
            "INSERT INTO kpi.agent_events_counted (event_id, tenant) SELECT * FROM UNNEST($1::text[], $2::text[])
             ON CONFLICT DO NOTHING RETURNING event_id",
            &[&ids, &tenants],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut sums: BTreeMap<(&str, &str, i64), AgentCounts> = BTreeMap::new();
    for event in by_id.values().filter(|event| new_ids.contains(&event.event_id)) {
        let key = (event.tenant.as_str(), event.agent.as_str(), event.interval_start_ms);
        sums.entry(key).or_default().add(&event.counts);
    }
    for ((tenant, agent, interval_start_ms), counts) in sums {
        transaction
            .execute_cached(
                "INSERT INTO kpi.agent_counts AS stored (tenant, agent, interval_start_ms, offered, answered, rejected,
                     timed_out, transfers, callbacks, handled, handle_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (tenant, interval_start_ms, agent) DO UPDATE SET
                     offered = stored.offered + EXCLUDED.offered, answered = stored.answered + EXCLUDED.answered,
                     rejected = stored.rejected + EXCLUDED.rejected, timed_out = stored.timed_out + EXCLUDED.timed_out,
                     transfers = stored.transfers + EXCLUDED.transfers, callbacks = stored.callbacks + EXCLUDED.callbacks,
                     handled = stored.handled + EXCLUDED.handled, handle_ms = stored.handle_ms + EXCLUDED.handle_ms",
                &[
                    &tenant,
                    &agent,
                    &interval_start_ms,
                    &counts.offered,
                    &counts.answered,
                    &counts.rejected,
                    &counts.timed_out,
                    &counts.transfers,
                    &counts.callbacks,
                    &counts.handled,
                    &counts.handle_ms,
                ],
            )
            .await
            .map_err(pg_error)?;
    }
    Ok(())
}

/// Replaces every agent figure by those of `changes` and `events` (the
/// whole retained log), in one transaction.
pub(super) async fn replace_agent_figures(
    pool: &Pool,
    changes: &[AgentStateUpdate],
    events: &[AgentEvent],
) -> Result<(), Error> {
    let mut client = pool.get().await.map_err(pg_error)?;
    let transaction = client.transaction().await.map_err(pg_error)?;
    transaction
        .batch_execute(
            "LOCK TABLE kpi.agent_state_changes, kpi.agent_last_changes, kpi.agent_state_time, kpi.agent_counts,
                 kpi.agent_events_counted IN EXCLUSIVE MODE;
             DELETE FROM kpi.agent_state_changes; DELETE FROM kpi.agent_last_changes;
             DELETE FROM kpi.agent_state_time; DELETE FROM kpi.agent_counts; DELETE FROM kpi.agent_events_counted;",
        )
        .await
        .map_err(pg_error)?;
    for chunk in changes.chunks(1_000) {
        insert_state_changes_in(&transaction, chunk).await?;
    }
    for chunk in events.chunks(1_000) {
        count_agent_events_in(&transaction, chunk).await?;
    }
    transaction.commit().await.map_err(pg_error)
}

/// The figures of a page of `tenant`'s agents.
pub(super) async fn read_agent_figures(
    client: &impl CachedStatements,
    tenant: &TenantId,
    start_ms: i64,
    end_ms: i64,
    page: &AgentPage,
) -> Result<Vec<StoredAgentFigures>, Error> {
    let only = page.only.as_ref().map(AgentId::as_str);
    let after = page.after.as_ref().map(AgentId::as_str);
    let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
    let (tenant_id, name) = (tenant.as_str(), tenant_name(tenant));
    let offline = AgentState::Offline as i32;
    let agent_rows = client
        .query_cached(
            "SELECT agent FROM (
                 SELECT agent FROM kpi.agent_state_time
                 WHERE tenant = $1 AND interval_start_ms >= $2 AND interval_start_ms < $3
                 UNION SELECT agent FROM kpi.agent_counts
                 WHERE tenant = $1 AND interval_start_ms >= $2 AND interval_start_ms < $3
                 UNION SELECT agent FROM kpi.agent_last_changes
                 WHERE $4 = ANY(tenants) AND state > $5 AND at_ms < $3
             ) AS agents
             WHERE ($6::text IS NULL OR agent = $6) AND ($7::text IS NULL OR agent > $7)
             ORDER BY agent LIMIT $8",
            &[&tenant_id, &start_ms, &end_ms, &name, &offline, &only, &after, &limit],
        )
        .await
        .map_err(pg_error)?;
    let agents: Vec<String> = agent_rows.iter().map(|row| row.get(0)).collect();
    let mut figures: BTreeMap<String, AgentFigures> =
        agents.iter().map(|agent| (agent.clone(), AgentFigures::default())).collect();
    let spans = client
        .query_cached(
            "SELECT agent, state, reason, sum(ms)::int8 FROM kpi.agent_state_time
             WHERE tenant = $1 AND interval_start_ms >= $2 AND interval_start_ms < $3 AND agent = ANY($4)
             GROUP BY agent, state, reason HAVING sum(ms) <> 0",
            &[&tenant_id, &start_ms, &end_ms, &agents],
        )
        .await
        .map_err(pg_error)?;
    for row in &spans {
        if let Some(agent) = figures.get_mut(row.get::<_, &str>(0)) {
            agent.time_in_state.insert((row.get(1), row.get(2)), row.get(3));
        }
    }
    let counts = client
        .query_cached(
            "SELECT agent, sum(offered)::int8, sum(answered)::int8, sum(rejected)::int8, sum(timed_out)::int8,
                 sum(transfers)::int8, sum(callbacks)::int8, sum(handled)::int8, sum(handle_ms)::int8
             FROM kpi.agent_counts
             WHERE tenant = $1 AND interval_start_ms >= $2 AND interval_start_ms < $3 AND agent = ANY($4)
             GROUP BY agent",
            &[&tenant_id, &start_ms, &end_ms, &agents],
        )
        .await
        .map_err(pg_error)?;
    for row in &counts {
        if let Some(agent) = figures.get_mut(row.get::<_, &str>(0)) {
            agent.counts = AgentCounts {
                offered: row.get(1),
                answered: row.get(2),
                rejected: row.get(3),
                timed_out: row.get(4),
                transfers: row.get(5),
                callbacks: row.get(6),
                handled: row.get(7),
                handle_ms: row.get(8),
            };
        }
    }
    let last_rows = client
        .query_cached(
            "SELECT agent, at_ms, state, reason, tenants FROM kpi.agent_last_changes
             WHERE agent = ANY($1) AND $2 = ANY(tenants) AND state > $3 AND at_ms < $4",
            &[&agents, &name, &offline, &end_ms],
        )
        .await
        .map_err(pg_error)?;
    let mut last: BTreeMap<String, AgentStateUpdate> = BTreeMap::new();
    for row in &last_rows {
        last.insert(row.get("agent"), change_from_row(row)?);
    }
    figures
        .into_iter()
        .map(|(agent, figures)| {
            let last = last.remove(&agent);
            Ok(StoredAgentFigures { agent: AgentId::parse(&agent, "agent")?, figures, last })
        })
        .collect()
}

/// Forgets `tenant` in every agent table.
pub(super) async fn erase_tenant_agents(pool: &Pool, tenant: &TenantId) -> Result<(), Error> {
    erase_tenant_rows(pool, &["kpi.agent_state_time", "kpi.agent_counts", "kpi.agent_events_counted"], tenant).await?;
    let client = pool.get().await.map_err(pg_error)?;
    let name = tenant_name(tenant);
    for table in ["kpi.agent_state_changes", "kpi.agent_last_changes"] {
        let sql = format!("UPDATE {table} SET tenants = array_remove(tenants, $1) WHERE $1 = ANY(tenants)");
        client.execute_cached(&sql, &[&name]).await.map_err(pg_error)?;
    }
    Ok(())
}
