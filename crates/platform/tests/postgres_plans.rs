//! Statements are planned for their parameters on every connection of the
//! pool: a plan settled while a table was small must not scan a whole
//! tenant per lookup once it is full (see `SESSION_OPTIONS` in
//! `postgres.rs`). On a real PostgreSQL (`SWITCHBOARD_TEST_POSTGRES`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use switchboard_platform::config::PostgresConfig;
use switchboard_platform::postgres::{CachedStatements, pool};
use switchboard_test_support::{backend_url, fresh_database};

#[tokio::test]
async fn a_lookup_planned_while_its_table_was_small_reads_few_rows_once_it_grew() {
    let Some(admin) = backend_url("SWITCHBOARD_TEST_POSTGRES") else { return };
    let url = fresh_database(&admin).await.expect("database");
    let config = PostgresConfig { url, ..PostgresConfig::default() };
    let client = pool(&config).expect("pool").get().await.expect("connection");
    let mode = client.query_one("SHOW plan_cache_mode", &[]).await.expect("show");
    assert_eq!(mode.get::<_, &str>(0), "force_custom_plan");

    // A young deployment: a small table, analysed (as autovacuum does),
    // its lookups run (PostgreSQL settles on a plan for them here)...
    client
        .batch_execute(
            "CREATE TABLE items (tenant text NOT NULL, id text NOT NULL, customer text NOT NULL,
                 PRIMARY KEY (tenant, id));
             CREATE INDEX items_by_customer ON items (tenant, customer);
             INSERT INTO items SELECT 'acme', 'id-' || n, 'cu-' || (n % 50) FROM generate_series(1, 200) AS n;
             ANALYZE items",
        )
        .await
        .expect("table");
    let lookup = "SELECT id FROM items WHERE tenant = $1 AND id = $2";
    for attempt in 1..=10 {
        let id = format!("id-{attempt}");
        assert!(client.query_opt_cached(lookup, &[&"acme", &id]).await.expect("lookup").is_some());
    }
    // ...then it grows before the next analysis.
    client
        .batch_execute(
            "INSERT INTO items SELECT 'acme', 'id-' || n, 'cu-' || (n % 50) FROM generate_series(201, 20000) AS n",
        )
        .await
        .expect("grow");
    let before = rows_read(&client).await;
    for attempt in 1..=20 {
        let id = format!("id-{attempt}");
        assert!(client.query_opt_cached(lookup, &[&"acme", &id]).await.expect("lookup").is_some());
    }
    let read = rows_read(&client).await - before;
    assert!(read <= 100, "20 lookups by key read {read} rows");
}

/// Rows and index entries read from `items` so far, this session's
/// counts included.
async fn rows_read(client: &deadpool_postgres::Object) -> i64 {
    client.batch_execute("SELECT pg_stat_force_next_flush()").await.expect("flush");
    let row = client
        .query_one(
            "SELECT (coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))::bigint
             FROM pg_stat_user_tables WHERE relname = 'items'",
            &[],
        )
        .await
        .expect("stats");
    row.get(0)
}
