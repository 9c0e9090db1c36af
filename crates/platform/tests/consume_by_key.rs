//! `consume_by_key` (a spec's `concurrent_by_key`): the records waiting at
//! once that have different keys are handled concurrently, those of one
//! key in the order the bus holds them, and a restarted member of the
//! group starts after what was finished.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::TenantId;
use switchboard_core::event::envelope;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::bus::{Delivery, EventBus, StartFrom};
use switchboard_platform::service::consume::{Consumer, ConsumerHealth, consume_by_key};
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{ContactAbandoned, ContactEvent, contact_event};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "by-key";
const PATIENCE: Duration = Duration::from_secs(10);

/// An event keyed by `key`, its reason naming it `label`.
fn event(key: &str, label: &str) -> switchboard_proto::events::v1::EventEnvelope {
    let tenant = TenantId::parse("acme", "tenant").expect("tenant");
    let abandoned =
        ContactAbandoned { contact: key.to_owned(), reason: label.to_owned(), ..ContactAbandoned::default() };
    envelope(
        Some(&tenant),
        key,
        Payload::Contact(ContactEvent { kind: Some(contact_event::Kind::Abandoned(abandoned)) }),
    )
}

fn label(delivery: &Delivery) -> String {
    match &delivery.envelope.payload {
        Some(Payload::Contact(ContactEvent { kind: Some(contact_event::Kind::Abandoned(abandoned)) })) => {
            abandoned.reason.clone()
        }
        other => panic!("unexpected payload {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_other_keys_do_not_wait_and_one_keys_keep_their_order() {
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new());
    for (key, label) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1")] {
        bus.publish(TOPIC, &event(key, label)).await.expect("publish");
    }
    let handled = Arc::new(Mutex::new(Vec::<String>::new()));
    let b_handled = Arc::new(Notify::new());
    // a1 finishes only once b1 is handled: one record at a time, the
    // consumer would wait on a1 forever.
    let handler = {
        let (handled, b_handled) = (Arc::clone(&handled), Arc::clone(&b_handled));
        move |delivery: Delivery| {
            let (handled, b_handled) = (Arc::clone(&handled), Arc::clone(&b_handled));
            async move {
                let label = label(&delivery);
                if label == "a1" {
                    b_handled.notified().await;
                }
                handled.lock().unwrap().push(label.clone());
                if label == "b1" {
                    b_handled.notify_one();
                }
                Ok(())
            }
        }
    };
    let subscription = bus.subscribe("g", &[TOPIC], StartFrom::Earliest).await.expect("subscribe");
    let shutdown = CancellationToken::new();
    let consumer = Consumer::new("by-key", Arc::clone(&bus), ConsumerHealth::default());
    let task = tokio::spawn(consume_by_key(consumer, subscription, handler, shutdown.clone()));

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while handled.lock().unwrap().len() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "handled only {:?}", handled.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let order = handled.lock().unwrap().clone();
    let position = |label: &str| order.iter().position(|known| known == label).expect(label);
    assert!(position("b1") < position("a1"), "b1 did not wait for a1: {order:?}");
    assert!(position("a1") < position("a2"), "one key's records keep their order: {order:?}");
    shutdown.cancel();
    task.await.expect("consumer task").expect("consumer stops cleanly");

    // What was finished is stored: a new member of the group starts after it.
    bus.publish(TOPIC, &event("d", "d1")).await.expect("publish");
    let mut again = bus.subscribe("g", &[TOPIC], StartFrom::Earliest).await.expect("subscribe again");
    let next = tokio::time::timeout(PATIENCE, again.next()).await.expect("a record").expect("delivery");
    assert_eq!(label(&next), "d1", "the finished records are not delivered again");
}
