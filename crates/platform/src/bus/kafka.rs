//! The Kafka event bus (rdkafka). The producer is idempotent and `publish`
//! awaits the delivery report; consumers store an offset only after the
//! handler's side effect is durable, and commit stored offsets periodically
//! and on close.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaErrorCode;
use switchboard_core::Error;
use switchboard_core::event::encode;
use switchboard_proto::events::v1::EventEnvelope;

use super::hints::{Hinted, HintedSubscription, Hints};
use super::kafka_group::{GroupContext, PartitionProgress, StarvationWatch, WATCH_INTERVAL};
use super::kafka_producer::{DeliveryReports, Outgoing, RenewingProducer, ReportingProducer};
use super::{
    Assignment, EventBus, Pace, RawRecord, Received, Scan, StartFrom, Subscription, decode_record, outgoing_traceparent,
};
use crate::config::KafkaConfig;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// `fetch.wait.max.ms` of [`Pace::Background`].
const BACKGROUND_FETCH_WAIT_MS: u32 = 100;
/// `fetch.wait.max.ms` of [`Pace::Projection`].
const PROJECTION_FETCH_WAIT_MS: u32 = 500;
/// `fetch.min.bytes` of [`Pace::Projection`]: a broker that answers a
/// fetch as soon as it has this much (Kafka does, tansu waits the whole
/// `fetch.wait.max.ms` anyway) gathers a batch's worth first.
const PROJECTION_FETCH_MIN_BYTES: u32 = 1 << 20;
/// How long a scan waits for the next record it knows exists.
const SCAN_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

fn unavailable(context: &str, error: impl std::fmt::Display) -> Error {
    Error::unavailable("the event bus is unavailable")
        .with_reason("EVENT_BUS_UNAVAILABLE")
        .with_detail(format!("kafka {context}: {error}"))
}

/// A client that could not be made: settings librdkafka refuses (an
/// unknown or malformed `kafka.properties` entry) are a configuration
/// mistake to fix, named as such; anything else is an outage.
fn not_made(context: &str, error: rdkafka::error::KafkaError) -> Error {
    match error {
        rdkafka::error::KafkaError::ClientConfig(_, description, key, value) => Error::failed_precondition(format!(
            "kafka {context}: librdkafka refuses `{key}` = `{value}`: {description}"
        ))
        .with_reason("INVALID_KAFKA_SETTING"),
        other => unavailable(context, other),
    }
}

#[derive(Clone)]
pub struct KafkaBus {
    config: KafkaConfig,
    producer: RenewingProducer,
    /// Set: acknowledged records are hinted, and interactive consumers
    /// listen for hints and fetch at the background pace (see
    /// [`super::hints`]).
    hints: Option<Hints>,
}

impl KafkaBus {
    /// The broker's name of a logical topic.
    fn physical_topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.config.topic_prefix)
    }

    /// Connects the producer and creates `topics` if they are missing.
    pub async fn connect(config: &KafkaConfig, topics: &[&str]) -> Result<KafkaBus, Error> {
        let bus =
            KafkaBus { config: config.clone(), producer: renewing_producer(config, DELIVERY_TIMEOUT)?, hints: None };
        bus.create_topics(topics).await?;
        Ok(bus)
    }

    /// The bus, hinting every record it publishes and listening for hints
    /// in its interactive subscriptions (see [`super::hints`]).
    pub fn with_hints(mut self, hints: Hints) -> KafkaBus {
        self.hints = Some(hints);
        self
    }

    /// Sends a record of logical topic `topic` and, once the broker
    /// acknowledged it, hints it.
    async fn send(&self, topic: &str, outgoing: Outgoing<'_>, traceparent: Option<&str>) -> Result<(), Error> {
        let (physical_topic, key, payload) = (outgoing.topic, outgoing.key, outgoing.payload);
        let placed =
            self.producer.send(outgoing, DELIVERY_TIMEOUT).await.map_err(|error| unavailable("delivery", error))?;
        if let Some(hints) = &self.hints {
            hints.announce(physical_topic, Hinted { topic, placed, key, payload, traceparent });
        }
        Ok(())
    }

    async fn create_topics(&self, topics: &[&str]) -> Result<(), Error> {
        let admin: AdminClient<DefaultClientContext> = with_properties(connection(&self.config), &self.config)
            .create()
            .map_err(|error| unavailable("admin", error))?;
        let physical_topics: Vec<String> = topics.iter().map(|topic| self.physical_topic(topic)).collect();
        let new_topics: Vec<NewTopic<'_>> = physical_topics
            .iter()
            .map(|topic| {
                NewTopic::new(
                    topic.as_str(),
                    self.config.partitions,
                    TopicReplication::Fixed(self.config.replication_factor),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results =
            admin.create_topics(&new_topics, &options).await.map_err(|error| unavailable("create topics", error))?;
        for result in results {
            match result {
                Ok(topic) => tracing::info!(topic, "kafka topic created"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                // A configuration mistake, not an outage: say which setting.
                Err((topic, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                    return Err(Error::failed_precondition(format!(
                        "cannot create topic `{topic}`: kafka.replication_factor = {} is more than the cluster's \
                         brokers (set it to at most their count, or -1 for the brokers' default)",
                        self.config.replication_factor
                    ))
                    .with_reason("INVALID_REPLICATION_FACTOR"));
                }
                Err((topic, code)) => return Err(unavailable("create topic", format!("{topic}: {code}"))),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn publish(&self, topic: &str, envelope: &EventEnvelope) -> Result<(), Error> {
        let payload = encode(envelope);
        let mut headers = OwnedHeaders::new()
            .insert(Header { key: "event_id", value: Some(envelope.event_id.as_str()) })
            .insert(Header { key: "tenant", value: Some(envelope.tenant.as_str()) });
        let traceparent = outgoing_traceparent();
        if let Some(traceparent) = &traceparent {
            headers = headers.insert(Header { key: "traceparent", value: Some(traceparent.as_str()) });
        }
        let physical_topic = self.physical_topic(topic);
        let outgoing =
            Outgoing { topic: &physical_topic, key: envelope.subject.as_bytes(), payload: &payload, headers };
        self.send(topic, outgoing, traceparent.as_deref()).await
    }

    async fn publish_raw(&self, record: &RawRecord) -> Result<(), Error> {
        let mut headers = OwnedHeaders::new();
        if let Some(traceparent) = &record.traceparent {
            headers = headers.insert(Header { key: "traceparent", value: Some(traceparent.as_str()) });
        }
        let physical_topic = self.physical_topic(&record.topic);
        let outgoing = Outgoing { topic: &physical_topic, key: &record.key, payload: &record.payload, headers };
        self.send(&record.topic, outgoing, record.traceparent.as_deref()).await
    }

    /// Reads every partition from its start until the consumer reaches its
    /// end (librdkafka's partition EOF, from the fetch responses). The
    /// listed end offsets only tell which partitions hold anything: a
    /// broker may list the end of a partition as the base of its last batch
    /// plus one (tansu does), which would cut a scan short of the records
    /// written together with that batch's first.
    async fn scan(&self, topic: &str, visit: &mut (dyn FnMut(RawRecord) -> Scan + Send)) -> Result<(), Error> {
        let physical_topic = self.physical_topic(topic);
        let mut client_config = connection(&self.config);
        client_config
            // Never joins or commits: the id only satisfies the client.
            .set("group.id", format!("{}.scan", self.config.group_prefix))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "10");
        let client_config = with_properties(client_config, &self.config);
        let consumer: StreamConsumer = client_config.create().map_err(|error| unavailable("scan consumer", error))?;
        let ends = partition_ends(client_config, &physical_topic).await?;
        let mut assignment = TopicPartitionList::new();
        let mut remaining: Vec<i32> = Vec::new();
        for (partition, low, high) in &ends {
            if high > low {
                assignment
                    .add_partition_offset(&physical_topic, *partition, rdkafka::Offset::Offset(*low))
                    .map_err(|error| unavailable("scan assign", error))?;
                remaining.push(*partition);
            }
        }
        if remaining.is_empty() {
            return Ok(());
        }
        consumer.assign(&assignment).map_err(|error| unavailable("scan assign", error))?;
        while !remaining.is_empty() {
            let received = tokio::time::timeout(SCAN_IDLE_TIMEOUT, consumer.recv())
                .await
                .map_err(|_| unavailable("scan", "no record arrived before the end of the topic"))?;
            let message = match received {
                Ok(message) => message,
                Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                    remaining.retain(|known| *known != partition);
                    continue;
                }
                Err(error) => return Err(unavailable("scan", error)),
            };
            if !remaining.contains(&message.partition()) {
                continue;
            }
            if visit(raw_record(&message, topic)) == Scan::Stop {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn subscribe_paced(
        &self,
        group: &str,
        topics: &[&str],
        start: StartFrom,
        pace: Pace,
    ) -> Result<Box<dyn Subscription>, Error> {
        let reset = match start {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        // A hinted interactive consumer sees records through their hints:
        // its fetches only catch those whose hint was lost.
        let hinted = pace == Pace::Interactive && self.hints.is_some();
        let fetch_pace = if hinted { Pace::Background } else { pace };
        let (fetch_wait_ms, fetch_min_bytes) = fetch_settings(fetch_pace, self.config.interactive_fetch_wait_ms);
        let mut client_config = connection(&self.config);
        client_config
            .set("group.id", format!("{}.{group}", self.config.group_prefix))
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by `ack`, after the side effect.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", reset)
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "5000")
            // Lag per partition, for metrics.
            .set("statistics.interval.ms", "5000")
            // librdkafka's default (500 ms) is how long a fetch may wait at
            // the broker; tansu waits all of it even when records arrive, so
            // every hop cost ~0.5 s of latency (measured, docs/benchmarks.md).
            .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
            .set("fetch.min.bytes", fetch_min_bytes.to_string());
        let physical_topics: Vec<String> = topics.iter().map(|topic| self.physical_topic(topic)).collect();
        let membership = Membership {
            client_config: with_properties(client_config, &self.config),
            group: group.to_owned(),
            physical_topics,
            topic_prefix: self.config.topic_prefix.clone(),
            assignment: Assignment::default(),
        };
        let consumer = membership.join()?;
        let subscription = Box::new(KafkaSubscription {
            consumer,
            membership,
            watch: StarvationWatch::default(),
            next_watch: tokio::time::Instant::now() + WATCH_INTERVAL,
            progress: None,
        });
        match &self.hints {
            Some(hints) if hinted => {
                let topics = topics.iter().map(|topic| (self.physical_topic(topic), *topic));
                Ok(Box::new(HintedSubscription::new(subscription, hints.listen(topics, group), group)))
            }
            _ => Ok(subscription),
        }
    }

    fn bounded(&self, timeout: Duration) -> Result<Option<Arc<dyn EventBus>>, Error> {
        let bus = KafkaBus {
            config: self.config.clone(),
            producer: renewing_producer(&self.config, timeout)?,
            hints: self.hints.clone(),
        };
        Ok(Some(Arc::new(bus)))
    }

    async fn check(&self) -> Result<(), Error> {
        let producer = self.producer.current();
        if let Some(fatal) = self.producer.renew_if_failed_for_good(&producer, None) {
            return Err(unavailable("producer", fatal));
        }
        tokio::task::spawn_blocking(move || {
            producer.base().client().fetch_metadata(None, Duration::from_secs(3)).map(|_| ())
        })
        .await
        .map_err(|error| unavailable("metadata", error))?
        .map_err(|error| unavailable("metadata", error))
    }

    async fn flush(&self) -> Result<(), Error> {
        let producer = self.producer.current();
        tokio::task::spawn_blocking(move || producer.base().flush(DELIVERY_TIMEOUT))
            .await
            .map_err(|error| unavailable("flush", error))?
            .map_err(|error| unavailable("flush", error))
    }
}

/// What a member needs to join its group again.
struct Membership {
    client_config: ClientConfig,
    group: String,
    physical_topics: Vec<String>,
    topic_prefix: String,
    assignment: Assignment,
}

impl Membership {
    /// A new member of the group, subscribed to the topics.
    fn join(&self) -> Result<Arc<StreamConsumer<GroupContext>>, Error> {
        let context = GroupContext {
            group: self.group.clone(),
            consumer: self.group.clone(),
            topic_prefix: self.topic_prefix.clone(),
            assignment: self.assignment.clone(),
        };
        let consumer: StreamConsumer<GroupContext> =
            self.client_config.create_with_context(context).map_err(|error| unavailable("consumer", error))?;
        let physical_refs: Vec<&str> = self.physical_topics.iter().map(String::as_str).collect();
        consumer.subscribe(&physical_refs).map_err(|error| unavailable("subscribe", error))?;
        Ok(Arc::new(consumer))
    }
}

struct KafkaSubscription {
    consumer: Arc<StreamConsumer<GroupContext>>,
    membership: Membership,
    watch: StarvationWatch,
    next_watch: tokio::time::Instant,
    /// The group's progress being looked up (broker round trips on a
    /// blocking thread). Kept here, not in a future of `receive`, so a
    /// caller that drops `receive` for something else (a hint) does not
    /// throw the look-up away: the watch must see two samples apart.
    progress: Option<tokio::task::JoinHandle<Result<Vec<PartitionProgress>, Error>>>,
}

/// What woke a receive.
enum Woken<'a> {
    Message(rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'a>>),
    WatchDue,
    Progress(Result<Result<Vec<PartitionProgress>, Error>, tokio::task::JoinError>),
}

impl KafkaSubscription {
    /// While this member holds no partitions: starts looking up the
    /// group's progress (see [`KafkaSubscription::observe_progress`]).
    fn start_watch(&mut self) {
        let assignment = &self.membership.assignment;
        if assignment.is_assigned() || !assignment.is_settled() {
            self.watch.reset();
            assignment.set_starving(false);
            return;
        }
        let consumer = Arc::clone(&self.consumer);
        let topics = self.membership.physical_topics.clone();
        self.progress = Some(tokio::task::spawn_blocking(move || group_progress(&consumer, &topics)));
    }

    /// When records wait that nobody commits, reports it and rejoins.
    fn observe_progress(&mut self, progress: Vec<PartitionProgress>) -> Result<(), Error> {
        let assignment = &self.membership.assignment;
        let now = std::time::Instant::now();
        let starving = self.watch.observe(&progress, now);
        assignment.set_starving(starving);
        if starving && self.watch.may_rejoin(now) {
            tracing::warn!(
                group = %self.membership.group,
                "holding no partitions while records wait that no member consumes: rejoining the group"
            );
            let replaced = std::mem::replace(&mut self.consumer, self.membership.join()?);
            // Leaving the group blocks while librdkafka closes the member.
            tokio::task::spawn_blocking(move || drop(replaced));
        }
        Ok(())
    }

    /// What librdkafka handed over: the record decoded, named by its
    /// logical topic, or the transport error.
    fn received(
        &self,
        message: rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'_>>,
    ) -> Result<Received, Error> {
        let message = message.map_err(|error| unavailable("receive", error))?;
        let topic = logical_topic(message.topic(), &self.membership.topic_prefix);
        Ok(decode_record(raw_record(&message, &topic)))
    }
}

/// The group's committed offset and the log end of every partition of
/// `physical_topics`.
fn group_progress(
    consumer: &StreamConsumer<GroupContext>,
    physical_topics: &[String],
) -> Result<Vec<PartitionProgress>, Error> {
    let timeout = Duration::from_secs(5);
    let mut partitions = TopicPartitionList::new();
    for topic in physical_topics {
        let metadata =
            consumer.fetch_metadata(Some(topic), timeout).map_err(|error| unavailable("group metadata", error))?;
        for topic_metadata in metadata.topics() {
            for partition in topic_metadata.partitions() {
                partitions.add_partition(topic, partition.id());
            }
        }
    }
    let committed = consumer.committed_offsets(partitions, timeout).map_err(|error| unavailable("committed", error))?;
    let mut progress = Vec::new();
    for element in committed.elements() {
        let (_, high_watermark) = consumer
            .fetch_watermarks(element.topic(), element.partition(), timeout)
            .map_err(|error| unavailable("watermarks", error))?;
        let committed = match element.offset() {
            rdkafka::Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        progress.push(PartitionProgress {
            topic: element.topic().to_owned(),
            partition: element.partition(),
            committed,
            high_watermark,
        });
    }
    Ok(progress)
}

#[async_trait]
impl Subscription for KafkaSubscription {
    fn assignment(&self) -> Assignment {
        self.membership.assignment.clone()
    }

    /// Cancel-safe: a record librdkafka fetched stays queued, and a look-up
    /// of the group's progress goes on (`progress`).
    async fn receive(&mut self) -> Result<Received, Error> {
        loop {
            let consumer = Arc::clone(&self.consumer);
            let next_watch = self.next_watch;
            let lookup = &mut self.progress;
            let watching = lookup.is_some();
            let woken = tokio::select! {
                message = consumer.recv() => Woken::Message(message),
                () = tokio::time::sleep_until(next_watch), if !watching => Woken::WatchDue,
                progress = async {
                    match lookup.as_mut() {
                        Some(lookup) => lookup.await,
                        None => std::future::pending().await,
                    }
                } => Woken::Progress(progress),
            };
            match woken {
                Woken::Message(message) => return self.received(message),
                Woken::WatchDue => {
                    self.next_watch = tokio::time::Instant::now() + WATCH_INTERVAL;
                    self.start_watch();
                }
                Woken::Progress(progress) => {
                    self.progress = None;
                    let observed = progress
                        .map_err(|error| unavailable("group progress", error))
                        .and_then(|progress| progress)
                        .and_then(|progress| self.observe_progress(progress));
                    if let Err(error) = observed {
                        tracing::warn!(group = %self.membership.group, error = %error, "group progress unknown");
                    }
                }
            }
        }
    }

    fn try_receive(&mut self) -> Result<Option<Received>, Error> {
        // Polled once: ready only when librdkafka already fetched a record
        // (dropping the pending future takes nothing off its queue).
        let Some(message) = futures::FutureExt::now_or_never(self.consumer.recv()) else {
            return Ok(None);
        };
        self.received(message).map(Some)
    }

    async fn ack_position(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), Error> {
        let physical_topic = format!("{}{topic}", self.membership.topic_prefix);
        match self.consumer.store_offset(&physical_topic, partition, offset) {
            Ok(()) => Ok(()),
            // The partition moved to another member since the record was
            // received (a rebalance in a batch's receive): the new owner
            // starts at the last commit and handles the record again.
            Err(rdkafka::error::KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
                tracing::debug!(group = %self.membership.group, topic, partition, offset, "offset of a partition no longer held not stored");
                Ok(())
            }
            Err(error) => Err(unavailable("store offset", error)),
        }
    }

    async fn close(self: Box<Self>) -> Result<(), Error> {
        let consumer = self.consumer;
        tokio::task::spawn_blocking(move || match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            // Nothing stored since the last commit.
            Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(error) => Err(unavailable("commit", error)),
        })
        .await
        .map_err(|error| unavailable("commit", error))?
    }
}

/// An idempotent producer whose deliveries succeed or fail within
/// `delivery_timeout` (requests included: none outlives it in flight).
/// A client of `config`'s brokers: their addresses and how to reach them
/// (TLS, SASL).
fn connection(config: &KafkaConfig) -> ClientConfig {
    let mut client_config = ClientConfig::new();
    client_config.set("bootstrap.servers", &config.brokers).set("security.protocol", &config.security_protocol);
    if let Some(mechanism) = &config.sasl_mechanism {
        client_config.set("sasl.mechanism", mechanism);
    }
    if let Some(username) = &config.sasl_username {
        client_config.set("sasl.username", username);
    }
    if let Some(password) = &config.sasl_password {
        client_config.set("sasl.password", password);
    }
    if let Some(ca) = &config.ssl_ca_location {
        client_config.set("ssl.ca.location", ca.to_string_lossy());
    }
    client_config
}

/// `client_config` with the operator's pass-through properties set last.
fn with_properties(mut client_config: ClientConfig, config: &KafkaConfig) -> ClientConfig {
    for (key, value) in &config.properties {
        client_config.set(key, value);
    }
    client_config
}

/// [`producer`], made again whenever one fails for good.
fn renewing_producer(config: &KafkaConfig, delivery_timeout: Duration) -> Result<RenewingProducer, Error> {
    let config = config.clone();
    RenewingProducer::new(Arc::new(move || producer(&config, delivery_timeout)))
}

fn producer(config: &KafkaConfig, delivery_timeout: Duration) -> Result<ReportingProducer, Error> {
    let timeout_ms = delivery_timeout.as_millis().to_string();
    let mut client_config = connection(config);
    client_config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Measured against the local broker: lingering cuts throughput by an
        // order of magnitude there and buys nothing at our rates.
        .set("linger.ms", "0")
        .set("message.timeout.ms", &timeout_ms)
        .set("request.timeout.ms", &timeout_ms);
    let base = with_properties(client_config, config)
        .create_with_context(DeliveryReports)
        .map_err(|error| not_made("producer", error))?;
    ReportingProducer::start(base).map_err(|error| unavailable("producer polling thread", error))
}

/// `fetch.wait.max.ms` and `fetch.min.bytes` of a consumer at `pace`;
/// `interactive_wait_ms` is [`KafkaConfig::interactive_fetch_wait_ms`].
fn fetch_settings(pace: Pace, interactive_wait_ms: u32) -> (u32, u32) {
    match pace {
        Pace::Interactive => (interactive_wait_ms, 1),
        Pace::Background => (BACKGROUND_FETCH_WAIT_MS, 1),
        Pace::Projection => (PROJECTION_FETCH_WAIT_MS, PROJECTION_FETCH_MIN_BYTES),
    }
}

/// A topic's name without the deployment's prefix.
fn logical_topic(physical_topic: &str, topic_prefix: &str) -> String {
    physical_topic.strip_prefix(topic_prefix).unwrap_or(physical_topic).to_owned()
}

fn raw_record(message: &rdkafka::message::BorrowedMessage<'_>, topic: &str) -> RawRecord {
    let traceparent = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == "traceparent")
            .and_then(|header| header.value)
            .and_then(|value| std::str::from_utf8(value).ok())
            .map(str::to_owned)
    });
    RawRecord {
        topic: topic.to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().unwrap_or_default().to_vec(),
        payload: message.payload().unwrap_or_default().to_vec(),
        traceparent,
    }
}

/// Each partition of `physical_topic` with its low and high watermarks.
async fn partition_ends(client_config: ClientConfig, physical_topic: &str) -> Result<Vec<(i32, i64, i64)>, Error> {
    let physical_topic = physical_topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config.create().map_err(|error| unavailable("scan metadata", error))?;
        let metadata = consumer
            .fetch_metadata(Some(&physical_topic), Duration::from_secs(10))
            .map_err(|error| unavailable("scan metadata", error))?;
        let Some(topic) = metadata.topics().iter().find(|topic| topic.name() == physical_topic) else {
            return Ok(Vec::new());
        };
        let mut ends = Vec::new();
        for partition in topic.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(&physical_topic, partition.id(), Duration::from_secs(10))
                .map_err(|error| unavailable("scan watermarks", error))?;
            ends.push((partition.id(), low, high));
        }
        Ok(ends)
    })
    .await
    .map_err(|error| unavailable("scan metadata", error))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_ssl(mechanism: &str) -> KafkaConfig {
        KafkaConfig {
            security_protocol: "sasl_ssl".to_owned(),
            sasl_mechanism: Some(mechanism.to_owned()),
            sasl_username: Some("switchboard".to_owned()),
            sasl_password: Some("secret".to_owned()),
            properties: [("client.rack".to_owned(), "zone-a".to_owned())].into(),
            ..KafkaConfig::default()
        }
    }

    /// librdkafka is built with TLS and SASL: clients for every supported
    /// combination are made (without connecting), and the pass-through
    /// property reaches them.
    #[test]
    fn clients_are_made_for_tls_and_every_sasl_mechanism() {
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let config = sasl_ssl(mechanism);
            config.validate_security().expect("valid");
            let client_config = with_properties(connection(&config), &config);
            assert_eq!(client_config.get("client.rack"), Some("zone-a"));
            assert_eq!(client_config.get("sasl.mechanism"), Some(mechanism));
            let _producer = producer(&config, Duration::from_secs(5)).expect("a SASL_SSL producer");
        }
        let ssl = KafkaConfig { security_protocol: "ssl".to_owned(), ..KafkaConfig::default() };
        let _producer = producer(&ssl, Duration::from_secs(5)).expect("an SSL producer");
    }

    #[test]
    fn security_settings_that_contradict_each_other_are_refused() {
        let plaintext_with_ca = KafkaConfig { ssl_ca_location: Some("/etc/ca.pem".into()), ..KafkaConfig::default() };
        assert!(plaintext_with_ca.validate_security().is_err(), "a CA for a plaintext connection");
        let sasl_without_password = KafkaConfig { sasl_password: None, ..sasl_ssl("PLAIN") };
        assert!(sasl_without_password.validate_security().is_err());
        let unknown_mechanism = sasl_ssl("GSSAPI");
        assert!(unknown_mechanism.validate_security().is_err());
        let credentials_without_sasl = KafkaConfig { security_protocol: "ssl".to_owned(), ..sasl_ssl("PLAIN") };
        assert!(credentials_without_sasl.validate_security().is_err());
        let typo = KafkaConfig { security_protocol: "tls".to_owned(), ..KafkaConfig::default() };
        assert!(typo.validate_security().is_err());
        for reserved in [
            "acks",
            "enable.auto.offset.store",
            "enable.idempotence",
            "sasl.password",
            "enable.ssl.certificate.verification",
            "ssl.endpoint.identification.algorithm",
        ] {
            let overriding =
                KafkaConfig { properties: [(reserved.to_owned(), "x".to_owned())].into(), ..KafkaConfig::default() };
            let error = overriding.validate_security().expect_err(reserved);
            assert!(error.to_string().contains(reserved), "{error}");
        }
        let unknown = KafkaConfig {
            properties: [("no.such.property".to_owned(), "1".to_owned())].into(),
            ..KafkaConfig::default()
        };
        let refused = producer(&unknown, Duration::from_secs(5)).err().expect("librdkafka refuses it");
        assert!(refused.message.contains("no.such.property"), "{}", refused.message);
    }

    #[test]
    fn only_interactive_consumers_wait_as_configured() {
        assert_eq!(fetch_settings(Pace::Interactive, 120), (120, 1));
        assert_eq!(fetch_settings(Pace::Background, 120), (BACKGROUND_FETCH_WAIT_MS, 1));
        assert_eq!(fetch_settings(Pace::Projection, 120), (PROJECTION_FETCH_WAIT_MS, PROJECTION_FETCH_MIN_BYTES));
    }

    #[test]
    fn an_interactive_fetch_wait_out_of_bounds_is_refused_by_name() {
        assert!(KafkaConfig::default().validate_paces().is_ok());
        for wait_ms in [0, crate::config::MAX_INTERACTIVE_FETCH_WAIT_MS + 1] {
            let config = KafkaConfig { interactive_fetch_wait_ms: wait_ms, ..KafkaConfig::default() };
            let error = config.validate_paces().expect_err("out of bounds");
            assert!(error.to_string().contains("kafka.interactive_fetch_wait_ms"), "{error}");
        }
        let longest = KafkaConfig {
            interactive_fetch_wait_ms: crate::config::MAX_INTERACTIVE_FETCH_WAIT_MS,
            ..KafkaConfig::default()
        };
        assert!(longest.validate_paces().is_ok());
    }
}
