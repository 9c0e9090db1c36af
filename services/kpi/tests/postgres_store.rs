//! The store contract against a real PostgreSQL, the differential check
//! against the in-memory store, and the whole service on PostgreSQL.
//! Needs `SWITCHBOARD_TEST_POSTGRES` (an admin URL); skipped without it,
//! except under `CI=true`.

// Helpers outside `#[test]` functions are not covered by clippy.toml's
// allow-*-in-tests.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use switchboard_core::TenantId;
use switchboard_kpi::Deps;
use switchboard_kpi::domain::{ServiceLevelVariant, recompute, summarize};
use switchboard_kpi::store::contract::{self, ContactStory, random_stories};
use switchboard_kpi::store::postgres::{MIGRATION_SERVICE, MIGRATIONS};
use switchboard_kpi::store::{MemoryKpiStore, PostgresKpiStore};
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::config::PostgresConfig;
use switchboard_platform::postgres::{migrate, pool};
use switchboard_platform::testing::{backend_url, fresh_database};
use switchboard_proto::events::v1::EventEnvelope;

/// A migrated, empty database; `None` when no PostgreSQL is configured.
async fn fresh_store() -> Option<(PostgresKpiStore, String)> {
    let admin_url = backend_url("SWITCHBOARD_TEST_POSTGRES")?;
    let url = fresh_database(&admin_url).await.expect("fresh database");
    let pool = pool(&PostgresConfig { url: url.clone(), pool_size: 4 }).expect("pool");
    migrate(&pool, MIGRATION_SERVICE, MIGRATIONS).await.expect("migrations");
    migrate(&pool, MIGRATION_SERVICE, MIGRATIONS).await.expect("migrations are idempotent");
    Some((PostgresKpiStore::new(pool), url))
}

#[tokio::test]
async fn postgres_store_passes_the_contract() {
    let Some((store, _)) = fresh_store().await else {
        return;
    };
    contract::run_all(&store).await.expect("contract");
}

#[tokio::test]
async fn postgres_store_agrees_with_the_memory_store() {
    let Some((store, _)) = fresh_store().await else {
        return;
    };
    let reference = MemoryKpiStore::new();
    for seed in 0..6 {
        contract::differential(&reference, &store, seed).await.expect("differential");
    }
}

#[tokio::test]
async fn service_on_postgres_serves_the_batch_kpis() {
    let Some((_, url)) = fresh_store().await else {
        return;
    };
    let mut config = common::config();
    config.postgres = PostgresConfig { url, pool_size: 4 };
    let bus = MemoryBus::new();
    let deps = Deps::connect(&config, Arc::new(bus.clone()), common::access(&config)).await.expect("deps");
    let mut service = common::start(config, deps).await;

    let acme = TenantId::parse("acme", "tenant").unwrap();
    let events: Vec<(&'static str, EventEnvelope)> =
        random_stories(&acme, 50, 9).iter().flat_map(ContactStory::events).collect();
    common::publish(&bus, &events).await;
    common::publish(&bus, &events).await;
    let log: Vec<EventEnvelope> = events.into_iter().map(|(_, envelope)| envelope).collect();
    let expected = summarize(recompute(&log).values(), ServiceLevelVariant::default()).to_proto();
    let live =
        common::wait_for_summary(&mut service.client, common::ACME_READER_KEY, common::tenant_filter("acme"), |live| {
            *live == expected
        })
        .await;
    assert_eq!(live, expected);
    service.stop().await;
}
