//! No record can stall a consumer: a malformed record and an event its
//! handler can never handle are dead-lettered with their reason and the
//! consumer moves on; a transient failure is retried, not dead-lettered;
//! dead letters are listed and replayed on their original topic. On the
//! in-process bus and on a real Kafka broker (`SWITCHBOARD_TEST_KAFKA`).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::event::{DEAD_LETTER_TOPIC, envelope};
use switchboard_core::{Error, TenantId};
use switchboard_platform::bus::dead_letter::{DeadLetterFilter, list_dead_letters, replay_dead_letters};
use switchboard_platform::bus::kafka::KafkaBus;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::bus::{Delivery, EventBus, RawRecord, StartFrom};
use switchboard_platform::service::consume::{Consumer, ConsumerHealth, consume, consume_batches, consume_by_key};
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{ContactAbandoned, ContactEvent, contact_event};
use switchboard_test_support::{backend_url, isolated_kafka_config, unique_suffix};
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "poison";
const PATIENCE: Duration = Duration::from_secs(60);

fn event(subject: &str) -> switchboard_proto::events::v1::EventEnvelope {
    let tenant = TenantId::parse("acme", "tenant").expect("tenant");
    let abandoned = ContactAbandoned { contact: subject.to_owned(), ..ContactAbandoned::default() };
    envelope(
        Some(&tenant),
        subject,
        Payload::Contact(ContactEvent { kind: Some(contact_event::Kind::Abandoned(abandoned)) }),
    )
}

/// Waits until `condition` holds, polling.
async fn until(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How the consumer under test takes its records.
#[derive(Clone, Copy)]
enum Consumption {
    OneByOne,
    /// `consume_batches`: a batch with the poison fails as a whole, is
    /// handled again one record at a time, and only the poison is
    /// dead-lettered.
    Batched,
    /// `consume_by_key`: the records of different keys at once.
    ByKey,
}
use Consumption::{Batched, ByKey, OneByOne};

async fn poison_is_dead_lettered_and_replayable(bus: Arc<dyn EventBus>, group: &str, pace: Consumption) {
    let garbage = RawRecord {
        topic: TOPIC.to_owned(),
        partition: 0,
        offset: 0,
        key: b"ct_garbage".to_vec(),
        payload: vec![0xff, 0xff, 0xff],
        traceparent: None,
    };
    bus.publish_raw(&garbage).await.expect("publish garbage");
    for subject in ["poison", "flaky", "good"] {
        bus.publish(TOPIC, &event(subject)).await.expect("publish");
    }

    let handled = Arc::new(Mutex::new(Vec::<String>::new()));
    let flaky_attempts = Arc::new(Mutex::new(0));
    // The same rules for one record or a batch: the poison never passes,
    // the flaky one fails twice, then passes.
    let judge = {
        let (handled, flaky_attempts) = (Arc::clone(&handled), Arc::clone(&flaky_attempts));
        move |subjects: Vec<String>| {
            if subjects.iter().any(|subject| subject == "poison") {
                return Err(Error::invalid_field("abandoned.contact", "never valid (test)"));
            }
            if subjects.iter().any(|subject| subject == "flaky") {
                let mut attempts = flaky_attempts.lock().unwrap();
                *attempts += 1;
                if *attempts < 3 {
                    return Err(Error::unavailable("backend down (test)"));
                }
            }
            handled.lock().unwrap().extend(subjects);
            Ok(())
        }
    };
    let subscription = bus.subscribe(group, &[TOPIC], StartFrom::Earliest).await.expect("subscribe");
    let shutdown = CancellationToken::new();
    let consumer = Consumer::new("test-consumer", Arc::clone(&bus), ConsumerHealth::default());
    let task = match pace {
        OneByOne => {
            let handler = move |delivery: Delivery| std::future::ready(judge(vec![delivery.envelope.subject]));
            tokio::spawn(consume(consumer, subscription, handler, shutdown.clone()))
        }
        Batched => {
            let handler = move |deliveries: Arc<[Delivery]>| {
                std::future::ready(judge(deliveries.iter().map(|delivery| delivery.envelope.subject.clone()).collect()))
            };
            tokio::spawn(consume_batches(consumer, subscription, handler, shutdown.clone()))
        }
        ByKey => {
            let handler = move |delivery: Delivery| std::future::ready(judge(vec![delivery.envelope.subject]));
            tokio::spawn(consume_by_key(consumer, subscription, handler, shutdown.clone()))
        }
    };

    until("the good and the flaky records to be handled", async || handled.lock().unwrap().len() == 2).await;
    let mut handled_subjects = handled.lock().unwrap().clone();
    if matches!(pace, ByKey) {
        // Different keys: the good record need not wait for the flaky one.
        handled_subjects.sort_unstable();
    }
    assert_eq!(handled_subjects, vec!["flaky".to_owned(), "good".to_owned()], "records after the poison are handled");
    assert_eq!(*flaky_attempts.lock().unwrap(), 3, "a transient failure is retried until it succeeds");

    let filter = DeadLetterFilter { consumer: Some("test-consumer".to_owned()), tenant: None };
    let mut letters = Vec::new();
    until("two dead letters", async || {
        letters = list_dead_letters(bus.as_ref(), &filter).await.expect("list");
        letters.len() == 2
    })
    .await;
    let mut reasons: Vec<&str> = letters.iter().map(|entry| entry.letter.reason.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, vec!["INVALID_FIELD", "MALFORMED_RECORD"]);
    let poison = letters.iter().find(|entry| entry.letter.reason == "INVALID_FIELD").expect("poison letter");
    assert_eq!(poison.letter.topic, TOPIC);
    assert_eq!(poison.letter.tenant, "acme");
    assert_eq!(poison.letter.key, b"poison".to_vec());
    let malformed = letters.iter().find(|entry| entry.letter.reason == "MALFORMED_RECORD").expect("garbage letter");
    assert_eq!(malformed.letter.value, vec![0xff, 0xff, 0xff], "the original bytes are kept");

    // Replayed, the poison reaches the consumer again (and fails again).
    let replayed = replay_dead_letters(bus.as_ref(), std::slice::from_ref(poison)).await.expect("replay");
    assert_eq!(replayed, 1);
    until("the replayed record to be dead-lettered again", async || {
        list_dead_letters(bus.as_ref(), &filter).await.expect("list").len() == 3
    })
    .await;
    assert_eq!(handled.lock().unwrap().len(), 2, "nothing else was handled");
    shutdown.cancel();
    task.await.expect("consumer task").expect("consumer stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bus_dead_letters_and_moves_on() {
    poison_is_dead_lettered_and_replayable(Arc::new(MemoryBus::new()), "g", OneByOne).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bus_batches_dead_letter_only_the_poison() {
    poison_is_dead_lettered_and_replayable(Arc::new(MemoryBus::new()), "g", Batched).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bus_by_key_dead_letters_and_moves_on() {
    poison_is_dead_lettered_and_replayable(Arc::new(MemoryBus::new()), "g", ByKey).await;
}

/// The contract on the test broker, on topics and a group of this run only
/// (nothing without `SWITCHBOARD_TEST_KAFKA`, outside CI).
async fn on_kafka(label: &str, pace: Consumption) {
    let Some(brokers) = backend_url("SWITCHBOARD_TEST_KAFKA") else { return };
    let config = isolated_kafka_config(brokers, label);
    let bus = KafkaBus::connect(&config, &[TOPIC, DEAD_LETTER_TOPIC]).await.expect("kafka bus");
    poison_is_dead_lettered_and_replayable(Arc::new(bus), &format!("g-{}", unique_suffix()), pace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_by_key_dead_letters_and_moves_on() {
    on_kafka("dead-letters-by-key", ByKey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_batches_dead_letter_only_the_poison() {
    on_kafka("dead-letters-batched", Batched).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_dead_letters_and_moves_on() {
    on_kafka("dead-letters", OneByOne).await;
}
