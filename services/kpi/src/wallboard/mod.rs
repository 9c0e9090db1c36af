//! The wallboard: a page the KPI service serves (`GET /wallboard`, plain
//! HTML and script, nothing to build) and its live feed
//! (`GET /wallboard/live`, server-sent events of a tenant's live figures,
//! or of every tenant's for operator admins). The page signs in with a key
//! or token it sends as `Authorization: Bearer`, never in the URL, so a
//! tenant's key sees only its own figures.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_core::time::{millis_from_duration, millis_from_timestamp, now_millis};
use switchboard_core::{Error, TenantId};
use switchboard_platform::auth::{AccessControl, credential_expired, credential_withdrawn_error};
use switchboard_platform::status::to_status;
use switchboard_proto::kpi::v1 as proto;
use switchboard_proto::presence::v1::AgentState;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::domain::ServiceLevelVariant;
use crate::domain::live::LiveFigures;
use crate::live::{self, Delivered, LiveBoards};

const PAGE_HTML: &str = include_str!("wallboard.html");

/// What the page's feed is asked for.
#[derive(Debug, Deserialize)]
struct FeedQuery {
    /// `acme` or `tenants/acme`; absent: every tenant (operator admins).
    #[serde(default)]
    tenant: String,
    /// The center's offset from UTC for "today", in minutes.
    #[serde(default)]
    utc_offset_minutes: i64,
}

struct Wallboard {
    access: Arc<AccessControl>,
    boards: Arc<LiveBoards>,
}

/// The wallboard's routes, on the KPI service's HTTP server.
pub fn router(access: Arc<AccessControl>, boards: Arc<LiveBoards>) -> Router {
    Router::new()
        .route("/wallboard", get(page))
        .route("/wallboard/live", get(feed))
        .with_state(Arc::new(Wallboard { access, boards }))
}

async fn page() -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-cache"),
        // The page talks only to where it came from.
        (header::CONTENT_SECURITY_POLICY, "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"),
    ];
    (headers, PAGE_HTML).into_response()
}

/// A refusal as the page shows it: the status and the error's JSON.
pub(crate) fn refused(error: &Error) -> Response {
    let status = to_status(error);
    let code = match status.code() {
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = json!({ "error": status.message(), "reason": error.reason() }).to_string();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn feed(State(wallboard): State<Arc<Wallboard>>, Query(query): Query<FeedQuery>, headers: HeaderMap) -> Response {
    let access = &wallboard.access;
    let metadata = tonic::metadata::MetadataMap::from_headers(headers);
    let principal = match access.authenticate(&metadata).and_then(|principal| {
        access.admit(&principal)?;
        Ok(principal)
    }) {
        Ok(principal) => principal,
        Err(error) => return refused(&error),
    };
    let parent = match query.tenant.as_str() {
        "" => String::new(),
        named if named.starts_with("tenants/") => named.to_owned(),
        id => format!("tenants/{id}"),
    };
    let offset = prost_types::Duration { seconds: query.utc_offset_minutes.saturating_mul(60), nanos: 0 };
    let (watched, utc_offset_ms) = match live::watched(access, &principal, &parent, Some(&offset)) {
        Ok(watched) => watched,
        Err(error) => return refused(&error),
    };
    let slot = match access.open_stream(&principal) {
        Ok(slot) => slot,
        Err(error) => return refused(&error),
    };
    let (sender, receiver) = mpsc::channel::<Result<Event, Infallible>>(8);
    let (boards, access) = (Arc::clone(&wallboard.boards), Arc::clone(access));
    tokio::spawn(async move {
        let _slot = slot;
        let deliver = |tenant: TenantId, figures: Arc<LiveFigures>| -> Delivered {
            let sender = sender.clone();
            Box::pin(async move {
                let live = figures.to_proto(&tenant, now_millis(), ServiceLevelVariant::default());
                let event = Event::default().event("live").data(feed_json(&live).to_string());
                sender.send(Ok(event)).await.map_err(|_| Error::unavailable("the page left"))
            })
        };
        let ended = tokio::select! {
            () = sender.closed() => None,
            () = credential_expired(&principal) => Some("TOKEN_EXPIRED".to_owned()),
            () = access.credential_withdrawn(&principal) => Some(credential_withdrawn_error().reason()),
            _ = live::follow(&boards, &access, &watched, utc_offset_ms, deliver) => None,
        };
        if let Some(reason) = ended {
            let _ = sender.send(Ok(Event::default().event("ended").data(reason))).await;
        }
    });
    Sse::new(ReceiverStream::new(receiver)).keep_alive(KeepAlive::default()).into_response()
}

/// A live message as the page reads it: rates as fractions, durations in
/// milliseconds, agents by state name.
pub fn feed_json(live: &proto::LiveKpis) -> Value {
    let summary = |summary: &proto::KpiSummary| {
        json!({
            "inbound": summary.inbound,
            "offered": summary.offered,
            "answered": summary.answered,
            "abandoned": summary.abandoned,
            "lost": summary.lost,
            "completed": summary.completed,
            "resolved": summary.resolved,
            "car": summary.car,
            "lcr": summary.lcr,
            "asa_ms": summary.asa.as_ref().and_then(millis_from_duration).unwrap_or(0),
            "service_level": summary.service_level,
            "handled": summary.handled,
            "resolved": summary.resolved,
            "fcr": summary.fcr,
            "fcr_provisional": summary.fcr_provisional,
            "aht_ms": summary.aht.as_ref().and_then(millis_from_duration).unwrap_or(0),
            "surveyed": summary.surveyed,
            "csat": summary.csat,
        })
    };
    let agents: serde_json::Map<String, Value> = live
        .agents
        .iter()
        .map(|count| {
            let state = AgentState::try_from(count.state).unwrap_or_default().as_str_name();
            (state.trim_start_matches("AGENT_STATE_").to_owned(), json!(count.agents))
        })
        .collect();
    json!({
        "tenant": live.tenant,
        "time_ms": live.time.as_ref().map(millis_from_timestamp),
        "waiting": live.contacts_waiting,
        "longest_wait_ms": live.longest_wait.as_ref().and_then(millis_from_duration),
        "agents": agents,
        "occupancy": live.occupancy,
        "day_start_ms": live.day_start_time.as_ref().map(millis_from_timestamp),
        "today": live.today.as_ref().map(summary),
        "intervals": live.today_intervals.iter().map(|interval| json!({
            "start_ms": interval.start_time.as_ref().map(millis_from_timestamp),
            "summary": interval.summary.as_ref().map(summary),
        })).collect::<Vec<_>>(),
    })
}
