//! The event bus port: publish envelopes to topics, consume them in groups
//! at least once. Kafka in production, an in-process log in `dev` mode;
//! both pass the same contract suite (`contract`).

pub mod contract;
pub mod dead_letter;
pub mod hints;
pub mod kafka;
mod kafka_group;
mod kafka_producer;
pub mod memory;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use switchboard_core::Error;
use switchboard_core::event::decode;
use switchboard_proto::events::v1::EventEnvelope;
use tracing::Instrument;

use crate::telemetry::current_traceparent;

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// How soon a consumer must see a new record. On Kafka it sets how long a
/// fetch may wait at the broker for records: tansu holds every fetch that
/// long even when records arrive, so it bounds each hop's latency, and each
/// wait ended is one more request the broker serves while idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pace {
    /// On a contact's way to an agent (routing's intake, presence's
    /// pushes): a fetch waits at most `kafka.interactive_fetch_wait_ms`
    /// (5 ms unless set).
    #[default]
    Interactive,
    /// Side effects off that way (presence's effects, ingestion's call
    /// events and conversation ends), where a tenth of a second is
    /// unnoticed: a fetch waits up to 100 ms, so an idle consumer costs
    /// the broker a twentieth of the requests.
    Background,
    /// Read models (CRM's timelines, KPI's facts) that may trail the events
    /// by up to a second: a fetch waits up to 500 ms for a megabyte of
    /// records, so a batch holds most of each contact's events (one
    /// database write per contact instead of one per event) and an idle
    /// consumer polls twice a second.
    Projection,
}

/// One record handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub envelope: EventEnvelope,
    pub traceparent: Option<String>,
    /// The record's key and value as the bus holds them, so a record that
    /// cannot be handled is dead-lettered byte for byte.
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Delivery {
    /// The record as the bus holds it.
    pub fn raw(&self) -> RawRecord {
        RawRecord {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            key: self.key.clone(),
            payload: self.payload.clone(),
            traceparent: self.traceparent.clone(),
        }
    }
}

/// A record as the bus holds it, decoded or not: what a dead letter keeps,
/// what a replay republishes and what operator tools read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The logical topic (without the deployment's prefix).
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub traceparent: Option<String>,
}

/// What a subscription hands out: an event, or a record that is not one.
#[derive(Debug, Clone)]
pub enum Received {
    Event(Box<Delivery>),
    /// A record whose value is not an [`EventEnvelope`]; it can never be
    /// handled, so the consumer dead-letters it.
    Malformed(Box<MalformedRecord>),
}

impl Received {
    /// Where the record is: its logical topic, partition and offset.
    pub fn position(&self) -> (&str, i32, i64) {
        match self {
            Received::Event(delivery) => (&delivery.topic, delivery.partition, delivery.offset),
            Received::Malformed(malformed) => {
                (&malformed.record.topic, malformed.record.partition, malformed.record.offset)
            }
        }
    }
}

/// A record that is not an event, and why.
#[derive(Debug, Clone)]
pub struct MalformedRecord {
    pub record: RawRecord,
    pub error: Error,
}

/// Whether a scan goes on after a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    Continue,
    Stop,
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `envelope` keyed by its subject and returns only once the
    /// broker acknowledged it (the delivery report), so callers can tell
    /// the client it is durable.
    async fn publish(&self, topic: &str, envelope: &EventEnvelope) -> Result<(), Error>;

    /// Publishes a record as given (a dead letter, or a replay of one) and
    /// returns once the broker acknowledged it.
    async fn publish_raw(&self, record: &RawRecord) -> Result<(), Error>;

    /// Joins consumer group `group` on `topics`, at [`Pace::Interactive`].
    async fn subscribe(&self, group: &str, topics: &[&str], start: StartFrom) -> Result<Box<dyn Subscription>, Error> {
        self.subscribe_paced(group, topics, start, Pace::Interactive).await
    }

    /// Joins consumer group `group` on `topics`, fetching at `pace`.
    async fn subscribe_paced(
        &self,
        group: &str,
        topics: &[&str],
        start: StartFrom,
        pace: Pace,
    ) -> Result<Box<dyn Subscription>, Error>;

    /// Reads every record of `topic` from the oldest retained one up to the
    /// end as it was when the scan began, partition by partition and in
    /// offset order within each, outside any consumer group (nothing is
    /// committed). `visit` may stop the scan early.
    async fn scan(&self, topic: &str, visit: &mut (dyn FnMut(RawRecord) -> Scan + Send)) -> Result<(), Error>;

    /// The same bus, for a publisher that must know every delivery's fate
    /// within `timeout`: a record not acknowledged by then fails and is
    /// never delivered later (a relay fenced by a lease shorter than the
    /// default delivery timeout). `None`: this bus already answers at once.
    fn bounded(&self, _timeout: std::time::Duration) -> Result<Option<Arc<dyn EventBus>>, Error> {
        Ok(None)
    }

    /// Reachability, for readiness.
    async fn check(&self) -> Result<(), Error>;

    /// Waits for queued records to be delivered, for shutdown.
    async fn flush(&self) -> Result<(), Error>;
}

/// How a subscription's group membership is doing: how many partitions it
/// holds, whether its group has settled (a first assignment arrived), and
/// whether it is starving (it holds none while records of its topics wait
/// and no other member consumes them).
#[derive(Debug, Clone, Default)]
pub struct Assignment(Arc<AssignmentState>);

#[derive(Debug, Default)]
struct AssignmentState {
    partitions: AtomicUsize,
    settled: AtomicBool,
    starving: AtomicBool,
    /// The partitions held, by logical topic (tracked by the Kafka bus).
    held: Mutex<HashSet<(String, i32)>>,
    /// Counts the changes of `held`: a reader that saw another number
    /// knows its positions may belong to another member's history.
    generation: AtomicU64,
}

impl Assignment {
    /// The membership of a subscription that always holds everything (the
    /// in-process bus has one member per group).
    pub fn assigned() -> Assignment {
        let assignment = Assignment::default();
        assignment.set_partitions(1);
        assignment
    }

    /// Whether it holds partitions now.
    pub fn is_assigned(&self) -> bool {
        self.0.partitions.load(Ordering::Acquire) > 0
    }

    /// Whether the consumer can be counted on: it holds partitions, or its
    /// group gave it none while other members consume every partition
    /// (more members than partitions). False until the first assignment
    /// and while it starves.
    pub fn is_healthy(&self) -> bool {
        self.is_assigned() || (self.0.settled.load(Ordering::Acquire) && !self.is_starving())
    }

    pub fn is_starving(&self) -> bool {
        self.0.starving.load(Ordering::Acquire)
    }

    pub(crate) fn is_settled(&self) -> bool {
        self.0.settled.load(Ordering::Acquire)
    }

    pub(crate) fn set_partitions(&self, partitions: usize) {
        self.0.partitions.store(partitions, Ordering::Release);
        self.0.settled.store(true, Ordering::Release);
        if partitions > 0 {
            self.set_starving(false);
        }
    }

    pub(crate) fn set_starving(&self, starving: bool) {
        self.0.starving.store(starving, Ordering::Release);
    }

    /// Records the partitions now held (logical topic, partition): all of
    /// them after an assignment, none after a revocation.
    pub(crate) fn set_held(&self, held: impl IntoIterator<Item = (String, i32)>) {
        let mut current = switchboard_core::sync::lock_unpoisoned(&self.0.held);
        *current = held.into_iter().collect();
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether this member holds the partition now.
    pub(crate) fn holds(&self, topic: &str, partition: i32) -> bool {
        switchboard_core::sync::lock_unpoisoned(&self.0.held).contains(&(topic.to_owned(), partition))
    }

    /// How many times the held partitions changed.
    pub(crate) fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }
}

#[async_trait]
pub trait Subscription: Send {
    /// Whether this subscription holds partitions now.
    fn assignment(&self) -> Assignment;

    /// The next record, an event or a malformed one; transport errors are
    /// returned.
    async fn receive(&mut self) -> Result<Received, Error>;

    /// A record already received, without waiting; `None` when none is
    /// (or this bus cannot tell).
    fn try_receive(&mut self) -> Result<Option<Received>, Error> {
        Ok(None)
    }

    /// Up to `max` records in order: waits for the first, then takes those
    /// already received without waiting, so a consumer that falls behind
    /// handles its backlog in batches while an idle one sees each record
    /// at once.
    async fn receive_batch(&mut self, max: usize) -> Result<Vec<Received>, Error> {
        let mut batch = vec![self.receive().await?];
        while batch.len() < max {
            match self.try_receive() {
                Ok(Some(received)) => batch.push(received),
                Ok(None) => break,
                // The records taken are past the bus's position already:
                // they must be handed over, not dropped with the error.
                Err(error) => {
                    tracing::warn!(error = %error, "receive failed after part of a batch; handing over that part");
                    break;
                }
            }
        }
        Ok(batch)
    }

    /// The record at this position is done with (handled, or
    /// dead-lettered): its offset may be committed.
    async fn ack_position(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), Error>;

    /// The next event; malformed records are acknowledged and skipped with
    /// a warning. For tests and tools: services consume through the kit,
    /// which dead-letters them instead.
    async fn next(&mut self) -> Result<Delivery, Error> {
        loop {
            match self.receive().await? {
                Received::Event(delivery) => return Ok(*delivery),
                Received::Malformed(malformed) => {
                    let MalformedRecord { record, error } = *malformed;
                    tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %error, "skipping malformed record");
                    self.ack_position(&record.topic, record.partition, record.offset).await?;
                }
            }
        }
    }

    /// The delivery's side effects are durable: its offset may be committed.
    async fn ack(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.ack_position(&delivery.topic, delivery.partition, delivery.offset).await
    }

    /// Commits acknowledged offsets and leaves the group.
    async fn close(self: Box<Self>) -> Result<(), Error>;
}

/// Publishes in the trace of the change that made `envelope` (see
/// [`stamp_trace`]), or else the current span's, attached as the record's
/// `traceparent`.
pub async fn publish_traced(bus: &dyn EventBus, topic: &str, envelope: &EventEnvelope) -> Result<(), Error> {
    let span = tracing::info_span!("publish", topic, event_id = %envelope.event_id, tenant = %envelope.tenant);
    if !envelope.traceparent.is_empty() {
        crate::telemetry::set_remote_parent(&span, Some(&envelope.traceparent));
    }
    bus.publish(topic, envelope).instrument(span).await
}

/// Records the current span's trace in `envelope`, for an event stored in
/// an outbox and published later by another task: [`publish_traced`]
/// publishes it in this trace.
pub fn stamp_trace(envelope: &mut EventEnvelope) {
    envelope.traceparent = current_traceparent().unwrap_or_default();
}

/// A record's value decoded: an event, or a malformed record.
pub fn decode_record(record: RawRecord) -> Received {
    match decode(&record.payload) {
        Ok(envelope) => Received::Event(Box::new(Delivery {
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            envelope,
            traceparent: record.traceparent,
            key: record.key,
            payload: record.payload,
        })),
        Err(error) => Received::Malformed(Box::new(MalformedRecord { record, error })),
    }
}

/// The `traceparent` to attach to an outgoing record.
pub(crate) fn outgoing_traceparent() -> Option<String> {
    current_traceparent()
}
