//! `WatchLiveKpis` over a real gRPC connection: the first message shows a
//! tenant as it is; an event published on the bus changes the figures and
//! a new message follows within a second; another tenant's reader may not
//! watch it, and only the operator watches every tenant.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{ACME_READER_KEY, GLOBEX_READER_KEY, OPERATOR_KEY, authorized, publish, start_in_memory};
use switchboard_core::time::timestamp_from_millis;
use switchboard_core::{ContactId, QueueId, TenantId};
use switchboard_kpi::store::contract::{ContactStory, StoryOutcome};
use switchboard_proto::common::v1::{Channel, Direction};
use switchboard_proto::kpi::v1::{LiveKpis, WatchLiveKpisRequest};
use switchboard_proto::presence::v1::{AgentState, AgentStateChanged, PresenceEvent, presence_event};
use tonic::Code;

/// What "pushed within 1 s of the event" allows.
const PUSH: Duration = Duration::from_secs(1);

fn waiting_story(contact: &str, created_ms: i64) -> ContactStory {
    ContactStory {
        tenant: TenantId::parse("acme", "tenant").unwrap(),
        contact: ContactId::parse(contact, "contact").unwrap(),
        queue: QueueId::parse("support", "queue").unwrap(),
        overflow_to: None,
        channel: Channel::Chat,
        direction: Direction::Inbound,
        created_ms,
        queue_delay_ms: Some(0),
        outcome: StoryOutcome::Waiting,
        short_abandon_threshold_ms: None,
        service_level_threshold_ms: None,
    }
}

async fn next(stream: &mut tonic::Streaming<LiveKpis>, within: Duration) -> LiveKpis {
    tokio::time::timeout(within, stream.message()).await.expect("a message in time").expect("stream ok").expect("open")
}

#[tokio::test]
async fn figures_are_pushed_within_a_second_of_the_event_that_changes_them() {
    let (mut service, bus) = start_in_memory().await;
    let request = WatchLiveKpisRequest { parent: "tenants/acme".to_owned(), utc_offset: None };
    let mut stream =
        service.client.watch_live_kpis(authorized(ACME_READER_KEY, request)).await.expect("watch").into_inner();
    let first = next(&mut stream, PUSH * 2).await;
    assert_eq!((first.tenant.as_str(), first.contacts_waiting), ("tenants/acme", 0));
    assert!(first.longest_wait.is_none() && first.agents.is_empty());

    // A contact arrives and waits: it shows, with its wait.
    let now_ms = switchboard_core::time::now_millis();
    let published = tokio::time::Instant::now();
    publish(&bus, &waiting_story("ct_live0001", now_ms - 30_000).events()).await;
    let live = next(&mut stream, PUSH).await;
    assert!(published.elapsed() <= PUSH, "pushed after {:?}", published.elapsed());
    assert_eq!(live.contacts_waiting, 1, "{live:?}");
    assert!(live.longest_wait.as_ref().is_some_and(|wait| wait.seconds >= 30), "{live:?}");
    let today = live.today.expect("today");
    assert_eq!((today.offered, today.waiting), (1, 1));
    assert_eq!(live.today_intervals.len(), 1);

    // An agent of acme comes online.
    let changed = AgentStateChanged {
        agent: "agents/ann".to_owned(),
        state: AgentState::Available as i32,
        tenants: vec!["tenants/acme".to_owned()],
        state_time: Some(timestamp_from_millis(now_ms)),
        ..AgentStateChanged::default()
    };
    let envelope = switchboard_core::event::envelope(
        None,
        "agents/ann",
        switchboard_proto::events::v1::event_envelope::Payload::Presence(PresenceEvent {
            kind: Some(presence_event::Kind::StateChanged(changed)),
        }),
    );
    publish(&bus, &[(switchboard_core::event::PRESENCE_TOPIC, envelope)]).await;
    let live = next(&mut stream, PUSH).await;
    assert_eq!(live.agents.len(), 1, "{live:?}");
    assert_eq!((live.agents[0].state, live.agents[0].agents), (AgentState::Available as i32, 1));

    // Another tenant's reader may not watch acme; only the operator all.
    let foreign = WatchLiveKpisRequest { parent: "tenants/acme".to_owned(), utc_offset: None };
    let refused = service.client.watch_live_kpis(authorized(GLOBEX_READER_KEY, foreign)).await.expect_err("foreign");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let everything = WatchLiveKpisRequest::default();
    let refused =
        service.client.watch_live_kpis(authorized(ACME_READER_KEY, everything.clone())).await.expect_err("all");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let crooked = WatchLiveKpisRequest {
        parent: "tenants/acme".to_owned(),
        utc_offset: Some(prost_types::Duration { seconds: 7 * 60, nanos: 0 }),
    };
    let refused = service.client.watch_live_kpis(authorized(ACME_READER_KEY, crooked)).await.expect_err("offset");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let mut all = service.client.watch_live_kpis(authorized(OPERATOR_KEY, everything)).await.expect("all").into_inner();
    let mut tenants = vec![next(&mut all, PUSH * 2).await.tenant, next(&mut all, PUSH * 2).await.tenant];
    tenants.sort();
    assert_eq!(tenants, ["tenants/acme", "tenants/globex"], "one message per tenant");
    service.stop().await;
}
