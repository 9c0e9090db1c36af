//! Outbound messages in PostgreSQL (see [`crate::domain::messages`]): one
//! row per message, the first report kept, counted by channel over a range
//! of creation instants.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;
use switchboard_core::{Error, TenantId};
use switchboard_platform::postgres::{CachedStatements, Migration, pg_error};
use switchboard_proto::common::v1::Channel;

use crate::domain::messages::OutboundMessage;

/// `0011_outbound_messages`: the messages sent to customers, metered.
pub const MESSAGES_MIGRATION: Migration = Migration {
    version: "0011_outbound_messages",
    sql: "
        CREATE TABLE kpi.outbound_messages (
            tenant text NOT NULL,
            message text NOT NULL,
            channel integer,
            created_ms bigint NOT NULL,
            PRIMARY KEY (tenant, message)
        );
        CREATE INDEX outbound_messages_created ON kpi.outbound_messages (tenant, created_ms);
    ",
};

/// The table [`super::KpiStore::erase_tenant`] empties of a tenant.
pub const MESSAGES_TABLE: &str = "kpi.outbound_messages";

const INSERT_SQL: &str = "
    INSERT INTO kpi.outbound_messages (tenant, message, channel, created_ms)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int8[])
    ON CONFLICT (tenant, message) DO NOTHING";

/// Records `messages`, each once: a message already recorded keeps its row.
pub(super) async fn insert_messages(client: &impl CachedStatements, messages: &[OutboundMessage]) -> Result<(), Error> {
    // One row per message in the statement: ON CONFLICT may not touch a
    // row twice.
    let mut unique: BTreeMap<(&TenantId, &str), &OutboundMessage> = BTreeMap::new();
    for message in messages {
        unique.entry((&message.tenant, message.message.as_str())).or_insert(message);
    }
    let tenants: Vec<&str> = unique.keys().map(|(tenant, _)| tenant.as_str()).collect();
    let ids: Vec<&str> = unique.keys().map(|(_, id)| *id).collect();
    let channels: Vec<Option<i32>> =
        unique.values().map(|message| message.channel.map(|channel| channel as i32)).collect();
    let created: Vec<i64> = unique.values().map(|message| message.created_ms).collect();
    client.execute_cached(INSERT_SQL, &[&tenants, &ids, &channels, &created]).await.map_err(pg_error)?;
    Ok(())
}

/// `tenant`'s messages created in `[start_ms, end_ms)`, by channel.
pub(super) async fn count_messages(
    pool: &Pool,
    tenant: &TenantId,
    start_ms: i64,
    end_ms: i64,
) -> Result<BTreeMap<Option<Channel>, i64>, Error> {
    let client = pool.get().await.map_err(pg_error)?;
    let rows = client
        .query_cached(
            "SELECT channel, count(*) FROM kpi.outbound_messages
             WHERE tenant = $1 AND created_ms >= $2 AND created_ms < $3 GROUP BY channel",
            &[&tenant.as_str(), &start_ms, &end_ms],
        )
        .await
        .map_err(pg_error)?;
    let mut counts = BTreeMap::new();
    for row in rows {
        let channel: Option<i32> = row.get(0);
        let channel = channel.and_then(|number| Channel::try_from(number).ok());
        *counts.entry(channel).or_insert(0) += row.get::<_, i64>(1);
    }
    Ok(counts)
}

/// Replaces the messages created in `[from_ms, to_ms)` (all, with neither
/// bound) by `messages` (a recompute of the log), atomically; how many it
/// removed.
pub(super) async fn replace_messages(
    pool: &Pool,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    messages: &[OutboundMessage],
) -> Result<u64, Error> {
    let mut client = pool.get().await.map_err(pg_error)?;
    let transaction = client.transaction().await.map_err(pg_error)?;
    let removed = transaction
        .execute(
            "DELETE FROM kpi.outbound_messages
             WHERE ($1::int8 IS NULL OR created_ms >= $1) AND ($2::int8 IS NULL OR created_ms < $2)",
            &[&from_ms, &to_ms],
        )
        .await
        .map_err(pg_error)?;
    let in_range: Vec<OutboundMessage> = messages
        .iter()
        .filter(|message| {
            from_ms.is_none_or(|from_ms| message.created_ms >= from_ms)
                && to_ms.is_none_or(|to_ms| message.created_ms < to_ms)
        })
        .cloned()
        .collect();
    insert_messages(&transaction, &in_range).await?;
    transaction.commit().await.map_err(pg_error)?;
    Ok(removed)
}
