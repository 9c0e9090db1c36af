//! The bus's producer: librdkafka's delivery reports resolve futures, served
//! by a polling thread of its own that sleeps between reports.
//!
//! Why not rdkafka's `FutureProducer`: its thread polls in 100 ms windows,
//! and each wait is handed to librdkafka as the time left truncated to whole
//! milliseconds, so the last fraction of a millisecond of every window is
//! spent calling the queue with a zero wait: about 1% of a core per producer
//! while idle (measured, docs/benchmarks.md). A window here ends just past a
//! whole millisecond, so a window without reports ends asleep.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
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
    type DeliveryOpaque = Box<oneshot::Sender<KafkaResult<()>>>;

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, reply: Self::DeliveryOpaque) {
        let outcome = delivery_result.as_ref().map(|_delivered| ()).map_err(|(error, _record)| error.clone());
        // The send may have been dropped (its caller gave up): nobody to tell.
        let _ = reply.send(outcome);
    }
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
    pub(super) async fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: OwnedHeaders,
        queue_timeout: Duration,
    ) -> KafkaResult<()> {
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
