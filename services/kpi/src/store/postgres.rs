//! Contact facts in PostgreSQL, schema `kpi`: one row per contact, merged
//! by an upsert that implements [`crate::domain::merge`] in SQL, and the
//! buckets they add up to (`postgres_buckets`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use switchboard_core::{ContactId, CustomerId, Error, QueueId, TenantId};
use switchboard_platform::postgres::{CachedStatements, Migration, erase_tenant_rows, pg_error};
use switchboard_proto::common::v1::Channel;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::KpiStore;
use super::postgres_agents::{
    AGENTS_MIGRATION, count_agent_events, erase_tenant_agents, insert_state_changes, read_agent_figures,
};
use super::postgres_buckets::{
    BUCKETS_MIGRATION, DAY_COUNTS_MIGRATION, DISPOSITION_MIGRATION, FCR_SCOPE_MIGRATION, HANDLE_TIME_MIGRATION,
    SETTINGS_MIGRATION, SURVEYS_MIGRATION, add_to_buckets, fill_buckets_once, fold_contact_change, read_bucket_counts,
    read_bucket_periods,
};
use super::postgres_links::link_to_customers;
use super::postgres_live::{
    LIVE_MIGRATION, forget_tenant_in_agent_states, read_agents_by_state, read_waiting, write_agent_states,
};
use super::postgres_messages::{MESSAGES_MIGRATION, MESSAGES_TABLE, count_messages, insert_messages, replace_messages};
use crate::domain::agents::{AgentEvent, AgentPage, StoredAgentFigures};
use crate::domain::buckets::RangeSplit;
use crate::domain::fcr::FCR_WINDOW_MS;
use crate::domain::live::AgentStateUpdate;
use crate::domain::messages::OutboundMessage;
use crate::domain::settings::{FcrRule, FcrScope, KpiSettings};
use crate::domain::{AbandonStage, ContactFacts, FactsEvent, FactsFilter, FactsUpdate, KpiCounts, Survey, merge};

/// The service name migrations are recorded under.
pub const MIGRATION_SERVICE: &str = "kpi";

/// The `kpi` schema. `arrival_ms` is derived exactly like
/// [`ContactFacts::arrival_ms`], so time ranges are index scans.
///
/// `0002_entered_queue_and_routing_end` adds `queue_entered` (the queue is
/// the one the contact entered, see [`crate::domain::merge`]) and
/// `routing_ended_ms`. Before it no event moved a contact between queues,
/// so every queue already recorded is the entered one. Contacts routing
/// ended before it were recorded as abandons (the reason was not kept);
/// recomputing from the log (a fresh consumer group) counts them as timed
/// out.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: "0001_contact_facts",
        sql: "
        CREATE SCHEMA IF NOT EXISTS kpi;
        CREATE TABLE kpi.contact_facts (
            tenant text NOT NULL,
            contact text NOT NULL,
            queue text,
            channel integer,
            customer text,
            inbound boolean,
            created_ms bigint,
            queued_ms bigint,
            answered_ms bigint,
            abandoned_ms bigint,
            abandon_stage text CHECK (abandon_stage IN ('queue', 'offered')),
            completed_ms bigint,
            resolved boolean,
            service_level_threshold_ms bigint,
            short_abandon_threshold_ms bigint,
            arrival_ms bigint GENERATED ALWAYS AS (COALESCE(created_ms, queued_ms)) STORED,
            PRIMARY KEY (tenant, contact)
        );
        CREATE INDEX contact_facts_tenant_arrival ON kpi.contact_facts (tenant, arrival_ms);
    ",
    },
    Migration {
        version: "0002_entered_queue_and_routing_end",
        sql: "
        ALTER TABLE kpi.contact_facts
            ADD COLUMN queue_entered boolean NOT NULL DEFAULT false,
            ADD COLUMN routing_ended_ms bigint;
        UPDATE kpi.contact_facts SET queue_entered = true WHERE queue IS NOT NULL;
        ALTER TABLE kpi.contact_facts
            ADD CONSTRAINT contact_facts_entered_queue_known CHECK (NOT queue_entered OR queue IS NOT NULL);
    ",
    },
    BUCKETS_MIGRATION,
    LIVE_MIGRATION,
    HANDLE_TIME_MIGRATION,
    DAY_COUNTS_MIGRATION,
    AGENTS_MIGRATION,
    SURVEYS_MIGRATION,
    SETTINGS_MIGRATION,
    FCR_SCOPE_MIGRATION,
    MESSAGES_MIGRATION,
    DISPOSITION_MIGRATION,
];

/// The columns of a contact's facts, as every statement reading or
/// writing whole rows names them (`facts_from_row` reads them by name).
macro_rules! facts_columns {
    () => {
        "tenant, contact, queue, channel, customer, inbound, created_ms, queued_ms, answered_ms,
        abandoned_ms, abandon_stage, completed_ms, resolved, service_level_threshold_ms,
        short_abandon_threshold_ms, queue_entered, routing_ended_ms, wrap_up_ms, next_contact_ms,
        survey_ms, survey_score, fcr_window_ms, callback_offered_ms, next_same_queue_ms, fcr_scope,
        disposition, next_same_disposition_ms"
    };
}

/// Attributes are first-write-wins (`COALESCE(known, new)`), instants keep
/// the earliest (`LEAST` ignores NULLs), and the queue is replaced only by
/// one that ranks lower on `(not entered, name)`, names compared bytewise
/// like Rust strings (`COLLATE "C"`): the rule of `domain::merge`, in one
/// atomic statement for a whole batch. Each array holds one element per
/// contact (a contact appears once: an upsert may not touch a row twice);
/// a contact's queue is NULL and its `queue_entered` false when its update
/// names no queue.
pub(super) const UPSERT_ALL_SQL: &str = concat!(
    "INSERT INTO kpi.contact_facts AS facts (",
    facts_columns!(),
    ")",
    r#"
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::bool[],
        $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::text[], $12::int8[], $13::bool[],
        $14::int8[], $15::int8[], $16::bool[], $17::int8[], $18::int8[], $19::int8[], $20::int8[],
        $21::int4[], $22::int8[], $23::int8[], $24::int8[], $25::text[], $26::text[], $27::int8[])
    ON CONFLICT (tenant, contact) DO UPDATE SET
        queue = CASE WHEN (EXCLUDED.queue IS NOT NULL AND (facts.queue IS NULL
            OR (EXCLUDED.queue_entered AND NOT facts.queue_entered)
            OR (EXCLUDED.queue_entered = facts.queue_entered
                AND EXCLUDED.queue COLLATE "C" < facts.queue COLLATE "C")))
            THEN EXCLUDED.queue ELSE facts.queue END,
        queue_entered = CASE WHEN (EXCLUDED.queue IS NOT NULL AND (facts.queue IS NULL
            OR (EXCLUDED.queue_entered AND NOT facts.queue_entered)
            OR (EXCLUDED.queue_entered = facts.queue_entered
                AND EXCLUDED.queue COLLATE "C" < facts.queue COLLATE "C")))
            THEN EXCLUDED.queue_entered ELSE facts.queue_entered END,
        routing_ended_ms = LEAST(facts.routing_ended_ms, EXCLUDED.routing_ended_ms),
        channel = COALESCE(facts.channel, EXCLUDED.channel),
        customer = COALESCE(facts.customer, EXCLUDED.customer),
        inbound = COALESCE(facts.inbound, EXCLUDED.inbound),
        created_ms = LEAST(facts.created_ms, EXCLUDED.created_ms),
        queued_ms = LEAST(facts.queued_ms, EXCLUDED.queued_ms),
        answered_ms = LEAST(facts.answered_ms, EXCLUDED.answered_ms),
        abandoned_ms = LEAST(facts.abandoned_ms, EXCLUDED.abandoned_ms),
        abandon_stage = COALESCE(facts.abandon_stage, EXCLUDED.abandon_stage),
        completed_ms = LEAST(facts.completed_ms, EXCLUDED.completed_ms),
        resolved = COALESCE(facts.resolved, EXCLUDED.resolved),
        service_level_threshold_ms = COALESCE(facts.service_level_threshold_ms, EXCLUDED.service_level_threshold_ms),
        short_abandon_threshold_ms = COALESCE(facts.short_abandon_threshold_ms, EXCLUDED.short_abandon_threshold_ms),
        wrap_up_ms = COALESCE(facts.wrap_up_ms, EXCLUDED.wrap_up_ms),
        next_contact_ms = LEAST(facts.next_contact_ms, EXCLUDED.next_contact_ms),
        survey_ms = CASE WHEN EXCLUDED.survey_ms IS NOT NULL AND (facts.survey_ms IS NULL
            OR (EXCLUDED.survey_ms, EXCLUDED.survey_score) < (facts.survey_ms, facts.survey_score))
            THEN EXCLUDED.survey_ms ELSE facts.survey_ms END,
        survey_score = CASE WHEN EXCLUDED.survey_ms IS NOT NULL AND (facts.survey_ms IS NULL
            OR (EXCLUDED.survey_ms, EXCLUDED.survey_score) < (facts.survey_ms, facts.survey_score))
            THEN EXCLUDED.survey_score ELSE facts.survey_score END,
        fcr_window_ms = COALESCE(facts.fcr_window_ms, EXCLUDED.fcr_window_ms),
        callback_offered_ms = LEAST(facts.callback_offered_ms, EXCLUDED.callback_offered_ms),
        next_same_queue_ms = LEAST(facts.next_same_queue_ms, EXCLUDED.next_same_queue_ms),
        fcr_scope = COALESCE(facts.fcr_scope, EXCLUDED.fcr_scope),
        disposition = COALESCE(facts.disposition, EXCLUDED.disposition),
        next_same_disposition_ms = LEAST(facts.next_same_disposition_ms, EXCLUDED.next_same_disposition_ms)
"#
);

/// The events' updates folded per contact, in key order: `merge` is
/// associative, so merging a contact's updates first and the result into
/// its row equals merging each into the row in turn.
fn merged_per_contact(events: Vec<FactsEvent>) -> Vec<ContactFacts> {
    let mut merged: BTreeMap<(TenantId, ContactId), ContactFacts> = BTreeMap::new();
    for FactsEvent { tenant, contact, update } in events {
        let facts =
            merged.entry((tenant.clone(), contact.clone())).or_insert_with(|| ContactFacts::empty(tenant, contact));
        merge(facts, &update);
    }
    merged.into_values().collect()
}

/// Merges every contact's folded updates into its row (see
/// [`UPSERT_ALL_SQL`]), in one statement.
pub(super) async fn upsert_all(client: &impl CachedStatements, contacts: &[ContactFacts]) -> Result<(), Error> {
    let tenants: Vec<&str> = contacts.iter().map(|facts| facts.tenant.as_str()).collect();
    let ids: Vec<&str> = contacts.iter().map(|facts| facts.contact.as_str()).collect();
    let queues: Vec<Option<&str>> = contacts.iter().map(|facts| facts.queue.as_ref().map(QueueId::as_str)).collect();
    let channels: Vec<Option<i32>> = contacts.iter().map(|facts| facts.channel.map(|channel| channel as i32)).collect();
    let customers: Vec<Option<&str>> =
        contacts.iter().map(|facts| facts.customer.as_ref().map(CustomerId::as_str)).collect();
    let instants = |read: fn(&ContactFacts) -> Option<i64>| contacts.iter().map(read).collect::<Vec<_>>();
    let flags = |read: fn(&ContactFacts) -> Option<bool>| contacts.iter().map(read).collect::<Vec<_>>();
    let abandon_stages: Vec<Option<&str>> =
        contacts.iter().map(|facts| facts.abandon_stage.map(AbandonStage::as_str)).collect();
    let queue_entered: Vec<bool> = contacts.iter().map(|facts| facts.queue.is_some() && facts.queue_entered).collect();
    client
        .execute_cached(
            UPSERT_ALL_SQL,
            &[
                &tenants,
                &ids,
                &queues,
                &channels,
                &customers,
                &flags(|facts| facts.inbound),
                &instants(|facts| facts.created_ms),
                &instants(|facts| facts.queued_ms),
                &instants(|facts| facts.answered_ms),
                &instants(|facts| facts.abandoned_ms),
                &abandon_stages,
                &instants(|facts| facts.completed_ms),
                &flags(|facts| facts.resolved),
                &instants(|facts| facts.service_level_threshold_ms),
                &instants(|facts| facts.short_abandon_threshold_ms),
                &queue_entered,
                &instants(|facts| facts.routing_ended_ms),
                &instants(|facts| facts.wrap_up_ms),
                &instants(|facts| facts.next_contact_ms),
                &instants(|facts| facts.survey.map(|survey| survey.at_ms)),
                &contacts.iter().map(|facts| facts.survey.map(|survey| survey.score)).collect::<Vec<_>>(),
                &instants(|facts| facts.fcr_window_ms),
                &instants(|facts| facts.callback_offered_ms),
                &instants(|facts| facts.next_same_queue_contact_ms),
                &contacts.iter().map(|facts| facts.fcr_scope.map(FcrScope::as_str)).collect::<Vec<_>>(),
                &contacts.iter().map(|facts| facts.disposition.as_deref()).collect::<Vec<_>>(),
                &instants(|facts| facts.next_same_disposition_contact_ms),
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// Every stored fact, for filling the buckets ([`super::postgres_buckets`]).
pub(super) const SELECT_ALL_SQL: &str = concat!("SELECT ", facts_columns!(), " FROM kpi.contact_facts");

const SELECT_SQL: &str = concat!("SELECT ", facts_columns!(), " FROM kpi.contact_facts WHERE tenant = $1");

/// The facts of a batch's contacts as they are, locked until the batch
/// commits (in key order, as every batch locks them).
pub(super) const LOCK_BATCH_SQL: &str = concat!(
    "SELECT ",
    facts_columns!(),
    " FROM kpi.contact_facts
    WHERE (tenant, contact) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))
    ORDER BY tenant, contact
    FOR UPDATE"
);

/// A scope as stored in `kpi.tenant_settings`.
fn stored_scope(stored: &str) -> Result<FcrScope, Error> {
    FcrScope::parse(stored).ok_or_else(|| corrupt_row("fcr_scope", format!("`{stored}`")))
}

/// A [`KpiStore`] on a PostgreSQL pool whose database has [`MIGRATIONS`]
/// applied.
#[derive(Clone)]
pub struct PostgresKpiStore {
    pool: Pool,
}

impl PostgresKpiStore {
    /// The store on `pool` (migrated), its buckets filled from the facts
    /// recorded before they existed.
    pub async fn connect(pool: Pool) -> Result<PostgresKpiStore, Error> {
        fill_buckets_once(&pool).await?;
        Ok(PostgresKpiStore { pool })
    }

    /// Replaces the facts of the contacts that arrived in `[from_ms,
    /// to_ms)` (all, with neither bound) by `facts` (a recompute of the
    /// log), and rebuilds every bucket from the facts, atomically. How many
    /// facts it replaced.
    pub async fn replace_facts(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        facts: &[ContactFacts],
    ) -> Result<u64, Error> {
        super::postgres_buckets::replace_facts(&self.pool, from_ms, to_ms, facts).await
    }

    /// Replaces the outbound messages created in `[from_ms, to_ms)` (all,
    /// with neither bound) by `messages` (a recompute of the log),
    /// atomically; how many it removed.
    pub async fn replace_outbound_messages(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        messages: &[OutboundMessage],
    ) -> Result<u64, Error> {
        replace_messages(&self.pool, from_ms, to_ms, messages).await
    }

    /// Replaces every agent figure (timelines, time in state, counts) by
    /// those of `changes` and `events`, the whole retained log, atomically.
    pub async fn replace_agent_figures(
        &self,
        changes: &[AgentStateUpdate],
        events: &[AgentEvent],
    ) -> Result<(), Error> {
        super::postgres_agents::replace_agent_figures(&self.pool, changes, events).await
    }
}

#[async_trait]
impl KpiStore for PostgresKpiStore {
    async fn apply(&self, tenant: &TenantId, contact: &ContactId, update: FactsUpdate) -> Result<(), Error> {
        let event = FactsEvent { tenant: tenant.clone(), contact: contact.clone(), update };
        self.apply_all(vec![event]).await
    }

    /// One transaction for the whole batch: its events folded per contact
    /// first; the contacts' rows made if new and locked, in key order (as
    /// every batch locks them, so two batches never deadlock, and a
    /// contact's two topics read by two replicas apply one after the
    /// other); their merged facts written and their buckets moved by the
    /// difference.
    async fn apply_all(&self, events: Vec<FactsEvent>) -> Result<(), Error> {
        let updates = merged_per_contact(events);
        let mut client = self.pool.get().await.map_err(pg_error)?;
        let transaction = client.transaction().await.map_err(pg_error)?;
        let tenants: Vec<&str> = updates.iter().map(|facts| facts.tenant.as_str()).collect();
        let contacts: Vec<&str> = updates.iter().map(|facts| facts.contact.as_str()).collect();
        transaction
            .execute_cached(
                "INSERT INTO kpi.contact_facts (tenant, contact) SELECT * FROM UNNEST($1::text[], $2::text[])
                 ON CONFLICT (tenant, contact) DO NOTHING",
                &[&tenants, &contacts],
            )
            .await
            .map_err(pg_error)?;
        let rows = transaction.query_cached(LOCK_BATCH_SQL, &[&tenants, &contacts]).await.map_err(pg_error)?;
        let mut before: BTreeMap<(TenantId, ContactId), ContactFacts> = BTreeMap::new();
        for row in &rows {
            let facts = facts_from_row(row)?;
            before.insert((facts.tenant.clone(), facts.contact.clone()), facts);
        }
        let mut after = Vec::with_capacity(updates.len());
        let mut bucket_changes = BTreeMap::new();
        for update in &updates {
            let key = (update.tenant.clone(), update.contact.clone());
            let known = before.get(&key);
            let mut merged = known.cloned().unwrap_or_else(|| ContactFacts::empty(key.0.clone(), key.1.clone()));
            merge(&mut merged, &update.as_update());
            fold_contact_change(&mut bucket_changes, known, &merged);
            after.push(merged);
        }
        upsert_all(&transaction, &after).await?;
        // Contacts whose customer, creation or entered queue just became
        // known join their customers' others (first-contact resolution).
        let newly_linked: Vec<&ContactFacts> = after
            .iter()
            .filter(|merged| merged.needs_linking_since(before.get(&(merged.tenant.clone(), merged.contact.clone()))))
            .collect();
        link_to_customers(&transaction, &after, &newly_linked, &mut bucket_changes).await?;
        add_to_buckets(&transaction, &bucket_changes).await?;
        transaction.commit().await.map_err(pg_error)
    }

    async fn bucket_periods(
        &self,
        tenant: &TenantId,
        filter: &FactsFilter,
        split: &RangeSplit,
    ) -> Result<Vec<(Option<i64>, i64, KpiCounts)>, Error> {
        read_bucket_periods(&self.pool.get().await.map_err(pg_error)?, tenant, filter, split).await
    }

    async fn apply_agent_states(&self, updates: &[AgentStateUpdate]) -> Result<(), Error> {
        let mut client = self.pool.get().await.map_err(pg_error)?;
        let transaction = client.transaction().await.map_err(pg_error)?;
        write_agent_states(&transaction, updates).await?;
        transaction.commit().await.map_err(pg_error)
    }

    async fn get(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<ContactFacts>, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let sql = format!("{SELECT_SQL} AND contact = $2");
        let row = client.query_opt_cached(&sql, &[&tenant.as_str(), &contact.as_str()]).await.map_err(pg_error)?;
        row.map(|row| facts_from_row(&row)).transpose()
    }

    async fn apply_state_changes(&self, changes: &[AgentStateUpdate]) -> Result<(), Error> {
        insert_state_changes(&self.pool, changes).await
    }

    async fn apply_agent_events(&self, events: &[AgentEvent]) -> Result<(), Error> {
        count_agent_events(&self.pool, events).await
    }

    async fn agent_figures(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
        page: &AgentPage,
    ) -> Result<Vec<StoredAgentFigures>, Error> {
        read_agent_figures(&self.pool.get().await.map_err(pg_error)?, tenant, start_ms, end_ms, page).await
    }

    async fn agents_by_state(&self, tenant: &TenantId) -> Result<BTreeMap<i32, i64>, Error> {
        read_agents_by_state(&self.pool.get().await.map_err(pg_error)?, tenant).await
    }

    async fn waiting_now(&self, tenant: &TenantId) -> Result<(i64, Option<i64>), Error> {
        read_waiting(&self.pool.get().await.map_err(pg_error)?, tenant).await
    }

    async fn bucket_counts(
        &self,
        tenant: &TenantId,
        filter: &FactsFilter,
        split: &RangeSplit,
    ) -> Result<BTreeMap<Option<i64>, KpiCounts>, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        read_bucket_counts(&client, tenant, filter, split).await
    }

    async fn settings(&self, tenant: &TenantId) -> Result<KpiSettings, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let row = client
            .query_opt_cached(
                "SELECT fcr_window_ms, longest_fcr_window_ms, update_time_ms, fcr_scope
                 FROM kpi.tenant_settings WHERE tenant = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(pg_error)?;
        let Some(row) = row else {
            return Ok(KpiSettings::default());
        };
        Ok(KpiSettings {
            fcr_window_ms: row.get(0),
            longest_fcr_window_ms: row.get(1),
            update_time_ms: row.get(2),
            fcr_scope: stored_scope(row.get(3))?,
        })
    }

    async fn set_settings(&self, tenant: &TenantId, settings: &KpiSettings) -> Result<(), Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        client
            .execute_cached(
                "INSERT INTO kpi.tenant_settings (tenant, fcr_window_ms, longest_fcr_window_ms, update_time_ms, fcr_scope)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant) DO UPDATE SET fcr_window_ms = EXCLUDED.fcr_window_ms,
                     longest_fcr_window_ms = GREATEST(kpi.tenant_settings.longest_fcr_window_ms,
                         EXCLUDED.longest_fcr_window_ms),
                     update_time_ms = EXCLUDED.update_time_ms,
                     fcr_scope = EXCLUDED.fcr_scope",
                &[
                    &tenant.as_str(),
                    &settings.fcr_window_ms,
                    &settings.longest_fcr_window_ms,
                    &settings.update_time_ms,
                    &settings.fcr_scope.as_str(),
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn fcr_rules(&self) -> Result<BTreeMap<TenantId, FcrRule>, Error> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let rows = client
            .query_cached("SELECT tenant, fcr_window_ms, fcr_scope FROM kpi.tenant_settings", &[])
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                let tenant = TenantId::parse(row.get::<_, &str>(0), "tenant")?;
                let window_ms: Option<i64> = row.get(1);
                let rule = FcrRule { window_ms: window_ms.unwrap_or(FCR_WINDOW_MS), scope: stored_scope(row.get(2))? };
                Ok((tenant, rule))
            })
            .collect()
    }

    async fn record_outbound_messages(&self, messages: &[OutboundMessage]) -> Result<(), Error> {
        insert_messages(&self.pool.get().await.map_err(pg_error)?, messages).await
    }

    async fn outbound_messages(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<BTreeMap<Option<Channel>, i64>, Error> {
        count_messages(&self.pool, tenant, start_ms, end_ms).await
    }

    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        let tables =
            ["kpi.interval_counts", "kpi.day_counts", "kpi.contact_facts", "kpi.tenant_settings", MESSAGES_TABLE];
        erase_tenant_rows(&self.pool, &tables, tenant).await?;
        erase_tenant_agents(&self.pool, tenant).await?;
        forget_tenant_in_agent_states(&self.pool.get().await.map_err(pg_error)?, tenant).await
    }

    async fn load_at_most(
        &self,
        tenant: &TenantId,
        filter: &FactsFilter,
        limit: usize,
    ) -> Result<Vec<ContactFacts>, Error> {
        // Only the predicates the filter uses are in the statement, so the
        // planner sees `tenant = $1 AND arrival_ms >= ...` and uses the
        // (tenant, arrival_ms) index. Summaries read the buckets and load
        // facts only for the partial intervals at a range's ends.
        let tenant_name = tenant.as_str();
        let queue = filter.queue.as_ref().map(QueueId::as_str);
        let channel = filter.channel.map(|channel| channel as i32);
        let mut sql = String::from(SELECT_SQL);
        let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&tenant_name];
        if let Some(queue) = &queue {
            parameters.push(queue);
            sql.push_str(&format!(" AND queue = ${}", parameters.len()));
        }
        if let Some(channel) = &channel {
            parameters.push(channel);
            sql.push_str(&format!(" AND channel = ${}", parameters.len()));
        }
        if let Some(start_ms) = &filter.arrival_start_ms {
            parameters.push(start_ms);
            sql.push_str(&format!(" AND arrival_ms >= ${}", parameters.len()));
        }
        if let Some(end_ms) = &filter.arrival_end_ms {
            parameters.push(end_ms);
            sql.push_str(&format!(" AND arrival_ms < ${}", parameters.len()));
        }
        let rows_wanted = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        parameters.push(&rows_wanted);
        sql.push_str(&format!(" LIMIT ${}", parameters.len()));
        let client = self.pool.get().await.map_err(pg_error)?;
        let statement = client.prepare_cached(&sql).await.map_err(pg_error)?;
        let rows = client.query(&statement, &parameters).await.map_err(pg_error)?;
        let mut facts = rows.iter().map(facts_from_row).collect::<Result<Vec<_>, Error>>()?;
        // Sorted here rather than by SQL so the order is Rust's, whatever
        // the database's collation.
        facts.sort_by(|left, right| left.contact.cmp(&right.contact));
        Ok(facts)
    }
}

fn corrupt_row(column: &str, problem: impl std::fmt::Display) -> Error {
    Error::internal(format!("kpi.contact_facts.{column}: {problem}"))
}

fn column<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, name: &str) -> Result<T, Error> {
    row.try_get(name).map_err(|error| corrupt_row(name, error))
}

pub(super) fn facts_from_row(row: &Row) -> Result<ContactFacts, Error> {
    let tenant = TenantId::parse(&column::<String>(row, "tenant")?, "tenant").map_err(|e| corrupt_row("tenant", e))?;
    let contact =
        ContactId::parse(&column::<String>(row, "contact")?, "contact").map_err(|e| corrupt_row("contact", e))?;
    let queue = column::<Option<String>>(row, "queue")?
        .map(|queue| QueueId::parse(&queue, "queue"))
        .transpose()
        .map_err(|e| corrupt_row("queue", e))?;
    let customer = column::<Option<String>>(row, "customer")?
        .map(|customer| CustomerId::parse(&customer, "customer"))
        .transpose()
        .map_err(|e| corrupt_row("customer", e))?;
    let channel = column::<Option<i32>>(row, "channel")?
        .map(Channel::try_from)
        .transpose()
        .map_err(|e| corrupt_row("channel", e))?;
    let abandon_stage = match column::<Option<String>>(row, "abandon_stage")? {
        None => None,
        Some(stage) => {
            Some(AbandonStage::parse(&stage).ok_or_else(|| corrupt_row("abandon_stage", format!("`{stage}`")))?)
        }
    };
    Ok(ContactFacts {
        tenant,
        contact,
        queue,
        queue_entered: column(row, "queue_entered")?,
        channel,
        customer,
        inbound: column(row, "inbound")?,
        created_ms: column(row, "created_ms")?,
        queued_ms: column(row, "queued_ms")?,
        answered_ms: column(row, "answered_ms")?,
        abandoned_ms: column(row, "abandoned_ms")?,
        abandon_stage,
        routing_ended_ms: column(row, "routing_ended_ms")?,
        completed_ms: column(row, "completed_ms")?,
        resolved: column(row, "resolved")?,
        service_level_threshold_ms: column(row, "service_level_threshold_ms")?,
        short_abandon_threshold_ms: column(row, "short_abandon_threshold_ms")?,
        wrap_up_ms: column(row, "wrap_up_ms")?,
        next_contact_ms: column(row, "next_contact_ms")?,
        survey: match (column(row, "survey_ms")?, column(row, "survey_score")?) {
            (Some(at_ms), Some(score)) => Some(Survey { at_ms, score }),
            _ => None,
        },
        next_same_queue_contact_ms: column(row, "next_same_queue_ms")?,
        disposition: column(row, "disposition")?,
        next_same_disposition_contact_ms: column(row, "next_same_disposition_ms")?,
        fcr_window_ms: column(row, "fcr_window_ms")?,
        fcr_scope: match column::<Option<String>>(row, "fcr_scope")? {
            None => None,
            Some(scope) => Some(FcrScope::parse(&scope).ok_or_else(|| corrupt_row("fcr_scope", format!("`{scope}`")))?),
        },
        callback_offered_ms: column(row, "callback_offered_ms")?,
    })
}
