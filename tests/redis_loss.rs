//! Redis losing routing's data under load, twice: a FLUSHALL, then a restart
//! of a Redis without persistence (it comes back empty). Two routing
//! replicas and the other services on real Kafka and PostgreSQL, agents on
//! their desktops and customers arriving all along. Routing must notice
//! each loss within seconds (readiness false meanwhile), rebuild its state
//! from the journal and the contacts topic, and go on, so that every
//! contact still ends in exactly one terminal state, GetAssignment agrees
//! with the routing log, and the log keeps the routing invariants (one
//! agent at a time per contact, capacity never exceeded).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::load::{Load, Rig, SETTLE, Settled, create_queues_and_agents};
use support::{Endpoints, Process, count_in_logs, eventually, free_port, start_redis};

const CONTACTS: usize = 200;
const CREATE_INTERVAL: Duration = Duration::from_millis(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_rebuilds_after_redis_loses_its_data_and_every_contact_ends_once() {
    let Some(rig) = Rig::prepare("redis-loss").await else { return };
    let began = Instant::now();
    let (dir, seed, run) = (rig.dir.clone(), rig.seed, rig.run.clone());
    let redis_port = free_port();
    let mut redis_server = start_redis(redis_port, &dir);
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let probe = redis::Client::open(redis_url.as_str()).expect("redis url");
    eventually("redis to start", SETTLE, || {
        let probe = probe.clone();
        async move { probe.get_multiplexed_async_connection().await.ok().map(|_| ()) }
    })
    .await;
    let config_arg = rig.configure(&redis_url).await;

    let endpoints = Endpoints::pick();
    let mut second_routing = endpoints.env();
    second_routing.push(("SWITCHBOARD_SERVICES__ROUTING__LISTEN".to_owned(), format!("127.0.0.1:{}", free_port())));
    second_routing.push(("SWITCHBOARD_INSTANCE_ID".to_owned(), format!("routing-2-{run}")));
    let mut first_routing = endpoints.env();
    first_routing.push(("SWITCHBOARD_INSTANCE_ID".to_owned(), format!("routing-1-{run}")));
    let others = "ingestion,presence,crm,kpi";
    let mut processes = vec![
        Process::spawn("routing-1", &["routing", "--config", &config_arg], &first_routing, &dir),
        Process::spawn("routing-2", &["routing", "--config", &config_arg], &second_routing, &dir),
        Process::spawn("others", &["run", "--services", others, "--config", &config_arg], &endpoints.env(), &dir),
    ];
    support::wait_until_ready(&endpoints, &mut processes).await;
    create_queues_and_agents(&endpoints).await;
    eprintln!("{:?}: serving", began.elapsed());

    let load = Load::start(&endpoints, seed, CONTACTS, CREATE_INTERVAL);
    let rebuilt = |processes: &[Process]| count_in_logs(processes, "routing", "routing state rebuilt");

    // First loss: FLUSHALL.
    load.until_created(CONTACTS / 3).await;
    let rebuilt_before = rebuilt(&processes);
    let mut connection = probe.get_multiplexed_async_connection().await.expect("redis");
    let _: () = redis::cmd("FLUSHALL").query_async(&mut connection).await.expect("flushall");
    let flushed_at = Instant::now();
    eprintln!("{:?}: FLUSHALL after {} contacts", began.elapsed(), load.created());
    eventually("routing to rebuild after the flush", SETTLE, || {
        std::future::ready((rebuilt(&processes) > rebuilt_before).then_some(()))
    })
    .await;
    eprintln!("{:?}: rebuilt {:?} after the flush", began.elapsed(), flushed_at.elapsed());

    // Second loss: Redis restarts without persistence.
    load.until_created(CONTACTS * 2 / 3).await;
    let rebuilt_before = rebuilt(&processes);
    redis_server.kill().expect("stop redis");
    redis_server.wait().expect("redis stopped");
    redis_server = start_redis(redis_port, &dir);
    let restarted_at = Instant::now();
    eprintln!("{:?}: redis restarted empty after {} contacts", began.elapsed(), load.created());
    eventually("routing to rebuild after the restart", SETTLE, || {
        std::future::ready((rebuilt(&processes) > rebuilt_before).then_some(()))
    })
    .await;
    eprintln!("{:?}: rebuilt {:?} after the restart", began.elapsed(), restarted_at.elapsed());

    let Settled { created, ended, .. } = load.settle(&rig, &endpoints, &processes, &redis_url).await;
    assert_eq!(created.len(), CONTACTS);
    eprintln!("{:?}: settled", began.elapsed());
    let lost = count_in_logs(&processes, "routing", "routing state lost in redis");
    assert!(lost >= 2, "each loss was noticed (readiness went false): {lost}");
    assert!(ended.get("completed").copied().unwrap_or(0) > CONTACTS / 2, "most contacts were served: {ended:?}");
    for process in processes {
        let label = process.label.clone();
        let status = process.terminate();
        assert!(status.success(), "{label} exits cleanly: {status}");
    }
    let _ = redis_server.kill();
    let _ = redis_server.wait();
}
