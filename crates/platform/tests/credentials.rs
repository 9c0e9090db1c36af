//! The credential store contract against a real PostgreSQL (required under
//! CI=true), and two replicas' access control on one store: a key made on
//! one works on the other once it polls.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::TenantId;
use switchboard_core::time::now_millis;
use switchboard_platform::auth::{AccessControl, hash_api_key};
use switchboard_platform::config::{AuthConfig, PostgresConfig};
use switchboard_platform::credentials::{
    ApiKeyId, CredentialStore, KeyHolder, KeyRecord, PostgresCredentialStore, TenantRecord, contract, new_secret,
    secret_prefix,
};
use switchboard_platform::postgres::pool;
use switchboard_test_support::{backend_url, fresh_database};
use tokio_util::sync::CancellationToken;

async fn fresh_store() -> Option<Arc<PostgresCredentialStore>> {
    let admin_url = backend_url("SWITCHBOARD_TEST_POSTGRES")?;
    let url = fresh_database(&admin_url).await.expect("a test database");
    let store = PostgresCredentialStore::connect(
        pool(&PostgresConfig { url: url.clone(), pool_size: 4, ca_file: None }).expect("pool"),
    )
    .await
    .expect("migrate");
    // Every service applies the migrations at start: again is a no-op.
    PostgresCredentialStore::connect(pool(&PostgresConfig { url, pool_size: 2, ca_file: None }).expect("pool"))
        .await
        .expect("again");
    Some(Arc::new(store))
}

#[tokio::test]
async fn postgres_store_meets_the_contract() {
    let Some(store) = fresh_store().await else { return };
    contract::run_all(store.as_ref()).await.expect("contract");
}

#[tokio::test]
async fn a_key_made_on_one_replica_works_on_another_within_its_poll() {
    let Some(store) = fresh_store().await else { return };
    let tenant = TenantId::parse("initech", "tenant").unwrap();
    let now = now_millis();
    let record = TenantRecord {
        id: tenant.clone(),
        display_name: "Initech".to_owned(),
        suspended: false,
        policy: Default::default(),
        create_time_ms: now,
        update_time_ms: now,
        deletion: None,
    };
    store.create_tenant(&record).await.unwrap();
    let replica = AccessControl::with_credentials(&AuthConfig::default(), store.clone()).unwrap();
    let shutdown = CancellationToken::new();
    let polling = tokio::spawn(Arc::clone(&replica).keep_fresh(shutdown.clone()));

    let secret = new_secret();
    let key = KeyRecord {
        id: ApiKeyId::generate(),
        display_name: "crm-sync".to_owned(),
        holder: KeyHolder::TenantReader(tenant.clone()),
        expire_time_ms: None,
        create_time_ms: now,
        revoke_time_ms: None,
        secret_sha256: hash_api_key(&secret),
        secret_prefix: secret_prefix(&secret),
        previous_secret: None,
    };
    store.create_key(&key).await.unwrap();
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("authorization", format!("Bearer {secret}").parse().unwrap());
    // The contract: honoured within 2 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while replica.authenticate(&metadata).is_err() {
        assert!(tokio::time::Instant::now() < deadline, "a new key is honoured within 2 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.revoke_key(&key.id, now_millis()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while replica.authenticate(&metadata).is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "a revoked key stops within 2 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    polling.await.unwrap();
}
