//! The bus's producer: librdkafka's delivery reports resolve futures, served
//! by a polling thread of its own that sleeps between reports.
//!
//! Why not rdkafka's `FutureProducer`: its thread polls in 100 ms windows,
//! and each wait is handed to librdkafka as the time left truncated to whole
//! milliseconds, so the last fraction of a millisecond of every window is
//! spent calling the queue with a zero wait: about 1% of a core per producer
//! while idle (measured, docs/benchmarks.md). A window here ends just past a
//! whole millisecond, so a window without reports ends asleep.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use switchboard_core::Error;
use switchboard_core::sync::lock_unpoisoned;
use tokio::sync::oneshot;

/// How long one poll of the delivery reports may wait: whole milliseconds
/// plus more than the time between setting its deadline and handing
/// librdkafka the wait, so the wait is never truncated a millisecond short.
const POLL_WINDOW: Duration = Duration::from_micros(100_050);
/// How long a send waits before trying again while librdkafka's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);
/// The name of the polling thread.
const POLLING_THREAD: &str = "kafka-reports";

/// Hands each delivery report to the send that waits for it.
pub(super) struct DeliveryReports;

impl ClientContext for DeliveryReports {}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = Box<oneshot::Sender<KafkaResult<Placed>>>;

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, reply: Self::DeliveryOpaque) {
        let outcome = delivery_result
            .as_ref()
            .map(|delivered| Placed { partition: delivered.partition(), offset: delivered.offset() })
            .map_err(|(error, _record)| error.clone());
        // The send may have been dropped (its caller gave up): nobody to tell.
        let _ = reply.send(outcome);
    }
}

/// Where the broker placed a delivered record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Placed {
    pub partition: i32,
    pub offset: i64,
}

/// A record to send.
pub(super) struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub payload: &'a [u8],
    pub headers: OwnedHeaders,
}

/// A producer whose `send` resolves on the record's delivery report.
/// Clones share one librdkafka client; the last one dropped stops the
/// polling thread (within [`POLL_WINDOW`]) and then the client.
#[derive(Clone)]
pub(super) struct ReportingProducer {
    shared: Arc<Shared>,
}

struct Shared {
    base: Arc<BaseProducer<DeliveryReports>>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
    }
}

impl ReportingProducer {
    /// Starts the polling thread of `base`.
    pub(super) fn start(base: BaseProducer<DeliveryReports>) -> std::io::Result<ReportingProducer> {
        let base = Arc::new(base);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (base, stop) = (Arc::clone(&base), Arc::clone(&stop));
            std::thread::Builder::new().name(POLLING_THREAD.to_owned()).spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    base.poll(POLL_WINDOW);
                }
            })?
        };
        Ok(ReportingProducer { shared: Arc::new(Shared { base, stop, poller: Some(poller) }) })
    }

    /// The librdkafka client (metadata, flush).
    pub(super) fn base(&self) -> &BaseProducer<DeliveryReports> {
        &self.shared.base
    }

    /// Enqueues the record, waiting up to `queue_timeout` while librdkafka's
    /// queue is full, and resolves on its delivery report.
    pub(super) async fn send(&self, outgoing: Outgoing<'_>, queue_timeout: Duration) -> KafkaResult<Placed> {
        let Outgoing { topic, key, payload, headers } = outgoing;
        let queued_by = tokio::time::Instant::now() + queue_timeout;
        let (reply, delivered) = oneshot::channel();
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(reply)).key(key).payload(payload).headers(headers);
        loop {
            match self.shared.base.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if tokio::time::Instant::now() < queued_by =>
                {
                    record = returned;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((error, _record)) => return Err(error),
            }
        }
        // A report never comes only if the client was torn down first.
        delivered.await.unwrap_or(Err(KafkaError::Canceled))
    }
}

/// How a [`RenewingProducer`] makes a producer.
pub(super) type MakeProducer = Arc<dyn Fn() -> Result<ReportingProducer, Error> + Send + Sync>;

/// A [`ReportingProducer`] that replaces itself after a fatal error.
/// librdkafka declares an idempotent producer failed for good when it can
/// no longer keep its records in order (the broker fenced it, a sequence
/// went missing after a stall: seen on tansu after a 5 s pause), and then
/// refuses every later record; without a new producer a service would
/// never publish again while its readiness looked fine. The new producer
/// starts a new idempotent session; what the old one could not deliver
/// failed, so its senders retry it (consumers drop duplicates by event id).
#[derive(Clone)]
pub(super) struct RenewingProducer {
    current: Arc<Mutex<ReportingProducer>>,
    make: MakeProducer,
}

impl RenewingProducer {
    pub(super) fn new(make: MakeProducer) -> Result<RenewingProducer, Error> {
        let first = make()?;
        Ok(RenewingProducer { current: Arc::new(Mutex::new(first)), make })
    }

    /// The producer in use.
    pub(super) fn current(&self) -> ReportingProducer {
        lock_unpoisoned(&self.current).clone()
    }

    /// [`ReportingProducer::send`] on the producer in use, which is
    /// replaced when the send failed because it failed for good.
    pub(super) async fn send(&self, outgoing: Outgoing<'_>, queue_timeout: Duration) -> KafkaResult<Placed> {
        let producer = self.current();
        let outcome = producer.send(outgoing, queue_timeout).await;
        if let Err(error) = &outcome
            && self.renew_if_failed_for_good(&producer, Some(error)).is_some()
        {
            // The last clone tears a client down, which may wait on the broker.
            tokio::task::spawn_blocking(move || drop(producer));
        }
        outcome
    }

    /// When `seen` failed for good (librdkafka declared a fatal error, or
    /// `failure` is one no later record of this producer escapes): replaces
    /// it (unless another caller already did) and returns why.
    pub(super) fn renew_if_failed_for_good(
        &self,
        seen: &ReportingProducer,
        failure: Option<&KafkaError>,
    ) -> Option<String> {
        let fatal = match seen.base().client().fatal_error() {
            Some((code, reason)) => format!("{code:?}: {reason}"),
            None => failure.filter(|error| dooms_the_session(error))?.to_string(),
        };
        let mut current = lock_unpoisoned(&self.current);
        if Arc::ptr_eq(&current.shared, &seen.shared) {
            match (self.make)() {
                Ok(fresh) => {
                    let failed = std::mem::replace(&mut *current, fresh);
                    std::thread::spawn(move || drop(failed));
                    tracing::warn!(error = %fatal, "kafka producer failed for good and was replaced");
                }
                Err(error) => {
                    tracing::error!(error = %fatal, replacement = %error, "kafka producer failed for good and was not replaced");
                }
            }
        }
        Some(fatal)
    }
}

/// Whether a record's failure dooms every later record of its producer's
/// idempotent session: the broker fenced it or lost track of its sequence.
/// (tansu 0.6 answers every record after a stall with ProducerFenced
/// without librdkafka declaring a fatal error.)
fn dooms_the_session(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::InvalidProducerIdMapping
                | RDKafkaErrorCode::Fatal
        )
    )
}
