//! Presence stores against real PostgreSQL and Redis.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use switchboard_platform::config::PostgresConfig;
use switchboard_platform::postgres::{migrate, pool};
use switchboard_platform::redis::connect;
use switchboard_presence::store::contract::{agent_store_contract, live_state_contract};
use switchboard_presence::store::postgres::{MIGRATIONS, PostgresAgentStore};
use switchboard_presence::store::redis::RedisLiveStateStore;
use switchboard_test_support::{backend_url, fresh_database, unique_suffix};

#[tokio::test]
async fn postgres_agent_store_passes_the_contract() {
    let Some(admin_url) = backend_url("SWITCHBOARD_TEST_POSTGRES") else { return };
    let url = fresh_database(&admin_url).await.expect("database");
    let postgres = pool(&PostgresConfig { url, pool_size: 4 }).expect("pool");
    migrate(&postgres, "presence", MIGRATIONS).await.expect("migrate");
    agent_store_contract(&PostgresAgentStore::new(postgres)).await.expect("postgres agent store contract");
}

#[tokio::test]
async fn redis_live_state_passes_the_contract() {
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    live_state_contract(&RedisLiveStateStore::new(connection, &unique_suffix())).await.expect("redis live state");
}
