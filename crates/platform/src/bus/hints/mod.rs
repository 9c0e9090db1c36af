//! Record hints: a consumer on a contact's way to an agent sees a record as
//! soon as its producer has the broker's acknowledgement, without asking the
//! broker every few milliseconds.
//!
//! Every record the Kafka bus publishes is, once acknowledged, also
//! published on the Redis channel `switchboard:hints:<physical topic>` as a
//! [`RecordHint`]: its topic, partition, offset, key, value and trace. A
//! subscription at [`Pace::Interactive`](super::Pace::Interactive) listens
//! on its topics' channels and fetches from the broker only at the
//! background pace (100 ms). It hands a hint to its handler when the hint is
//! the next record of a partition it holds, and skips that record when the
//! broker delivers it later (see [`sequencer`]), so a record is handed over
//! once, in order, whichever way it came first.
//!
//! What this guarantees and what it does not:
//! - Nothing rests on a hint. The broker still delivers every record, and
//!   offsets are stored only after the handler, as without hints; a hint
//!   lost (Redis down, a full buffer, a reconnect) costs its record at most
//!   one background fetch wait.
//! - A hint is only a copy of an acknowledged record, sent after the
//!   delivery report; Redis is trusted as the bus is (a writer of Redis
//!   could change routing's state anyway).
//! - Publishing never waits for Redis: a hint that cannot be queued or sent
//!   is dropped and counted (`switchboard_hints_sent{outcome="dropped"}`).
//!
//! Why: tansu holds every fetch for its whole wait, so an interactive
//! consumer had to ask it 200 times a second to keep a hop near 6 ms, and
//! those requests were a large part of the CPU a contact cost
//! (docs/benchmarks.md, twelfth pass).

mod sequencer;

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prost::Message;
use switchboard_core::Error;
use switchboard_proto::events::v1::RecordHint;
use tokio::sync::mpsc;

use self::sequencer::Sequencer;
use super::{Assignment, RawRecord, Received, Subscription, decode_record};
use crate::config::RedisConfig;
use crate::metrics::{labels, metrics};

/// Hints waiting to be published; more are dropped.
const OUTGOING_CAPACITY: usize = 4_096;
/// Hints published in one pipeline at most.
const MAX_PUBLISH_BATCH: usize = 256;
/// Hints received and not yet sequenced; more are dropped.
const INCOMING_CAPACITY: usize = 4_096;
/// How long a connection to Redis may take, and a reply.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a publisher or listener waits before connecting again.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// The Redis channel of a topic's hints.
fn channel(physical_topic: &str) -> String {
    format!("switchboard:hints:{physical_topic}")
}

/// Publishes hints and opens listeners on one Redis. Clones share the
/// publishing task, which ends when the last clone is dropped.
#[derive(Clone)]
pub struct Hints {
    client: redis::Client,
    outgoing: mpsc::Sender<(String, Vec<u8>)>,
    dropped: Counter,
}

impl Hints {
    /// Hints through the Redis of `redis`. Nothing connects yet: the
    /// publishing task (spawned on the current runtime) connects when the
    /// first hint is sent, and again after a failure.
    pub fn through_redis(redis: &RedisConfig) -> Result<Hints, Error> {
        let client = crate::redis::client_trusting(&redis.url, redis.ca_file.as_deref())?;
        let (outgoing, queued) = mpsc::channel(OUTGOING_CAPACITY);
        tokio::spawn(publish_hints(client.clone(), queued));
        let dropped = metrics().hints_sent.get_or_create(&labels([("outcome", "dropped")])).clone();
        Ok(Hints { client, outgoing, dropped })
    }

    /// Queues the hint of a record the broker acknowledged.
    pub(super) fn announce(&self, physical_topic: &str, hint: &RecordHint) {
        if self.outgoing.try_send((channel(physical_topic), hint.encode_to_vec())).is_err() {
            self.dropped.inc();
        }
    }

    /// Listens for the hints of `physical_topics` (with their logical
    /// names) until the returned listener is dropped.
    pub(super) fn listen(&self, topics: Vec<(String, String)>) -> Listener {
        let (sender, hints) = mpsc::channel(INCOMING_CAPACITY);
        let task = tokio::spawn(listen_for_hints(self.client.clone(), topics, sender));
        Listener { hints, task }
    }
}

/// The hints of a subscription's topics, as they arrive.
pub(super) struct Listener {
    hints: mpsc::Receiver<RawRecord>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends queued hints in pipelines, one round trip for all those waiting.
async fn publish_hints(client: redis::Client, mut queued: mpsc::Receiver<(String, Vec<u8>)>) {
    let published = metrics().hints_sent.get_or_create(&labels([("outcome", "published")])).clone();
    let dropped = metrics().hints_sent.get_or_create(&labels([("outcome", "dropped")])).clone();
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    let mut reconnect_at = tokio::time::Instant::now();
    let mut batch = Vec::with_capacity(MAX_PUBLISH_BATCH);
    while queued.recv_many(&mut batch, MAX_PUBLISH_BATCH).await > 0 {
        let count = batch.len() as u64;
        if connection.is_none() && tokio::time::Instant::now() >= reconnect_at {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT));
            match client.get_multiplexed_async_connection_with_config(&config).await {
                Ok(connected) => connection = Some(connected),
                Err(error) => {
                    tracing::warn!(error = %error, "hint publisher cannot reach redis; consumers fall back on their fetches");
                    reconnect_at = tokio::time::Instant::now() + RECONNECT_PAUSE;
                }
            }
        }
        let Some(connected) = connection.as_mut() else {
            dropped.inc_by(count);
            batch.clear();
            continue;
        };
        let mut pipeline = redis::pipe();
        for (channel, frame) in batch.drain(..) {
            pipeline.publish(channel, frame).ignore();
        }
        match pipeline.query_async::<()>(connected).await {
            Ok(()) => {
                published.inc_by(count);
            }
            Err(error) => {
                tracing::warn!(error = %error, "hints not published; consumers fall back on their fetches");
                dropped.inc_by(count);
                connection = None;
                reconnect_at = tokio::time::Instant::now() + RECONNECT_PAUSE;
            }
        }
    }
}

/// Receives hints of `topics` (physical, logical) until `sender` closes,
/// subscribing again after every loss of the connection.
async fn listen_for_hints(client: redis::Client, topics: Vec<(String, String)>, sender: mpsc::Sender<RawRecord>) {
    loop {
        match tokio::time::timeout(REDIS_TIMEOUT, subscribe(&client, &topics)).await {
            Ok(Ok(mut messages)) => {
                tracing::debug!(topics = ?topics, "listening for record hints");
                while let Some(message) = messages.next().await {
                    let Some(hint) = decode_hint(message.get_channel_name(), message.get_payload_bytes(), &topics)
                    else {
                        tracing::warn!(
                            channel = message.get_channel_name(),
                            "ignoring a record hint that does not decode"
                        );
                        continue;
                    };
                    match sender.try_send(hint) {
                        Ok(()) => {}
                        // The broker delivers it: the hint only saves time.
                        Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cannot listen for record hints; fetching at the background pace")
            }
            Err(_) => {
                tracing::warn!("cannot listen for record hints: redis did not answer; fetching at the background pace")
            }
        }
        if sender.is_closed() {
            return;
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

async fn subscribe(
    client: &redis::Client,
    topics: &[(String, String)],
) -> redis::RedisResult<redis::aio::PubSubStream> {
    let mut pubsub = client.get_async_pubsub().await?;
    for (physical_topic, _) in topics {
        pubsub.subscribe(channel(physical_topic)).await?;
    }
    Ok(pubsub.into_on_message())
}

/// The record a hint carries, if it decodes and names the topic of the
/// channel it came on.
fn decode_hint(channel_name: &str, frame: &[u8], topics: &[(String, String)]) -> Option<RawRecord> {
    let hint = RecordHint::decode(frame).ok()?;
    let (_, logical) = topics.iter().find(|(physical, _)| channel(physical) == channel_name)?;
    if hint.topic != *logical || hint.partition < 0 || hint.offset < 0 {
        return None;
    }
    Some(RawRecord {
        topic: hint.topic,
        partition: hint.partition,
        offset: hint.offset,
        key: hint.key,
        payload: hint.value,
        traceparent: (!hint.traceparent.is_empty()).then_some(hint.traceparent),
    })
}

/// A broker subscription fed by hints as well (see the module docs).
pub(super) struct HintedSubscription {
    inner: Box<dyn Subscription>,
    listener: Listener,
    assignment: Assignment,
    /// The assignment generation the sequencer's positions belong to.
    generation: u64,
    sequencer: Sequencer,
    ready: VecDeque<Received>,
    counters: HintCounters,
}

struct HintCounters {
    used: Counter,
    late: Counter,
    not_held: Counter,
    dropped: Counter,
}

impl HintedSubscription {
    /// `inner`, fed by the hints `listener` receives; `consumer` names it
    /// in metrics.
    pub(super) fn new(inner: Box<dyn Subscription>, listener: Listener, consumer: &str) -> HintedSubscription {
        let counter = |outcome: &str| {
            metrics().hints_received.get_or_create(&labels([("consumer", consumer), ("outcome", outcome)])).clone()
        };
        let counters = HintCounters {
            used: counter("used"),
            late: counter("late"),
            not_held: counter("not_held"),
            dropped: counter("dropped"),
        };
        let assignment = inner.assignment();
        HintedSubscription {
            generation: assignment.generation(),
            inner,
            listener,
            assignment,
            sequencer: Sequencer::default(),
            ready: VecDeque::new(),
            counters,
        }
    }

    /// Positions belong to one assignment: after a rebalance the broker
    /// may start a partition again at its committed offset.
    fn follow_assignment(&mut self) {
        let generation = self.assignment.generation();
        if generation != self.generation {
            self.generation = generation;
            self.sequencer.reset();
        }
    }

    fn take_from_broker(&mut self, received: Received) {
        self.follow_assignment();
        let (topic, partition, offset) = match &received {
            Received::Event(delivery) => (delivery.topic.clone(), delivery.partition, delivery.offset),
            Received::Malformed(malformed) => {
                (malformed.record.topic.clone(), malformed.record.partition, malformed.record.offset)
            }
        };
        let mut after = Vec::new();
        if self.sequencer.on_broker_record(&topic, partition, offset, &mut after) {
            self.ready.push_back(received);
        }
        self.ready.extend(after.into_iter().map(decode_record));
        self.count();
    }

    fn take_hint(&mut self, hint: RawRecord) {
        self.follow_assignment();
        if !self.assignment.holds(&hint.topic, hint.partition) {
            self.counters.not_held.inc();
            return;
        }
        let mut ready = Vec::new();
        self.sequencer.on_hint(hint, &mut ready);
        self.ready.extend(ready.into_iter().map(decode_record));
        self.count();
    }

    fn count(&mut self) {
        let tally = self.sequencer.take_tally();
        self.counters.used.inc_by(tally.used);
        self.counters.late.inc_by(tally.late);
        self.counters.dropped.inc_by(tally.dropped);
    }
}

/// Whichever came first.
enum Arrival {
    Broker(Result<Received, Error>),
    Hint(RawRecord),
}

#[async_trait]
impl Subscription for HintedSubscription {
    fn assignment(&self) -> Assignment {
        self.inner.assignment()
    }

    async fn receive(&mut self) -> Result<Received, Error> {
        loop {
            if let Some(received) = self.ready.pop_front() {
                return Ok(received);
            }
            let arrival = tokio::select! {
                received = self.inner.receive() => Arrival::Broker(received),
                Some(hint) = self.listener.hints.recv() => Arrival::Hint(hint),
            };
            match arrival {
                Arrival::Broker(received) => self.take_from_broker(received?),
                Arrival::Hint(hint) => self.take_hint(hint),
            }
        }
    }

    fn try_receive(&mut self) -> Result<Option<Received>, Error> {
        loop {
            if let Some(received) = self.ready.pop_front() {
                return Ok(Some(received));
            }
            if let Some(received) = self.inner.try_receive()? {
                self.take_from_broker(received);
                continue;
            }
            match self.listener.hints.try_recv() {
                Ok(hint) => self.take_hint(hint),
                Err(_) => return Ok(None),
            }
        }
    }

    async fn ack_position(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), Error> {
        self.inner.ack_position(topic, partition, offset).await
    }

    async fn close(self: Box<Self>) -> Result<(), Error> {
        let HintedSubscription { inner, listener, .. } = *self;
        drop(listener);
        inner.close().await
    }
}
