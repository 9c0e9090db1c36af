//! The buckets of `domain::buckets` in PostgreSQL: `kpi.interval_counts`,
//! one row per tenant, interval, queue and channel, changed in the same
//! transaction as the facts whose contributions they hold.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;
use switchboard_core::{Error, QueueId, TenantId};
use switchboard_platform::postgres::{CachedStatements, Migration, pg_error};
use tokio_postgres::types::ToSql;

use super::postgres::{SELECT_ALL_SQL, facts_from_row};
use crate::domain::buckets::{BucketKey, RangeSplit, bucket_changes, fold_changes};
use crate::domain::summary::COUNTERS;
use crate::domain::{FactsFilter, INTERVAL_MS, KpiCounts};

/// A bucket's interval when the contact's arrival is not known yet (a key
/// column cannot be NULL).
const UNKNOWN_INTERVAL: i64 = i64::MIN;
/// A day, the period of `kpi.day_counts`.
const DAY_MS: i64 = 24 * 60 * 60 * 1_000;

/// A bucket's channel when not known yet.
const UNKNOWN_CHANNEL: i32 = -1;

/// The counter columns, in [`KpiCounts::fields`] order.
const COUNTER_COLUMNS: [&str; COUNTERS] = [
    "contacts",
    "inbound",
    "offered",
    "answered",
    "abandoned",
    "short_abandoned",
    "timed_out",
    "lost",
    "completed",
    "resolved",
    "waiting",
    "answered_within_threshold",
    "total_answer_wait_ms",
    "inbound_abandoned",
    "inbound_timed_out",
    "inbound_short_abandoned",
    "offered_short_abandoned",
    "handled",
    "total_handle_ms",
    "resolved_first_contact",
    "surveyed",
    "satisfied",
    "total_survey_score",
    "callbacks",
    "outbound",
];

/// `0003_interval_counts`: the buckets, and whether they were filled from
/// the facts recorded before them ([`fill_buckets_once`]).
pub const BUCKETS_MIGRATION: Migration = Migration {
    version: "0003_interval_counts",
    sql: "
        CREATE TABLE kpi.interval_counts (
            tenant text NOT NULL,
            interval_start_ms bigint NOT NULL,
            queue text NOT NULL,
            channel integer NOT NULL,
            contacts bigint NOT NULL, inbound bigint NOT NULL, offered bigint NOT NULL,
            answered bigint NOT NULL, abandoned bigint NOT NULL, short_abandoned bigint NOT NULL,
            timed_out bigint NOT NULL, lost bigint NOT NULL, completed bigint NOT NULL,
            resolved bigint NOT NULL, waiting bigint NOT NULL, answered_within_threshold bigint NOT NULL,
            total_answer_wait_ms bigint NOT NULL, inbound_abandoned bigint NOT NULL,
            inbound_timed_out bigint NOT NULL, inbound_short_abandoned bigint NOT NULL,
            offered_short_abandoned bigint NOT NULL,
            PRIMARY KEY (tenant, interval_start_ms, queue, channel)
        );
        CREATE TABLE kpi.interval_counts_filled (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row));
    ",
};

/// `0005_handle_time_and_fcr`: the wrap-up and the customer's next
/// contact in the facts (with the index that finds a customer's contacts
/// by arrival), handle time and first-contact resolution in the buckets.
/// The buckets are emptied, to be filled again from the facts (with the
/// new counters) by the first replica that starts; facts recorded before
/// have no next contact until a recompute from the log.
pub const HANDLE_TIME_MIGRATION: Migration = Migration {
    version: "0005_handle_time_and_fcr",
    sql: "
        ALTER TABLE kpi.contact_facts ADD COLUMN wrap_up_ms bigint, ADD COLUMN next_contact_ms bigint;
        CREATE INDEX contact_facts_customer ON kpi.contact_facts (tenant, customer, created_ms)
            WHERE customer IS NOT NULL;
        ALTER TABLE kpi.interval_counts
            ADD COLUMN handled bigint NOT NULL DEFAULT 0,
            ADD COLUMN total_handle_ms bigint NOT NULL DEFAULT 0,
            ADD COLUMN resolved_first_contact bigint NOT NULL DEFAULT 0;
        DELETE FROM kpi.interval_counts;
        DELETE FROM kpi.interval_counts_filled;
    ",
};

/// `0008_surveys`: survey answers in the facts, CSAT's counters in the
/// buckets (filled again from the facts).
pub const SURVEYS_MIGRATION: Migration = Migration {
    version: "0008_surveys",
    sql: "
        ALTER TABLE kpi.contact_facts ADD COLUMN survey_ms bigint, ADD COLUMN survey_score integer;
        ALTER TABLE kpi.interval_counts
            ADD COLUMN surveyed bigint NOT NULL DEFAULT 0,
            ADD COLUMN satisfied bigint NOT NULL DEFAULT 0,
            ADD COLUMN total_survey_score bigint NOT NULL DEFAULT 0;
        ALTER TABLE kpi.day_counts
            ADD COLUMN surveyed bigint NOT NULL DEFAULT 0,
            ADD COLUMN satisfied bigint NOT NULL DEFAULT 0,
            ADD COLUMN total_survey_score bigint NOT NULL DEFAULT 0;
        DELETE FROM kpi.interval_counts;
        DELETE FROM kpi.day_counts;
        DELETE FROM kpi.interval_counts_filled;
    ",
};

/// `0009_kpi_settings`: tenants' KPI settings, the first-contact window
/// each contact took, callbacks and outbound contacts (buckets filled again).
pub const SETTINGS_MIGRATION: Migration = Migration {
    version: "0009_kpi_settings",
    sql: "
        ALTER TABLE kpi.contact_facts ADD COLUMN fcr_window_ms bigint, ADD COLUMN callback_offered_ms bigint;
        ALTER TABLE kpi.interval_counts
            ADD COLUMN callbacks bigint NOT NULL DEFAULT 0, ADD COLUMN outbound bigint NOT NULL DEFAULT 0;
        ALTER TABLE kpi.day_counts
            ADD COLUMN callbacks bigint NOT NULL DEFAULT 0, ADD COLUMN outbound bigint NOT NULL DEFAULT 0;
        DELETE FROM kpi.interval_counts;
        DELETE FROM kpi.day_counts;
        DELETE FROM kpi.interval_counts_filled;
        CREATE TABLE kpi.tenant_settings (
            tenant text PRIMARY KEY,
            fcr_window_ms bigint,
            longest_fcr_window_ms bigint NOT NULL,
            update_time_ms bigint
        );
    ",
};

/// `0010_fcr_scope`: a tenant's first-contact scope and each contact's,
/// and each contact's next contact in the queue it entered, linked here
/// for the contacts already recorded. Every recorded contact keeps the
/// default scope (any contact), so no bucket changes.
pub const FCR_SCOPE_MIGRATION: Migration = Migration {
    version: "0010_fcr_scope",
    sql: "
        ALTER TABLE kpi.contact_facts ADD COLUMN next_same_queue_ms bigint,
            ADD COLUMN fcr_scope text CHECK (fcr_scope IN ('any_contact', 'same_queue'));
        ALTER TABLE kpi.tenant_settings ADD COLUMN fcr_scope text NOT NULL DEFAULT 'any_contact'
            CHECK (fcr_scope IN ('any_contact', 'same_queue'));
        UPDATE kpi.contact_facts linked SET next_same_queue_ms = (
            SELECT min(later.created_ms) FROM kpi.contact_facts later
            WHERE later.tenant = linked.tenant AND later.customer = linked.customer
              AND later.created_ms > linked.created_ms AND later.queue_entered AND later.queue = linked.queue)
        WHERE linked.customer IS NOT NULL AND linked.created_ms IS NOT NULL AND linked.queue_entered;
    ",
};

/// `0012_fcr_disposition`: each contact's disposition and its next contact
/// completed with the same one (contacts recorded before it have neither
/// until a recompute from the log), and the scope `same_disposition`.
pub const DISPOSITION_MIGRATION: Migration = Migration {
    version: "0012_fcr_disposition",
    sql: "
        ALTER TABLE kpi.contact_facts ADD COLUMN disposition text, ADD COLUMN next_same_disposition_ms bigint,
            DROP CONSTRAINT contact_facts_fcr_scope_check,
            ADD CONSTRAINT contact_facts_fcr_scope_check
                CHECK (fcr_scope IN ('any_contact', 'same_queue', 'same_disposition'));
        ALTER TABLE kpi.tenant_settings DROP CONSTRAINT tenant_settings_fcr_scope_check,
            ADD CONSTRAINT tenant_settings_fcr_scope_check
                CHECK (fcr_scope IN ('any_contact', 'same_queue', 'same_disposition'));
    ",
};

/// `0006_day_counts`: the buckets summed by day, so a summary over a month
/// reads about thirty rows per queue and channel, not three thousand; the
/// buckets are filled again from the facts, both tables together.
pub const DAY_COUNTS_MIGRATION: Migration = Migration {
    version: "0006_day_counts",
    sql: "
        CREATE TABLE kpi.day_counts (LIKE kpi.interval_counts INCLUDING ALL);
        DELETE FROM kpi.interval_counts;
        DELETE FROM kpi.interval_counts_filled;
    ",
};

fn key_columns(key: &BucketKey) -> (i64, &str, i32) {
    (
        key.interval_start_ms.unwrap_or(UNKNOWN_INTERVAL),
        key.queue.as_ref().map_or("", QueueId::as_str),
        key.channel.map_or(UNKNOWN_CHANNEL, |channel| channel as i32),
    )
}

/// Adds `changes` (per tenant and bucket, in key order: every writer locks
/// bucket rows in that order, so two never deadlock) to their rows.
pub(super) async fn add_to_buckets(
    client: &impl CachedStatements,
    changes: &BTreeMap<(TenantId, BucketKey), KpiCounts>,
) -> Result<(), Error> {
    if changes.is_empty() {
        return Ok(());
    }
    add_counts(client, "kpi.interval_counts", changes).await?;
    // The same changes by day, for summaries over long ranges.
    let mut by_day: BTreeMap<(TenantId, BucketKey), KpiCounts> = BTreeMap::new();
    for ((tenant, key), delta) in changes {
        let Some(interval_ms) = key.interval_start_ms else { continue };
        let day = BucketKey { interval_start_ms: Some(interval_ms.div_euclid(DAY_MS) * DAY_MS), ..key.clone() };
        by_day.entry((tenant.clone(), day)).or_default().add(delta);
    }
    add_counts(client, "kpi.day_counts", &by_day).await
}

/// Adds `changes` to the rows of `table` (`kpi.interval_counts` or
/// `kpi.day_counts`, alike but for the period), in key order.
async fn add_counts(
    client: &impl CachedStatements,
    table: &str,
    changes: &BTreeMap<(TenantId, BucketKey), KpiCounts>,
) -> Result<(), Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = changes.keys().map(|(tenant, _)| tenant.as_str()).collect();
    let keys: Vec<(i64, &str, i32)> = changes.keys().map(|(_, key)| key_columns(key)).collect();
    let intervals: Vec<i64> = keys.iter().map(|key| key.0).collect();
    let queues: Vec<&str> = keys.iter().map(|key| key.1).collect();
    let channels: Vec<i32> = keys.iter().map(|key| key.2).collect();
    let counters: Vec<Vec<i64>> =
        (0..COUNTERS).map(|index| changes.values().map(|counts| counts.fields()[index]).collect()).collect();
    let columns = COUNTER_COLUMNS.join(", ");
    let arrays: Vec<String> = (0..COUNTERS).map(|index| format!("${}::int8[]", index + 5)).collect();
    let updates: Vec<String> =
        COUNTER_COLUMNS.iter().map(|column| format!("{column} = buckets.{column} + EXCLUDED.{column}")).collect();
    let sql = format!(
        "INSERT INTO {table} AS buckets (tenant, interval_start_ms, queue, channel, {columns})
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int4[], {})
         ON CONFLICT (tenant, interval_start_ms, queue, channel) DO UPDATE SET {}",
        arrays.join(", "),
        updates.join(", ")
    );
    let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&tenants, &intervals, &queues, &channels];
    parameters.extend(counters.iter().map(|column| column as &(dyn ToSql + Sync)));
    client.execute_cached(&sql, &parameters).await.map_err(pg_error)?;
    Ok(())
}

/// The counts of the buckets `filter` counts whole, per interval.
pub(super) async fn read_bucket_counts(
    client: &impl CachedStatements,
    tenant: &TenantId,
    filter: &FactsFilter,
    split: &RangeSplit,
) -> Result<BTreeMap<Option<i64>, KpiCounts>, Error> {
    let (whole_start, whole_end) = match split.whole {
        Some((start, end)) => (start.unwrap_or(UNKNOWN_INTERVAL + 1), end.unwrap_or(i64::MAX)),
        // No whole interval: an empty range.
        None => (0, 0),
    };
    read_counts(client, "kpi.interval_counts", tenant, filter, (whole_start, whole_end), split.unknown_arrival).await
}

/// The counts of the buckets `filter` counts whole, by period: the whole
/// days of the range from `kpi.day_counts`, the intervals before and after
/// them from `kpi.interval_counts` (periods keyed by their start).
pub(super) async fn read_bucket_periods(
    client: &impl CachedStatements,
    tenant: &TenantId,
    filter: &FactsFilter,
    split: &RangeSplit,
) -> Result<Vec<(Option<i64>, i64, KpiCounts)>, Error> {
    let Some((start, end)) = split.whole else {
        let unknown = read_counts(client, "kpi.interval_counts", tenant, filter, (0, 0), split.unknown_arrival).await?;
        return Ok(unknown.into_iter().map(|(start, counts)| (start, INTERVAL_MS, counts)).collect());
    };
    let (whole_start, whole_end) = (start.unwrap_or(UNKNOWN_INTERVAL + 1), end.unwrap_or(i64::MAX));
    // Whole days inside the range; none when it is shorter than a day.
    let first_day = whole_start.div_euclid(DAY_MS).saturating_add(i64::from(whole_start.rem_euclid(DAY_MS) != 0));
    let days = (first_day.saturating_mul(DAY_MS), whole_end.div_euclid(DAY_MS).saturating_mul(DAY_MS));
    let mut periods = Vec::new();
    let mut interval_ranges = vec![(whole_start, whole_end)];
    if days.0 < days.1 {
        let by_day = read_counts(client, "kpi.day_counts", tenant, filter, days, false).await?;
        periods.extend(by_day.into_iter().map(|(start, counts)| (start, DAY_MS, counts)));
        interval_ranges = vec![(whole_start, days.0), (days.1, whole_end)];
    }
    let mut unknown_arrival = split.unknown_arrival;
    for range in interval_ranges {
        let counts = read_counts(client, "kpi.interval_counts", tenant, filter, range, unknown_arrival).await?;
        periods.extend(counts.into_iter().map(|(start, counts)| (start, INTERVAL_MS, counts)));
        unknown_arrival = false;
    }
    Ok(periods)
}

/// Sums of `table`'s rows per period start in `[range.0, range.1)` (and
/// the unknown-arrival row with `unknown_arrival`).
async fn read_counts(
    client: &impl CachedStatements,
    table: &str,
    tenant: &TenantId,
    filter: &FactsFilter,
    (range_start, range_end): (i64, i64),
    unknown_arrival: bool,
) -> Result<BTreeMap<Option<i64>, KpiCounts>, Error> {
    let mut counts: BTreeMap<Option<i64>, KpiCounts> = BTreeMap::new();
    let tenant_name = tenant.as_str();
    let queue = filter.queue.as_ref().map(QueueId::as_str);
    let channel = filter.channel.map(|channel| channel as i32);
    let sums: Vec<String> = COUNTER_COLUMNS.iter().map(|column| format!("sum({column})::int8")).collect();
    let sql = format!(
        "SELECT interval_start_ms, {} FROM {table}
         WHERE tenant = $1 AND ($2::text IS NULL OR queue = $2) AND ($3::int4 IS NULL OR channel = $3)
           AND ((interval_start_ms >= $4 AND interval_start_ms < $5) OR ($6 AND interval_start_ms = $7))
         GROUP BY interval_start_ms",
        sums.join(", ")
    );
    let rows = client
        .query_cached(
            &sql,
            &[&tenant_name, &queue, &channel, &range_start, &range_end, &unknown_arrival, &UNKNOWN_INTERVAL],
        )
        .await
        .map_err(pg_error)?;
    for row in rows {
        let interval: i64 = row.try_get(0).map_err(|error| Error::internal(format!("kpi.interval_counts: {error}")))?;
        let mut fields = [0_i64; COUNTERS];
        for (index, field) in fields.iter_mut().enumerate() {
            *field =
                row.try_get(index + 1).map_err(|error| Error::internal(format!("kpi.interval_counts: {error}")))?;
        }
        let interval = (interval != UNKNOWN_INTERVAL).then_some(interval);
        counts.entry(interval).or_default().add(&KpiCounts::from_fields(fields));
    }
    Ok(counts)
}

/// Fills the buckets from the facts recorded before they existed, once per
/// database: under a lock that holds every writer of facts back meanwhile,
/// so the buckets start equal to the facts and stay so.
pub async fn fill_buckets_once(pool: &Pool) -> Result<(), Error> {
    let mut client = pool.get().await.map_err(pg_error)?;
    let transaction = client.transaction().await.map_err(pg_error)?;
    transaction.batch_execute("LOCK TABLE kpi.contact_facts IN SHARE MODE").await.map_err(pg_error)?;
    let filled = transaction
        .query_opt("SELECT only_row FROM kpi.interval_counts_filled", &[])
        .await
        .map_err(pg_error)?
        .is_some();
    if !filled {
        fill_from_facts(&transaction).await?;
    }
    transaction.commit().await.map_err(pg_error)
}

/// Fills the (empty) buckets from every stored fact, and marks them filled.
async fn fill_from_facts(transaction: &deadpool_postgres::Transaction<'_>) -> Result<(), Error> {
    let mut buckets: BTreeMap<(TenantId, BucketKey), KpiCounts> = BTreeMap::new();
    let rows = transaction.query(SELECT_ALL_SQL, &[]).await.map_err(pg_error)?;
    for row in &rows {
        let facts = facts_from_row(row)?;
        for (key, delta) in bucket_changes(None, &facts) {
            buckets.entry((facts.tenant.clone(), key)).or_default().add(&delta);
        }
    }
    add_to_buckets(transaction, &buckets).await?;
    transaction.execute("INSERT INTO kpi.interval_counts_filled DEFAULT VALUES", &[]).await.map_err(pg_error)?;
    tracing::info!(contacts = rows.len(), buckets = buckets.len(), "kpi buckets filled from the facts");
    Ok(())
}

/// Replaces the facts of the contacts that arrived in `[from_ms, to_ms)`
/// (every contact, with neither) by `facts`, and rebuilds every bucket
/// from the facts, in one transaction that holds writers of facts back
/// (readers go on, seeing the old figures until it commits). How many
/// facts it deleted.
pub(super) async fn replace_facts(
    pool: &Pool,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    facts: &[crate::domain::ContactFacts],
) -> Result<u64, Error> {
    let mut client = pool.get().await.map_err(pg_error)?;
    let transaction = client.transaction().await.map_err(pg_error)?;
    transaction.batch_execute("LOCK TABLE kpi.contact_facts IN EXCLUSIVE MODE").await.map_err(pg_error)?;
    let deleted = transaction
        .execute(
            "DELETE FROM kpi.contact_facts
             WHERE ($1::int8 IS NULL OR arrival_ms >= $1) AND ($2::int8 IS NULL OR arrival_ms < $2)",
            &[&from_ms, &to_ms],
        )
        .await
        .map_err(pg_error)?;
    for chunk in facts.chunks(1_000) {
        super::postgres::upsert_all(&transaction, chunk).await?;
    }
    transaction
        .batch_execute(
            "DELETE FROM kpi.interval_counts; DELETE FROM kpi.day_counts; DELETE FROM kpi.interval_counts_filled;",
        )
        .await
        .map_err(pg_error)?;
    fill_from_facts(&transaction).await?;
    transaction.commit().await.map_err(pg_error)?;
    Ok(deleted)
}

/// Folds one contact's change into a batch's bucket changes.
pub(super) fn fold_contact_change(
    into: &mut BTreeMap<(TenantId, BucketKey), KpiCounts>,
    before: Option<&crate::domain::ContactFacts>,
    after: &crate::domain::ContactFacts,
) {
    let mut per_bucket = BTreeMap::new();
    fold_changes(&mut per_bucket, bucket_changes(before, after));
    for (key, delta) in per_bucket {
        into.entry((after.tenant.clone(), key)).or_default().add(&delta);
    }
}
