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
    let postgres = pool(&PostgresConfig { url, pool_size: 4, ca_file: None }).expect("pool");
    migrate(&postgres, "presence", MIGRATIONS).await.expect("migrate");
    agent_store_contract(&PostgresAgentStore::new(postgres)).await.expect("postgres agent store contract");
}

#[tokio::test]
async fn redis_live_state_passes_the_contract() {
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    live_state_contract(&RedisLiveStateStore::new(connection, &unique_suffix())).await.expect("redis live state");
}

/// Two replicas whose hosts' clocks are two minutes apart agree on when a
/// session lease lapses once both read Redis's clock: the replica ahead
/// does not take the other's agents offline.
#[tokio::test]
async fn skewed_replicas_agree_on_leases_through_the_redis_clock() {
    use switchboard_core::AgentId;
    use switchboard_core::clock::Clock;
    use switchboard_core::time::now_millis;
    use switchboard_platform::redis::sync_clock;
    use switchboard_presence::store::LiveStateStore;

    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    let live = RedisLiveStateStore::new(connection.clone(), &unique_suffix());
    let behind = Clock::reading(|| now_millis() - 60_000);
    let ahead = Clock::reading(|| now_millis() + 60_000);
    let agent = AgentId::parse("skewed", "agent").expect("agent");
    let grace_ms = 10_000;

    // Unsynced, the replica ahead sees a fresh lease as long lapsed.
    live.claim_session(&agent, "s1", behind.now_millis() + grace_ms).await.expect("claim");
    assert!(live.renew_lease(&agent, "s1", behind.now_millis() + grace_ms).await.expect("renew"));
    let lapsed = live.expired_leases(ahead.now_millis(), 10).await.expect("scan");
    assert_eq!(lapsed, vec![(agent.clone(), "s1".to_owned())], "host clocks disagree by two minutes");

    sync_clock(&connection, &behind).await.expect("sync behind");
    sync_clock(&connection, &ahead).await.expect("sync ahead");
    assert!((ahead.now_millis() - behind.now_millis()).abs() < 500, "both read redis's clock: {ahead:?} {behind:?}");
    assert!(live.renew_lease(&agent, "s1", behind.now_millis() + grace_ms).await.expect("renew"));
    assert!(live.expired_leases(ahead.now_millis(), 10).await.expect("scan").is_empty(), "a live lease holds");
    assert_eq!(
        live.expired_leases(ahead.now_millis() + grace_ms + 1_000, 10).await.expect("scan"),
        vec![(agent, "s1".to_owned())],
        "and lapses when its grace has passed on the shared clock"
    );
}
