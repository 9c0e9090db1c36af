//! Record hints on a real broker (`SWITCHBOARD_TEST_KAFKA`) and a real Redis
//! (`SWITCHBOARD_TEST_REDIS`): an interactive consumer takes records from
//! their hints, and still gets each record once, in order, when hints are
//! lost, forged or malformed.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use switchboard_core::TenantId;
use switchboard_core::event::envelope;
use switchboard_platform::bus::contract::{at_least_once_in_order, latest_skips_history};
use switchboard_platform::bus::hints::Hints;
use switchboard_platform::bus::kafka::KafkaBus;
use switchboard_platform::bus::{EventBus, StartFrom, Subscription};
use switchboard_platform::config::{KafkaConfig, RedisConfig};
use switchboard_platform::metrics::{labels, metrics};
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::events::v1::{EventEnvelope, RecordHint};
use switchboard_proto::ingestion::v1::{ContactAbandoned, ContactEvent, contact_event};
use switchboard_test_support::{backend_url, isolated_kafka_config, unique_suffix};

const TOPIC: &str = "hinted";
const SUBJECTS: usize = 12;
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(60);

struct Backends {
    kafka: KafkaConfig,
    redis: RedisConfig,
}

fn backends(label: &str) -> Option<Backends> {
    let brokers = backend_url("SWITCHBOARD_TEST_KAFKA")?;
    let redis = backend_url("SWITCHBOARD_TEST_REDIS")?;
    let mut kafka = isolated_kafka_config(brokers, label);
    kafka.partitions = 3;
    Some(Backends { kafka, redis: RedisConfig { url: redis, ..RedisConfig::default() } })
}

fn event(subject: &str, sequence: usize) -> EventEnvelope {
    let tenant = TenantId::parse("acme", "tenant").unwrap();
    envelope(
        Some(&tenant),
        subject,
        Payload::Contact(ContactEvent {
            kind: Some(contact_event::Kind::Abandoned(ContactAbandoned {
                contact: subject.to_owned(),
                reason: format!("{sequence}"),
                abandon_time: None,
            })),
        }),
    )
}

/// Publishes `rounds` events of each of [`SUBJECTS`] subjects (spread over
/// the partitions), numbered from `first`.
async fn publish(bus: &dyn EventBus, first: usize, rounds: usize) -> Vec<EventEnvelope> {
    let mut published = Vec::new();
    for sequence in first..first + rounds {
        for subject in 0..SUBJECTS {
            let event = event(&format!("ct_{subject}"), sequence);
            bus.publish(TOPIC, &event).await.expect("published");
            published.push(event);
        }
    }
    published
}

/// Receives `count` records, acknowledging each, and checks every one of
/// `published` came exactly once and each subject's in publish order.
async fn receive_exactly(subscription: &mut Box<dyn Subscription>, published: &[EventEnvelope]) {
    let mut by_subject: HashMap<String, Vec<String>> = HashMap::new();
    for _ in 0..published.len() {
        let delivery = tokio::time::timeout(RECEIVE_TIMEOUT, subscription.next())
            .await
            .expect("a record within the timeout")
            .expect("a record");
        subscription.ack(&delivery).await.expect("ack");
        by_subject.entry(delivery.envelope.subject.clone()).or_default().push(delivery.envelope.event_id);
    }
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    for event in published {
        expected.entry(event.subject.clone()).or_default().push(event.event_id.clone());
    }
    assert_eq!(by_subject, expected, "every record once, each subject's in order");
    // Nothing more: no record handed over twice (once by its hint, once by
    // the broker).
    let extra = tokio::time::timeout(Duration::from_secs(1), subscription.next()).await;
    assert!(extra.is_err(), "a record was handed over twice: {extra:?}");
}

fn hints_received(group: &str, outcome: &str) -> u64 {
    metrics().hints_received.get_or_create(&labels([("consumer", group), ("outcome", outcome)])).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hinted_bus_passes_the_bus_contract() {
    let Some(backends) = backends("hinted-contract") else { return };
    let hints = Hints::through_redis(&backends.redis).expect("hints");
    let bus = KafkaBus::connect(&backends.kafka, &["events", "latest"]).await.expect("kafka bus").with_hints(hints);
    let run = unique_suffix();
    at_least_once_in_order(&bus, "events", &run).await.expect("at least once, in order");
    latest_skips_history(&bus, "latest", &run).await.expect("latest");
}

/// Once the broker gave the consumer its partitions' positions, records
/// published afterwards are handed over from their hints (counted as
/// `used`), each once and in order, the broker's copies skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_consumer_takes_records_from_their_hints() {
    let Some(backends) = backends("hinted") else { return };
    let hints = Hints::through_redis(&backends.redis).expect("hints");
    let bus = KafkaBus::connect(&backends.kafka, &[TOPIC]).await.expect("kafka bus").with_hints(hints);
    let group = format!("hinted-{}", unique_suffix());
    let mut subscription = bus.subscribe(&group, &[TOPIC], StartFrom::Earliest).await.expect("subscribe");

    // The first round comes through the broker: it tells the consumer
    // where each partition stands.
    let first = publish(&bus, 0, 2).await;
    receive_exactly(&mut subscription, &first).await;
    let used_before = hints_received(&group, "used");

    let second = publish(&bus, 2, 5).await;
    receive_exactly(&mut subscription, &second).await;
    let used = hints_received(&group, "used") - used_before;
    assert!(used > 0, "no record of {} was handed over from its hint", second.len());
    subscription.close().await.expect("close");
}

/// A consumer whose records are never hinted (the producer has no hints),
/// or whose hints are forged, malformed or of another topic, gets every
/// record from the broker, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_forged_or_malformed_hints_lose_and_repeat_nothing() {
    let Some(backends) = backends("hints-lost") else { return };
    let hints = Hints::through_redis(&backends.redis).expect("hints");
    let plain = KafkaBus::connect(&backends.kafka, &[TOPIC]).await.expect("kafka bus");
    let hinted = plain.clone().with_hints(hints);
    let group = format!("unhinted-{}", unique_suffix());
    let mut subscription = hinted.subscribe(&group, &[TOPIC], StartFrom::Earliest).await.expect("subscribe");
    let first = publish(&plain, 0, 2).await;
    receive_exactly(&mut subscription, &first).await;

    // What a writer of Redis could send on the topic's channel: bytes that
    // are not a hint, a hint naming another topic, a hint standing in for
    // a record already handed over, and one far ahead of any record.
    let channel = format!("switchboard:hints:{}{TOPIC}", backends.kafka.topic_prefix);
    let forged = |topic: &str, partition: i32, offset: i64, subject: &str| {
        let payload = event(subject, 999).encode_to_vec();
        RecordHint {
            topic: topic.to_owned(),
            partition,
            offset,
            key: subject.as_bytes().to_vec(),
            value: payload,
            traceparent: String::new(),
        }
        .encode_to_vec()
    };
    let mut redis = switchboard_platform::redis::connect(&backends.redis.url).await.expect("redis");
    let frames = [
        b"\xff\xfenot a hint".to_vec(),
        forged("another.topic", 0, 0, "ct_forged_a"),
        forged(TOPIC, 0, 0, "ct_forged_b"),
        forged(TOPIC, 1, 1_000_000, "ct_forged_c"),
    ];
    for frame in frames {
        let _: i64 = redis::cmd("PUBLISH").arg(&channel).arg(frame).query_async(&mut redis).await.expect("publish");
    }

    let second = publish(&plain, 2, 3).await;
    receive_exactly(&mut subscription, &second).await;
    assert_eq!(hints_received(&group, "used"), 0, "no hint of these records was ever sent");
    subscription.close().await.expect("close");
}
