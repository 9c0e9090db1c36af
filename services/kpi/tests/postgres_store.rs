//! The store contract against a real PostgreSQL, the differential check
//! against the in-memory store, and the whole service on PostgreSQL.
//! Needs `SWITCHBOARD_TEST_POSTGRES` (an admin URL); skipped without it,
//! except under `CI=true`.

// Helpers outside `#[test]` functions are not covered by clippy.toml's
// allow-*-in-tests.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use switchboard_core::{ContactId, QueueId, TenantId};
use switchboard_kpi::Kpi;
use switchboard_kpi::domain::{FactsFilter, FactsUpdate, ServiceLevelVariant, recompute, summarize};
use switchboard_kpi::store::contract::{self, ContactStory, random_stories};
use switchboard_kpi::store::postgres::{MIGRATION_SERVICE, MIGRATIONS};
use switchboard_kpi::store::{KpiStore, MemoryKpiStore, PostgresKpiStore};
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::config::PostgresConfig;
use switchboard_platform::postgres::{migrate, pool};
use switchboard_platform::service::Service;
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_test_support::{backend_url, fresh_database};

/// A migrated, empty database; `None` when no PostgreSQL is configured.
async fn fresh_store() -> Option<(PostgresKpiStore, String)> {
    let admin_url = backend_url("SWITCHBOARD_TEST_POSTGRES")?;
    let url = fresh_database(&admin_url).await.expect("fresh database");
    let pool = pool(&PostgresConfig { url: url.clone(), pool_size: 4, ca_file: None }).expect("pool");
    migrate(&pool, MIGRATION_SERVICE, MIGRATIONS).await.expect("migrations");
    migrate(&pool, MIGRATION_SERVICE, MIGRATIONS).await.expect("migrations are idempotent");
    Some((PostgresKpiStore::connect(pool).await.expect("store"), url))
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
    config.postgres = PostgresConfig { url, pool_size: 4, ca_file: None };
    let bus = MemoryBus::new();
    let mut kit = common::kit(&config, &bus);
    let kpi = Kpi::connect(&mut kit).await.expect("connect");
    let mut service = common::start(kit, kpi).await;

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

/// Rows written before `0002_entered_queue_and_routing_end` keep their
/// queue as the entered one: a later report after a transfer cannot move
/// them.
#[tokio::test]
async fn migration_marks_recorded_queues_as_entered() {
    let Some(admin_url) = backend_url("SWITCHBOARD_TEST_POSTGRES") else {
        return;
    };
    let url = fresh_database(&admin_url).await.expect("fresh database");
    let pool = pool(&PostgresConfig { url, pool_size: 2, ca_file: None }).expect("pool");
    migrate(&pool, MIGRATION_SERVICE, &MIGRATIONS[..1]).await.expect("first migration");
    let client = pool.get().await.expect("client");
    client
        .batch_execute(
            "INSERT INTO kpi.contact_facts (tenant, contact, queue, queued_ms)
                VALUES ('acme', 'ct_old0001', 'support', 1000);
             INSERT INTO kpi.contact_facts (tenant, contact, created_ms) VALUES ('acme', 'ct_old0002', 1000);",
        )
        .await
        .expect("rows of the first schema");
    drop(client);
    migrate(&pool, MIGRATION_SERVICE, MIGRATIONS).await.expect("all migrations");
    let store = PostgresKpiStore::connect(pool).await.expect("store fills its buckets from the old facts");
    let acme = TenantId::parse("acme", "tenant").unwrap();
    let transferred =
        FactsUpdate { queue: Some(QueueId::parse("billing", "queue").unwrap()), ..FactsUpdate::default() };
    for contact in ["ct_old0001", "ct_old0002"] {
        store.apply(&acme, &ContactId::parse(contact, "contact").unwrap(), transferred.clone()).await.expect("apply");
    }
    let facts = store.load(&acme, &FactsFilter::default()).await.expect("load");
    let queues: Vec<(Option<&str>, bool, Option<i64>)> = facts
        .iter()
        .map(|facts| (facts.queue.as_ref().map(QueueId::as_str), facts.queue_entered, facts.routing_ended_ms))
        .collect();
    assert_eq!(queues, vec![(Some("support"), true, None), (Some("billing"), false, None)]);
}
