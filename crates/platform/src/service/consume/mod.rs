//! Consuming events: [`Kit::consume`] (one record at a time, for handlers on
//! a contact's way to an agent) and [`Kit::consume_batches`] (the records
//! waiting at once, for projections that write them in one transaction).
//!
//! Every record ends one of two ways, and no record can hold a partition
//! forever:
//! - **handled**: the handler succeeded; only then is the offset stored
//!   (at least once; handlers are idempotent);
//! - **dead-lettered**: the record is malformed, or the handler failed with
//!   a permanent error (any code but UNAVAILABLE, ABORTED and
//!   RESOURCE_EXHAUSTED), or panicked. The original record goes to
//!   `switchboard.deadletter.v1` with the reason, a metric and a log line
//!   record it, and the consumer moves on.
//!
//! A record of a tenant that is deleted or being deleted is skipped
//! (counted as `tenant_deleted`) unless the spec keeps them
//! ([`ConsumerSpec::keeping_deleted_tenants`]): a late, redelivered or
//! replayed record must not bring an erased tenant's data back.
//!
//! A transient failure (a backend down) is retried with exponential backoff
//! and equal jitter, never skipped; while it lasts the consumer's readiness
//! check fails, so the pod leaves rotation instead of looking healthy while
//! it consumes nothing.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use prometheus_client::metrics::counter::Counter;
use prost::Message;
use rand::Rng;
use switchboard_core::Error;
use switchboard_core::event::DEAD_LETTER_TOPIC;
use switchboard_core::time::{now_millis, timestamp_from_millis};
use switchboard_proto::events::v1::DeadLetter;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod by_key;

pub use by_key::consume_by_key;

use super::Kit;
use crate::auth::AccessControl;
use crate::bus::{Assignment, Delivery, EventBus, MalformedRecord, Pace, RawRecord, Received, StartFrom, Subscription};
use crate::metrics::{labels, metrics};
use crate::readiness::DependencyCheck;
use crate::telemetry::set_remote_parent;

/// The first retry of a transient failure waits about this long.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Retries never wait longer than this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a consumer reads.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Names the consumer in logs, metrics and dead letters, e.g. `crm`.
    pub name: String,
    /// The consumer group, without the deployment's prefix.
    pub group: String,
    pub topics: Vec<&'static str>,
    /// Where a new group starts.
    pub start: StartFrom,
    /// How soon it must see a new record.
    pub pace: Pace,
    /// Hands the handler records of deleted tenants too.
    pub keep_deleted_tenants: bool,
    /// Handles the waiting records of different keys at once (see
    /// [`ConsumerSpec::concurrent_by_key`]).
    pub concurrent_by_key: bool,
    /// Cuts a transient failure's backoff short (see
    /// [`ConsumerSpec::retrying_early_when`]).
    pub retry_early: Option<Arc<tokio::sync::Notify>>,
}

impl ConsumerSpec {
    /// A consumer whose group is its name, starting at the oldest record.
    pub fn new(name: impl Into<String>, topics: &[&'static str]) -> ConsumerSpec {
        let name = name.into();
        ConsumerSpec {
            group: name.clone(),
            name,
            topics: topics.to_vec(),
            start: StartFrom::Earliest,
            pace: Pace::Interactive,
            keep_deleted_tenants: false,
            concurrent_by_key: false,
            retry_early: None,
        }
    }

    /// For [`Kit::consume`]: the records waiting at once that have
    /// different keys are handled concurrently, those of one key (one
    /// contact, one agent) in order, as the broker orders them; their
    /// offsets are stored once all of them are finished. For a handler
    /// whose records of different keys are independent, so a burst does
    /// not wait one record's round trips at a time.
    pub fn concurrent_by_key(mut self) -> ConsumerSpec {
        self.concurrent_by_key = true;
        self
    }

    /// For a consumer that stores nothing of a tenant and must still see
    /// the ends of a deleted tenant's contacts (e.g. to tell their agents).
    pub fn keeping_deleted_tenants(mut self) -> ConsumerSpec {
        self.keep_deleted_tenants = true;
        self
    }

    /// A transient failure is retried at once when `recovered` is
    /// notified (`notify_waiters`: the dependency the handler waited for
    /// is back), not only when its backoff step ends. A failure in flight
    /// at that moment waits its step.
    pub fn retrying_early_when(mut self, recovered: Arc<tokio::sync::Notify>) -> ConsumerSpec {
        self.retry_early = Some(recovered);
        self
    }

    pub fn group(mut self, group: impl Into<String>) -> ConsumerSpec {
        self.group = group.into();
        self
    }

    pub fn from_latest(mut self) -> ConsumerSpec {
        self.start = StartFrom::Latest;
        self
    }

    /// Off the path of a contact to an agent: records may wait a tenth of
    /// a second, and an idle consumer costs the broker far less.
    pub fn in_background(mut self) -> ConsumerSpec {
        self.pace = Pace::Background;
        self
    }

    /// A read model that may trail the events by up to a second, fed by
    /// [`Kit::consume_batches`]: records are gathered into larger batches
    /// (see [`Pace::Projection`]).
    pub fn as_projection(mut self) -> ConsumerSpec {
        self.pace = Pace::Projection;
        self
    }
}

/// How a consumer is doing, for readiness.
#[derive(Debug, Clone, Default)]
pub struct ConsumerHealth {
    /// The transient error being retried, if any.
    retrying: Arc<Mutex<Option<String>>>,
}

impl ConsumerHealth {
    fn set_retrying(&self, error: Option<String>) {
        *switchboard_core::sync::lock_unpoisoned(&self.retrying) = error;
    }

    fn retrying(&self) -> Option<String> {
        switchboard_core::sync::lock_unpoisoned(&self.retrying).clone()
    }
}

/// Readiness of one consumer: it holds partitions (or every partition is
/// consumed by other members) and is not stuck retrying a transient
/// failure.
struct ConsumerCheck {
    name: String,
    assignment: Assignment,
    health: ConsumerHealth,
}

#[async_trait]
impl DependencyCheck for ConsumerCheck {
    fn name(&self) -> String {
        format!("consumer:{}", self.name)
    }

    async fn check(&self) -> anyhow::Result<()> {
        if let Some(error) = self.health.retrying() {
            anyhow::bail!("retrying a transient failure: {error}");
        }
        if self.assignment.is_starving() {
            anyhow::bail!("the consumer holds no partitions while records wait that no member consumes");
        }
        if !self.assignment.is_healthy() {
            anyhow::bail!("the consumer has not joined its group yet");
        }
        Ok(())
    }
}

impl Kit {
    /// Subscribes now and consumes in the background until shutdown,
    /// calling `handler` on every event (see the module docs for what
    /// happens to failures). The consumer's assignment and health are part
    /// of the service's readiness. Returns the assignment, for services
    /// that must not act before they hold partitions.
    pub async fn consume<Handler, HandlerFuture>(
        &mut self,
        spec: ConsumerSpec,
        handler: Handler,
    ) -> anyhow::Result<Assignment>
    where
        Handler: Fn(Delivery) -> HandlerFuture + Send + Sync + 'static,
        HandlerFuture: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let (consumer, subscription, assignment) = self.subscribe_consumer(&spec).await?;
        let shutdown = self.shutdown();
        let task = format!("{}-consumer", spec.name);
        if spec.concurrent_by_key {
            self.task(task, consume_by_key(consumer, subscription, handler, shutdown));
        } else {
            self.task(task, consume(consumer, subscription, handler, shutdown));
        }
        Ok(assignment)
    }

    /// Like [`Kit::consume`], for a handler that takes the records waiting
    /// at once (up to [`MAX_BATCH`], in order) and makes their side effects
    /// durable together, e.g. in one transaction: a consumer that falls
    /// behind catches up in batches. A batch that fails transiently is
    /// retried whole; one that fails otherwise is handled again one record
    /// at a time, so only a record that fails on its own is dead-lettered.
    pub async fn consume_batches<Handler, HandlerFuture>(
        &mut self,
        spec: ConsumerSpec,
        handler: Handler,
    ) -> anyhow::Result<Assignment>
    where
        Handler: Fn(Arc<[Delivery]>) -> HandlerFuture + Send + Sync + 'static,
        HandlerFuture: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let (consumer, subscription, assignment) = self.subscribe_consumer(&spec).await?;
        let shutdown = self.shutdown();
        self.task(format!("{}-consumer", spec.name), consume_batches(consumer, subscription, handler, shutdown));
        Ok(assignment)
    }

    async fn subscribe_consumer(
        &mut self,
        spec: &ConsumerSpec,
    ) -> anyhow::Result<(Consumer, Box<dyn Subscription>, Assignment)> {
        let subscription = self.bus.subscribe_paced(&spec.group, &spec.topics, spec.start, spec.pace).await?;
        let assignment = subscription.assignment();
        let health = ConsumerHealth::default();
        self.check(ConsumerCheck { name: spec.name.clone(), assignment: assignment.clone(), health: health.clone() });
        tracing::info!(consumer = %spec.name, group = %spec.group, topics = ?spec.topics, "consumer subscribed");
        let mut consumer = Consumer::new(spec.name.clone(), self.bus(), health);
        if !spec.keep_deleted_tenants {
            consumer = consumer.dropping_deleted_tenants(self.access());
        }
        if let Some(recovered) = &spec.retry_early {
            consumer = consumer.retrying_early_when(Arc::clone(recovered));
        }
        Ok((consumer, subscription, assignment))
    }
}

/// The most records [`Kit::consume_batches`] hands a handler at once.
pub const MAX_BATCH: usize = 1_024;

/// The batch consumer loop (see [`Kit::consume_batches`]), until
/// `shutdown`; then the stored offsets are committed and the group left.
/// A batch's offsets are stored once all of it is handled or
/// dead-lettered.
pub async fn consume_batches<Handler, HandlerFuture>(
    consumer: Consumer,
    mut subscription: Box<dyn Subscription>,
    handler: Handler,
    shutdown: CancellationToken,
) -> Result<(), Error>
where
    Handler: Fn(Arc<[Delivery]>) -> HandlerFuture + Send + Sync,
    HandlerFuture: Future<Output = Result<(), Error>> + Send,
{
    'batches: while let Some(received) = receive_next(&consumer, subscription.as_mut(), &shutdown).await {
        let mut positions = Positions::default();
        let mut events = Vec::with_capacity(received.len());
        for received in received {
            match received {
                Received::Event(delivery) => {
                    positions.advance(&delivery.topic, delivery.partition, delivery.offset);
                    if !consumer.drops(&delivery) {
                        events.push(*delivery);
                    }
                }
                Received::Malformed(malformed) => {
                    let Some((topic, partition, offset)) =
                        dead_letter_malformed(&consumer, *malformed, &shutdown).await
                    else {
                        break 'batches;
                    };
                    positions.advance(&topic, partition, offset);
                }
            }
        }
        if !events.is_empty() && !handle_batch(&consumer, events.into(), &handler, &shutdown).await {
            // Shutdown came while retrying: the batch is delivered again
            // after restart.
            break;
        }
        positions.store(subscription.as_mut()).await?;
    }
    subscription.close().await
}

/// The furthest finished position of each partition of a batch: storing
/// it stores every record before it.
#[derive(Default)]
struct Positions(Vec<(String, i32, i64)>);

impl Positions {
    fn advance(&mut self, topic: &str, partition: i32, offset: i64) {
        match self.0.iter_mut().find(|(known, known_partition, _)| known == topic && *known_partition == partition) {
            Some(position) => position.2 = position.2.max(offset),
            None => self.0.push((topic.to_owned(), partition, offset)),
        }
    }

    async fn store(self, subscription: &mut dyn Subscription) -> Result<(), Error> {
        for (topic, partition, offset) in self.0 {
            subscription.ack_position(&topic, partition, offset).await?;
        }
        Ok(())
    }
}

/// Runs the handler on `events` until they are handled (as a batch, or one
/// by one after a permanent failure, dead-lettering those that fail on
/// their own); false if shutdown came first.
async fn handle_batch<Handler, HandlerFuture>(
    consumer: &Consumer,
    events: Arc<[Delivery]>,
    handler: &Handler,
    shutdown: &CancellationToken,
) -> bool
where
    Handler: Fn(Arc<[Delivery]>) -> HandlerFuture + Send + Sync,
    HandlerFuture: Future<Output = Result<(), Error>> + Send,
{
    let span = tracing::info_span!("consume_batch", consumer = %consumer.name, records = events.len());
    set_remote_parent(&span, events.first().and_then(|delivery| delivery.traceparent.as_deref()));
    let mut backoff = Backoff::default();
    let mut events = events;
    loop {
        // A tenant deleted while the batch was retried: its records are
        // skipped rather than written after its erasure.
        if events.iter().any(|delivery| consumer.skips(delivery)) {
            events = events.iter().filter(|delivery| !consumer.drops(delivery)).cloned().collect();
            if events.is_empty() {
                return true;
            }
        }
        let outcome = AssertUnwindSafe(handler(Arc::clone(&events))).catch_unwind().instrument(span.clone()).await;
        let error = match outcome {
            Ok(Ok(())) => {
                consumer.health.set_retrying(None);
                consumer.handled.inc_by(events.len() as u64);
                return true;
            }
            Ok(Err(error)) if error.is_transient() => error,
            // A record the handler cannot take (or a panic): find it.
            Ok(Err(_)) | Err(_) => {
                let one_at_a_time = |delivery: Delivery| handler(Arc::from([delivery]));
                for delivery in events.iter() {
                    if handle(consumer, delivery, &one_at_a_time, shutdown).await.is_none() {
                        return false;
                    }
                }
                return true;
            }
        };
        if !retry_after(consumer, &span, &error, &mut backoff, shutdown).await {
            return false;
        }
    }
}

/// A consumer's identity and what it reports to.
pub struct Consumer {
    pub name: String,
    pub bus: Arc<dyn EventBus>,
    pub health: ConsumerHealth,
    /// Its count of handled records, looked up once rather than per record.
    handled: Counter,
    /// Set: records of deleted tenants are skipped.
    deleted_tenants: Option<(Arc<AccessControl>, Counter)>,
    /// Notified when a transient failure may be retried at once.
    retry_early: Option<Arc<tokio::sync::Notify>>,
}

impl Consumer {
    pub fn new(name: impl Into<String>, bus: Arc<dyn EventBus>, health: ConsumerHealth) -> Consumer {
        let name = name.into();
        let handled_labels = labels([("consumer", &name), ("outcome", "handled")]);
        let handled = metrics().consumer_records.get_or_create(&handled_labels).clone();
        Consumer { name, bus, health, handled, deleted_tenants: None, retry_early: None }
    }

    /// See [`ConsumerSpec::retrying_early_when`].
    pub fn retrying_early_when(mut self, recovered: Arc<tokio::sync::Notify>) -> Consumer {
        self.retry_early = Some(recovered);
        self
    }

    /// Skips the records of tenants `access` knows as deleted.
    pub fn dropping_deleted_tenants(mut self, access: Arc<AccessControl>) -> Consumer {
        let dropped_labels = labels([("consumer", &self.name), ("outcome", "tenant_deleted")]);
        let dropped = metrics().consumer_records.get_or_create(&dropped_labels).clone();
        self.deleted_tenants = Some((access, dropped));
        self
    }

    /// Whether `delivery` is of a deleted tenant this consumer skips.
    fn skips(&self, delivery: &Delivery) -> bool {
        let Some((access, _)) = &self.deleted_tenants else { return false };
        switchboard_core::TenantId::parse(&delivery.envelope.tenant, "tenant")
            .is_ok_and(|tenant| access.is_deleted_tenant(&tenant))
    }

    /// [`Consumer::skips`], counting and logging the skip.
    fn drops(&self, delivery: &Delivery) -> bool {
        if !self.skips(delivery) {
            return false;
        }
        if let Some((_, dropped)) = &self.deleted_tenants {
            dropped.inc();
        }
        tracing::debug!(consumer = %self.name, tenant = %delivery.envelope.tenant, event_id = %delivery.envelope.event_id, "record of a deleted tenant skipped");
        true
    }
}

/// The consumer loop (see the module docs), until `shutdown`; then the
/// stored offsets are committed and the group left.
pub async fn consume<Handler, HandlerFuture>(
    consumer: Consumer,
    mut subscription: Box<dyn Subscription>,
    handler: Handler,
    shutdown: CancellationToken,
) -> Result<(), Error>
where
    Handler: Fn(Delivery) -> HandlerFuture + Send + Sync,
    HandlerFuture: Future<Output = Result<(), Error>> + Send,
{
    'records: while let Some(records) = receive_next(&consumer, subscription.as_mut(), &shutdown).await {
        for received in records {
            let Some((topic, partition, offset)) = finish(&consumer, received, &handler, &shutdown).await else {
                // Shutdown came while retrying: the record was not finished
                // and is delivered again after restart.
                break 'records;
            };
            subscription.ack_position(&topic, partition, offset).await?;
        }
    }
    subscription.close().await
}

/// One record to its end: skipped (a deleted tenant's), handled or
/// dead-lettered. Its position, or `None` when shutdown came first.
async fn finish<Handler, HandlerFuture>(
    consumer: &Consumer,
    received: Received,
    handler: &Handler,
    shutdown: &CancellationToken,
) -> Option<(String, i32, i64)>
where
    Handler: Fn(Delivery) -> HandlerFuture + Send + Sync,
    HandlerFuture: Future<Output = Result<(), Error>> + Send,
{
    match received {
        Received::Event(delivery) if consumer.drops(&delivery) => {
            Some((delivery.topic.clone(), delivery.partition, delivery.offset))
        }
        Received::Event(delivery) => handle(consumer, &delivery, handler, shutdown).await,
        Received::Malformed(malformed) => dead_letter_malformed(consumer, *malformed, shutdown).await,
    }
}

/// The next records (up to [`MAX_BATCH`], see
/// [`Subscription::receive_batch`]), `None` once shutdown came. A failure
/// to receive is retried with backoff, readiness false meanwhile.
async fn receive_next(
    consumer: &Consumer,
    subscription: &mut dyn Subscription,
    shutdown: &CancellationToken,
) -> Option<Vec<Received>> {
    let mut backoff = Backoff::default();
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return None,
            received = subscription.receive_batch(MAX_BATCH) => received,
        };
        match received {
            Ok(received) => return Some(received),
            Err(error) => {
                consumer.health.set_retrying(Some(error.to_string()));
                tracing::warn!(consumer = %consumer.name, error = %error, "consume failed, retrying");
                if !backoff.wait(shutdown, consumer.retry_early.as_deref()).await {
                    return None;
                }
                // The failure was waited out: an idle subscription's next
                // receive may not return for a long time, so readiness
                // must not wait for a record to come back; a failure that
                // lasts sets it again at once.
                consumer.health.set_retrying(None);
            }
        }
    }
}

/// Runs the handler until the delivery is handled or dead-lettered;
/// returns its position then, `None` if shutdown came first.
async fn handle<Handler, HandlerFuture>(
    consumer: &Consumer,
    delivery: &Delivery,
    handler: &Handler,
    shutdown: &CancellationToken,
) -> Option<(String, i32, i64)>
where
    Handler: Fn(Delivery) -> HandlerFuture + Send + Sync,
    HandlerFuture: Future<Output = Result<(), Error>> + Send,
{
    let span = tracing::info_span!(
        "consume",
        consumer = %consumer.name,
        topic = %delivery.topic,
        partition = delivery.partition,
        offset = delivery.offset,
        event_id = %delivery.envelope.event_id,
        tenant = %delivery.envelope.tenant,
    );
    set_remote_parent(&span, delivery.traceparent.as_deref());
    let position = (delivery.topic.clone(), delivery.partition, delivery.offset);
    let mut backoff = Backoff::default();
    loop {
        if consumer.drops(delivery) {
            return Some(position);
        }
        let outcome = AssertUnwindSafe(handler(delivery.clone())).catch_unwind().instrument(span.clone()).await;
        let error = match outcome {
            Ok(Ok(())) => {
                consumer.health.set_retrying(None);
                consumer.handled.inc();
                return Some(position);
            }
            Ok(Err(error)) => error,
            Err(_panic) => Error::internal("the handler panicked").with_reason("HANDLER_PANICKED"),
        };
        if !error.is_transient() {
            let done = dead_letter(consumer, &delivery.raw(), Some(&delivery.envelope), &error, shutdown)
                .instrument(span.clone())
                .await;
            return done.then_some(position);
        }
        if !retry_after(consumer, &span, &error, &mut backoff, shutdown).await {
            return None;
        }
    }
}

/// Counts and reports a transient failure, readiness false, then waits out
/// the next backoff step; false if shutdown came first.
async fn retry_after(
    consumer: &Consumer,
    span: &tracing::Span,
    error: &Error,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> bool {
    consumer.health.set_retrying(Some(error.to_string()));
    metrics().consumer_retries.get_or_create(&labels([("consumer", &consumer.name)])).inc();
    tracing::warn!(parent: span, error = %error, "handler failed transiently, retrying");
    backoff.wait(shutdown, consumer.retry_early.as_deref()).await
}

/// Dead-letters a record that is not an event; its position once done,
/// `None` if shutdown came first.
async fn dead_letter_malformed(
    consumer: &Consumer,
    malformed: MalformedRecord,
    shutdown: &CancellationToken,
) -> Option<(String, i32, i64)> {
    let MalformedRecord { record, error } = malformed;
    let done = dead_letter(consumer, &record, None, &error, shutdown).await;
    done.then_some((record.topic, record.partition, record.offset))
}

/// Writes the dead letter of `record`, retrying until the broker took it;
/// false if shutdown came first.
async fn dead_letter(
    consumer: &Consumer,
    record: &RawRecord,
    envelope: Option<&switchboard_proto::events::v1::EventEnvelope>,
    error: &Error,
    shutdown: &CancellationToken,
) -> bool {
    let tenant = envelope.map(|envelope| envelope.tenant.clone()).unwrap_or_default();
    let letter = dead_letter_record(consumer, record, envelope, error);
    let mut backoff = Backoff::default();
    loop {
        match consumer.bus.publish_raw(&letter).await {
            Ok(()) => break,
            Err(publish_error) => {
                consumer.health.set_retrying(Some(format!("dead-lettering: {publish_error}")));
                tracing::warn!(consumer = %consumer.name, error = %publish_error, "dead letter not written, retrying");
                if !backoff.wait(shutdown, consumer.retry_early.as_deref()).await {
                    return false;
                }
            }
        }
    }
    consumer.health.set_retrying(None);
    let reason = error.reason();
    metrics()
        .dead_letters
        .get_or_create(&labels([("consumer", &consumer.name), ("tenant", &tenant), ("reason", &reason)]))
        .inc();
    let outcome_labels = labels([("consumer", &consumer.name), ("outcome", "dead_lettered")]);
    metrics().consumer_records.get_or_create(&outcome_labels).inc();
    tracing::error!(
        consumer = %consumer.name,
        topic = %record.topic,
        partition = record.partition,
        offset = record.offset,
        tenant = %tenant,
        reason = %reason,
        error = %error,
        "record dead-lettered, moving on"
    );
    true
}

/// The dead-letter record of `record`: keyed like it, its value a
/// [`DeadLetter`].
fn dead_letter_record(
    consumer: &Consumer,
    record: &RawRecord,
    envelope: Option<&switchboard_proto::events::v1::EventEnvelope>,
    error: &Error,
) -> RawRecord {
    let letter = DeadLetter {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        key: record.key.clone(),
        value: record.payload.clone(),
        consumer: consumer.name.clone(),
        reason: error.reason(),
        message: error.message.clone(),
        dead_letter_time: Some(timestamp_from_millis(now_millis())),
        tenant: envelope.map(|envelope| envelope.tenant.clone()).unwrap_or_default(),
        event_id: envelope.map(|envelope| envelope.event_id.clone()).unwrap_or_default(),
        traceparent: record.traceparent.clone().unwrap_or_default(),
    };
    RawRecord {
        topic: DEAD_LETTER_TOPIC.to_owned(),
        partition: 0,
        offset: 0,
        key: record.key.clone(),
        payload: letter.encode_to_vec(),
        traceparent: record.traceparent.clone(),
    }
}

/// Exponential backoff with jitter: each wait is a random time between half
/// and all of the current step, so replicas retrying the same backend
/// spread out.
struct Backoff {
    step: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { step: FIRST_BACKOFF }
    }
}

impl Backoff {
    /// Waits, or less once `early` is notified; false if shutdown came
    /// first.
    async fn wait(&mut self, shutdown: &CancellationToken, early: Option<&tokio::sync::Notify>) -> bool {
        let step_millis = u64::try_from(self.step.as_millis()).unwrap_or(u64::MAX).max(1);
        let wait = Duration::from_millis(rand::rng().random_range(step_millis / 2..=step_millis));
        self.step = (self.step * 2).min(MAX_BACKOFF);
        let recovered = async {
            match early {
                Some(early) => early.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
            () = recovered => true,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;
    use crate::bus::memory::MemoryBus;

    /// Fails its first receive, then waits for records that never come.
    struct FailsOnceThenIdle {
        failed: bool,
    }

    #[async_trait]
    impl Subscription for FailsOnceThenIdle {
        fn assignment(&self) -> Assignment {
            Assignment::default()
        }

        async fn receive(&mut self) -> Result<Received, Error> {
            if !self.failed {
                self.failed = true;
                return Err(Error::unavailable("broker unreachable (test)"));
            }
            std::future::pending().await
        }

        async fn ack_position(&mut self, _topic: &str, _partition: i32, _offset: i64) -> Result<(), Error> {
            Ok(())
        }

        async fn close(self: Box<Self>) -> Result<(), Error> {
            Ok(())
        }
    }

    /// Hands out one record, then waits for records that never come.
    struct OneRecordThenIdle {
        record: Option<Delivery>,
    }

    #[async_trait]
    impl Subscription for OneRecordThenIdle {
        fn assignment(&self) -> Assignment {
            Assignment::default()
        }

        async fn receive(&mut self) -> Result<Received, Error> {
            match self.record.take() {
                Some(record) => Ok(Received::Event(Box::new(record))),
                None => std::future::pending().await,
            }
        }

        async fn ack_position(&mut self, _topic: &str, _partition: i32, _offset: i64) -> Result<(), Error> {
            Ok(())
        }

        async fn close(self: Box<Self>) -> Result<(), Error> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_at_once_when_its_dependency_is_back() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let recovered = Arc::new(tokio::sync::Notify::new());
        let consumer = Consumer::new("early", Arc::new(MemoryBus::new()), ConsumerHealth::default())
            .retrying_early_when(Arc::clone(&recovered));
        let record = Delivery {
            topic: "t".to_owned(),
            partition: 0,
            offset: 0,
            envelope: Default::default(),
            traceparent: None,
            key: Vec::new(),
            payload: Vec::new(),
        };
        let (failures, back, handled) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let handler = {
            let (failures, back, handled) = (Arc::clone(&failures), Arc::clone(&back), Arc::clone(&handled));
            move |_delivery: Delivery| {
                let outcome = if back.load(Ordering::SeqCst) {
                    handled.store(true, Ordering::SeqCst);
                    Ok(())
                } else {
                    failures.fetch_add(1, Ordering::SeqCst);
                    Err(Error::unavailable("dependency down (test)"))
                };
                std::future::ready(outcome)
            }
        };
        let shutdown = CancellationToken::new();
        let subscription = Box::new(OneRecordThenIdle { record: Some(record) });
        let task = tokio::spawn(consume(consumer, subscription, handler, shutdown.clone()));

        // Five failures: the wait after the fifth is at least 800 ms.
        let failed_five_times = async {
            while failures.load(Ordering::SeqCst) < 5 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), failed_five_times).await.expect("the handler is retried");
        back.store(true, Ordering::SeqCst);
        // Notified until handled: a notification that comes while the
        // handler runs, not while it waits, wakes nobody.
        let retried = async {
            while !handled.load(Ordering::SeqCst) {
                recovered.notify_waiters();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_millis(400), retried)
            .await
            .expect("the record is retried once its dependency is back, not when the 800 ms step ends");

        shutdown.cancel();
        task.await.expect("consumer task").expect("consumer ends cleanly");
    }

    #[tokio::test]
    async fn an_idle_consumer_is_ready_again_once_a_receive_failure_was_waited_out() {
        let health = ConsumerHealth::default();
        let consumer = Consumer::new("idle", Arc::new(MemoryBus::new()), health.clone());
        let shutdown = CancellationToken::new();
        let handler = |_delivery: Delivery| std::future::ready(Ok::<(), Error>(()));
        let task =
            tokio::spawn(consume(consumer, Box::new(FailsOnceThenIdle { failed: false }), handler, shutdown.clone()));

        let until = |ready: bool| {
            let health = health.clone();
            async move {
                while health.retrying().is_none() != ready {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        tokio::time::timeout(MAX_BACKOFF, until(false)).await.expect("the receive failure is reported");
        // The first backoff is at most FIRST_BACKOFF; no record ever comes.
        tokio::time::timeout(MAX_BACKOFF, until(true))
            .await
            .expect("the consumer waits for records again, not for the failure");

        shutdown.cancel();
        task.await.expect("consumer task").expect("consumer ends cleanly");
    }
}
