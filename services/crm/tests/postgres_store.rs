//! The store contract against a real PostgreSQL. Skipped unless
//! `SWITCHBOARD_TEST_POSTGRES` holds an admin URL (required under CI=true).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use switchboard_core::TenantId;
use switchboard_crm::Crm;
use switchboard_crm::domain::{Identity, IdentityKind};
use switchboard_crm::store::contract;
use switchboard_crm::store::postgres::{PostgresCrmStore, migrate_schema};
use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::config::{AuthConfig, PostgresConfig};
use switchboard_platform::postgres::pool;
use switchboard_platform::service::Service;
use switchboard_test_support::{backend_url, fresh_database, kit};

async fn fresh_store() -> Option<Arc<PostgresCrmStore>> {
    let admin_url = backend_url("SWITCHBOARD_TEST_POSTGRES")?;
    let url = fresh_database(&admin_url).await.expect("create a test database");
    let pool = pool(&PostgresConfig { url, pool_size: 4, ca_file: None }).expect("pool");
    migrate_schema(&pool).await.expect("migrate");
    // Applying the migrations again must be a no-op (replicas restart).
    migrate_schema(&pool).await.expect("migrate again");
    Some(Arc::new(PostgresCrmStore::new(pool)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_meets_the_contract() {
    let Some(store) = fresh_store().await else {
        return;
    };
    contract::run_all(store).await.expect("postgres store contract");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_resolves_agree_under_repetition() {
    let Some(store) = fresh_store().await else {
        return;
    };
    // The race window is narrow: run the check several times on new
    // identities (each run uses a fresh tenant).
    for _ in 0..10 {
        contract::concurrent_resolves_agree(store.clone()).await.expect("concurrent resolves");
    }
}

#[tokio::test]
async fn deps_connect_migrates_and_checks_postgres() {
    let Some(admin_url) = backend_url("SWITCHBOARD_TEST_POSTGRES") else {
        return;
    };
    let mut config = Config::default();
    config.postgres.url = fresh_database(&admin_url).await.expect("create a test database");
    let access = AccessControl::from_config(&AuthConfig::default()).expect("access");
    let mut kit = kit::<Crm>(config, Arc::new(MemoryBus::new()), access);
    let crm = Crm::connect(&mut kit).await.expect("connect");
    let names: Vec<String> = kit.readiness_checks().iter().map(|check| check.name()).collect();
    assert_eq!(names, vec!["kafka", "postgres"]);
    for check in kit.readiness_checks() {
        check.check().await.expect("dependency ready");
    }
    let tenant = TenantId::parse("acme", "tenant").expect("tenant");
    let identity = Identity { kind: IdentityKind::Email, value: "a@example.com".to_owned() };
    let resolved = crm.store.resolve_customer(&tenant, &identity, "A").await.expect("resolve");
    assert!(resolved.created);
}
