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
//!   Records over [`MAX_HINTED_RECORD_BYTES`] are not hinted, so the
//!   bounded queues stay small.
//! - After a rebalance a subscription forgets its positions and drops the
//!   records it queued but did not hand over: the broker delivers them
//!   again from the committed offset, to whichever member holds them now.
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
use super::kafka_producer::Placed;
use super::{Assignment, RawRecord, Received, Subscription, decode_record};
use crate::config::RedisConfig;
use crate::metrics::{labels, metrics};

/// Records larger than this are not hinted (their consumers get them
/// from the broker), which bounds what the queues below hold: at most
/// 16 MiB each.
pub const MAX_HINTED_RECORD_BYTES: usize = 16 * 1024;
/// Hints waiting to be published; more are dropped.
const OUTGOING_CAPACITY: usize = 1_024;
/// Hints published in one pipeline at most.
const MAX_PUBLISH_BATCH: usize = 256;
/// Hints received and not yet sequenced; more are dropped.
const INCOMING_CAPACITY: usize = 1_024;
/// How often an idle listener asks Redis whether its connection is alive.
const LISTENER_PING_INTERVAL: Duration = Duration::from_secs(10);
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

/// A record the broker acknowledged, as [`Hints::announce`] takes it.
pub(super) struct Hinted<'a> {
    /// The logical topic.
    pub topic: &'a str,
    pub placed: Placed,
    pub key: &'a [u8],
    pub payload: &'a [u8],
    pub traceparent: Option<&'a str>,
}

impl Hints {
    /// Hints through the Redis of `redis`. Nothing connects yet: the
    /// publishing task (spawned on the current runtime) connects when the
    /// first hint is sent, and again after a failure.
    pub fn through_redis(redis: &RedisConfig) -> Result<Hints, Error> {
        let client = crate::redis::client_trusting(&redis.url, redis.ca_file.as_deref())?;
        let (outgoing, queued) = mpsc::channel(OUTGOING_CAPACITY);
        let dropped = sent("dropped");
        tokio::spawn(publish_hints(client.clone(), queued, dropped.clone()));
        Ok(Hints { client, outgoing, dropped })
    }

    /// Queues the hint of a record the broker acknowledged on
    /// `physical_topic`, unless it is over [`MAX_HINTED_RECORD_BYTES`].
    pub(super) fn announce(&self, physical_topic: &str, record: Hinted<'_>) {
        if record.key.len() + record.payload.len() > MAX_HINTED_RECORD_BYTES {
            return;
        }
        let hint = RecordHint {
            topic: record.topic.to_owned(),
            partition: record.placed.partition,
            offset: record.placed.offset,
            key: record.key.to_vec(),
            value: record.payload.to_vec(),
            traceparent: record.traceparent.unwrap_or_default().to_owned(),
        };
        if self.outgoing.try_send((channel(physical_topic), hint.encode_to_vec())).is_err() {
            self.dropped.inc();
        }
    }

    /// Listens for the hints of `topics` (physical, logical) until the
    /// returned listener is dropped; `consumer` names it in metrics.
    pub(super) fn listen<'a>(&self, topics: impl Iterator<Item = (String, &'a str)>, consumer: &str) -> Listener {
        let channels = topics.map(|(physical_topic, logical)| (channel(&physical_topic), logical.to_owned())).collect();
        let (sender, hints) = mpsc::channel(INCOMING_CAPACITY);
        let counters = ListenerCounters {
            undecodable: received(consumer, "undecodable"),
            overflow: received(consumer, "overflow"),
        };
        let task = tokio::spawn(listen_for_hints(self.client.clone(), channels, sender, counters));
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
async fn publish_hints(client: redis::Client, mut queued: mpsc::Receiver<(String, Vec<u8>)>, dropped: Counter) {
    let published = sent("published");
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

/// Receives hints on `channels` (channel, logical topic) until `sender` closes,
/// subscribing again after every loss of the connection, and when a ping
/// finds the connection dead (a half-open socket never ends the stream).
async fn listen_for_hints(
    client: redis::Client,
    channels: Vec<(String, String)>,
    sender: mpsc::Sender<RawRecord>,
    counters: ListenerCounters,
) {
    loop {
        match tokio::time::timeout(REDIS_TIMEOUT, subscribe(&client, &channels)).await {
            Ok(Ok((mut sink, mut messages))) => {
                tracing::debug!(channels = ?channels, "listening for record hints");
                let mut ping = tokio::time::interval_at(
                    tokio::time::Instant::now() + LISTENER_PING_INTERVAL,
                    LISTENER_PING_INTERVAL,
                );
                loop {
                    let message = tokio::select! {
                        message = messages.next() => message,
                        _ = ping.tick() => {
                            match tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>()).await {
                                Ok(Ok(_)) => continue,
                                _ => None,
                            }
                        }
                    };
                    let Some(message) = message else { break };
                    let Some(hint) = decode_hint(message.get_channel_name(), message.get_payload_bytes(), &channels)
                    else {
                        // Counted, not logged: anyone who may publish on
                        // Redis could flood the log.
                        counters.undecodable.inc();
                        continue;
                    };
                    match sender.try_send(hint) {
                        Ok(()) => {}
                        // The broker delivers it: the hint only saves time.
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            counters.overflow.inc();
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                tracing::warn!("lost the record hints' connection to redis; subscribing again");
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
    channels: &[(String, String)],
) -> redis::RedisResult<(redis::aio::PubSubSink, redis::aio::PubSubStream)> {
    let (mut sink, stream) = client.get_async_pubsub().await?.split();
    for (channel, _) in channels {
        sink.subscribe(channel).await?;
    }
    Ok((sink, stream))
}

/// What a listener counts of the hints it could not pass on.
struct ListenerCounters {
    undecodable: Counter,
    overflow: Counter,
}

/// The count of hints published with `outcome`.
fn sent(outcome: &str) -> Counter {
    metrics().hints_sent.get_or_create(&labels([("outcome", outcome)])).clone()
}

/// The count of hints `consumer` received with `outcome`.
fn received(consumer: &str, outcome: &str) -> Counter {
    metrics().hints_received.get_or_create(&labels([("consumer", consumer), ("outcome", outcome)])).clone()
}

/// The record a hint carries, if it decodes and names the topic of the
/// channel it came on.
fn decode_hint(channel_name: &str, frame: &[u8], channels: &[(String, String)]) -> Option<RawRecord> {
    let hint = RecordHint::decode(frame).ok()?;
    let (_, logical) = channels.iter().find(|(channel, _)| channel == channel_name)?;
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
    /// Records in order, each with the assignment generation it was
    /// sequenced in: one of an earlier generation is dropped (the broker
    /// delivers it again from the committed offset, to whichever member
    /// holds its partition now).
    ready: VecDeque<(u64, Received)>,
    counters: HintCounters,
}

struct HintCounters {
    used: Counter,
    late: Counter,
    not_held: Counter,
    dropped: Counter,
    stale: Counter,
}

impl HintedSubscription {
    /// `inner`, fed by the hints `listener` receives; `consumer` names it
    /// in metrics.
    pub(super) fn new(inner: Box<dyn Subscription>, listener: Listener, consumer: &str) -> HintedSubscription {
        let counter = |outcome: &str| received(consumer, outcome);
        let counters = HintCounters {
            used: counter("used"),
            late: counter("late"),
            not_held: counter("not_held"),
            dropped: counter("dropped"),
            stale: counter("stale"),
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
        let (topic, partition, offset) = received.position();
        let mut after = Vec::new();
        if self.sequencer.on_broker_record(topic, partition, offset, &mut after) {
            self.ready.push_back((self.generation, received));
        }
        self.push_hints(after);
    }

    fn take_hint(&mut self, hint: RawRecord) {
        self.follow_assignment();
        if !self.assignment.holds(&hint.topic, hint.partition) {
            self.counters.not_held.inc();
            return;
        }
        let mut ready = Vec::new();
        self.sequencer.on_hint(hint, &mut ready);
        self.push_hints(ready);
    }

    fn push_hints(&mut self, hints: Vec<RawRecord>) {
        let generation = self.generation;
        self.ready.extend(hints.into_iter().map(|hint| (generation, decode_record(hint))));
        self.count();
    }

    /// The next record of the current assignment.
    fn pop_ready(&mut self) -> Option<Received> {
        self.follow_assignment();
        while let Some((generation, received)) = self.ready.pop_front() {
            if generation == self.generation {
                return Some(received);
            }
            self.counters.stale.inc();
        }
        None
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
            if let Some(received) = self.pop_ready() {
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
            if let Some(received) = self.pop_ready() {
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

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use switchboard_core::Error;

    use super::*;

    /// A broker subscription that hands out what the test sends it; once
    /// the test drops its sender and the records are taken, `try_receive`
    /// fails when `fail_when_done`.
    struct Queued {
        records: mpsc::UnboundedReceiver<Received>,
        assignment: Assignment,
        fail_when_done: bool,
    }

    #[async_trait]
    impl Subscription for Queued {
        fn assignment(&self) -> Assignment {
            self.assignment.clone()
        }

        async fn receive(&mut self) -> Result<Received, Error> {
            match self.records.recv().await {
                Some(received) => Ok(received),
                None => std::future::pending().await,
            }
        }

        fn try_receive(&mut self) -> Result<Option<Received>, Error> {
            match self.records.try_recv() {
                Ok(received) => Ok(Some(received)),
                Err(mpsc::error::TryRecvError::Disconnected) if self.fail_when_done => {
                    Err(Error::unavailable("the broker went away"))
                }
                Err(_) => Ok(None),
            }
        }

        async fn ack_position(&mut self, _topic: &str, _partition: i32, _offset: i64) -> Result<(), Error> {
            Ok(())
        }

        async fn close(self: Box<Self>) -> Result<(), Error> {
            Ok(())
        }
    }

    fn record(offset: i64) -> RawRecord {
        let envelope =
            switchboard_proto::events::v1::EventEnvelope { event_id: format!("ev_{offset}"), ..Default::default() };
        RawRecord {
            topic: "t".to_owned(),
            partition: 0,
            offset,
            key: Vec::new(),
            payload: switchboard_core::event::encode(&envelope),
            traceparent: None,
        }
    }

    fn offset_of(received: &Received) -> i64 {
        received.position().2
    }

    struct Rig {
        subscription: HintedSubscription,
        broker: mpsc::UnboundedSender<Received>,
        hints: mpsc::Sender<RawRecord>,
        assignment: Assignment,
    }

    /// A hinted subscription holding partition 0 of `t`.
    fn rig(fail_when_done: bool) -> Rig {
        let assignment = Assignment::default();
        assignment.set_partitions(1);
        assignment.set_held([("t".to_owned(), 0)]);
        let (broker, records) = mpsc::unbounded_channel();
        let inner = Queued { records, assignment: assignment.clone(), fail_when_done };
        let (hints, received_hints) = mpsc::channel(16);
        let listener = Listener { hints: received_hints, task: tokio::spawn(std::future::pending()) };
        Rig { subscription: HintedSubscription::new(Box::new(inner), listener, "test"), broker, hints, assignment }
    }

    #[tokio::test]
    async fn records_sequenced_before_a_rebalance_are_not_handed_over_after_it() {
        let mut rig = rig(false);
        rig.hints.send(record(1)).await.expect("hint");
        rig.hints.send(record(2)).await.expect("hint");
        assert!(rig.subscription.try_receive().expect("try").is_none(), "the partition's position is unknown yet");
        // The broker's record gives the position: the waiting hints follow
        // it into the ready queue.
        rig.broker.send(decode_record(record(0))).expect("record");
        assert_eq!(rig.subscription.try_receive().expect("try").map(|received| offset_of(&received)), Some(0));
        // The partition is revoked and assigned again: the broker starts
        // again at the committed offset (1), so 1 and 2 must not be handed
        // over ahead of it from the queue.
        rig.assignment.set_held([]);
        rig.assignment.set_held([("t".to_owned(), 0)]);
        assert!(rig.subscription.try_receive().expect("try").is_none(), "a record of the earlier assignment came");
        rig.broker.send(decode_record(record(1))).expect("record");
        assert_eq!(rig.subscription.try_receive().expect("try").map(|received| offset_of(&received)), Some(1));
    }

    #[tokio::test]
    async fn a_failure_after_part_of_a_batch_hands_over_that_part() {
        let mut rig = rig(true);
        rig.broker.send(decode_record(record(0))).expect("record");
        rig.broker.send(decode_record(record(1))).expect("record");
        drop(rig.broker);
        let batch = rig.subscription.receive_batch(10).await.expect("the records received before the failure");
        assert_eq!(batch.iter().map(offset_of).collect::<Vec<_>>(), vec![0, 1]);
    }
}
