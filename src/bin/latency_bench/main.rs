//! `latency_bench`: ingest-to-offer latency through the whole system at a
//! fixed rate. Runs the five services in this process against Kafka, Redis
//! and PostgreSQL, connects agents over `AgentSession`, then creates chat
//! contacts through the ingestion API on an open-loop schedule and times
//! each from its *scheduled* send time (so a stalled system cannot hide its
//! queueing: no coordinated omission) to its offer arriving on an agent's
//! stream. Agents accept and complete every offer at once.
//!
//! Before the system starts, a raw rdkafka producer (configured like the
//! platform's: idempotent, `acks=all`, `linger.ms=0`) sends records at the
//! same rate to the same broker, timed from scheduled send to delivery
//! report and to arrival at a raw consumer (one hop); the system's
//! percentiles are printed as ratios to that raw hop.
//!
//! With `--via webhook` contacts come in as signed Telegram updates posted
//! to a channel's webhook instead (see `webhook`), next to a raw HTTP
//! baseline.
//!
//! ```sh
//! cargo run --release --features bench --bin latency_bench -- --kafka 127.0.0.1:19092 \
//!     --redis redis://127.0.0.1:16379 --postgres postgres://postgres@127.0.0.1:15432/postgres \
//!     --rate 1000 --seconds 10 [--via webhook]
//! ```

mod counts;
mod cpu;
mod ready;
mod webhook;

// The services run here as in the `switchboard` binary: on its allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use switchboard::wiring::{Backends, ServiceKind, run_services};
use switchboard_core::event::ALL_TOPICS;
use switchboard_core::time::{millis_from_timestamp, now_millis};
use switchboard_platform::Config;
use switchboard_platform::config::{ApiKeyConfig, AuthConfig, KafkaConfig, RateLimitConfig, ServiceEndpoint};
use switchboard_proto::common::v1::{Channel, ChannelCapacity, CustomerIdentity, IdentityKind};
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{Contact, CreateContactRequest};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{
    AcceptOffer, Agent, AgentSessionRequest, AgentState, CompleteContact, CreateAgentRequest, Hello, SetState,
    agent_session_request, agent_session_response,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue};
use switchboard_test_support::{authorized, fresh_database, unique_suffix};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel as GrpcChannel;

const ADMIN: &str = "bench-admin";
const OPERATOR: &str = "bench-operator";
const OFFER_TIMEOUT_SECONDS: i64 = 60;
/// Contacts sent at once after the first, before the clock starts.
const WARM_UP_BURST: usize = 16;

#[derive(Debug, Parser)]
#[command(about = "Ingest-to-offer latency at a fixed rate, next to a raw rdkafka produce baseline")]
struct Options {
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// An admin URL: the bench creates a fresh database next to it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// Contacts (and baseline records) per second.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 20)]
    agents: usize,
    /// Chat capacity of each agent.
    #[arg(long, default_value_t = 25)]
    capacity: i32,
    /// How long to wait for the last offers after the last send.
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
    /// How contacts come in: `CreateContact` over gRPC, or Telegram
    /// updates posted to a channel's webhook (then also a raw HTTP
    /// baseline).
    #[arg(long, value_enum, default_value_t = Via::Grpc)]
    via: Via,
    /// librdkafka properties for every client of the services
    /// (`key=value`, repeatable), for experiments.
    #[arg(long = "kafka-property", value_parser = parse_property)]
    kafka_properties: Vec<(String, String)>,
    /// Worker threads of the services' runtime.
    #[arg(long, default_value_t = 2)]
    service_threads: usize,
    /// Partitions of each topic (the platform's default is 3).
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// `kafka.interactive_fetch_wait_ms` of the services (and the
    /// baseline's consumer); unset: the platform's default.
    #[arg(long)]
    interactive_fetch_wait_ms: Option<u32>,
    /// `kafka.hints = false`: interactive consumers fetch from the broker
    /// at `interactive_fetch_wait_ms` instead of taking records' hints
    /// from Redis.
    #[arg(long)]
    no_hints: bool,
    /// `routing.relay_interval_ms`; unset: the platform's default.
    #[arg(long)]
    relay_interval_ms: Option<u64>,
    /// Contacts come from this many customers in turn, so all but the
    /// first contact of each is a returning customer's; 0 (default): every
    /// contact is a new customer's.
    #[arg(long, default_value_t = 0)]
    returning_customers: usize,
    /// Queues the contacts are spread over in turn (`chat`, `chat-1`, …);
    /// every agent serves them all.
    #[arg(long, default_value_t = 1)]
    queues: usize,
}

/// The id of the bench's `index`th queue: `chat`, then `chat-1`, `chat-2`…
fn queue_id(index: usize) -> String {
    if index == 0 { "chat".to_owned() } else { format!("chat-{index}") }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Via {
    Grpc,
    Webhook,
}

fn parse_property(value: &str) -> Result<(String, String), String> {
    let (key, value) = value.split_once('=').ok_or_else(|| format!("`{value}` is not key=value"))?;
    Ok((key.to_owned(), value.to_owned()))
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * quantile).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

const QUANTILES: [(&str, f64); 5] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999), ("max", 1.0)];

fn summary(label: &str, latencies: &mut [Duration]) -> Vec<Duration> {
    latencies.sort_unstable();
    let values: Vec<Duration> = QUANTILES.iter().map(|(_, quantile)| percentile(latencies, *quantile)).collect();
    let cells: Vec<String> =
        QUANTILES.iter().zip(&values).map(|((name, _), value)| format!("{name} {:>9.2}ms", ms(*value))).collect();
    println!("  {label:<28} n={:<7} {}", latencies.len(), cells.join("  "));
    values
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// What raw rdkafka does on this broker at `rate` for `seconds`: each
/// record timed from its scheduled send to its delivery report (a produce)
/// and to its arrival at a consumer configured like the platform's (a hop;
/// the system path has two).
struct Baseline {
    produce: Vec<Duration>,
    hop: Vec<Duration>,
    elapsed: Duration,
}

/// `kafka` is the services' configuration: the baseline's consumer waits
/// like their interactive ones, on a topic of as many partitions.
async fn raw_kafka_baseline(options: &Options, topic: &str, kafka: &KafkaConfig) -> anyhow::Result<Baseline> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &options.kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .context("baseline producer")?;
    // Like `KafkaBus::subscribe`, without a group join to wait for.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &options.kafka)
        .set("group.id", format!("{topic}.hop"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", kafka.interactive_fetch_wait_ms.to_string())
        .create()
        .context("baseline consumer")?;
    let mut assigned = TopicPartitionList::new();
    for partition in 0..kafka.partitions {
        assigned.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assigned)?;
    // A first record through, so the consumer is fetching before the clock
    // starts.
    let warm_up = FutureRecord::to(topic).key("warm-up").payload(&[0xff_u8; 8]);
    producer.send(warm_up, Duration::from_secs(30)).await.map_err(|(error, _)| anyhow::anyhow!("{error}"))?;
    tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.context("warm-up record")??;
    let total = options.rate * options.seconds;
    let interval = Duration::from_secs(1) / u32::try_from(options.rate).context("rate")?;
    let start = Instant::now() + Duration::from_millis(100);
    let scheduled_at = move |sequence: u64| start + interval * u32::try_from(sequence).unwrap_or(u32::MAX);
    let hops = tokio::spawn(async move {
        let mut hops = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        while (hops.len() as u64) < total {
            let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(10), consumer.recv()).await else { break };
            let arrived = Instant::now();
            let sequence = message
                .payload()
                .and_then(|payload| payload.get(..8))
                .map(|bytes| u64::from_be_bytes(bytes.try_into().unwrap_or_default()));
            if let Some(sequence) = sequence {
                hops.push(arrived.saturating_duration_since(scheduled_at(sequence)));
            }
        }
        hops
    });
    let mut sends = tokio::task::JoinSet::new();
    for sequence in 0..total {
        let scheduled = scheduled_at(sequence);
        tokio::time::sleep_until(scheduled).await;
        let producer = producer.clone();
        let topic = topic.to_owned();
        sends.spawn(async move {
            let key = format!("key-{}", sequence % 1024);
            let mut payload = vec![0_u8; 256];
            payload[..8].copy_from_slice(&sequence.to_be_bytes());
            let record = FutureRecord::to(&topic).key(&key).payload(&payload);
            producer.send(record, Duration::from_secs(30)).await.map_err(|(error, _)| anyhow::anyhow!("{error}"))?;
            Ok::<Duration, anyhow::Error>(scheduled.elapsed())
        });
    }
    let mut produce = Vec::with_capacity(usize::try_from(total)?);
    while let Some(sent) = sends.join_next().await {
        produce.push(sent??);
    }
    let elapsed = start.elapsed();
    Ok(Baseline { produce, hop: hops.await?, elapsed })
}

fn config(options: &Options, kafka: KafkaConfig, postgres: String, run: &str) -> anyhow::Result<Config> {
    let mut config = Config { instance_id: format!("bench-{run}"), kafka, ..Config::default() };
    config.redis.url = options.redis.clone();
    config.redis.pool = format!("bench-{run}");
    if let Some(relay_interval_ms) = options.relay_interval_ms {
        config.routing.relay_interval_ms = relay_interval_ms;
    }
    config.postgres.url = postgres;
    let key = |name: &str, role: &str, tenant: Option<&str>, agent: Option<&str>| {
        ApiKeyConfig::for_key(name, name, role, tenant, agent)
    };
    let mut api_keys =
        vec![key(ADMIN, "tenant_admin", Some("bench"), None), key(OPERATOR, "operator_admin", None, None)];
    for agent in 0..options.agents {
        api_keys.push(key(&format!("bench-agent-{agent}"), "agent", None, Some(&format!("a{agent}"))));
    }
    config.auth = AuthConfig {
        tenants: vec!["bench".to_owned()],
        api_keys,
        service_key: Some(switchboard::operator::random_secret("sbs_")),
        // One admin key drives the whole load: measure the platform, not its limits.
        rate_limit: RateLimitConfig {
            per_key_per_second: 0,
            per_key_burst: 0,
            per_tenant_per_second: 0,
            per_tenant_burst: 0,
            streams_per_key: 0,
        },
        tenant_policies: Default::default(),
        oidc: None,
    };
    for endpoint in [
        &mut config.services.ingestion,
        &mut config.services.routing,
        &mut config.services.presence,
        &mut config.services.crm,
        &mut config.services.kpi,
    ] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        *endpoint = ServiceEndpoint {
            listen: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}"),
            http_listen: String::new(),
        };
    }
    if options.via == Via::Webhook {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        config.services.ingestion.http_listen = format!("127.0.0.1:{port}");
        // The channel's provider API is the bench's own server on loopback.
        config.ingestion.allow_private_destinations = true;
    }
    config.validate()?;
    Ok(config)
}

fn channel(url: &str) -> anyhow::Result<GrpcChannel> {
    Ok(GrpcChannel::from_shared(url.to_owned())?.connect_lazy())
}

/// Retries `call` until it succeeds: the services are still starting.
async fn until_ready<T, F, Fut>(what: &str, mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(status) if Instant::now() > deadline => anyhow::bail!("{what}: {status}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// When each contact's offer arrived, by its sequence number, with the
/// routing decision's time (offer expiry minus the offer timeout).
type Arrivals = Arc<Mutex<HashMap<usize, (Instant, i64)>>>;

/// One agent: available, accepts every offer and completes it at once.
async fn run_agent(
    presence: GrpcChannel,
    agent: usize,
    arrivals: Arrivals,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (requests, outbound) = mpsc::unbounded_channel();
    let send = |kind| requests.send(AgentSessionRequest { kind: Some(kind) }).map_err(|_| anyhow::anyhow!("closed"));
    send(agent_session_request::Kind::Hello(Hello { agent: format!("agents/a{agent}") }))?;
    let available = SetState { state: AgentState::Available as i32, reason: String::new() };
    send(agent_session_request::Kind::SetState(available))?;
    let mut client = PresenceServiceClient::new(presence);
    let key = format!("bench-agent-{agent}");
    let mut responses =
        client.agent_session(authorized(&key, UnboundedReceiverStream::new(outbound))).await?.into_inner();
    loop {
        let message = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            message = responses.message() => message?,
        };
        let Some(kind) = message.and_then(|message| message.kind) else {
            anyhow::bail!("agent a{agent}: the session ended");
        };
        match kind {
            agent_session_response::Kind::Offer(offer) => {
                let received = Instant::now();
                let expire_ms = offer.expire_time.as_ref().map_or(0, millis_from_timestamp);
                if let Some(sequence) = offer.subject.strip_prefix("bench ").and_then(|rest| rest.parse().ok()) {
                    let decided_ms = expire_ms - OFFER_TIMEOUT_SECONDS * 1_000;
                    let mut arrivals = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    arrivals.entry(sequence).or_insert((received, decided_ms));
                }
                send(agent_session_request::Kind::AcceptOffer(AcceptOffer { contact: offer.contact }))?;
            }
            agent_session_response::Kind::OfferAccepted(accepted) => {
                let complete = CompleteContact {
                    contact: accepted.contact,
                    disposition: "bench".to_owned(),
                    resolved: true,
                    notes: String::new(),
                };
                send(agent_session_request::Kind::CompleteContact(complete))?;
            }
            _ => {}
        }
    }
}

/// Thread name prefix of the load driver's runtime (the `cpu` split).
const DRIVER_THREADS: &str = "driver";

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    // The services get their own runtime, so their CPU time can be told
    // apart from the driver's (see `cpu`).
    let services = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.service_threads)
        .thread_name("services")
        .enable_all()
        .build()?;
    let driver = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(DRIVER_THREADS)
        .enable_all()
        .build()?;
    let outcome = driver.block_on(drive(options, services.handle().clone()));
    services.shutdown_background();
    outcome
}

async fn drive(options: Options, services: tokio::runtime::Handle) -> anyhow::Result<()> {
    let run = unique_suffix();
    let total = usize::try_from(options.rate * options.seconds)?;
    println!(
        "rate {}/s for {} s ({total} contacts), {} agents x chat {}",
        options.rate, options.seconds, options.agents, options.capacity
    );

    // The platform's admin path creates the topic (as many partitions as
    // the services' topics): tansu does not create topics on first produce.
    let defaults = KafkaConfig::default();
    let kafka = KafkaConfig {
        brokers: options.kafka.clone(),
        partitions: options.partitions,
        interactive_fetch_wait_ms: options.interactive_fetch_wait_ms.unwrap_or(defaults.interactive_fetch_wait_ms),
        replication_factor: 1,
        group_prefix: format!("bench-{run}"),
        topic_prefix: format!("bench-{run}."),
        properties: options.kafka_properties.iter().cloned().collect(),
        hints: !options.no_hints,
        ..defaults
    };
    kafka.validate_paces()?;
    switchboard_platform::bus::kafka::KafkaBus::connect(&kafka, &["baseline"]).await?;
    let baseline_topic = format!("bench-{run}.baseline");
    let mut baseline = raw_kafka_baseline(&options, &baseline_topic, &kafka).await?;
    println!(
        "raw rdkafka (idempotent, acks=all, linger.ms=0; consumer fetch.wait.max.ms={} like routing's and presence's; {} partitions), from scheduled send:",
        kafka.interactive_fetch_wait_ms, kafka.partitions
    );
    println!("  achieved {:.0} records/s", baseline.produce.len() as f64 / baseline.elapsed.as_secs_f64());
    summary("produce -> delivery report", &mut baseline.produce);
    let hop_values = summary("produce -> consumed (a hop)", &mut baseline.hop);
    let http_values = if options.via == Via::Webhook {
        let (mut posts, elapsed) = webhook::raw_http_baseline(options.rate, options.seconds).await?;
        println!("raw HTTP (the same client and bodies, to a server that only answers 200), from scheduled send:");
        println!("  achieved {:.0} posts/s", posts.len() as f64 / elapsed.as_secs_f64());
        Some(summary("post -> 200", &mut posts))
    } else {
        None
    };

    let postgres = fresh_database(&options.postgres).await?;
    let config = config(&options, kafka, postgres, &run)?;
    let shutdown = CancellationToken::new();
    let system = services.spawn(run_services(
        config.clone(),
        ServiceKind::ALL.to_vec(),
        Backends::External,
        false,
        shutdown.clone(),
    ));

    let routing = RoutingServiceClient::new(channel(&config.services.routing.url)?);
    let queue = Queue {
        channels: vec![Channel::Chat as i32, Channel::Messenger as i32],
        offer_timeout: Some(prost_types::Duration { seconds: OFFER_TIMEOUT_SECONDS, nanos: 0 }),
        ..Queue::default()
    };
    let queues = options.queues.max(1);
    for index in 0..queues {
        let request = CreateQueueRequest {
            parent: "tenants/bench".to_owned(),
            queue_id: queue_id(index),
            queue: Some(queue.clone()),
        };
        until_ready("create queue", || {
            let mut routing = routing.clone();
            let request = request.clone();
            async move { routing.create_queue(authorized(ADMIN, request)).await }
        })
        .await?;
    }
    let presence_channel = channel(&config.services.presence.url)?;
    let presence = PresenceServiceClient::new(presence_channel.clone());
    for agent in 0..options.agents {
        let definition = Agent {
            tenants: vec!["tenants/bench".to_owned()],
            capacities: [Channel::Chat, Channel::Messenger]
                .iter()
                .map(|channel| ChannelCapacity { channel: *channel as i32, max_concurrent: options.capacity })
                .collect(),
            ..Agent::default()
        };
        let request = CreateAgentRequest { agent_id: format!("a{agent}"), agent: Some(definition) };
        until_ready("create agent", || {
            let mut presence = presence.clone();
            let request = request.clone();
            async move { presence.create_agent(authorized(OPERATOR, request)).await }
        })
        .await?;
    }
    let arrivals: Arrivals = Arc::new(Mutex::new(HashMap::with_capacity(total)));
    let stop = CancellationToken::new();
    let mut agents = tokio::task::JoinSet::new();
    for agent in 0..options.agents {
        agents.spawn(run_agent(presence_channel.clone(), agent, arrivals.clone(), stop.clone()));
    }
    let ingestion_url = config.services.ingestion.url.clone();
    let clients: Vec<IngestionServiceClient<GrpcChannel>> = (0..4)
        .map(|_| Ok(IngestionServiceClient::new(GrpcChannel::from_shared(ingestion_url.clone())?.connect_lazy())))
        .collect::<anyhow::Result<_>>()?;
    let webhook_address: Option<std::net::SocketAddr> = match options.via {
        Via::Grpc => None,
        Via::Webhook => {
            let ingestion = channel(&ingestion_url)?;
            until_ready("create channel", || {
                webhook::create_channel(ingestion.clone(), ADMIN, "tenants/bench/queues/chat")
            })
            .await?;
            Some(config.services.ingestion.http_listen.parse()?)
        }
    };
    let create = |sequence: usize| -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>> {
        if let Some(address) = webhook_address {
            return Box::pin(async move { webhook::post(address, &webhook::path(), &webhook::update(sequence)).await });
        }
        let mut client = clients[sequence % clients.len()].clone();
        let customer = if options.returning_customers == 0 { sequence } else { sequence % options.returning_customers };
        let contact = Contact {
            channel: Channel::Chat as i32,
            from: Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: format!("{run}-{customer}") }),
            queue: format!("tenants/bench/queues/{}", queue_id(sequence % queues)),
            subject: format!("bench {sequence}"),
            ..Contact::default()
        };
        let request = CreateContactRequest {
            parent: "tenants/bench".to_owned(),
            contact: Some(contact),
            request_id: format!("bench-{run}-{sequence}"),
        };
        Box::pin(async move { client.create_contact(authorized(ADMIN, request)).await.map(|_| ()).map_err(Into::into) })
    };
    // Warm-up: one contact through the whole path, so every consumer is
    // assigned, then a burst on every client connection, so the pools
    // (database connections, their prepared statements, gRPC connections)
    // hold what the measured rate needs before the clock starts.
    let warm = Instant::now() + Duration::from_secs(60);
    while let Err(error) = create(usize::MAX).await {
        anyhow::ensure!(Instant::now() < warm, "the warm-up contact was never taken in: {error:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    futures::future::try_join_all((1..=WARM_UP_BURST).map(|offset| create(usize::MAX - offset))).await?;
    loop {
        let arrived = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len();
        if arrived > WARM_UP_BURST {
            break;
        }
        anyhow::ensure!(Instant::now() < warm, "the warm-up contacts were never offered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A fresh Redis reads as a lost routing state: routing rebuilds it at
    // start, and its consumer retries what it took in meanwhile with
    // backoff. The clock starts once every service reports ready, so the
    // run measures the steady path, not the end of that startup.
    ready::all_ready(&config, warm).await?;

    let interval = Duration::from_secs(1) / u32::try_from(options.rate)?;
    let count_sources = counts::Sources {
        redis_url: options.redis.clone(),
        kafka_bootstrap: options.kafka.clone(),
        topics: ALL_TOPICS.iter().map(|topic| format!("{}{topic}", config.kafka.topic_prefix)).collect(),
        postgres_url: config.postgres.url.clone(),
    };
    let counts_before = counts::sample(&count_sources).await?;
    let cpu_before = cpu::sample(DRIVER_THREADS);
    // Scheduled after the samples, which take a while (the broker's
    // offsets): the first sends must not start late.
    let start = Instant::now() + Duration::from_millis(100);
    let mut scheduled = Vec::with_capacity(total);
    let mut sends = tokio::task::JoinSet::new();
    for sequence in 0..total {
        let at = start + interval * u32::try_from(sequence)?;
        scheduled.push((at, now_millis() + i64::try_from(at.saturating_duration_since(Instant::now()).as_millis())?));
        tokio::time::sleep_until(at).await;
        let call = create(sequence);
        sends.spawn(async move { call.await.map(|_| at.elapsed()) });
    }
    let sent_by = start.elapsed();
    let mut create_latencies = Vec::with_capacity(total);
    let mut failed = 0;
    while let Some(sent) = sends.join_next().await {
        match sent? {
            Ok(latency) => create_latencies.push(latency),
            Err(_) => failed += 1,
        }
    }
    let drain = Instant::now() + Duration::from_secs(options.drain_seconds);
    loop {
        let received = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len() - 1 - WARM_UP_BURST;
        if received >= total - failed || Instant::now() > drain {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_after = cpu::sample(DRIVER_THREADS);
    let measured_seconds = start.elapsed().as_secs_f64();
    // PostgreSQL's backends report their statistics within a second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let counts_after = counts::sample(&count_sources).await?;
    stop.cancel();
    let arrivals = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let mut offer_latencies = Vec::with_capacity(total);
    let (mut to_decision, mut decision_to_offer) = (Vec::new(), Vec::new());
    // (ingest-to-offer, to the decision, scheduled since the start) of each.
    let mut slowest = Vec::with_capacity(total);
    let mut last_arrival = start;
    for (sequence, (at, at_ms)) in scheduled.iter().enumerate() {
        if let Some((received, decided_ms)) = arrivals.get(&sequence) {
            offer_latencies.push(received.saturating_duration_since(*at));
            last_arrival = last_arrival.max(*received);
            let decided = Duration::from_millis(u64::try_from((decided_ms - at_ms).max(0))?);
            to_decision.push(decided);
            decision_to_offer.push(received.saturating_duration_since(*at).saturating_sub(decided));
            slowest.push((received.saturating_duration_since(*at), decided, at.duration_since(start)));
        }
    }
    slowest.sort_by_key(|(latency, _, _)| std::cmp::Reverse(*latency));
    let entry = if options.via == Via::Webhook { "webhook post" } else { "CreateContact" };
    println!("system, scheduled {entry} -> Offer on the agent's stream:");
    println!(
        "  sent {total} in {:.2} s, {failed} failed; {} offers, last {:.2} s after the first send: {:.0} offers/s",
        sent_by.as_secs_f64(),
        offer_latencies.len(),
        last_arrival.duration_since(start).as_secs_f64(),
        offer_latencies.len() as f64 / last_arrival.duration_since(start).as_secs_f64()
    );
    let response_values = summary(
        if options.via == Via::Webhook { "webhook 200" } else { "CreateContact response" },
        &mut create_latencies,
    );
    summary("scheduled -> routing decision", &mut to_decision);
    summary("routing decision -> offer", &mut decision_to_offer);
    let system_values = summary("ingest-to-offer", &mut offer_latencies);
    let ratios: Vec<String> = QUANTILES
        .iter()
        .zip(system_values.iter().zip(&hop_values))
        .map(|((name, _), (system, base))| format!("{name} {:.1}x", ms(*system) / ms(*base).max(0.001)))
        .collect();
    println!("  ingest-to-offer / raw hop:      {}", ratios.join("  "));
    let worst: Vec<String> = slowest
        .iter()
        .take(5)
        .map(|(latency, decided, since_start)| {
            format!(
                "{:.0} ms at {:.2} s (decided after {:.0} ms)",
                ms(*latency),
                since_start.as_secs_f64(),
                ms(*decided)
            )
        })
        .collect();
    println!("  slowest: {}", worst.join(", "));
    if let Some(http_values) = &http_values {
        let ratio = |values: &[Duration]| {
            QUANTILES
                .iter()
                .zip(values.iter().zip(http_values))
                .map(|((name, _), (system, base))| format!("{name} {:.1}x", ms(*system) / ms(*base).max(0.001)))
                .collect::<Vec<_>>()
                .join("  ")
        };
        println!("  webhook 200 / raw HTTP:         {}", ratio(&response_values));
        println!("  webhook-to-offer / raw HTTP:    {}", ratio(&system_values));
    }
    cpu::report(&cpu_before, &cpu_after, offer_latencies.len(), measured_seconds);
    counts::report(&counts_before, &counts_after, offer_latencies.len());

    shutdown.cancel();
    while let Some(agent) = agents.join_next().await {
        if let Err(error) = agent? {
            eprintln!("agent: {error:#}");
        }
    }
    system.await??;
    Ok(())
}
