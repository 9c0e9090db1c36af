//! Several routing replicas against one Kafka, Redis and PostgreSQL under
//! concurrent load, and a `kill -9` of one of them mid-load (issue 3's
//! guarantee). Agents with mixed capacities accept, reject, let offers
//! time out and complete; customers of two tenants arrive on four
//! channels, and some leave while waiting. The replica killed holds
//! partitions of the contacts topic and has offers ringing when it dies.
//!
//! Afterwards the whole routing topic is read and replayed:
//! - every created contact was queued once and ends in exactly one
//!   terminal state (completed or abandoned), which GetAssignment agrees on;
//! - a contact is offered to at most one agent at a time;
//! - no agent exceeds a channel's capacity or mixes voice with other work;
//! - contacts created after the kill are routed by the survivors.
//!
//! Delivery is at least once: after the relay leader dies its successor
//! republishes what the dead one published but had not yet acknowledged,
//! so the same event (same event id) can appear twice. The replay keeps the
//! first copy of each event id and reports how many copies it dropped.
//!
//! The routing topic is created with one partition before the services
//! start, so the order of its records is the order the replicas committed
//! the changes in (the outbox stream, relayed in order). Per-agent capacity
//! needs that total order; events of different contacts on several
//! partitions have none. The contacts and presence topics keep three
//! partitions, which the routing replicas share as one consumer group.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{Endpoints, Process, agent_key, authorized, eventually, free_port, scratch_dir};
use switchboard_core::event::ROUTING_TOPIC;
use switchboard_core::time::now_millis;
use switchboard_platform::bus::kafka::KafkaBus;
use switchboard_platform::config::KafkaConfig;
use switchboard_proto::common::v1::{Channel, ChannelCapacity, ContactStatus, CustomerIdentity, IdentityKind};
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{AbandonContactRequest, Contact, CreateContactRequest};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{
    AcceptOffer, Agent, AgentSessionRequest, AgentState, CompleteContact, CreateAgentRequest, Hello, RejectOffer,
    SetState, agent_session_request, agent_session_response,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, GetAssignmentRequest, Queue};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel as GrpcChannel;

const OPERATOR: &str = "dev-operator-admin";
const CONTACTS: usize = 240;
/// Contacts are created at this pace (open loop), so the load runs ~8 s.
const CREATE_INTERVAL: Duration = Duration::from_millis(33);
const OFFER_TIMEOUT_MS: i32 = 1_500;
const SETTLE: Duration = Duration::from_secs(60);

const VOICE: i32 = Channel::Voice as i32;
const EMAIL: i32 = Channel::Email as i32;
const CHAT: i32 = Channel::Chat as i32;
const SMS: i32 = Channel::Sms as i32;

/// (agent, tenants, capacities per channel).
type AgentSpec = (&'static str, &'static [&'static str], &'static [(i32, i32)]);
const AGENTS: [AgentSpec; 8] = [
    ("r1", &["acme"], &[(CHAT, 3)]),
    ("r2", &["acme", "globex"], &[(CHAT, 2), (EMAIL, 2)]),
    ("r3", &["acme"], &[(VOICE, 1), (CHAT, 2)]),
    ("r4", &["globex"], &[(CHAT, 2), (SMS, 2)]),
    ("r5", &["acme", "globex"], &[(VOICE, 1)]),
    ("r6", &["globex"], &[(CHAT, 1), (EMAIL, 3)]),
    ("r7", &["acme"], &[(EMAIL, 2), (CHAT, 1)]),
    ("r8", &["acme", "globex"], &[(CHAT, 2), (VOICE, 1), (SMS, 1)]),
];

/// (tenant, queue, channel) of the contacts, round robin.
const LINES: [(&str, &str, i32); 8] = [
    ("acme", "support", CHAT),
    ("acme", "support", VOICE),
    ("acme", "billing", EMAIL),
    ("acme", "billing", CHAT),
    ("globex", "help", CHAT),
    ("globex", "help", SMS),
    ("globex", "help", EMAIL),
    ("globex", "help", VOICE),
];

fn grpc(url: &str) -> GrpcChannel {
    GrpcChannel::from_shared(url.to_owned()).expect("url").connect_lazy()
}

async fn create_queues_and_agents(endpoints: &Endpoints) {
    let mut routing = RoutingServiceClient::new(grpc(&endpoints.url("routing")));
    for (tenant, queue_id, channels) in [
        ("acme", "support", vec![CHAT, VOICE]),
        ("acme", "billing", vec![EMAIL, CHAT]),
        ("globex", "help", vec![CHAT, SMS, EMAIL, VOICE]),
    ] {
        let queue = Queue {
            channels,
            offer_timeout: Some(switchboard_core::time::duration_from_millis(i64::from(OFFER_TIMEOUT_MS))),
            ..Queue::default()
        };
        let request = CreateQueueRequest {
            parent: format!("tenants/{tenant}"),
            queue_id: queue_id.to_owned(),
            queue: Some(queue),
        };
        routing.create_queue(authorized(&format!("dev-{tenant}-admin"), request)).await.expect("create queue");
    }
    let mut presence = PresenceServiceClient::new(grpc(&endpoints.url("presence")));
    for (agent, tenants, capacities) in AGENTS {
        let definition = Agent {
            tenants: tenants.iter().map(|tenant| format!("tenants/{tenant}")).collect(),
            capacities: capacities
                .iter()
                .map(|(channel, max_concurrent)| ChannelCapacity { channel: *channel, max_concurrent: *max_concurrent })
                .collect(),
            ..Agent::default()
        };
        let request = CreateAgentRequest { agent_id: agent.to_owned(), agent: Some(definition) };
        presence.create_agent(authorized(OPERATOR, request)).await.expect("create agent");
    }
}

#[derive(Debug, Default)]
struct AgentReport {
    offers: usize,
    accepted: usize,
    rejected: usize,
    ignored: usize,
    completed: usize,
    errors: usize,
    /// Times presence marked the agent NOT_RESPONDING (missed offers).
    not_responding: usize,
    /// Why the session ended before the test stopped it, if it did.
    broken: Option<String>,
}

/// One agent's desktop: available all along; of each offer it accepts
/// 70%, rejects 12% and lets 18% time out; completes accepted contacts
/// after a short handling time. When presence marks it NOT_RESPONDING
/// after missed offers, the agent comes back (as a person would).
async fn run_agent(presence_url: String, agent: &'static str, seed: u64, stop: CancellationToken) -> AgentReport {
    let mut report = AgentReport::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let (requests, outbound) = mpsc::unbounded_channel();
    let send = |requests: &mpsc::UnboundedSender<AgentSessionRequest>, kind| {
        let _ = requests.send(AgentSessionRequest { kind: Some(kind) });
    };
    send(&requests, agent_session_request::Kind::Hello(Hello { agent: format!("agents/{agent}") }));
    send(
        &requests,
        agent_session_request::Kind::SetState(SetState { state: AgentState::Available as i32, reason: String::new() }),
    );
    let mut client = PresenceServiceClient::new(grpc(&presence_url));
    let mut responses = client
        .agent_session(authorized(&agent_key(agent), UnboundedReceiverStream::new(outbound)))
        .await
        .expect("session opens")
        .into_inner();
    let mut handled = HashSet::new();
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return report,
            message = responses.message() => message,
        };
        let kind = match message {
            Ok(Some(message)) => message.kind,
            Ok(None) => {
                report.broken = Some("the stream ended".to_owned());
                return report;
            }
            Err(status) => {
                report.broken = Some(status.to_string());
                return report;
            }
        };
        match kind {
            Some(agent_session_response::Kind::Offer(offer)) => {
                if handled.contains(&offer.contact) {
                    continue;
                }
                report.offers += 1;
                match rng.random_range(0..100) {
                    0..70 => {
                        report.accepted += 1;
                        send(
                            &requests,
                            agent_session_request::Kind::AcceptOffer(AcceptOffer { contact: offer.contact }),
                        );
                    }
                    70..82 => {
                        report.rejected += 1;
                        let reject = RejectOffer { contact: offer.contact, reason: "busy".to_owned() };
                        send(&requests, agent_session_request::Kind::RejectOffer(reject));
                    }
                    _ => report.ignored += 1,
                }
            }
            Some(agent_session_response::Kind::OfferAccepted(accepted)) => {
                if !handled.insert(accepted.contact.clone()) {
                    continue;
                }
                // Handling time: the agent works on the contact.
                let handling = Duration::from_millis(rng.random_range(50..500));
                let requests = requests.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(handling).await;
                    let complete = CompleteContact {
                        contact: accepted.contact,
                        disposition: "done".to_owned(),
                        resolved: true,
                        notes: String::new(),
                    };
                    send(&requests, agent_session_request::Kind::CompleteContact(complete));
                });
            }
            Some(agent_session_response::Kind::ContactCompleted(_)) => report.completed += 1,
            Some(agent_session_response::Kind::Error(_)) => report.errors += 1,
            Some(agent_session_response::Kind::StateChanged(changed))
                if changed.state == AgentState::NotResponding as i32 =>
            {
                report.not_responding += 1;
                let back = SetState { state: AgentState::Available as i32, reason: String::new() };
                send(&requests, agent_session_request::Kind::SetState(back));
            }
            _ => {}
        }
    }
}

fn contact_for(index: usize) -> (String, Contact) {
    let (tenant, queue, channel) = LINES[index % LINES.len()];
    let from = match channel {
        VOICE | SMS => CustomerIdentity { kind: IdentityKind::Phone as i32, value: format!("+1555{index:06}") },
        EMAIL => CustomerIdentity { kind: IdentityKind::Email as i32, value: format!("c{index}@example.com") },
        _ => CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: format!("visitor-{index}") },
    };
    let contact = Contact {
        channel,
        from: Some(from),
        queue: format!("tenants/{tenant}/queues/{queue}"),
        subject: format!("contact {index}"),
        priority: i32::try_from(index % 3).unwrap(),
        ..Contact::default()
    };
    (tenant.to_owned(), contact)
}

#[derive(Debug, Clone)]
struct Created {
    name: String,
    tenant: String,
    created_ms: i64,
}

/// Creates the contacts at a fixed pace from four workers; about one in
/// eight customers leaves after 0.2-3 s (an abandon may come too late, once
/// the contact is answered: then it is refused and the contact completes).
async fn create_contacts(ingestion_url: String, seed: u64, created_count: Arc<AtomicUsize>) -> Vec<Created> {
    let start = tokio::time::Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let ingestion_url = ingestion_url.clone();
        let created_count = created_count.clone();
        workers.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(worker));
            let mut ingestion = IngestionServiceClient::new(grpc(&ingestion_url));
            let mut created = Vec::new();
            for index in (0..CONTACTS).filter(|index| index % 4 == worker as usize) {
                tokio::time::sleep_until(start + CREATE_INTERVAL * u32::try_from(index).unwrap()).await;
                let (tenant, contact) = contact_for(index);
                let request = CreateContactRequest {
                    parent: format!("tenants/{tenant}"),
                    contact: Some(contact),
                    request_id: format!("replicas-{seed}-{index}"),
                };
                let key = format!("dev-{tenant}-admin");
                let contact = ingestion.create_contact(authorized(&key, request)).await.expect("create").into_inner();
                created_count.fetch_add(1, Ordering::SeqCst);
                created.push(Created { name: contact.name.clone(), tenant: tenant.clone(), created_ms: now_millis() });
                if rng.random_range(0..8) == 0 {
                    let patience = Duration::from_millis(rng.random_range(200..3_000));
                    let mut ingestion = ingestion.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(patience).await;
                        let request = AbandonContactRequest { name: contact.name, reason: "hung up".to_owned() };
                        let _ = ingestion.abandon_contact(authorized(&key, request)).await;
                    });
                }
            }
            created
        });
    }
    let mut all = Vec::new();
    while let Some(created) = workers.join_next().await {
        all.extend(created.expect("creator"));
    }
    all
}

async fn replicas_under_load_survive_a_kill(replicas: usize) {
    let Some(kafka) = switchboard_test_support::backend_url("SWITCHBOARD_TEST_KAFKA") else { return };
    let Some(redis_url) = switchboard_test_support::backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let Some(postgres_admin) = switchboard_test_support::backend_url("SWITCHBOARD_TEST_POSTGRES") else { return };
    let began = Instant::now();
    let postgres = switchboard_test_support::fresh_database(&postgres_admin).await.expect("database");
    let run = switchboard_test_support::unique_suffix();
    let seed: u64 = rand::random();
    eprintln!("run {run}, seed {seed}, {replicas} routing replicas");
    let dir = scratch_dir("routing-replicas");
    let agents: Vec<&str> = AGENTS.iter().map(|(agent, _, _)| *agent).collect();
    let config =
        support::real_backend_config(&kafka, &redis_url, &postgres, &run, 3_000) + &support::agent_keys_config(&agents);
    let config_path = dir.join("switchboard.toml");
    std::fs::write(&config_path, config).expect("config file");
    let config_arg = config_path.to_string_lossy().to_string();

    // The routing topic in one partition, before any service creates it.
    let observed = KafkaConfig {
        brokers: kafka.clone(),
        partitions: 1,
        replication_factor: 1,
        group_prefix: format!("e2e-{run}-observer"),
        topic_prefix: format!("e2e-{run}."),
    };
    KafkaBus::connect(&observed, &[ROUTING_TOPIC]).await.expect("routing topic");
    let routing_topic = format!("e2e-{run}.{ROUTING_TOPIC}");

    // Replica 1 starts first, so it leads the Kafka group and the outbox
    // relay, and listens on the address the other services call (a Service
    // in Kubernetes). Replica 2 is the one killed.
    let endpoints = Endpoints::pick();
    let spawn_routing = |index: usize, port: u16| {
        let mut env = endpoints.env();
        env.push(("SWITCHBOARD_SERVICES__ROUTING__LISTEN".to_owned(), format!("127.0.0.1:{port}")));
        env.push(("SWITCHBOARD_INSTANCE_ID".to_owned(), format!("routing-{index}-{run}")));
        Process::spawn(&format!("routing-{index}"), &["routing", "--config", &config_arg], &env, &dir)
    };
    let holds_partitions = |process: &Process| {
        let log = std::fs::read_to_string(&process.log).unwrap_or_default();
        log.contains("kafka partitions assigned").then_some(())
    };
    let api_port = endpoints.url("routing").rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let mut processes = vec![spawn_routing(1, api_port)];
    support::wait_until_url_serving("routing-1", &endpoints.url("routing"), &mut processes).await;
    eventually("routing-1 to join its group", SETTLE, || std::future::ready(holds_partitions(&processes[0]))).await;
    let mut victim = vec![spawn_routing(2, free_port())];
    for index in 3..=replicas {
        processes.push(spawn_routing(index, free_port()));
    }
    for service in ["crm", "presence", "kpi", "ingestion"] {
        processes.push(Process::spawn(service, &[service, "--config", &config_arg], &endpoints.env(), &dir));
    }
    support::wait_until_serving(&endpoints, &mut processes).await;
    for process in processes.iter().chain(&victim).filter(|process| process.label.starts_with("routing")) {
        eventually(&format!("{} to hold partitions", process.label), SETTLE, || {
            std::future::ready(holds_partitions(process))
        })
        .await;
    }
    let redis = redis::Client::open(redis_url.as_str()).expect("redis url");
    let redis = redis.get_multiplexed_async_connection().await.expect("redis");
    let victim = victim.pop().expect("routing-2");
    create_queues_and_agents(&endpoints).await;
    eprintln!("{:?}: {} processes serving", began.elapsed(), processes.len() + 1);

    // Load: agents on their desktops, contacts arriving, a kill halfway.
    let stop = CancellationToken::new();
    let mut desktops = tokio::task::JoinSet::new();
    for (index, agent) in agents.iter().enumerate() {
        let seed = seed.wrapping_add(1_000 + index as u64);
        desktops.spawn(run_agent(endpoints.url("presence"), agent, seed, stop.clone()));
    }
    let created_count = Arc::new(AtomicUsize::new(0));
    let creator = tokio::spawn(create_contacts(endpoints.url("ingestion"), seed, created_count.clone()));
    eventually("half of the contacts to be created", SETTLE, || {
        let created = created_count.load(Ordering::SeqCst);
        async move { (created >= CONTACTS / 2).then_some(()) }
    })
    .await;
    let revoked = |processes: &[Process]| {
        let logs = processes.iter().filter(|process| process.label.starts_with("routing"));
        logs.map(|process| std::fs::read_to_string(&process.log).unwrap_or_default())
            .map(|log| log.matches("kafka partitions revoked").count())
            .sum::<usize>()
    };
    let revoked_before_kill = revoked(&processes);
    let mut victim = victim;
    victim.child.kill().expect("kill -9 routing-2");
    victim.child.wait().expect("routing-2 ended");
    let kill_ms = now_millis();
    let victim_log = std::fs::read_to_string(&victim.log).unwrap_or_default();
    eprintln!(
        "{:?}: routing-2 killed after {} contacts, having queued {} and offered {}",
        began.elapsed(),
        created_count.load(Ordering::SeqCst),
        victim_log.matches("contact queued").count(),
        victim_log.matches("contact offered").count()
    );
    let created = creator.await.expect("creator");
    assert_eq!(created.len(), CONTACTS);
    eprintln!("{:?}: all {CONTACTS} contacts created", began.elapsed());

    // The group evicts the dead member after its session timeout (the
    // survivor whose heartbeat notices rejoins), but tansu 0.6.0 then hands
    // out the old assignment again (same generation), so the dead member's partitions of the contacts topic
    // stay unconsumed until the group changes. Kubernetes restarts a killed
    // pod: a replacement replica joining after the eviction makes the
    // group assign all partitions anew. Apache Kafka reassigns them to the
    // survivors at the eviction already.
    eventually("the group to evict routing-2", SETTLE, || {
        std::future::ready((revoked(&processes) > revoked_before_kill).then_some(()))
    })
    .await;
    let replacement_ms = now_millis();
    processes.push(spawn_routing(replicas + 1, free_port()));
    eprintln!("{:?}: routing-2 evicted from the group, routing-{} started", began.elapsed(), replicas + 1);

    // Every contact reaches a terminal state, as GetAssignment reports it.
    let mut routing = RoutingServiceClient::new(grpc(&endpoints.url("routing")));
    let mut statuses: HashMap<String, i32> = HashMap::new();
    let deadline = Instant::now() + SETTLE;
    loop {
        for contact in &created {
            if statuses.get(&contact.name).is_some_and(|status| is_terminal(*status)) {
                continue;
            }
            let request = GetAssignmentRequest { contact: contact.name.clone() };
            let key = format!("dev-{}-reader", contact.tenant);
            if let Ok(assignment) = routing.get_assignment(authorized(&key, request)).await {
                statuses.insert(contact.name.clone(), assignment.into_inner().status);
            }
        }
        let open: Vec<_> = created.iter().filter(|c| !statuses.get(&c.name).is_some_and(|s| is_terminal(*s))).collect();
        if open.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let sample: Vec<_> = open.iter().take(10).map(|c| (&c.name, statuses.get(&c.name))).collect();
            let logs: Vec<String> = processes.iter().map(|p| format!("--- {}\n{}", p.label, p.log_tail())).collect();
            panic!("{} contacts never ended, e.g. {sample:?}\n{}", open.len(), logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{:?}: every contact ended", began.elapsed());
    stop.cancel();
    let mut reports = Vec::new();
    while let Some(report) = desktops.join_next().await {
        reports.push(report.expect("desktop"));
    }
    for report in &reports {
        assert!(report.broken.is_none(), "an agent session broke: {report:?}");
    }

    // The outbox is drained (every event acknowledged by the broker), so
    // the topic up to its high watermark holds every routing event.
    eventually("the routing outbox to drain", SETTLE, || {
        let mut redis = redis.clone();
        let key = format!("sb:{{e2e-{run}}}:outbox");
        async move {
            let length: i64 = redis::cmd("XLEN").arg(&key).query_async(&mut redis).await.ok()?;
            (length == 0).then_some(())
        }
    })
    .await;
    let records = tokio::task::spawn_blocking(move || support::routing_log::read_whole_topic(&kafka, &routing_topic))
        .await
        .unwrap();
    let capacities = AGENTS
        .iter()
        .map(|(agent, _, capacities)| (format!("agents/{agent}"), capacities.iter().copied().collect()))
        .collect();
    let replayed = support::routing_log::replay(&records, &capacities);
    eprintln!(
        "{:?}: {} records, {} distinct events, {} duplicates dropped; agents {:?}; peak load {:?}",
        began.elapsed(),
        records.len(),
        replayed.events,
        replayed.duplicates,
        reports
            .iter()
            .map(|r| (r.offers, r.accepted, r.rejected, r.ignored, r.completed, r.errors))
            .collect::<Vec<_>>(),
        replayed.max_load
    );
    assert!(replayed.violations.is_empty(), "invariants broken:\n{}", replayed.violations.join("\n"));

    // Exactly one terminal state per contact, the same in the log and in
    // GetAssignment; nothing in the log that nobody created.
    let names: HashSet<&String> = created.iter().map(|contact| &contact.name).collect();
    assert_eq!(names.len(), CONTACTS, "every create made a distinct contact");
    for name in replayed.terminal.keys() {
        assert!(names.contains(name), "the log ends {name}, which this test never created");
    }
    let mut ended = BTreeMap::new();
    for contact in &created {
        let logged = replayed.terminal.get(&contact.name).unwrap_or_else(|| panic!("{} has no end", contact.name));
        let expected = if *logged == "completed" { ContactStatus::Completed } else { ContactStatus::Abandoned };
        assert_eq!(statuses[&contact.name], expected as i32, "{}: GetAssignment disagrees with the log", contact.name);
        *ended.entry(*logged).or_insert(0) += 1;
    }

    // The survivors took over: contacts created after the kill were offered
    // and answered, and offers that were ringing at the kill were resolved
    // (the replay shows each offer withdrawn or answered, never left open).
    let after_kill: Vec<&Created> = created.iter().filter(|contact| contact.created_ms > kill_ms).collect();
    let answered_after = after_kill.iter().filter(|c| replayed.terminal.get(&c.name) == Some(&"completed")).count();
    let survivors_only =
        replayed.offer_times.values().flatten().filter(|time| **time > kill_ms && **time < replacement_ms).count();
    let ringing_at_kill = replayed
        .offer_times
        .values()
        .filter(|times| times.iter().any(|time| *time <= kill_ms && *time + i64::from(OFFER_TIMEOUT_MS) > kill_ms))
        .count();
    eprintln!(
        "{:?}: ended {ended:?}; {} created after the kill, {answered_after} of them completed; {ringing_at_kill} contacts had an offer ringing at the kill; {survivors_only} offers made by the survivors alone",
        began.elapsed(),
        after_kill.len()
    );
    assert!(survivors_only > 0, "the survivors went on routing before any replacement joined");
    assert!(after_kill.len() >= CONTACTS / 3, "the load went on after the kill");
    assert!(answered_after * 2 >= after_kill.len(), "the survivors routed contacts created after the kill");
    assert!(ended.get("completed").copied().unwrap_or(0) > CONTACTS / 2, "most contacts were served: {ended:?}");
}

fn is_terminal(status: i32) -> bool {
    status == ContactStatus::Completed as i32 || status == ContactStatus::Abandoned as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routing_replicas_keep_the_invariants_through_a_kill() {
    replicas_under_load_survive_a_kill(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_routing_replicas_keep_the_invariants_through_a_kill() {
    replicas_under_load_survive_a_kill(3).await;
}
