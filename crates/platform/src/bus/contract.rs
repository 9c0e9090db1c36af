//! The contract every [`EventBus`] implementation passes. Run by the
//! platform's tests against the in-process bus and against a real Kafka
//! broker; each check returns an error naming what broke.

use std::time::Duration;

use switchboard_core::event::envelope;
use switchboard_core::{Error, TenantId};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{ContactAbandoned, ContactEvent, contact_event};

use super::{EventBus, StartFrom, Subscription};

/// Long enough for a Kafka group to join and rebalance.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(60);

fn sample(tenant: &TenantId, subject: &str, reason: &str) -> EventEnvelope {
    envelope(
        Some(tenant),
        subject,
        Payload::Contact(ContactEvent {
            kind: Some(contact_event::Kind::Abandoned(ContactAbandoned {
                contact: subject.to_owned(),
                reason: reason.to_owned(),
                abandon_time: None,
            })),
        }),
    )
}

async fn receive(subscription: &mut Box<dyn Subscription>) -> Result<super::Delivery, Error> {
    tokio::time::timeout(RECEIVE_TIMEOUT, subscription.next())
        .await
        .map_err(|_| Error::internal("no record arrived within the timeout"))?
}

fn expect(condition: bool, what: &str) -> Result<(), Error> {
    if condition { Ok(()) } else { Err(Error::internal(format!("contract broken: {what}"))) }
}

/// Records of one subject arrive in publish order with their envelope
/// intact; an unacknowledged record is delivered again to the group after
/// it rejoins, an acknowledged one is not; another group sees everything.
pub async fn at_least_once_in_order(bus: &dyn EventBus, topic: &str, group_suffix: &str) -> Result<(), Error> {
    let tenant = TenantId::parse("acme", "tenant")?;
    let published: Vec<EventEnvelope> =
        (0..5).map(|index| sample(&tenant, "ct_contract", &format!("reason-{index}"))).collect();
    for event in &published {
        bus.publish(topic, event).await?;
    }

    let group = format!("contract-a-{group_suffix}");
    let mut first = bus.subscribe(&group, &[topic], StartFrom::Earliest).await?;
    for expected in &published[..3] {
        let delivery = receive(&mut first).await?;
        expect(&delivery.envelope == expected, "records arrive intact and in order")?;
        first.ack(&delivery).await?;
    }
    // The fourth record is received but never acknowledged.
    let unacked = receive(&mut first).await?;
    expect(unacked.envelope == published[3], "fourth record arrives fourth")?;
    first.close().await?;

    let mut rejoined = bus.subscribe(&group, &[topic], StartFrom::Earliest).await?;
    let redelivered = receive(&mut rejoined).await?;
    expect(redelivered.envelope == published[3], "the unacknowledged record is redelivered, acked ones are not")?;
    rejoined.ack(&redelivered).await?;
    let last = receive(&mut rejoined).await?;
    expect(last.envelope == published[4], "delivery continues after the redelivered record")?;
    rejoined.ack(&last).await?;
    rejoined.close().await?;

    let mut other_group = bus.subscribe(&format!("contract-b-{group_suffix}"), &[topic], StartFrom::Earliest).await?;
    for expected in &published {
        let delivery = receive(&mut other_group).await?;
        expect(&delivery.envelope == expected, "a second group sees every record")?;
        other_group.ack(&delivery).await?;
    }
    other_group.close().await
}

/// A group that starts at the latest offset sees only what is published
/// after it joined.
pub async fn latest_skips_history(bus: &dyn EventBus, topic: &str, group_suffix: &str) -> Result<(), Error> {
    let tenant = TenantId::parse("acme", "tenant")?;
    bus.publish(topic, &sample(&tenant, "ct_old", "before")).await?;
    let mut subscription =
        bus.subscribe(&format!("contract-latest-{group_suffix}"), &[topic], StartFrom::Latest).await?;
    // Kafka assigns partitions asynchronously; keep publishing fresh
    // records until one arrives, and check no old one ever does.
    let fresh = sample(&tenant, "ct_new", "after");
    let deadline = tokio::time::Instant::now() + RECEIVE_TIMEOUT;
    loop {
        bus.publish(topic, &fresh).await?;
        match tokio::time::timeout(Duration::from_millis(500), subscription.next()).await {
            Ok(delivery) => {
                let delivery = delivery?;
                expect(delivery.envelope.subject == "ct_new", "history before joining is not delivered")?;
                expect(subscription.assignment().is_assigned(), "a member receiving records holds partitions")?;
                return subscription.close().await;
            }
            Err(_) if tokio::time::Instant::now() < deadline => continue,
            Err(_) => return Err(Error::internal("no fresh record arrived")),
        }
    }
}

/// A scan reads every record the topic holds when it starts, in order per
/// partition, including records the producer wrote together in one batch
/// (published concurrently, as the relays do).
pub async fn scan_reads_every_record(bus: &dyn EventBus, topic: &str) -> Result<(), Error> {
    let tenant = TenantId::parse("acme", "tenant")?;
    let mut published = Vec::new();
    for round in 0..2 {
        let events: Vec<EventEnvelope> =
            (0..200).map(|index| sample(&tenant, "ct_scanned", &format!("{round}-{index}"))).collect();
        for delivery in futures::future::join_all(events.iter().map(|event| bus.publish(topic, event))).await {
            delivery?;
        }
        published.extend(events.into_iter().map(|event| event.event_id));
        let mut scanned = Vec::new();
        bus.scan(topic, &mut |record| {
            if let Ok(envelope) = switchboard_core::event::decode(&record.payload) {
                scanned.push(envelope.event_id);
            }
            super::Scan::Continue
        })
        .await?;
        let mut expected = published.clone();
        expected.sort_unstable();
        let mut seen = scanned.clone();
        seen.sort_unstable();
        expect(seen == expected, &format!("a scan reads all {} records (read {})", published.len(), scanned.len()))?;
    }
    Ok(())
}
