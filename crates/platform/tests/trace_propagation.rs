//! W3C `traceparent` travels with every event (in-process bus and Kafka
//! headers) and every service-to-service gRPC call, so one trace spans the
//! whole flow of a contact.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use opentelemetry::trace::TraceContextExt;
use switchboard_core::TenantId;
use switchboard_core::event::envelope;
use switchboard_platform::bus::kafka::KafkaBus;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::bus::{EventBus, StartFrom, publish_traced, stamp_trace};
use switchboard_platform::config::TelemetryConfig;
use switchboard_platform::grpc::CallContext;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{ContactAbandoned, ContactEvent, contact_event};
use switchboard_test_support::{backend_url, isolated_kafka_config};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

fn sample() -> switchboard_proto::events::v1::EventEnvelope {
    let tenant = TenantId::parse("acme", "t").expect("tenant");
    let event = ContactEvent { kind: Some(contact_event::Kind::Abandoned(ContactAbandoned::default())) };
    envelope(Some(&tenant), "ct_trace", Payload::Contact(event))
}

/// Publishes inside a span and returns (the span's trace id, the trace id
/// in the `traceparent` the consumer received).
async fn round_trip(bus: &dyn EventBus, topic: &str, group: &str) -> (String, String) {
    let span = tracing::info_span!("test-publish");
    let trace_id = span.context().span().span_context().trace_id().to_string();
    bus.publish(topic, &sample()).instrument(span).await.expect("publish");
    let mut subscription = bus.subscribe(group, &[topic], StartFrom::Earliest).await.expect("subscribe");
    let delivery = tokio::time::timeout(Duration::from_secs(60), subscription.next())
        .await
        .expect("a record arrives")
        .expect("record");
    let traceparent = delivery.traceparent.expect("the record carries a traceparent");
    // version-traceid-spanid-flags
    let received = traceparent.split('-').nth(1).expect("trace id part").to_owned();
    (trace_id, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_crosses_the_bus_and_grpc_calls() {
    let _guard = switchboard_platform::telemetry::init(&TelemetryConfig::default(), "trace-test").expect("telemetry");

    let (sent, received) = round_trip(&MemoryBus::new(), "trace.memory", "g").await;
    assert_eq!(sent, received, "in-process bus keeps the trace");
    assert_ne!(sent, "00000000000000000000000000000000");

    let span = tracing::info_span!("outgoing-call");
    let expected = span.context().span().span_context().trace_id().to_string();
    let request = span.in_scope(|| CallContext::with_authorization("Bearer k".parse().expect("ascii")).request(()));
    let traceparent = request.metadata().get("traceparent").expect("traceparent metadata").to_str().expect("ascii");
    assert_eq!(traceparent.split('-').nth(1), Some(expected.as_str()), "gRPC calls carry the caller's trace");
    assert_eq!(request.metadata().get("authorization").map(|v| v.to_str().ok()), Some(Some("Bearer k")));

    // An event made in one trace and published later by another task (an
    // outbox relay) is published in the trace that made it.
    let change = tracing::info_span!("the-change");
    let expected = change.context().span().span_context().trace_id().to_string();
    let mut stored = sample();
    change.in_scope(|| stamp_trace(&mut stored));
    let bus = MemoryBus::new();
    let relay = tracing::info_span!("the-relay");
    publish_traced(&bus, "trace.outbox", &stored).instrument(relay).await.expect("publish");
    let mut subscription = bus.subscribe("g", &["trace.outbox"], StartFrom::Earliest).await.expect("subscribe");
    let delivery = subscription.next().await.expect("record");
    let traceparent = delivery.traceparent.expect("a traceparent");
    assert_eq!(traceparent.split('-').nth(1), Some(expected.as_str()), "the relay publishes in the change's trace");

    let Some(brokers) = backend_url("SWITCHBOARD_TEST_KAFKA") else { return };
    let config = isolated_kafka_config(brokers, "trace");
    let bus = KafkaBus::connect(&config, &["events"]).await.expect("kafka");
    let (sent, received) = round_trip(&bus, "events", "g").await;
    assert_eq!(sent, received, "kafka headers keep the trace");
}
