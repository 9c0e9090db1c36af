//! The routing-state contract and the memory-vs-Redis differential run
//! against a real `redis-server` (`SWITCHBOARD_TEST_REDIS`), and the queue
//! store contract against real PostgreSQL (`SWITCHBOARD_TEST_POSTGRES`).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use switchboard_platform::config::PostgresConfig;
use switchboard_platform::postgres::{migrate, pool};
use switchboard_platform::redis::connect;
use switchboard_platform::testing::{backend_url, fresh_database, unique_suffix};
use switchboard_routing::store::contract::{differential, queue_store_contract, routing_state_contract};
use switchboard_routing::store::memory::MemoryRoutingState;
use switchboard_routing::store::postgres::{MIGRATIONS, PostgresQueueStore};
use switchboard_routing::store::redis::RedisRoutingState;

#[tokio::test]
async fn redis_state_passes_the_contract() {
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    let state = RedisRoutingState::new(connection, &unique_suffix());
    routing_state_contract(&state).await.expect("redis routing state contract");
}

#[tokio::test]
async fn redis_decides_exactly_like_memory() {
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    for seed in [1_u64, 2, 3] {
        let redis = RedisRoutingState::new(connection.clone(), &unique_suffix());
        differential(&MemoryRoutingState::default(), &redis, seed, 250).await.expect("memory and redis agree");
    }
}

#[tokio::test]
async fn postgres_queue_store_passes_the_contract() {
    let Some(admin_url) = backend_url("SWITCHBOARD_TEST_POSTGRES") else { return };
    let url = fresh_database(&admin_url).await.expect("database");
    let postgres = pool(&PostgresConfig { url, pool_size: 4 }).expect("pool");
    migrate(&postgres, "routing", MIGRATIONS).await.expect("migrate");
    migrate(&postgres, "routing", MIGRATIONS).await.expect("migrations are idempotent");
    queue_store_contract(&PostgresQueueStore::new(postgres)).await.expect("postgres queue store contract");
}
