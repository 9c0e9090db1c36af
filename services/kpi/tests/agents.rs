//! `ListAgentKpis` over a real gRPC connection: presence and routing
//! events published on the bus (state changes out of order, a duplicate)
//! come back as each agent's time in state, occupancy, offers, missed
//! offers, handle time, transfers and callbacks; paging, validation and
//! tenant isolation.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{ACME_READER_KEY, GLOBEX_READER_KEY, authorized, publish, start_in_memory};
use switchboard_core::TenantId;
use switchboard_core::event::{PRESENCE_TOPIC, ROUTING_TOPIC, envelope};
use switchboard_core::time::{duration_from_millis, timestamp_from_millis};
use switchboard_kpi::domain::INTERVAL_MS;
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use switchboard_proto::kpi::v1::{AgentKpis, ListAgentKpisRequest, ListAgentKpisResponse};
use switchboard_proto::presence::v1::{AgentState, AgentStateChanged, PresenceEvent, presence_event};
use switchboard_proto::routing::v1::{self as routing, RoutingEvent, routing_event};
use tonic::Code;
use tonic_types::StatusExt;

/// 2025-12-01T09:00:00Z, a quarter-hour boundary.
const START_MS: i64 = 1_764_579_600_000;
const MINUTE_MS: i64 = 60_000;

fn state_change(agent: &str, state: AgentState, reason: &str, at_ms: i64) -> (&'static str, EventEnvelope) {
    let changed = AgentStateChanged {
        agent: format!("agents/{agent}"),
        state: state as i32,
        reason: reason.to_owned(),
        tenants: vec!["tenants/acme".to_owned()],
        state_time: Some(timestamp_from_millis(at_ms)),
        ..AgentStateChanged::default()
    };
    let payload = Payload::Presence(PresenceEvent { kind: Some(presence_event::Kind::StateChanged(changed)) });
    (PRESENCE_TOPIC, envelope(None, &format!("agents/{agent}"), payload))
}

/// A routing event of acme that occurred at `at_ms`.
fn routing_event(contact: &str, at_ms: i64, kind: routing_event::Kind) -> (&'static str, EventEnvelope) {
    let acme = TenantId::parse("acme", "tenant").unwrap();
    let subject = format!("tenants/acme/contacts/{contact}");
    let mut event = envelope(Some(&acme), &subject, Payload::Routing(RoutingEvent { kind: Some(kind) }));
    event.occurred_at = Some(timestamp_from_millis(at_ms));
    (ROUTING_TOPIC, event)
}

fn offered(contact: &str, agent: &str, at_ms: i64, callback_number: &str) -> (&'static str, EventEnvelope) {
    routing_event(
        contact,
        at_ms,
        routing_event::Kind::Offered(routing::ContactOffered {
            contact: format!("tenants/acme/contacts/{contact}"),
            agent: format!("agents/{agent}"),
            offer_time: Some(timestamp_from_millis(at_ms)),
            callback_number: callback_number.to_owned(),
            ..routing::ContactOffered::default()
        }),
    )
}

fn withdrawn(contact: &str, agent: &str, at_ms: i64, reason: routing::WithdrawReason) -> (&'static str, EventEnvelope) {
    routing_event(
        contact,
        at_ms,
        routing_event::Kind::OfferWithdrawn(routing::OfferWithdrawn {
            contact: format!("tenants/acme/contacts/{contact}"),
            agent: format!("agents/{agent}"),
            reason: reason as i32,
        }),
    )
}

fn completed(contact: &str, agent: &str, answer_ms: i64, end_ms: i64) -> (&'static str, EventEnvelope) {
    routing_event(
        contact,
        end_ms,
        routing_event::Kind::Completed(routing::ContactCompleted {
            contact: format!("tenants/acme/contacts/{contact}"),
            agent: format!("agents/{agent}"),
            answer_time: Some(timestamp_from_millis(answer_ms)),
            end_time: Some(timestamp_from_millis(end_ms)),
            ..routing::ContactCompleted::default()
        }),
    )
}

fn request(key_range_end_ms: i64) -> ListAgentKpisRequest {
    ListAgentKpisRequest {
        parent: "tenants/acme".to_owned(),
        start_time: Some(timestamp_from_millis(START_MS)),
        end_time: Some(timestamp_from_millis(key_range_end_ms)),
        ..ListAgentKpisRequest::default()
    }
}

async fn list(
    client: &mut KpiServiceClient<tonic::transport::Channel>,
    request: ListAgentKpisRequest,
) -> Result<ListAgentKpisResponse, tonic::Status> {
    client.list_agent_kpis(authorized(ACME_READER_KEY, request)).await.map(tonic::Response::into_inner)
}

/// Polls until ann's figures hold what `settled` wants.
async fn settled_ann(
    client: &mut KpiServiceClient<tonic::transport::Channel>,
    settled: impl Fn(&AgentKpis) -> bool,
) -> AgentKpis {
    let deadline = tokio::time::Instant::now() + common::CONVERGENCE_TIMEOUT;
    loop {
        let response = list(client, request(START_MS + 4 * INTERVAL_MS)).await.expect("ListAgentKpis");
        if let Some(ann) = response.agents.iter().find(|agent| agent.agent == "agents/ann")
            && settled(ann)
        {
            return ann.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "ann's figures did not settle: {response:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn time_in(agent: &AgentKpis, state: AgentState, reason: &str) -> Option<prost_types::Duration> {
    agent.time_in_state.iter().find(|entry| entry.state == state as i32 && entry.reason == reason)?.duration
}

#[tokio::test]
async fn an_agents_day_comes_back_as_time_in_state_occupancy_and_offers() {
    let (mut service, bus) = start_in_memory().await;
    // Ann: available 09:00, lunch 09:20, available 09:30, wrap-up 09:44,
    // offline 09:45. Published out of order, one twice.
    let changes = [
        state_change("ann", AgentState::Offline, "", START_MS + 45 * MINUTE_MS),
        state_change("ann", AgentState::Available, "", START_MS),
        state_change("ann", AgentState::WrapUp, "", START_MS + 44 * MINUTE_MS),
        state_change("ann", AgentState::Available, "", START_MS + 30 * MINUTE_MS),
        state_change("ann", AgentState::Away, "lunch", START_MS + 20 * MINUTE_MS),
    ];
    publish(&bus, &changes).await;
    publish(&bus, &changes[2..3]).await;
    let events = [
        offered("ct_a", "ann", START_MS + MINUTE_MS, ""),
        withdrawn("ct_a", "ann", START_MS + MINUTE_MS + 5_000, routing::WithdrawReason::Rejected),
        offered("ct_b", "ann", START_MS + 2 * MINUTE_MS, "+15550100"),
        withdrawn("ct_b", "ann", START_MS + 2 * MINUTE_MS + 20_000, routing::WithdrawReason::TimedOut),
        offered("ct_c", "ann", START_MS + 31 * MINUTE_MS, ""),
        withdrawn("ct_c", "ann", START_MS + 31 * MINUTE_MS + 3_000, routing::WithdrawReason::CustomerLeft),
        completed("ct_d", "ann", START_MS + 32 * MINUTE_MS, START_MS + 44 * MINUTE_MS),
        routing_event(
            "ct_e",
            START_MS + 50 * MINUTE_MS,
            routing_event::Kind::Transferred(routing::ContactTransferred {
                contact: "tenants/acme/contacts/ct_e".to_owned(),
                from_agent: "agents/ann".to_owned(),
                reason: routing::TransferReason::Requested as i32,
                ..routing::ContactTransferred::default()
            }),
        ),
    ];
    publish(&bus, &events).await;
    publish(&bus, &events[..2]).await;

    let ann = settled_ann(&mut service.client, |ann| {
        ann.handled == 1 && ann.transfers == 1 && time_in(ann, AgentState::WrapUp, "").is_some()
    })
    .await;
    assert_eq!(time_in(&ann, AgentState::Available, ""), Some(duration_from_millis(34 * MINUTE_MS)));
    assert_eq!(time_in(&ann, AgentState::Away, "lunch"), Some(duration_from_millis(10 * MINUTE_MS)));
    assert_eq!(time_in(&ann, AgentState::WrapUp, ""), Some(duration_from_millis(MINUTE_MS)));
    assert_eq!(ann.time_in_state.len(), 3, "offline is not counted: {ann:?}");
    assert_eq!(ann.staffed_time, Some(duration_from_millis(35 * MINUTE_MS)));
    // 12 minutes on the contact plus 1 in wrap-up, over 35 staffed.
    assert_eq!(ann.occupancy, Some(13.0 / 35.0));
    assert_eq!((ann.offered, ann.rejected, ann.timed_out, ann.missed), (3, 1, 1, 2), "duplicates counted once");
    assert_eq!((ann.callbacks, ann.transfers), (1, 1));
    assert_eq!(ann.handle_time, Some(duration_from_millis(12 * MINUTE_MS)));
    assert_eq!(ann.average_handle_time, Some(duration_from_millis(12 * MINUTE_MS)));

    // Only the first interval: 09:00-09:15, ann available all of it.
    let first = list(&mut service.client, request(START_MS + INTERVAL_MS)).await.expect("first interval");
    assert_eq!(time_in(&first.agents[0], AgentState::Available, ""), Some(duration_from_millis(15 * MINUTE_MS)));
    assert_eq!(first.agents[0].offered, 2);
    service.stop().await;
}

#[tokio::test]
async fn the_current_state_counts_up_to_now_and_agents_are_paged() {
    let (mut service, bus) = start_in_memory().await;
    let now_ms = switchboard_core::time::now_millis();
    let since_ms = now_ms - 10 * MINUTE_MS;
    publish(&bus, &[state_change("bob", AgentState::Available, "", since_ms)]).await;
    publish(&bus, &[state_change("cid", AgentState::Away, "training", since_ms)]).await;
    let range = ListAgentKpisRequest {
        start_time: Some(timestamp_from_millis(since_ms - INTERVAL_MS)),
        end_time: Some(timestamp_from_millis(now_ms + INTERVAL_MS)),
        page_size: 1,
        ..request(0)
    };
    let deadline = tokio::time::Instant::now() + common::CONVERGENCE_TIMEOUT;
    let first = loop {
        let first = list(&mut service.client, range.clone()).await.expect("first page");
        if !first.next_page_token.is_empty() {
            break first;
        }
        assert!(tokio::time::Instant::now() < deadline, "two agents did not show: {first:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first.agents.len(), 1);
    assert_eq!(first.agents[0].agent, "agents/bob");
    let available = time_in(&first.agents[0], AgentState::Available, "").expect("bob's open span");
    assert!(available.seconds >= 600, "counted up to now: {available:?}");
    let second = ListAgentKpisRequest { page_token: first.next_page_token.clone(), ..range.clone() };
    let second = list(&mut service.client, second).await.expect("second page");
    assert_eq!(second.agents.iter().map(|agent| agent.agent.as_str()).collect::<Vec<_>>(), ["agents/cid"]);
    assert!(second.next_page_token.is_empty(), "the last page");
    assert_eq!(second.agents[0].occupancy, None, "never staffed");

    // A token of another list is refused.
    let other_list =
        ListAgentKpisRequest { agent: "agents/bob".to_owned(), page_token: first.next_page_token.clone(), ..range };
    let status = list(&mut service.client, other_list).await.expect_err("foreign token");
    assert_eq!(field(&status), "page_token");
    service.stop().await;
}

fn field(status: &tonic::Status) -> String {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status.get_details_bad_request().expect("bad request details").field_violations[0].field.clone()
}

#[tokio::test]
async fn bad_requests_name_their_field_and_other_tenants_are_refused() {
    let (mut service, _bus) = start_in_memory().await;
    let client = &mut service.client;
    let no_start = ListAgentKpisRequest { start_time: None, ..request(START_MS + INTERVAL_MS) };
    assert_eq!(field(&list(client, no_start).await.expect_err("no start")), "start_time");
    let backwards = request(START_MS);
    assert_eq!(field(&list(client, backwards).await.expect_err("empty range")), "end_time");
    let too_long = request(START_MS + 32 * 86_400_000);
    assert_eq!(field(&list(client, too_long).await.expect_err("32 days")), "end_time");
    let bad_agent = ListAgentKpisRequest { agent: "ann".to_owned(), ..request(START_MS + INTERVAL_MS) };
    assert_eq!(field(&list(client, bad_agent).await.expect_err("agent")), "agent");
    let out_of_range = ListAgentKpisRequest {
        end_time: Some(prost_types::Timestamp { seconds: 400_000_000_000, nanos: 0 }),
        ..request(0)
    };
    assert_eq!(field(&list(client, out_of_range).await.expect_err("year 14000")), "end_time");
    let widened = list(client, request(START_MS + 1)).await.expect("one millisecond");
    assert_eq!(widened.end_time, Some(timestamp_from_millis(START_MS + INTERVAL_MS)), "widened to the interval");

    let status = client
        .list_agent_kpis(authorized(GLOBEX_READER_KEY, request(START_MS + INTERVAL_MS)))
        .await
        .expect_err("another tenant");
    assert_eq!(status.code(), Code::PermissionDenied);
    service.stop().await;
}
