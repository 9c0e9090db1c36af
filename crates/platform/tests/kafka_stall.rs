//! The bus after its broker stalls: librdkafka may declare an idempotent
//! producer failed for good once records timed out in a stall (tansu fences
//! it when it starts over), and such a producer refuses every later record.
//! Found from outside: after a 5-15 s pause of the broker, routing's relay
//! failed on every batch until the process was restarted, while it reported
//! ready. The bus must publish again by itself once the broker is back.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use switchboard_core::event::envelope;
use switchboard_platform::bus::EventBus;
use switchboard_platform::bus::kafka::KafkaBus;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{ContactAbandoned, ContactEvent, contact_event};
use switchboard_test_support::broker::OwnBroker;
use switchboard_test_support::{backend_url, isolated_kafka_config, scratch_dir};

const TOPIC: &str = "stall";
/// Within this the bus publishes again once the broker is back.
const RECOVERY: Duration = Duration::from_secs(60);

fn record(index: usize) -> switchboard_proto::events::v1::EventEnvelope {
    let contact = format!("tenants/acme/contacts/ct_{index}");
    let abandoned = ContactAbandoned { contact: contact.clone(), reason: String::new(), abandon_time: None };
    let event = ContactEvent { kind: Some(contact_event::Kind::Abandoned(abandoned)) };
    envelope(None, &contact, Payload::Contact(event))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_publishes_again_after_its_broker_stalls() {
    // The real-backend environment is what installs tansu.
    let Some(_shared_broker) = backend_url("SWITCHBOARD_TEST_KAFKA") else { return };
    let dir = scratch_dir("kafka-stall");
    let broker = OwnBroker::start(&dir);
    let config = isolated_kafka_config(broker.address.clone(), "stall");
    let deadline = tokio::time::Instant::now() + RECOVERY;
    let bus = loop {
        match KafkaBus::connect(&config, &[TOPIC]).await {
            Ok(bus) => break bus,
            Err(error) => assert!(tokio::time::Instant::now() < deadline, "the broker never came up: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // As routing's relay publishes: deliveries fail within 2 s.
    let relay = bus.bounded(Duration::from_secs(2)).expect("bounded").expect("a kafka bus");
    relay.publish(TOPIC, &record(0)).await.expect("published before the stall");

    broker.pause();
    let during: Vec<_> = (1..=20)
        .map(|index| {
            let relay = std::sync::Arc::clone(&relay);
            tokio::spawn(async move { relay.publish(TOPIC, &record(index)).await })
        })
        .collect();
    for publish in during {
        assert!(publish.await.expect("task").is_err(), "nothing is delivered while the broker is stopped");
    }
    // The length of the stall is the fault injected, not a wait for a
    // condition: records timed out while requests were outstanding.
    tokio::time::sleep(Duration::from_secs(5)).await;
    broker.resume();

    let recovered_by = tokio::time::Instant::now() + RECOVERY;
    let mut index = 100;
    loop {
        index += 1;
        let Err(error) = relay.publish(TOPIC, &record(index)).await else { break };
        assert!(tokio::time::Instant::now() < recovered_by, "the bus never published again after the stall: {error}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    relay.check().await.expect("ready once it publishes again");
}
