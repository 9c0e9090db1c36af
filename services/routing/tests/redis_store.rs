//! The routing-state contract and the memory-vs-Redis differential run
//! against a real `redis-server` (`SWITCHBOARD_TEST_REDIS`, and over TLS
//! `SWITCHBOARD_TEST_REDIS_TLS`), and the queue
//! store contract against real PostgreSQL (`SWITCHBOARD_TEST_POSTGRES`).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use switchboard_platform::config::PostgresConfig;
use switchboard_platform::postgres::{migrate, pool};
use switchboard_platform::redis::{connect, connect_trusting};
use switchboard_routing::store::RoutingState;
use switchboard_routing::store::contract::{
    answer_pace_contract, differential, erasure_contract, fair_shares_contract, gauges_contract, outbox_contract,
    queue_rules_contract, queue_store_contract, queue_store_erasure_contract, restore_contract, routing_state_contract,
    seen_view_contract, shared_view_contract, stale_reservation_contract,
};
use switchboard_routing::store::memory::MemoryRoutingState;
use switchboard_routing::store::postgres::{MIGRATIONS, PostgresQueueStore};
use switchboard_routing::store::redis::RedisRoutingState;
use switchboard_test_support::{backend_url, fresh_database, unique_suffix};

/// A routing state on a pool of its own, marked whole as the routing
/// service's guard marks a fresh pool.
async fn fresh_state(connection: redis::aio::ConnectionManager) -> RedisRoutingState {
    let state = RedisRoutingState::new(connection, &unique_suffix());
    state.restore(&[], &[], 0).await.expect("mark the pool whole");
    state
}

#[tokio::test]
async fn redis_state_passes_the_contract() {
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    let state = fresh_state(connection).await;
    routing_state_contract(&state).await.expect("redis routing state contract");
    answer_pace_contract(&state).await.expect("redis answer pace contract");
    fair_shares_contract(&state).await.expect("redis fair shares contract");
    queue_rules_contract(&state).await.expect("redis queue rules contract");
    stale_reservation_contract(&state).await.expect("redis voids stale reservations");
    seen_view_contract(&state).await.expect("redis decides on the current contact, not a stale view");
    restore_contract(&state).await.expect("redis restore contract");
}

/// A replica's snapshots follow every change another replica makes to the
/// agents (each replica keeps a copy of them between snapshots).
#[tokio::test]
async fn redis_snapshots_follow_agents_changed_by_another_replica() {
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    let pool = unique_suffix();
    let writer = RedisRoutingState::new(connection.clone(), &pool);
    writer.restore(&[], &[], 0).await.expect("mark the pool whole");
    let reader = RedisRoutingState::new(connection, &pool);
    shared_view_contract(&reader, &writer).await.expect("redis shared view contract");
}

/// A replica's copy of the agents does not outlive a loss of Redis: after
/// a rebuild, even one whose agents have since changed more often than
/// before the loss (the change counter started again), a snapshot shows
/// the rebuilt agents only.
#[tokio::test]
async fn redis_snapshots_forget_agents_lost_with_the_state() {
    use switchboard_proto::presence::v1::AgentState;
    use switchboard_routing::store::contract::{sample_profile, sample_record};
    use switchboard_routing::store::journal::JournaledAgent;
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    let pool = unique_suffix();
    let (reader, writer) =
        (RedisRoutingState::new(connection.clone(), &pool), RedisRoutingState::new(connection.clone(), &pool));
    writer.restore(&[], &[], 0).await.expect("mark the pool whole");
    let tenant = switchboard_core::TenantId::parse("acme", "t").expect("tenant");
    let queue = switchboard_core::QueueId::parse("lost", "q").expect("queue");
    let (alice, bob) = (
        switchboard_core::AgentId::parse("alice", "a").expect("agent"),
        switchboard_core::AgentId::parse("bob", "a").expect("agent"),
    );
    writer.upsert_agent(&sample_profile(&alice, &[&tenant], 2, 0), true, 10).await.expect("alice");
    let waiting = sample_record(&tenant, &queue, 3, 0, 1_000);
    writer.enqueue(&waiting, &[]).await.expect("enqueue");
    let view = reader.snapshot(8).await.expect("snapshot");
    let agents: Vec<_> = view.agents.iter().map(|agent| &agent.profile.agent).collect();
    assert_eq!(agents, [&alice], "alice is available");

    // The pool's data gone, as after a FLUSHALL (other tests share this Redis).
    let keys = switchboard_platform::redis::scan(
        &connection,
        switchboard_platform::redis::Scanned::Keys,
        &format!("sb:{{{pool}}}*"),
    )
    .await
    .expect("scan");
    switchboard_platform::redis::delete_keys(&connection, &keys).await.expect("lose it");
    let bob_available =
        JournaledAgent { profile: sample_profile(&bob, &[&tenant], 2, 0), state: AgentState::Available };
    writer.restore(&[waiting], &[bob_available], 20).await.expect("rebuild");
    for now in 21..24 {
        writer.upsert_agent(&sample_profile(&bob, &[&tenant], 2, 0), true, now).await.expect("bob again");
    }
    let view = reader.snapshot(8).await.expect("snapshot");
    assert_eq!(view.waiting.len(), 1, "the contact was rebuilt");
    assert_eq!(
        view.agents.iter().map(|agent| agent.profile.agent.clone()).collect::<Vec<_>>(),
        [bob],
        "alice went with the lost state"
    );
}

/// The scripts, pipelines and transactions of the store behave the same on
/// a `rediss://` connection (the test server's TLS port).
#[tokio::test]
async fn redis_state_passes_the_contract_over_tls() {
    let (Some(url), Some(ca)) = (backend_url("SWITCHBOARD_TEST_REDIS_TLS"), backend_url("SWITCHBOARD_TEST_TLS_CA"))
    else {
        return;
    };
    let connection = connect_trusting(&url, Some(std::path::Path::new(&ca))).await.expect("rediss");
    let state = fresh_state(connection.clone()).await;
    routing_state_contract(&state).await.expect("redis routing state contract over TLS");
    let state = fresh_state(connection).await;
    outbox_contract(&state, "relay-tls").await.expect("redis outbox contract over TLS");
}

/// A pool whose data is gone (here: its marker deleted, as a FLUSHALL
/// would) is not whole, and every write and read fails as transient until
/// a restore marks it whole again.
#[tokio::test]
async fn redis_reads_and_writes_wait_while_the_state_is_lost() {
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    let pool = unique_suffix();
    let state = RedisRoutingState::new(connection.clone(), &pool);
    assert!(!state.is_whole().await.expect("look"), "a pool never restored is not whole");
    let tenant = switchboard_core::TenantId::parse("acme", "t").expect("tenant");
    let queue = switchboard_core::QueueId::parse("lost", "q").expect("queue");
    let record = switchboard_routing::store::contract::sample_record(&tenant, &queue, 3, 0, 1);
    let error = state.enqueue(&record, &[]).await.expect_err("no write on a lost state");
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.reason(), "ROUTING_STATE_REBUILDING");
    let error = state.get_contact(&tenant, &record.contact).await.expect_err("an absence on a lost state is unknown");
    assert_eq!(error.reason(), "ROUTING_STATE_REBUILDING", "a read waits too, rather than answer NOT_FOUND");
    assert!(state.lead_rebuild("this-replica", 60_000).await.expect("lease"));
    state.restore(&[], &[], 0).await.expect("restore");
    assert!(state.is_whole().await.expect("look"));
    assert!(state.rebuild_pending().await.expect("look"), "the replay after the restore is still to do");
    assert!(
        !state.lead_rebuild("another-replica", 60_000).await.expect("lease"),
        "the restoring replica keeps the lease"
    );
    state.finish_rebuild().await.expect("finish");
    assert!(!state.rebuild_pending().await.expect("look"), "a finished rebuild leaves nothing pending");
    assert!(state.lead_rebuild("another-replica", 60_000).await.expect("lease"), "and releases the lease");
    state.finish_rebuild().await.expect("release it again");
    assert!(state.get_contact(&tenant, &record.contact).await.expect("read").is_none(), "nothing was written");
    let generation = state.generation().await.expect("generation");
    assert!(state.enqueue(&record, &[]).await.expect("enqueue once whole"));
    let tail = state.outbox_tail(&generation).await.expect("tail").expect("the enqueue's entry");
    let mut raw = connection.clone();
    // The pool's data gone (as after a FLUSHALL; other tests share this Redis).
    let lose = redis::cmd("DEL").arg(format!("sb:{{{pool}}}:whole")).arg(format!("sb:{{{pool}}}:outbox")).clone();
    let _: i64 = lose.query_async(&mut raw).await.expect("lose it");
    assert!(!state.is_whole().await.expect("look"), "the loss is seen");
    let error = state.get_contact(&tenant, &record.contact).await.expect_err("a read on a lost state");
    assert!(error.is_transient(), "{error}");
    // An empty outbox after the loss must not read as "relayed": a caller
    // waiting for its change is told to retry, even once rebuilt.
    let error = state.relayed_through(&tail, &generation).await.expect_err("relayed or lost?");
    assert_eq!(error.reason(), "ROUTING_STATE_REBUILDING");
    state.restore(&[], &[], 0).await.expect("rebuilt");
    let error = state.relayed_through(&tail, &generation).await.expect_err("a newer generation");
    assert_eq!(error.reason(), "ROUTING_STATE_REBUILDING");
    assert_ne!(state.generation().await.expect("generation"), generation, "each rebuild is a new generation");
    let _: i64 = lose.query_async(&mut raw).await.expect("lose it again");
    assert!(state.lead_rebuild("replica-a", 60_000).await.expect("lease"), "one replica leads the rebuild");
    assert!(!state.lead_rebuild("replica-b", 60_000).await.expect("lease"), "only one");
    assert!(state.lead_rebuild("replica-a", 60_000).await.expect("lease"), "the leader keeps it");
}

#[tokio::test]
async fn redis_decides_exactly_like_memory() {
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    for seed in [1_u64, 2, 3] {
        let redis = fresh_state(connection.clone()).await;
        differential(&MemoryRoutingState::default(), &redis, seed, 250).await.expect("memory and redis agree");
    }
}

#[tokio::test]
async fn postgres_queue_store_passes_the_contract() {
    let Some(admin_url) = backend_url("SWITCHBOARD_TEST_POSTGRES") else { return };
    let url = fresh_database(&admin_url).await.expect("database");
    let postgres = pool(&PostgresConfig { url, pool_size: 4, ca_file: None }).expect("pool");
    migrate(&postgres, "routing", MIGRATIONS).await.expect("migrate");
    migrate(&postgres, "routing", MIGRATIONS).await.expect("migrations are idempotent");
    let store = PostgresQueueStore::new(postgres);
    queue_store_contract(&store).await.expect("postgres queue store contract");
    queue_store_erasure_contract(&store).await.expect("postgres queue store erasure contract");
}

#[tokio::test]
async fn redis_state_erases_a_deleted_tenant() {
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    erasure_contract(&fresh_state(connection).await).await.expect("redis erasure contract");
}

#[tokio::test]
async fn redis_outbox_passes_the_contract_and_has_one_relay_at_a_time() {
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    let state = fresh_state(connection.clone()).await;
    outbox_contract(&state, "relay-a").await.expect("redis outbox contract");
    gauges_contract(&fresh_state(connection.clone()).await, "relay-g").await.expect("redis gauges contract");

    let tenant = switchboard_core::TenantId::parse("acme", "t").expect("tenant");
    let queue = switchboard_core::QueueId::parse("lease", "q").expect("queue");
    let record = switchboard_routing::store::contract::sample_record(&tenant, &queue, 3, 0, 1);
    let event = switchboard_routing::events::queued(&record, &Default::default());
    state.enqueue(&record, &[event]).await.expect("enqueue");
    let leading = state.pending_outbox("relay-a", 60_000, 10, &[]).await.expect("leader");
    assert_eq!(leading.map(|batch| batch.entries.len()), Some(2));
    assert!(
        state.pending_outbox("relay-b", 60_000, 10, &[]).await.expect("follower").is_none(),
        "one relay leads at a time"
    );
    let leading_again = state.pending_outbox("relay-a", 60_000, 10, &[]).await.expect("leader again");
    assert_eq!(leading_again.map(|batch| batch.entries.len()), Some(2), "the leader keeps leading");
}

#[tokio::test]
async fn terminal_records_expire_and_live_ones_do_not() {
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    let pool = unique_suffix();
    let state = RedisRoutingState::new(connection.clone(), &pool);
    state.restore(&[], &[], 0).await.expect("mark the pool whole");
    let tenant = switchboard_core::TenantId::parse("acme", "t").expect("tenant");
    let queue = switchboard_core::QueueId::parse("retention", "q").expect("queue");
    let waiting = switchboard_routing::store::contract::sample_record(&tenant, &queue, 3, 0, 1);
    let leaving = switchboard_routing::store::contract::sample_record(&tenant, &queue, 3, 0, 2);
    state.enqueue(&waiting, &[]).await.expect("enqueue");
    state.enqueue(&leaving, &[]).await.expect("enqueue");
    state.abandon(&tenant, &leaving.contact, 10, &switchboard_routing::store::no_events).await.expect("abandon");
    let ttl = |contact: &switchboard_core::ContactId| {
        let mut connection = connection.clone();
        let key = format!("sb:{{{pool}}}:c:{tenant}:{contact}");
        async move { redis::cmd("PTTL").arg(key).query_async::<i64>(&mut connection).await.expect("pttl") }
    };
    assert_eq!(ttl(&waiting.contact).await, -1, "a live contact never expires");
    let retention = ttl(&leaving.contact).await;
    assert!(retention > 0 && retention <= switchboard_routing::store::redis::TERMINAL_RETENTION_MS, "{retention}");
}
