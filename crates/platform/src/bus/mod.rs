//! The event bus port: publish envelopes to topics, consume them in groups
//! at least once. Kafka in production, an in-process log in `dev` mode;
//! both pass the same contract suite (`contract`).

pub mod contract;
pub mod kafka;
pub mod memory;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use switchboard_core::{Error, ErrorCode};
use switchboard_proto::events::v1::EventEnvelope;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::telemetry::{current_traceparent, set_remote_parent};

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// One record handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub envelope: EventEnvelope,
    pub traceparent: Option<String>,
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `envelope` keyed by its subject and returns only once the
    /// broker acknowledged it (the delivery report), so callers can tell
    /// the client it is durable.
    async fn publish(&self, topic: &str, envelope: &EventEnvelope) -> Result<(), Error>;

    /// Joins consumer group `group` on `topics`.
    async fn subscribe(&self, group: &str, topics: &[&str], start: StartFrom) -> Result<Box<dyn Subscription>, Error>;

    /// Reachability, for readiness.
    async fn check(&self) -> Result<(), Error>;

    /// Waits for queued records to be delivered, for shutdown.
    async fn flush(&self) -> Result<(), Error>;
}

/// Whether a subscription currently holds partitions. A consumer that
/// starts from the latest offset misses what is published before its first
/// assignment, so services whose correctness depends on that gate their
/// readiness on it.
#[derive(Debug, Clone, Default)]
pub struct Assignment(Arc<AtomicBool>);

impl Assignment {
    pub fn assigned() -> Assignment {
        Assignment(Arc::new(AtomicBool::new(true)))
    }

    pub fn is_assigned(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, assigned: bool) {
        self.0.store(assigned, Ordering::Release);
    }
}

/// Readiness of a subscription's assignment.
pub struct AssignmentCheck(pub Assignment);

#[async_trait]
impl crate::readiness::DependencyCheck for AssignmentCheck {
    fn name(&self) -> &'static str {
        "kafka-assignment"
    }

    async fn check(&self) -> anyhow::Result<()> {
        if self.0.is_assigned() {
            return Ok(());
        }
        anyhow::bail!("the consumer holds no partitions yet")
    }
}

#[async_trait]
pub trait Subscription: Send {
    /// Whether this subscription holds partitions now.
    fn assignment(&self) -> Assignment;

    /// The next record. Malformed records are skipped with a warning (they
    /// can never succeed); transport errors are returned.
    async fn next(&mut self) -> Result<Delivery, Error>;

    /// The delivery's side effects are durable: its offset may be committed.
    async fn ack(&mut self, delivery: &Delivery) -> Result<(), Error>;

    /// Commits acknowledged offsets and leaves the group.
    async fn close(self: Box<Self>) -> Result<(), Error>;
}

/// Publishes with the current span's `traceparent` attached.
pub async fn publish_traced(bus: &dyn EventBus, topic: &str, envelope: &EventEnvelope) -> Result<(), Error> {
    let span = tracing::info_span!("publish", topic, event_id = %envelope.event_id, tenant = %envelope.tenant);
    bus.publish(topic, envelope).instrument(span).await
}

/// Runs `handler` on every delivery until `shutdown`. A delivery is acked
/// only after its handler succeeded; a transient failure is retried with
/// backoff (never skipped), so side effects happen at least once and
/// handlers must be idempotent. A handler error that can never succeed
/// (invalid data) is logged and acked so it does not block the partition.
pub async fn run_consumer<Handler, HandlerFuture>(
    consumer_name: &'static str,
    mut subscription: Box<dyn Subscription>,
    handler: Handler,
    shutdown: CancellationToken,
) -> Result<(), Error>
where
    Handler: Fn(Delivery) -> HandlerFuture + Send,
    HandlerFuture: Future<Output = Result<(), Error>> + Send,
{
    'deliveries: loop {
        let delivery = tokio::select! {
            () = shutdown.cancelled() => break 'deliveries,
            next = subscription.next() => next,
        };
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::warn!(consumer = consumer_name, error = %error, "consume failed, retrying");
                tokio::select! {
                    () = shutdown.cancelled() => break 'deliveries,
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue 'deliveries,
                }
            }
        };
        let span = tracing::info_span!(
            "consume",
            consumer = consumer_name,
            topic = %delivery.topic,
            partition = delivery.partition,
            offset = delivery.offset,
            event_id = %delivery.envelope.event_id,
            tenant = %delivery.envelope.tenant,
        );
        set_remote_parent(&span, delivery.traceparent.as_deref());
        let mut backoff = Duration::from_millis(50);
        loop {
            match handler(delivery.clone()).instrument(span.clone()).await {
                Ok(()) => break,
                Err(error) if error.code == ErrorCode::InvalidArgument => {
                    tracing::error!(parent: &span, error = %error, "event cannot be handled, skipping it");
                    break;
                }
                Err(error) => {
                    tracing::warn!(parent: &span, error = %error, backoff_ms = backoff.as_millis() as u64, "handler failed, retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break 'deliveries,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        subscription.ack(&delivery).await?;
    }
    subscription.close().await
}

/// The `traceparent` to attach to an outgoing record.
pub(crate) fn outgoing_traceparent() -> Option<String> {
    current_traceparent()
}
