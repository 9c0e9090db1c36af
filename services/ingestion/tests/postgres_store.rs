//! The contact store contract against a real PostgreSQL server
//! (`SWITCHBOARD_TEST_POSTGRES`, an admin URL; skipped when unset, fails
//! under `CI=true`).

// Test code: a broken expectation panics, which is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use switchboard_ingestion::Ingestion;
use switchboard_ingestion::store::ContactStore;
use switchboard_ingestion::store::contract::{fresh_tenant, run_contract_suite, sample_record};
use switchboard_ingestion::store::postgres::{MIGRATIONS, PostgresContactStore};
use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::config::{AuthConfig, PostgresConfig};
use switchboard_platform::postgres::{migrate, pool};
use switchboard_platform::service::Service;
use switchboard_proto::common::v1::Channel;
use switchboard_test_support::{backend_url, fresh_database, kit};

async fn fresh_store() -> Option<(Arc<dyn ContactStore>, deadpool_postgres::Pool)> {
    let admin_url = backend_url("SWITCHBOARD_TEST_POSTGRES")?;
    let url = fresh_database(&admin_url).await.expect("fresh database");
    let pool = pool(&PostgresConfig { url, pool_size: 4, ca_file: None }).expect("pool");
    migrate(&pool, "ingestion", MIGRATIONS).await.expect("migrations");
    Some((Arc::new(PostgresContactStore::new(pool.clone())), pool))
}

#[tokio::test]
async fn postgres_store_passes_the_contract() {
    let Some((store, _pool)) = fresh_store().await else { return };
    run_contract_suite(store).await.expect("contract");
}

#[tokio::test]
async fn migrations_are_idempotent_and_keep_data() {
    let Some((store, pool)) = fresh_store().await else { return };
    let tenant = fresh_tenant("migrate").expect("tenant");
    let record = sample_record(&tenant, "req-1", Channel::Sms, "sms-1");
    store.insert(&record).await.expect("insert");
    migrate(&pool, "ingestion", MIGRATIONS).await.expect("second migrate is a no-op");
    let stored = store.get(&tenant, &record.contact_id).await.expect("get");
    assert_eq!(stored, Some(record));
    let client = pool.get().await.expect("client");
    let schema: String = client
        .query_one("SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'contacts'", &[])
        .await
        .expect("contacts table")
        .get(0);
    assert_eq!(schema, "ingestion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_across_connections_make_one_contact() {
    let Some((store, _pool)) = fresh_store().await else { return };
    let tenant = fresh_tenant("race").expect("tenant");
    // Real tasks on separate pooled connections, many rounds, so the race
    // between the unique index and the fallback lookup is really exercised.
    for round in 0..20 {
        let request_id = format!("req-{round}");
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = Arc::clone(&store);
            let record = sample_record(&tenant, &request_id, Channel::Chat, "");
            tasks.push(tokio::spawn(async move { (record.contact_id.clone(), store.insert(&record).await) }));
        }
        let mut winners = Vec::new();
        let mut seen = Vec::new();
        for task in tasks {
            let (contact_id, outcome) = task.await.expect("task");
            match outcome.expect("insert") {
                switchboard_ingestion::store::InsertOutcome::Inserted => winners.push(contact_id),
                switchboard_ingestion::store::InsertOutcome::Existing(existing) => seen.push(existing.contact_id),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        assert!(seen.iter().all(|contact_id| contact_id == &winners[0]), "round {round}");
    }
    assert_eq!(store.list(&tenant, None, 100).await.expect("list").len(), 20);
}

#[tokio::test]
async fn deps_connect_migrates_into_the_ingestion_schema() {
    let Some(admin_url) = backend_url("SWITCHBOARD_TEST_POSTGRES") else { return };
    let url = fresh_database(&admin_url).await.expect("fresh database");
    let config = Config { postgres: PostgresConfig { url, pool_size: 2, ca_file: None }, ..Config::default() };
    let access = AccessControl::from_config(&AuthConfig::default()).expect("access");
    let mut first = kit::<Ingestion>(config.clone(), Arc::new(MemoryBus::new()), access.clone());
    let ingestion = Ingestion::connect(&mut first).await.expect("connect");
    for check in first.readiness_checks() {
        if let Err(error) = check.check().await {
            panic!("{} is not ready: {error}", check.name());
        }
    }
    let tenant = fresh_tenant("deps").expect("tenant");
    let record = sample_record(&tenant, "req-1", Channel::Voice, "");
    ingestion.store.insert(&record).await.expect("insert");
    assert_eq!(ingestion.store.get(&tenant, &record.contact_id).await.expect("get"), Some(record));
    // A second replica starting on the same database migrates nothing.
    let mut again = kit::<Ingestion>(config, Arc::new(MemoryBus::new()), access);
    Ingestion::connect(&mut again).await.expect("second connect");
}

#[tokio::test]
async fn postgres_channel_store_passes_the_contract() {
    let Some((_store, pool)) = fresh_store().await else { return };
    let channels = switchboard_ingestion::store::channels::PostgresChannelStore::new(pool);
    switchboard_ingestion::store::channels_contract::run_channel_contract(&channels).await.expect("contract");
}

#[tokio::test]
async fn postgres_call_store_passes_the_contract() {
    let Some((_store, pool)) = fresh_store().await else { return };
    let calls = switchboard_ingestion::calls::postgres::PostgresCallStore::new(pool);
    switchboard_ingestion::calls::contract::run_call_contract(&calls).await.expect("contract");
}

#[tokio::test]
async fn postgres_conversation_store_passes_the_contract() {
    let Some((_store, pool)) = fresh_store().await else { return };
    let conversations = switchboard_ingestion::conversations::postgres::PostgresConversationStore::new(pool);
    switchboard_ingestion::conversations::contract::run_conversation_contract(Arc::new(conversations))
        .await
        .expect("contract");
}
