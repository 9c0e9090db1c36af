//! Prometheus metrics of the process, served at `/metrics` by every
//! service's HTTP server. One registry per process: when several services
//! share a process (`switchboard dev`, `run --services`), the series each
//! of them reports (RPCs, consumers, readiness) carry a `service` or
//! `consumer` label; a gauge only one service reports (waiting contacts,
//! agents by state, outbox depth) and backend latency, the same backend
//! probed by each, do not. A label that holds tenant data
//! is named `tenant`, and its value comes from the record or the verified
//! credential, never from anything a caller chose freely.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label set: (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~13 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// Every metric the platform records.
pub struct Metrics {
    registry: Registry,
    /// RED per RPC: `service`, `method`, `code`.
    pub grpc_requests: Family<Labels, Counter>,
    /// `service`, `method`.
    pub grpc_duration: HistogramFamily,
    /// Records a consumer finished with: `consumer`, `outcome`
    /// (`handled`, `dead_lettered`).
    pub consumer_records: Family<Labels, Counter>,
    /// Handler attempts that failed transiently and will be retried:
    /// `consumer`.
    pub consumer_retries: Family<Labels, Counter>,
    /// Records behind the end of each partition: `consumer` (the consumer
    /// group, without the deployment's prefix), `topic`, `partition`.
    pub consumer_lag: Family<Labels, Gauge>,
    /// Partitions each consumer holds: `consumer`.
    pub consumer_partitions: Family<Labels, Gauge>,
    /// Record hints published (bus/hints): `outcome` (`published`,
    /// `dropped`).
    pub hints_sent: Family<Labels, Counter>,
    /// Record hints a consumer received: `consumer` (its group),
    /// `outcome` (`used`: handed over before the broker delivered the
    /// record; `late`: already delivered; `not_held`: another member's
    /// partition; `dropped`: no room to keep it until its turn;
    /// `overflow`: no room to receive it; `undecodable`; `stale`: queued
    /// before a rebalance, not handed over).
    pub hints_received: Family<Labels, Counter>,
    /// Records dead-lettered: `consumer`, `tenant`, `reason`.
    pub dead_letters: Family<Labels, Counter>,
    /// Events stored and not yet published: `service`.
    pub outbox_depth: Family<Labels, Gauge>,
    /// Outbox batches a relay published (a round is one batch unless over 1,024 entries): `service`.
    pub relay_batches: Family<Labels, Counter>,
    /// Events an outbox relay published: `service`.
    pub relayed_events: Family<Labels, Counter>,
    /// Contacts waiting: `tenant`.
    pub waiting_contacts: Family<Labels, Gauge>,
    /// Agents by live state: `state`.
    pub agents_by_state: Family<Labels, Gauge>,
    /// Round trip of each readiness probe: `dependency` (`redis`,
    /// `postgres`, `kafka`, `routing-state`, `consumer:<name>`).
    pub dependency_latency: HistogramFamily,
    /// 1 while a dependency answers its readiness probe: `service`,
    /// `dependency`.
    pub dependency_up: Family<Labels, Gauge>,
    /// Background tasks' timer ticks that failed: `task`.
    pub task_failures: Family<Labels, Counter>,
    /// Shared clock minus this host's, in milliseconds (no labels).
    pub clock_offset: Family<Labels, Gauge>,
    /// Channel webhook requests answered: `tenant`, `provider`, `outcome`
    /// (`accepted`, `unauthenticated`, `malformed`, `too_large`,
    /// `unknown_channel`, `unavailable`).
    pub webhook_requests: Family<Labels, Counter>,
    /// What accepted webhooks carried: `tenant`, `provider`, `item`
    /// (`message`, `edit`, `status`), `outcome` (`stored`, `duplicate`,
    /// `rejected`, `not_applied`).
    pub webhook_items: Family<Labels, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("switchboard");
        let grpc_requests = Family::<Labels, Counter>::default();
        registry.register("grpc_requests", "gRPC calls answered, by status code", grpc_requests.clone());
        let grpc_duration = HistogramFamily::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "grpc_request_duration",
            "Time to answer a unary gRPC call",
            prometheus_client::registry::Unit::Seconds,
            grpc_duration.clone(),
        );
        let consumer_records = Family::<Labels, Counter>::default();
        registry.register("consumer_records", "Records a consumer finished with, by outcome", consumer_records.clone());
        let consumer_retries = Family::<Labels, Counter>::default();
        registry.register("consumer_retries", "Transient handler failures, retried", consumer_retries.clone());
        let consumer_lag = Family::<Labels, Gauge>::default();
        registry.register("consumer_lag", "Records between a consumer's position and the end", consumer_lag.clone());
        let consumer_partitions = Family::<Labels, Gauge>::default();
        registry.register("consumer_partitions", "Partitions a consumer holds", consumer_partitions.clone());
        let hints_sent = Family::<Labels, Counter>::default();
        registry.register("hints_sent", "Record hints published on Redis, by outcome", hints_sent.clone());
        let hints_received = Family::<Labels, Counter>::default();
        registry.register("hints_received", "Record hints a consumer received, by outcome", hints_received.clone());
        let dead_letters = Family::<Labels, Counter>::default();
        registry.register("dead_letters", "Records written to the dead-letter topic", dead_letters.clone());
        let outbox_depth = Family::<Labels, Gauge>::default();
        registry.register("outbox_depth", "Events stored and not yet published", outbox_depth.clone());
        let relay_batches = Family::<Labels, Counter>::default();
        registry.register("relay_batches", "Outbox batches a relay published", relay_batches.clone());
        let relayed_events = Family::<Labels, Counter>::default();
        registry.register("relayed_events", "Events an outbox relay published", relayed_events.clone());
        let waiting_contacts = Family::<Labels, Gauge>::default();
        registry.register("waiting_contacts", "Contacts waiting in queues", waiting_contacts.clone());
        let agents_by_state = Family::<Labels, Gauge>::default();
        registry.register("agents", "Agents by live state", agents_by_state.clone());
        let dependency_latency = HistogramFamily::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "dependency_probe_duration",
            "Round trip of a readiness probe of a backend",
            prometheus_client::registry::Unit::Seconds,
            dependency_latency.clone(),
        );
        let dependency_up = Family::<Labels, Gauge>::default();
        registry.register("dependency_up", "1 while a backend answers its readiness probe", dependency_up.clone());
        let task_failures = Family::<Labels, Counter>::default();
        registry.register("task_failures", "Failed runs of timer tasks", task_failures.clone());
        let clock_offset = Family::<Labels, Gauge>::default();
        registry.register(
            "clock_offset_milliseconds",
            "The shared clock (redis TIME) minus this host's clock",
            clock_offset.clone(),
        );
        let webhook_requests = Family::<Labels, Counter>::default();
        registry.register("webhook_requests", "Channel webhook requests, by outcome", webhook_requests.clone());
        let webhook_items = Family::<Labels, Counter>::default();
        registry.register("webhook_items", "Messages, edits and statuses webhooks carried", webhook_items.clone());
        Metrics {
            registry,
            grpc_requests,
            grpc_duration,
            consumer_records,
            consumer_retries,
            consumer_lag,
            consumer_partitions,
            hints_sent,
            hints_received,
            dead_letters,
            outbox_depth,
            relay_batches,
            relayed_events,
            waiting_contacts,
            agents_by_state,
            dependency_latency,
            dependency_up,
            task_failures,
            clock_offset,
            webhook_requests,
            webhook_items,
        }
    }

    /// The process's metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Labels from (name, value) pairs.
pub fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(name, value)| (name, value.to_owned())).collect()
}

pub fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}
