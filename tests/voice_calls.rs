//! Voice end to end, through the public interfaces only: a PBX posts signed
//! CTI events for three calls. One caller hangs up in the IVR, one is
//! routed to alice, whose desktop gets the offer while the PBX reads her
//! endpoint to bridge to, and one hangs up waiting in the queue. KPI sees
//! both abandons, the IVR one in CAR only, the queue one in LCR too.
//!
//! Run twice: on `switchboard dev` and on five `switchboard <service>`
//! processes against real Kafka, Redis and PostgreSQL.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::desktop::AgentDesktop;
use support::{Endpoints, authorized, eventually};
use switchboard_ingestion::channels::social;
use switchboard_proto::common::v1::{Channel as ChannelKind, ChannelCapacity};
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::ingestion::v1::{Channel, CreateChannelRequest, CtiSettings};
use switchboard_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use switchboard_proto::kpi::v1::{GetKpiSummaryRequest, KpiFilter};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{Agent, AgentState, CreateAgentRequest, DeleteAgentRequest};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue};

const ACME_ADMIN: &str = "dev-acme-admin";
const OPERATOR: &str = "dev-operator-admin";
const ALICE: &str = "dev-agent-alice";
const SECRET: &str = "e2e-pbx-secret";
const ENDPOINT: &str = "sip:alice@pbx.acme.example";
const WAIT: Duration = Duration::from_secs(60);

/// Alice with a phone, acme's `phones` queue (every abandon counts) and
/// the `pbx` channel.
async fn prepare(endpoints: &Endpoints) {
    let mut presence = PresenceServiceClient::new(endpoints.channel("presence").await);
    // `dev` has an alice without a phone.
    let _ = presence.delete_agent(authorized(OPERATOR, DeleteAgentRequest { name: "agents/alice".to_owned() })).await;
    let alice = Agent {
        display_name: "Alice".to_owned(),
        tenants: vec!["tenants/acme".to_owned()],
        capacities: vec![ChannelCapacity { channel: ChannelKind::Voice as i32, max_concurrent: 1 }],
        voice_endpoint: ENDPOINT.to_owned(),
        ..Agent::default()
    };
    let request = CreateAgentRequest { agent_id: "alice".to_owned(), agent: Some(alice) };
    presence.create_agent(authorized(OPERATOR, request)).await.expect("alice");
    let mut routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    let queue = Queue {
        display_name: "Phones".to_owned(),
        channels: vec![ChannelKind::Voice as i32],
        short_abandon_threshold: Some(prost_types::Duration { seconds: 0, nanos: 0 }),
        ..Queue::default()
    };
    let request =
        CreateQueueRequest { parent: "tenants/acme".to_owned(), queue_id: "phones".to_owned(), queue: Some(queue) };
    routing.create_queue(authorized(ACME_ADMIN, request)).await.expect("queue");
    let mut channels = ChannelServiceClient::new(endpoints.channel("ingestion").await);
    let channel = Channel {
        queue: "tenants/acme/queues/phones".to_owned(),
        provider: Some(Provider::Cti(CtiSettings { signing_secret: SECRET.to_owned(), ..CtiSettings::default() })),
        ..Channel::default()
    };
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: "e2e-pbx".to_owned(),
        channel: Some(channel),
    };
    channels.create_channel(authorized(ACME_ADMIN, request)).await.expect("channel");
}

/// What the PBX does: a signed POST of one event; the call as JSON.
async fn pbx_event(http_port: u16, event: Value) -> Value {
    let body = event.to_string();
    let signature = social::signature(SECRET, body.as_bytes()).unwrap();
    let headers = [("content-type", "application/json"), ("x-switchboard-signature", signature.as_str())];
    let address = format!("127.0.0.1:{http_port}").parse().unwrap();
    let answer =
        switchboard_test_support::http_request(address, "POST", "/webhooks/acme/e2e-pbx", &headers, body.as_bytes())
            .await;
    let answer = answer.unwrap();
    assert_eq!(answer.status, 200, "{event}: {answer:?}");
    serde_json::from_str(&answer.body).unwrap()
}

/// What the PBX polls: the call, signed over the path.
async fn pbx_read(http_port: u16, call_id: &str) -> Value {
    let path = format!("/webhooks/acme/e2e-pbx/calls/{call_id}");
    let signature = social::signature(SECRET, path.as_bytes()).unwrap();
    let headers = [("x-switchboard-signature", signature.as_str())];
    let address = format!("127.0.0.1:{http_port}").parse().unwrap();
    let answer = switchboard_test_support::http_request(address, "GET", &path, &headers, b"").await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    serde_json::from_str(&answer.body).unwrap()
}

async fn calls_through_ivr_queue_and_agent(endpoints: &Endpoints, http_port: u16) {
    prepare(endpoints).await;
    let mut desktop = AgentDesktop::connect(endpoints.channel("presence").await, ALICE, "agents/alice").await;
    desktop.set_state(AgentState::Available).await;

    // 1. A caller gives up after a minute in the IVR (a hang-up within the
    // short-abandon threshold, 5 s when no queue was reached, would be a
    // short abandon).
    let a_minute_ago = switchboard_core::time::now_millis() / 1000 - 60;
    let new_call = json!({"event": "new_call", "call_id": "x-1", "from": "+15550100001", "time": a_minute_ago});
    pbx_event(http_port, new_call).await;
    pbx_event(http_port, json!({"event": "ivr", "call_id": "x-1"})).await;
    let gave_up = pbx_event(http_port, json!({"event": "hangup", "call_id": "x-1", "cause": "cancel"})).await;
    assert_eq!(gave_up["ended_in_ivr"], true);

    // 2. A caller reaches the queue; routing offers the call to alice, and
    // the PBX learns where to bridge it.
    pbx_event(http_port, json!({"event": "new_call", "call_id": "y-2", "from": "+15550100002"})).await;
    let queued = pbx_event(http_port, json!({"event": "queued", "call_id": "y-2"})).await;
    let offer = desktop.next_offer().await;
    assert_eq!(
        (offer.contact.as_str(), offer.channel),
        (queued["contact"].as_str().unwrap(), ChannelKind::Voice as i32)
    );
    let bridged = eventually("the agent's endpoint for the PBX", WAIT, || async {
        let call = pbx_read(http_port, "y-2").await;
        (call["agent_endpoint"] == ENDPOINT).then_some(call)
    })
    .await;
    assert_eq!(bridged["agent"], "agents/alice");
    desktop.accept(&offer.contact).await;
    pbx_event(http_port, json!({"event": "answered", "call_id": "y-2"})).await;

    // 3. Alice is busy: the next caller waits in the queue, and gives up.
    pbx_event(http_port, json!({"event": "new_call", "call_id": "z-3", "from": "+15550100003"})).await;
    pbx_event(http_port, json!({"event": "queued", "call_id": "z-3"})).await;
    let left = pbx_event(http_port, json!({"event": "hangup", "call_id": "z-3", "cause": "cancel"})).await;
    assert_eq!(left["ended_in_ivr"], false);

    pbx_event(http_port, json!({"event": "hold", "call_id": "y-2"})).await;
    pbx_event(http_port, json!({"event": "unhold", "call_id": "y-2"})).await;
    let ended = pbx_event(http_port, json!({"event": "hangup", "call_id": "y-2", "cause": "normal"})).await;
    assert_eq!(ended["stage"], "CALL_STAGE_ENDED");
    desktop.complete(&offer.contact, "order-status", "").await;

    // KPI: three inbound calls, two reached the queue, one answered; both
    // abandons count in CAR, only the queue's in LCR.
    let kpi = KpiServiceClient::new(endpoints.channel("kpi").await);
    let summary = eventually("KPI counts the three calls", WAIT, || {
        let mut kpi = kpi.clone();
        let filter = KpiFilter {
            parent: "tenants/acme".to_owned(),
            queue: "tenants/acme/queues/phones".to_owned(),
            ..KpiFilter::default()
        };
        async move {
            let summary = kpi.get_kpi_summary(authorized(ACME_ADMIN, GetKpiSummaryRequest { filter: Some(filter) }));
            let summary = summary.await.ok()?.into_inner();
            // Routing's queueing of the third call and the caller's hangup
            // reach KPI on different topics: until both are in, its abandon
            // is judged without the queue's threshold.
            let settled = summary.inbound == 3 && summary.completed == 1 && summary.offered == 2;
            (settled && summary.abandoned + summary.short_abandoned == 2).then_some(summary)
        }
    })
    .await;
    assert_eq!(
        (summary.abandoned, summary.offered, summary.answered, summary.lost),
        (2, 2, 1, 1),
        "every abandon counts (threshold 0): {summary:?}"
    );
    assert!((summary.car - 2.0 / 3.0).abs() < 1e-9, "{summary:?}");
    assert!((summary.lcr - 0.5).abs() < 1e-9, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_switchboard_dev() {
    support::on_dev("voice-dev", calls_through_ivr_queue_and_agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_kafka_redis_postgres() {
    support::on_real_backends("voice-real", calls_through_ivr_queue_and_agent).await;
}
