//! Routing's relay on its pace (`routing.relay_interval_ms`): a change
//! after a quiet spell leaves at once, and changes made within the interval
//! after a round share the next round.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{Routing, WAIT};
use switchboard_platform::metrics::metrics;
use switchboard_proto::routing::v1::routing_event;
use switchboard_test_support::{metric_value, next_routing_event};
use tokio::time::Instant;

const INTERVAL: Duration = Duration::from_millis(1_000);

async fn next_queued(routing: &mut Routing) -> String {
    let pick = |kind| match kind {
        routing_event::Kind::Queued(queued) => Some(queued.contact),
        _ => None,
    };
    next_routing_event(&mut routing.events, WAIT, pick).await.expect("queued")
}

/// `switchboard_relay_batches_total` and `switchboard_relayed_events_total`
/// of routing, as exposed.
fn relayed() -> (u64, u64) {
    let exposition = metrics().render();
    let read = |name: &str| {
        // Counters are whole numbers, exposed as such.
        metric_value(&exposition, name, &[("service", "routing")]).map_or(0, |value| value as u64)
    };
    (read("switchboard_relay_batches_total"), read("switchboard_relayed_events_total"))
}

/// Waits until routing's relay has counted `events` published events.
async fn relayed_events_reach(events: u64) -> (u64, u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let counted = relayed();
        if counted.1 >= events {
            return counted;
        }
        assert!(Instant::now() < deadline, "relayed {counted:?}, waiting for {events} events");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_lone_change_leaves_at_once_and_changes_within_the_interval_share_the_next_round() {
    let interval_ms = u64::try_from(INTERVAL.as_millis()).unwrap();
    let mut routing = Routing::start_with_relay_interval(interval_ms).await;
    routing.create_queue("support", 30).await;
    // The setup's own changes are further back than the interval: the
    // next change starts a round at once.
    tokio::time::sleep(INTERVAL + INTERVAL / 2).await;

    let lone_sent = Instant::now();
    let lone = routing.contact("support").await;
    assert_eq!(next_queued(&mut routing).await, lone);
    assert!(lone_sent.elapsed() < INTERVAL / 2, "the lone change waited {:?}", lone_sent.elapsed());
    let (batches_before, events_before) = relayed_events_reach(1).await;

    let first = routing.contact("support").await;
    let second = routing.contact("support").await;
    let seen = BTreeSet::from([next_queued(&mut routing).await, next_queued(&mut routing).await]);
    assert_eq!(seen, BTreeSet::from([first, second]));
    assert!(
        lone_sent.elapsed() >= INTERVAL,
        "the next round began {:?} after the lone change, inside the interval",
        lone_sent.elapsed()
    );
    let (batches_after, events_after) = relayed_events_reach(events_before + 2).await;
    assert_eq!(events_after - events_before, 2, "each contact's queued event once");
    assert_eq!(batches_after - batches_before, 1, "both contacts' changes in one round");
    routing.stop().await;
}
