//! A contact center under load for whole-system tests that break things
//! (kill replicas, flush Redis, restart services): queues of two tenants on
//! four channels, agents on desktops that accept, reject and ignore offers
//! and reconnect when their session breaks, customers arriving on an open
//! loop (retrying a create with the same request id until it is taken) and
//! some leaving; and the checks after: every contact ends in exactly one
//! terminal state, which GetAssignment and the replayed routing log agree
//! on, with the routing invariants intact.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchboard_core::event::ROUTING_TOPIC;
use switchboard_core::time::now_millis;
use switchboard_platform::bus::kafka::KafkaBus;
use switchboard_platform::config::KafkaConfig;
use switchboard_proto::common::v1::{Channel, ChannelCapacity, CustomerIdentity, IdentityKind};
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{AbandonContactRequest, Contact, CreateContactRequest};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{
    AcceptOffer, Agent, AgentSessionRequest, AgentState, CompleteContact, CreateAgentRequest, Hello, RejectOffer,
    SetState, agent_session_request, agent_session_response,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel as GrpcChannel;

use super::routing_log::{Replay, await_every_end, verify_exactly_once};
use super::{Endpoints, Process, agent_key, authorized};

pub const OPERATOR: &str = "dev-operator-admin";

/// A whole-system test's setup on the real backends: a fresh database, a run
/// id naming its topics, groups and Redis pool, a seed for its load, a
/// scratch directory, and once [`Rig::configure`]d, a config file with the
/// agents' keys and the routing topic created with one partition (so its
/// order is the order of the changes; see `routing_replicas.rs`).
pub struct Rig {
    pub kafka: String,
    pub postgres: String,
    pub run: String,
    pub seed: u64,
    pub dir: std::path::PathBuf,
    pub routing_topic: String,
}

impl Rig {
    /// `None` when Kafka or PostgreSQL is not configured (the test is
    /// skipped; under `CI=true` it fails instead).
    pub async fn prepare(label: &str) -> Option<Rig> {
        let kafka = switchboard_test_support::backend_url("SWITCHBOARD_TEST_KAFKA")?;
        let postgres_admin = switchboard_test_support::backend_url("SWITCHBOARD_TEST_POSTGRES")?;
        let postgres = switchboard_test_support::fresh_database(&postgres_admin).await.expect("database");
        let run = switchboard_test_support::unique_suffix();
        let seed: u64 = rand::random();
        eprintln!("{label}: run {run}, seed {seed}");
        let routing_topic = format!("e2e-{run}.{ROUTING_TOPIC}");
        Some(Rig { kafka, postgres, run, seed, dir: super::scratch_dir(label), routing_topic })
    }

    /// Writes the config for Redis at `redis_url` and creates the routing
    /// topic; returns the config file's path.
    pub async fn configure(&self, redis_url: &str) -> String {
        let agents = agent_names();
        let config = super::real_backend_config(&self.kafka, redis_url, &self.postgres, &self.run, 3_000)
            + &super::agent_keys_config(&agents);
        let config_path = self.dir.join("switchboard.toml");
        std::fs::write(&config_path, config).expect("config file");
        let observed = KafkaConfig {
            brokers: self.kafka.clone(),
            partitions: 1,
            replication_factor: 1,
            group_prefix: format!("e2e-{}-observer", self.run),
            topic_prefix: format!("e2e-{}.", self.run),
            ..Default::default()
        };
        KafkaBus::connect(&observed, &[ROUTING_TOPIC]).await.expect("routing topic");
        config_path.to_string_lossy().to_string()
    }

    /// The whole routing topic, once the outbox of Redis at `redis_url` is
    /// drained (every event acknowledged by the broker).
    pub async fn routing_log(&self, redis_url: &str) -> Vec<(i64, switchboard_proto::events::v1::EventEnvelope)> {
        let redis = redis::Client::open(redis_url).expect("redis url");
        let key = format!("sb:{{e2e-{}}}:outbox", self.run);
        super::eventually("the routing outbox to drain", SETTLE, || {
            // A new connection each time: Redis may have restarted.
            let (redis, key) = (redis.clone(), key.clone());
            async move {
                let mut connection = redis.get_multiplexed_async_connection().await.ok()?;
                let length: i64 = redis::cmd("XLEN").arg(&key).query_async(&mut connection).await.ok()?;
                (length == 0).then_some(())
            }
        })
        .await;
        let (kafka, topic) = (self.kafka.clone(), self.routing_topic.clone());
        tokio::task::spawn_blocking(move || super::routing_log::read_whole_topic(&kafka, &topic)).await.unwrap()
    }
}
pub const OFFER_TIMEOUT_MS: i32 = 1_500;
/// How long the system may take to end every contact after the load.
pub const SETTLE: Duration = Duration::from_secs(90);

pub const VOICE: i32 = Channel::Voice as i32;
pub const EMAIL: i32 = Channel::Email as i32;
pub const CHAT: i32 = Channel::Chat as i32;
pub const SMS: i32 = Channel::Sms as i32;

/// (agent, tenants, capacities per channel).
pub type AgentSpec = (&'static str, &'static [&'static str], &'static [(i32, i32)]);
pub const AGENTS: [AgentSpec; 8] = [
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

pub fn agent_names() -> Vec<&'static str> {
    AGENTS.iter().map(|(agent, _, _)| *agent).collect()
}

pub fn grpc(url: &str) -> GrpcChannel {
    GrpcChannel::from_shared(url.to_owned()).expect("url").connect_lazy()
}

pub async fn create_queues_and_agents(endpoints: &Endpoints) {
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

/// The load of a whole-system test: every agent on its desktop and
/// customers arriving on an open loop, until the contacts are all created
/// and the agents are stopped.
pub struct Load {
    stop: CancellationToken,
    desktops: tokio::task::JoinSet<AgentReport>,
    created: Arc<AtomicUsize>,
    creator: Option<tokio::task::JoinHandle<Vec<Created>>>,
}

impl Load {
    /// Starts `contacts` creates, one every `interval` (see
    /// [`create_contacts`]), and the agents' desktops ([`run_agent`]).
    pub fn start(endpoints: &Endpoints, seed: u64, contacts: usize, interval: Duration) -> Load {
        let stop = CancellationToken::new();
        let mut desktops = tokio::task::JoinSet::new();
        for (index, agent) in agent_names().into_iter().enumerate() {
            // Apart from the creators' seeds (`seed + worker`).
            desktops.spawn(run_agent(
                endpoints.url("presence"),
                agent,
                seed.wrapping_add(1_000 + index as u64),
                stop.clone(),
            ));
        }
        let created = Arc::new(AtomicUsize::new(0));
        let creator =
            tokio::spawn(create_contacts(endpoints.url("ingestion"), seed, contacts, interval, Arc::clone(&created)));
        Load { stop, desktops, created, creator: Some(creator) }
    }

    /// How many contacts were created so far.
    pub fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` contacts were created.
    pub async fn until_created(&self, count: usize) {
        super::eventually(&format!("{count} contacts to be created"), SETTLE, || {
            std::future::ready((self.created() >= count).then_some(()))
        })
        .await;
    }

    /// Every contact, once all are created.
    pub async fn all_created(&mut self) -> Vec<Created> {
        let creator = self.creator.take().expect("all_created once");
        creator.await.expect("creator")
    }

    /// The end of a run: every contact created, then ended (as
    /// GetAssignment says), the desktops stopped, and the routing log read
    /// once the outbox of Redis at `redis_url` drained and checked by
    /// [`verify_exactly_once`].
    pub async fn settle(mut self, rig: &Rig, endpoints: &Endpoints, processes: &[Process], redis_url: &str) -> Settled {
        let began = Instant::now();
        let created = self.all_created().await;
        let statuses = await_every_end(&endpoints.url("routing"), &created, processes).await;
        eprintln!("every contact ended, {:?} after the last was created", began.elapsed());
        for report in self.stop_agents().await {
            eprintln!("agent report: {report:?}");
        }
        let records = rig.routing_log(redis_url).await;
        let (replayed, ended) = verify_exactly_once(&records, &created, &statuses, processes);
        eprintln!("{} records, {} duplicates dropped; ended {ended:?}", records.len(), replayed.duplicates);
        Settled { created, statuses, replayed, ended }
    }

    /// Stops the desktops; their reports.
    pub async fn stop_agents(mut self) -> Vec<AgentReport> {
        self.stop.cancel();
        let mut reports = Vec::new();
        while let Some(report) = self.desktops.join_next().await {
            reports.push(report.expect("desktop"));
        }
        reports
    }
}

/// What a settled run created and how its contacts ended.
pub struct Settled {
    pub created: Vec<Created>,
    /// Each contact's status, as GetAssignment answers.
    pub statuses: HashMap<String, i32>,
    pub replayed: Replay,
    pub ended: BTreeMap<&'static str, usize>,
}

/// Per agent capacities, for the log replay.
pub fn capacities() -> HashMap<String, HashMap<i32, i32>> {
    AGENTS
        .iter()
        .map(|(agent, _, capacities)| (format!("agents/{agent}"), capacities.iter().copied().collect()))
        .collect()
}

#[derive(Debug, Default)]
pub struct AgentReport {
    pub offers: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub ignored: usize,
    pub completed: usize,
    pub errors: usize,
    /// Requests sent again after an UNAVAILABLE answer.
    pub retried: usize,
    /// Times presence marked the agent NOT_RESPONDING (missed offers).
    pub not_responding: usize,
    /// Sessions that broke and were opened again.
    pub reconnects: usize,
    /// Why the last session broke, if one did.
    pub last_break: Option<String>,
}

/// One agent's desktop: available all along; of each offer it accepts
/// 70%, rejects 12% and lets 18% time out; completes accepted contacts
/// after a short handling time. When presence marks it NOT_RESPONDING the
/// agent comes back (as a person would); when its session breaks (presence
/// restarting) the desktop opens a new one, as a real desktop does.
pub async fn run_agent(presence_url: String, agent: &'static str, seed: u64, stop: CancellationToken) -> AgentReport {
    let mut report = AgentReport::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut desk = Desk::default();
    loop {
        let broke = run_session(&presence_url, agent, &mut rng, &mut desk, &mut report, &stop).await;
        let Some(reason) = broke else { return report };
        report.reconnects += 1;
        report.last_break = Some(reason);
        tokio::select! {
            () = stop.cancelled() => return report,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// What a desktop remembers across its sessions.
#[derive(Default)]
struct Desk {
    /// Contacts accepted, each completed once.
    handled: HashSet<String>,
    /// Contacts this desktop asked to accept, until the answer.
    accepting: HashSet<String>,
    /// Contacts this desktop is completing, until presence confirms.
    completing: HashSet<String>,
}

/// One session until `stop` (`None`) or until it breaks (the reason).
async fn run_session(
    presence_url: &str,
    agent: &'static str,
    rng: &mut StdRng,
    desk: &mut Desk,
    report: &mut AgentReport,
    stop: &CancellationToken,
) -> Option<String> {
    let (requests, outbound) = mpsc::unbounded_channel();
    let send = |requests: &mpsc::UnboundedSender<AgentSessionRequest>, kind| {
        let _ = requests.send(AgentSessionRequest { kind: Some(kind) });
    };
    send(&requests, agent_session_request::Kind::Hello(Hello { agent: format!("agents/{agent}") }));
    send(
        &requests,
        agent_session_request::Kind::SetState(SetState { state: AgentState::Available as i32, reason: String::new() }),
    );
    // What the broken session never answered is sent again, as the
    // AgentSession contract asks.
    for contact in &desk.accepting {
        send(&requests, agent_session_request::Kind::AcceptOffer(AcceptOffer { contact: contact.clone() }));
    }
    for contact in &desk.completing {
        send(&requests, agent_session_request::Kind::CompleteContact(completion(contact.clone())));
    }
    let mut client = PresenceServiceClient::new(grpc(presence_url));
    let opened = client.agent_session(authorized(&agent_key(agent), UnboundedReceiverStream::new(outbound))).await;
    let mut responses = match opened {
        Ok(responses) => responses.into_inner(),
        Err(status) => return Some(status.to_string()),
    };
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return None,
            message = responses.message() => message,
        };
        let kind = match message {
            Ok(Some(message)) => message.kind,
            Ok(None) => return Some("the stream ended".to_owned()),
            Err(status) => return Some(status.to_string()),
        };
        match kind {
            Some(agent_session_response::Kind::Offer(offer)) => {
                if desk.handled.contains(&offer.contact) {
                    continue;
                }
                report.offers += 1;
                match rng.random_range(0..100) {
                    0..70 => {
                        report.accepted += 1;
                        desk.accepting.insert(offer.contact.clone());
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
                desk.accepting.remove(&accepted.contact);
                complete_later(&requests, accepted.contact, desk, rng);
            }
            // A reconnecting desktop is sent the contacts it holds; one whose
            // completion was lost with the old session is completed again.
            Some(agent_session_response::Kind::ContactInProgress(in_progress)) => {
                desk.accepting.remove(&in_progress.contact);
                if desk.completing.contains(&in_progress.contact) {
                    let again = agent_session_request::Kind::CompleteContact(completion(in_progress.contact));
                    send_later(&requests, again, Duration::from_millis(50));
                } else {
                    complete_later(&requests, in_progress.contact, desk, rng);
                }
            }
            Some(agent_session_response::Kind::ContactCompleted(completed)) => {
                desk.completing.remove(&completed.contact);
                report.completed += 1;
            }
            // Nothing changed (routing rebuilding its state, a dependency
            // restarting): the desktop sends the request again, as the
            // contract of `SessionError` asks.
            Some(agent_session_response::Kind::Error(error)) if error.code == tonic::Code::Unavailable as i32 => {
                report.retried += 1;
                let again = if desk.accepting.contains(&error.contact) {
                    agent_session_request::Kind::AcceptOffer(AcceptOffer { contact: error.contact })
                } else if desk.completing.contains(&error.contact) {
                    agent_session_request::Kind::CompleteContact(completion(error.contact))
                } else {
                    agent_session_request::Kind::SetState(SetState {
                        state: AgentState::Available as i32,
                        reason: String::new(),
                    })
                };
                send_later(&requests, again, Duration::from_millis(250));
            }
            // A final refusal: nothing to send again. Its reason says what
            // it refused: a decision on the offer (the offer went back to
            // its queue, or is answered already: maybe by this desktop's
            // own earlier accept, whose completion must go on), or the
            // contact itself (ended, not this agent's).
            Some(agent_session_response::Kind::Error(error)) => {
                report.errors += 1;
                desk.accepting.remove(&error.contact);
                let refused_the_offer_only = matches!(
                    error.reason.as_str(),
                    "OFFER_EXPIRED" | "NOT_OFFERED_TO_AGENT" | "CONTACT_ALREADY_ANSWERED"
                );
                if !refused_the_offer_only {
                    desk.completing.remove(&error.contact);
                }
            }
            // A revocation of an offer this desktop rejected itself (the
            // reply, or the withdrawal event that follows it) is about that
            // offer only: an accept of the contact's next offer, already in
            // flight, goes on.
            Some(agent_session_response::Kind::OfferRevoked(revoked))
                if !matches!(revoked.reason.as_str(), "REJECTED" | "WITHDRAW_REASON_REJECTED") =>
            {
                desk.accepting.remove(&revoked.contact);
            }
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

/// Completes `contact` after a short handling time, once.
fn complete_later(
    requests: &mpsc::UnboundedSender<AgentSessionRequest>,
    contact: String,
    desk: &mut Desk,
    rng: &mut StdRng,
) {
    if !desk.handled.insert(contact.clone()) {
        return;
    }
    desk.completing.insert(contact.clone());
    let handling = Duration::from_millis(rng.random_range(50..500));
    send_later(requests, agent_session_request::Kind::CompleteContact(completion(contact)), handling);
}

fn completion(contact: String) -> CompleteContact {
    CompleteContact { contact, disposition: "done".to_owned(), resolved: true, notes: String::new() }
}

fn send_later(
    requests: &mpsc::UnboundedSender<AgentSessionRequest>,
    kind: agent_session_request::Kind,
    after: Duration,
) {
    let requests = requests.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = requests.send(AgentSessionRequest { kind: Some(kind) });
    });
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
pub struct Created {
    pub name: String,
    pub tenant: String,
    pub created_ms: i64,
}

/// Creates `count` contacts, one every `interval`, from four workers;
/// about one in eight customers leaves after 0.2-3 s (an abandon may come
/// too late, once the contact is answered: then it is refused and the
/// contact completes). A create that fails (ingestion restarting) is
/// retried with the same request id until it is taken, as a client does.
pub async fn create_contacts(
    ingestion_url: String,
    seed: u64,
    count: usize,
    interval: Duration,
    created_count: Arc<AtomicUsize>,
) -> Vec<Created> {
    let start = tokio::time::Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let ingestion_url = ingestion_url.clone();
        let created_count = created_count.clone();
        workers.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(worker));
            let ingestion = IngestionServiceClient::new(grpc(&ingestion_url));
            let mut created = Vec::new();
            for index in (0..count).filter(|index| index % 4 == worker as usize) {
                tokio::time::sleep_until(start + interval * u32::try_from(index).unwrap()).await;
                let (tenant, contact) = contact_for(index);
                let request = CreateContactRequest {
                    parent: format!("tenants/{tenant}"),
                    contact: Some(contact),
                    request_id: format!("load-{seed}-{index}"),
                };
                let key = format!("dev-{tenant}-admin");
                let deadline = Instant::now() + SETTLE;
                let contact = loop {
                    match ingestion.clone().create_contact(authorized(&key, request.clone())).await {
                        Ok(contact) => break contact.into_inner(),
                        Err(status) if Instant::now() < deadline => {
                            eprintln!("create {index} failed ({}), retrying", status.message());
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        Err(status) => panic!("create {index} never succeeded: {status}"),
                    }
                };
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
