//! Calls from a PBX, from outside: signed CTI events over HTTP and the same
//! over gRPC. A hang-up in the IVR records a contact that ended in
//! self-service (never queued) and its abandon; a hang-up in the queue
//! abandons the queued contact; routing's offer and presence's endpoint
//! come back as the call's agent and where to bridge it; stages only move
//! forward; forged, malformed and cross-tenant requests change nothing.

// Test code: a broken expectation panics, which is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared by the test binaries of this crate; each uses a part of it.
#[allow(dead_code)]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;

use serde_json::{Value, json};
use support::*;
use switchboard_core::event::{PRESENCE_TOPIC, ROUTING_TOPIC, envelope};
use switchboard_core::{ContactId, TenantId};
use switchboard_ingestion::channels::social;
use switchboard_platform::bus::EventBus;
use switchboard_proto::common::v1::Channel as ChannelKind;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::{
    CallEvent, CallEventKind, CallStage, Channel, CreateChannelRequest, CtiSettings, GetCallRequest, HangupCause,
    ReportCallEventRequest,
};
use switchboard_proto::presence::v1::{AgentStateChanged, PresenceEvent, presence_event};
use switchboard_proto::routing::v1::{ContactOffered, RoutingEvent, routing_event};
use switchboard_test_support::{error_reason, http_request, violated_fields};
use tonic::Code;

const SECRET: &str = "pbx-secret";
const PATIENCE: Duration = Duration::from_secs(20);

async fn pbx_channel(harness: &mut Harness) {
    pbx_channel_deciding_to(harness, "").await;
}

/// The `pbx` channel, pushing decisions to `decision_url` if not empty.
async fn pbx_channel_deciding_to(harness: &mut Harness, decision_url: &str) {
    let typo = Channel {
        queue: VOICE_QUEUE.to_owned(),
        provider: Some(Provider::Cti(CtiSettings {
            signing_secret: SECRET.to_owned(),
            queues: vec!["phnoes".to_owned()],
            decision_url: String::new(),
        })),
        ..Channel::default()
    };
    let request =
        CreateChannelRequest { parent: "tenants/acme".to_owned(), channel_id: "pbx".to_owned(), channel: Some(typo) };
    let refused = harness.channels.create_channel(authed(request, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!((refused.code(), violated_fields(&refused)), (Code::NotFound, vec!["channel.cti.queues[0]".to_owned()]));
    let channel = Channel {
        queue: VOICE_QUEUE.to_owned(),
        provider: Some(Provider::Cti(CtiSettings {
            signing_secret: SECRET.to_owned(),
            queues: vec!["phones".to_owned()],
            decision_url: decision_url.to_owned(),
        })),
        ..Channel::default()
    };
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: "pbx".to_owned(),
        channel: Some(channel),
    };
    harness.channels.create_channel(authed(request, ACME_ADMIN_KEY)).await.unwrap();
}

/// Posts a signed event; the status and the JSON answer.
async fn post(harness: &Harness, event: Value) -> (u16, Value) {
    let body = event.to_string();
    let signature = social::signature(SECRET, body.as_bytes()).unwrap();
    let headers = [("content-type", "application/json"), ("x-switchboard-signature", signature.as_str())];
    let answer = http_request(harness.http, "POST", "/webhooks/acme/pbx", &headers, body.as_bytes()).await.unwrap();
    (answer.status, serde_json::from_str(&answer.body).unwrap_or(Value::Null))
}

async fn contact_of(harness: &Harness, call: &Value) -> switchboard_ingestion::store::ContactRecord {
    let (_, contact_id) = switchboard_core::names::parse_contact(call["contact"].as_str().unwrap(), "c").unwrap();
    let tenant = TenantId::parse("acme", "t").unwrap();
    harness.store.get(&tenant, &contact_id).await.unwrap().expect("the call's contact")
}

#[tokio::test]
async fn hanging_up_in_the_ivr_and_in_the_queue_are_both_recorded_and_told_apart() {
    let mut harness = Harness::start().await;
    pbx_channel(&mut harness).await;
    let (status, call) =
        post(&harness, json!({"event": "new_call", "call_id": "A", "from": "+1 555 010 0042", "to": "+15550100"}))
            .await;
    assert_eq!(status, 200, "{call}");
    assert_eq!((call["stage"].as_str(), call["contact"].as_str()), (Some("CALL_STAGE_IVR"), Some("")));
    let (_, ended) = post(&harness, json!({"event": "hangup", "call_id": "A", "cause": "cancel"})).await;
    assert_eq!((ended["stage"].as_str(), ended["ended_in_ivr"].as_bool()), (Some("CALL_STAGE_ENDED"), Some(true)));
    let in_ivr = contact_of(&harness, &ended).await;
    assert!(in_ivr.contact.ended_in_self_service, "routing will not queue it");
    assert!(in_ivr.contact.abandon_time.is_some(), "abandoned");
    assert_eq!(in_ivr.contact.channel, ChannelKind::Voice as i32);
    assert_eq!(in_ivr.contact.from.as_ref().map(|from| from.value.as_str()), Some("+15550100042"));
    let (_, again) = post(&harness, json!({"event": "hangup", "call_id": "A", "cause": "normal"})).await;
    assert_eq!(again["contact"], ended["contact"], "a repeated hang-up changes nothing");

    post(&harness, json!({"event": "new_call", "call_id": "B", "from": "+15550100043"})).await;
    let (status, refused) = post(&harness, json!({"event": "queued", "call_id": "B", "queue": "sales"})).await;
    assert_eq!(status, 400, "a queue the channel does not list: {refused}");
    let (_, queued) = post(&harness, json!({"event": "queued", "call_id": "B", "queue": "phones"})).await;
    assert_eq!(queued["stage"], "CALL_STAGE_QUEUED");
    let waiting = contact_of(&harness, &queued).await;
    assert!(!waiting.contact.ended_in_self_service && waiting.contact.abandon_time.is_none());
    assert_eq!(waiting.contact.queue, VOICE_QUEUE);
    let (_, left) = post(&harness, json!({"event": "hangup", "call_id": "B", "cause": "cancel"})).await;
    assert_eq!((left["ended_in_ivr"].as_bool(), left["contact"].clone()), (Some(false), queued["contact"].clone()));
    let abandoned = contact_of(&harness, &left).await;
    assert!(abandoned.abandonment.is_some_and(|abandonment| abandonment.reason == "the caller hung up in the queue"));

    let (status, _) = post(&harness, json!({"event": "answered", "call_id": "never-started"})).await;
    assert_eq!(status, 400, "an event of a call never reported");
    let forged = http_request(harness.http, "POST", "/webhooks/acme/pbx", &[], br#"{"event":"new_call"}"#).await;
    assert_eq!(forged.unwrap().status, 401);
}

fn routing_offer(contact: &str, agent: &str) -> switchboard_proto::events::v1::EventEnvelope {
    let tenant = TenantId::parse("acme", "t").unwrap();
    let (_, contact_id): (_, ContactId) = switchboard_core::names::parse_contact(contact, "c").unwrap();
    let offered = ContactOffered {
        contact: contact.to_owned(),
        channel: ChannelKind::Voice as i32,
        agent: agent.to_owned(),
        ..ContactOffered::default()
    };
    let event = RoutingEvent { kind: Some(routing_event::Kind::Offered(offered)) };
    envelope(Some(&tenant), contact_id.as_str(), Payload::Routing(event))
}

fn endpoint_announced(agent: &str, endpoint: &str) -> switchboard_proto::events::v1::EventEnvelope {
    let changed = AgentStateChanged {
        agent: format!("agents/{agent}"),
        voice_endpoint: endpoint.to_owned(),
        ..AgentStateChanged::default()
    };
    let event = PresenceEvent { kind: Some(presence_event::Kind::StateChanged(changed)) };
    envelope(None, agent, Payload::Presence(event))
}

fn report(kind: CallEventKind, call_id: &str) -> ReportCallEventRequest {
    ReportCallEventRequest {
        channel: "tenants/acme/channels/pbx".to_owned(),
        event: Some(CallEvent {
            kind: kind as i32,
            call_id: call_id.to_owned(),
            from: "+15550100044".to_owned(),
            ..CallEvent::default()
        }),
    }
}

#[tokio::test]
async fn routings_choice_comes_back_as_the_agents_endpoint_over_grpc_and_http() {
    let mut harness = Harness::start().await;
    // The PBX's decision endpoint: records what it is pushed.
    let pushed: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
    let recorder = Arc::clone(&pushed);
    let router = axum::Router::new().route(
        "/decisions",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let recorder = Arc::clone(&recorder);
            async move { recorder.lock().unwrap().push((headers, body)) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let decision_url = format!("http://{}/decisions", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    pbx_channel_deciding_to(&mut harness, &decision_url).await;
    let mut calls = harness.calls.clone();
    // Alice announces her phone as she logs in; her first call (W) shows
    // it once both events are taken in.
    harness.bus.publish(PRESENCE_TOPIC, &endpoint_announced("alice", "sip:alice@pbx.acme.example")).await.unwrap();
    let routed_call = |call_id: &'static str| {
        let mut calls = calls.clone();
        let bus = harness.bus.clone();
        async move {
            calls.report_call_event(authed(report(CallEventKind::NewCall, call_id), ACME_ADMIN_KEY)).await.unwrap();
            let queued = calls.report_call_event(authed(report(CallEventKind::Queued, call_id), ACME_ADMIN_KEY));
            let queued = queued.await.unwrap().into_inner();
            assert_eq!(queued.stage, CallStage::Queued as i32);
            bus.publish(ROUTING_TOPIC, &routing_offer(&queued.contact, "agents/alice")).await.unwrap();
            let name = format!("tenants/acme/channels/pbx/calls/{call_id}");
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                let get = GetCallRequest { name: name.clone() };
                let call = calls.get_call(authed(get, ACME_READER_KEY)).await.unwrap().into_inner();
                if !call.agent_endpoint.is_empty() {
                    break call;
                }
                assert!(tokio::time::Instant::now() < deadline, "the agent never came back: {call:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    routed_call("W").await;
    let routed = routed_call("C").await;
    let get = || GetCallRequest { name: "tenants/acme/channels/pbx/calls/C".to_owned() };
    assert_eq!((routed.agent.as_str(), routed.agent_endpoint.as_str()), ("agents/alice", "sip:alice@pbx.acme.example"));
    // And it was pushed to the PBX, signed.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (headers, body) = loop {
        let for_c = pushed.lock().unwrap().iter().find(|(_, body)| body.contains(r#""call_id":"C""#)).cloned();
        if let Some(decision) = for_c {
            break decision;
        }
        assert!(tokio::time::Instant::now() < deadline, "no decision was pushed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let signature = headers.get("x-switchboard-signature").and_then(|value| value.to_str().ok());
    assert!(social::verify(SECRET, body.as_bytes(), signature).is_ok(), "signed with the channel's secret");
    let decision: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (decision["call_id"].as_str(), decision["agent_endpoint"].as_str()),
        (Some("C"), Some("sip:alice@pbx.acme.example"))
    );

    // The PBX may read it over HTTP, signed over the path.
    let path = "/webhooks/acme/pbx/calls/C";
    let signature = social::signature(SECRET, path.as_bytes()).unwrap();
    let headers = [("x-switchboard-signature", signature.as_str())];
    let answer = http_request(harness.http, "GET", path, &headers, b"").await.unwrap();
    let read: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(read["agent_endpoint"], "sip:alice@pbx.acme.example");
    let wrong = [("x-switchboard-signature", "sha256=00")];
    assert_eq!(http_request(harness.http, "GET", path, &wrong, b"").await.unwrap().status, 401);
    let missing = "/webhooks/acme/pbx/calls/nope";
    let signature = social::signature(SECRET, missing.as_bytes()).unwrap();
    let headers = [("x-switchboard-signature", signature.as_str())];
    assert_eq!(http_request(harness.http, "GET", missing, &headers, b"").await.unwrap().status, 404);

    for kind in [CallEventKind::Answered, CallEventKind::Hold, CallEventKind::Unhold, CallEventKind::Hangup] {
        let mut request = report(kind, "C");
        if let Some(event) = request.event.as_mut() {
            event.cause = HangupCause::Normal as i32;
        }
        calls.report_call_event(authed(request, ACME_ADMIN_KEY)).await.unwrap();
    }
    let ended = calls.get_call(authed(get(), ACME_READER_KEY)).await.unwrap().into_inner();
    assert_eq!((ended.stage, ended.end_cause), (CallStage::Ended as i32, HangupCause::Normal as i32));
    assert!(ended.answer_time.is_some() && ended.hold_duration.is_some());
    let late = calls.report_call_event(authed(report(CallEventKind::Answered, "C"), ACME_ADMIN_KEY)).await.unwrap();
    assert_eq!(late.into_inner().stage, CallStage::Ended as i32, "an ended call stays ended");
}

#[tokio::test]
async fn bad_and_cross_tenant_reports_are_refused_and_change_nothing() {
    let mut harness = Harness::start().await;
    pbx_channel(&mut harness).await;
    let mut calls = harness.calls.clone();
    let other_tenant = calls.report_call_event(authed(report(CallEventKind::NewCall, "D"), GLOBEX_ADMIN_KEY)).await;
    assert_eq!(other_tenant.unwrap_err().code(), Code::PermissionDenied);
    let reader = calls.report_call_event(authed(report(CallEventKind::NewCall, "D"), ACME_READER_KEY)).await;
    assert_eq!(reader.unwrap_err().code(), Code::PermissionDenied);
    let mut bad_number = report(CallEventKind::NewCall, "D");
    if let Some(event) = bad_number.event.as_mut() {
        event.from = "call me".to_owned();
    }
    let refused = calls.report_call_event(authed(bad_number, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!((refused.code(), violated_fields(&refused)), (Code::InvalidArgument, vec!["event.from".to_owned()]));
    let unknown_kind = ReportCallEventRequest {
        event: Some(CallEvent { kind: 99, call_id: "D".to_owned(), ..CallEvent::default() }),
        ..report(CallEventKind::NewCall, "D")
    };
    let refused = calls.report_call_event(authed(unknown_kind, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["event.kind"]);
    let not_found = calls.report_call_event(authed(report(CallEventKind::Queued, "D"), ACME_ADMIN_KEY)).await;
    let not_found = not_found.unwrap_err();
    assert_eq!((not_found.code(), violated_fields(&not_found)), (Code::NotFound, vec!["event.call_id".to_owned()]));
    let get = GetCallRequest { name: "tenants/acme/channels/pbx/calls/D".to_owned() };
    assert_eq!(calls.get_call(authed(get, ACME_ADMIN_KEY)).await.unwrap_err().code(), Code::NotFound);
    let not_cti = ReportCallEventRequest {
        channel: "tenants/acme/channels/nope".to_owned(),
        ..report(CallEventKind::NewCall, "D")
    };
    let missing = calls.report_call_event(authed(not_cti, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(error_reason(&missing).as_deref(), Some("CHANNEL_NOT_FOUND"));
    harness.assert_store_empty().await;
}
