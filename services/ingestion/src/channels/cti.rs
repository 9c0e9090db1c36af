//! Call events from a PBX or CTI system, posted as JSON signed like social
//! posts (`X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the body>`),
//! and the same events as the gRPC `CallService` takes them. Both become
//! one typed [`CallEvent`]. Pure.
//!
//! ```json
//! {"event": "queued", "call_id": "1700000000.42", "queue": "billing", "time": 1767225600}
//! ```

use serde::Deserialize;
use switchboard_core::identity::{Identity, IdentityKind, normalize_identity};
use switchboard_core::{Error, QueueId};
use switchboard_proto::ingestion::v1 as proto;

use super::{OutboundRequest, WebhookRefusal, check_size, seconds_to_millis, sha256_signature};

/// The longest call id, in bytes.
const MAX_CALL_ID_BYTES: usize = 128;
/// The longest transfer target, in characters.
const MAX_TARGET_CHARS: usize = 256;

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupCause {
    Unspecified,
    Normal,
    Busy,
    /// The caller hung up before an answer.
    Cancel,
    NoAnswer,
    Congestion,
    Failed,
}

impl HangupCause {
    pub fn to_proto(self) -> proto::HangupCause {
        match self {
            HangupCause::Unspecified => proto::HangupCause::Unspecified,
            HangupCause::Normal => proto::HangupCause::Normal,
            HangupCause::Busy => proto::HangupCause::Busy,
            HangupCause::Cancel => proto::HangupCause::Cancel,
            HangupCause::NoAnswer => proto::HangupCause::NoAnswer,
            HangupCause::Congestion => proto::HangupCause::Congestion,
            HangupCause::Failed => proto::HangupCause::Failed,
        }
    }

    pub fn from_proto(cause: proto::HangupCause) -> HangupCause {
        match cause {
            proto::HangupCause::Unspecified => HangupCause::Unspecified,
            proto::HangupCause::Normal => HangupCause::Normal,
            proto::HangupCause::Busy => HangupCause::Busy,
            proto::HangupCause::Cancel => HangupCause::Cancel,
            proto::HangupCause::NoAnswer => HangupCause::NoAnswer,
            proto::HangupCause::Congestion => HangupCause::Congestion,
            proto::HangupCause::Failed => HangupCause::Failed,
        }
    }

    fn parse(name: &str) -> Option<HangupCause> {
        Some(match name {
            "" => HangupCause::Unspecified,
            "normal" | "normalClearing" => HangupCause::Normal,
            "busy" => HangupCause::Busy,
            "cancel" => HangupCause::Cancel,
            "no_answer" | "noAnswer" => HangupCause::NoAnswer,
            "congestion" => HangupCause::Congestion,
            "failed" | "notFound" => HangupCause::Failed,
            _ => return None,
        })
    }
}

/// What happened to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEventKind {
    NewCall {
        from: Identity,
        to: String,
    },
    Ivr,
    /// `None`: the channel's queue.
    Queued {
        queue: Option<QueueId>,
    },
    Answered,
    Hold,
    Unhold,
    Transfer {
        target: String,
    },
    Hangup {
        cause: HangupCause,
    },
}

/// One event of one call, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    pub call_id: String,
    pub kind: CallEventKind,
    /// When it happened at the PBX, if it said.
    pub at_ms: Option<i64>,
}

#[derive(Deserialize)]
struct RawEvent {
    event: String,
    call_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    cause: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    time: Option<i64>,
}

/// The parts of an event as both forms carry them.
struct Parts<'a> {
    kind: &'a str,
    call_id: &'a str,
    from: &'a str,
    to: &'a str,
    queue: &'a str,
    cause: Option<HangupCause>,
    target: &'a str,
    at_ms: Option<i64>,
}

/// Checks the parts; errors name the field (`field.name`).
fn event_from(parts: Parts<'_>, field: &str) -> Result<CallEvent, Error> {
    let call_id = parts.call_id;
    if call_id.is_empty() || call_id.len() > MAX_CALL_ID_BYTES || !call_id.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(Error::invalid_field(format!("{field}.call_id"), "must be 1-128 printable ASCII characters"));
    }
    let kind = match parts.kind {
        "new_call" => {
            let from = normalize_identity(IdentityKind::Phone, parts.from, &format!("{field}.from"))?;
            let to = parts.to.chars().filter(|character| !character.is_control()).take(64).collect();
            CallEventKind::NewCall { from, to }
        }
        "ivr" => CallEventKind::Ivr,
        "queued" if parts.queue.is_empty() => CallEventKind::Queued { queue: None },
        "queued" => CallEventKind::Queued { queue: Some(QueueId::parse(parts.queue, &format!("{field}.queue"))?) },
        "answered" => CallEventKind::Answered,
        "hold" => CallEventKind::Hold,
        "unhold" => CallEventKind::Unhold,
        "transfer" => {
            let target = parts.target.trim();
            if target.is_empty() || target.chars().count() > MAX_TARGET_CHARS || target.chars().any(char::is_control) {
                return Err(Error::invalid_field(format!("{field}.target"), "must be 1-256 characters, no controls"));
            }
            CallEventKind::Transfer { target: target.to_owned() }
        }
        "hangup" => {
            let cause = parts.cause.ok_or_else(|| Error::invalid_field(format!("{field}.cause"), "unknown cause"))?;
            CallEventKind::Hangup { cause }
        }
        _ => {
            return Err(Error::invalid_field(
                format!("{field}.kind"),
                "must be new_call, ivr, queued, answered, hold, unhold, transfer or hangup",
            ));
        }
    };
    Ok(CallEvent { call_id: call_id.to_owned(), kind, at_ms: parts.at_ms })
}

/// Reads a posted event (after its signature was checked).
pub fn parse(body: &[u8]) -> Result<CallEvent, WebhookRefusal> {
    check_size(body)?;
    let raw: RawEvent = serde_json::from_slice(body).map_err(|_| WebhookRefusal::malformed("not a call event"))?;
    let at_ms = match raw.time {
        Some(seconds) => {
            Some(seconds_to_millis(seconds).ok_or_else(|| WebhookRefusal::malformed("`time` out of range"))?)
        }
        None => None,
    };
    let parts = Parts {
        kind: &raw.event,
        call_id: &raw.call_id,
        from: &raw.from,
        to: &raw.to,
        queue: &raw.queue,
        cause: HangupCause::parse(&raw.cause),
        target: &raw.target,
        at_ms,
    };
    event_from(parts, "event").map_err(|error| {
        let field = error.field_violations.first().map(|violation| violation.field.clone()).unwrap_or_default();
        WebhookRefusal::malformed(format!("`{field}`: {}", error.message))
    })
}

/// Reads the gRPC form of an event; errors name fields under `field`.
pub fn from_proto(event: &proto::CallEvent, field: &str) -> Result<CallEvent, Error> {
    let kind = match proto::CallEventKind::try_from(event.kind) {
        Ok(proto::CallEventKind::NewCall) => "new_call",
        Ok(proto::CallEventKind::Ivr) => "ivr",
        Ok(proto::CallEventKind::Queued) => "queued",
        Ok(proto::CallEventKind::Answered) => "answered",
        Ok(proto::CallEventKind::Hold) => "hold",
        Ok(proto::CallEventKind::Unhold) => "unhold",
        Ok(proto::CallEventKind::Transfer) => "transfer",
        Ok(proto::CallEventKind::Hangup) => "hangup",
        Ok(proto::CallEventKind::Unspecified) | Err(_) => "",
    };
    let at_ms = match &event.time {
        Some(time) => Some(
            switchboard_core::time::checked_timestamp_millis(time)
                .map_err(|problem| Error::invalid_field(format!("{field}.time"), problem))?,
        ),
        None => None,
    };
    let cause = proto::HangupCause::try_from(event.cause).ok().map(HangupCause::from_proto);
    let parts = Parts {
        kind,
        call_id: &event.call_id,
        from: &event.from,
        to: &event.to,
        queue: &event.queue,
        cause,
        target: &event.target,
        at_ms,
    };
    event_from(parts, field)
}

/// Routing's decision for `call`, as POSTed to the channel's
/// `decision_url`, signed with its secret; `None` when the secret cannot
/// sign (never, for a validated channel).
pub fn decision_request(decision_url: &str, signing_secret: &str, call: &proto::Call) -> Option<OutboundRequest> {
    let body = serde_json::json!({
        "call_id": call.call_id,
        "contact": call.contact,
        "agent": call.agent,
        "agent_endpoint": call.agent_endpoint,
    })
    .to_string()
    .into_bytes();
    let signature = sha256_signature(signing_secret, &body).ok()?;
    Some(OutboundRequest {
        method: "POST",
        url: decision_url.to_owned(),
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (super::social::SIGNATURE_HEADER.to_owned(), signature),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn each_event_is_read() {
        let new_call = parse(
            br#"{"event":"new_call","call_id":"c-1","from":"+1 (555) 010-0042","to":"+15550100","time":1767225600}"#,
        )
        .expect("read");
        assert_eq!(new_call.at_ms, Some(1_767_225_600_000));
        let CallEventKind::NewCall { from, to } = new_call.kind else { panic!("a new call") };
        assert_eq!((from.value.as_str(), to.as_str()), ("+15550100042", "+15550100"));
        let queued = parse(br#"{"event":"queued","call_id":"c-1","queue":"billing"}"#).expect("read");
        assert!(matches!(queued.kind, CallEventKind::Queued { queue: Some(queue) } if queue.as_str() == "billing"));
        let hangup = parse(br#"{"event":"hangup","call_id":"c-1","cause":"cancel"}"#).expect("read");
        assert_eq!(hangup.kind, CallEventKind::Hangup { cause: HangupCause::Cancel });
        let transfer = parse(br#"{"event":"transfer","call_id":"c-1","target":"ext 204"}"#).expect("read");
        assert_eq!(transfer.kind, CallEventKind::Transfer { target: "ext 204".to_owned() });
    }

    #[test]
    fn bad_events_name_the_field() {
        let refused = |body: &[u8]| match parse(body) {
            Err(WebhookRefusal::Malformed(reason)) => reason,
            other => panic!("refused expected: {other:?}"),
        };
        assert!(refused(br#"{"event":"ringing","call_id":"c"}"#).contains("event.kind"));
        assert!(refused(br#"{"event":"ivr","call_id":""}"#).contains("event.call_id"));
        assert!(refused(br#"{"event":"new_call","call_id":"c","from":"nobody"}"#).contains("event.from"));
        assert!(refused(br#"{"event":"hangup","call_id":"c","cause":"bored"}"#).contains("event.cause"));
        assert!(refused(br#"{"event":"queued","call_id":"c","queue":"../x"}"#).contains("event.queue"));
        assert!(refused(br#"{"event":"ivr","call_id":"c","time":99999999999999}"#).contains("time"));
        assert!(refused(b"[]").contains("not a call event"));
    }

    #[test]
    fn the_grpc_form_reads_the_same() {
        let event = proto::CallEvent {
            kind: proto::CallEventKind::Hangup as i32,
            call_id: "c-1".to_owned(),
            cause: proto::HangupCause::Busy as i32,
            ..proto::CallEvent::default()
        };
        let read = from_proto(&event, "event").expect("read");
        assert_eq!(read.kind, CallEventKind::Hangup { cause: HangupCause::Busy });
        let unknown = proto::CallEvent { kind: 42, ..event };
        assert_eq!(from_proto(&unknown, "event").unwrap_err().field_violations[0].field, "event.kind");
    }

    #[test]
    fn a_decision_is_signed_json_the_pbx_can_check() {
        let call = proto::Call {
            call_id: "c-1".to_owned(),
            agent: "agents/alice".to_owned(),
            agent_endpoint: "sip:alice@pbx.example.com".to_owned(),
            ..proto::Call::default()
        };
        let request = decision_request("https://pbx.example.com/decisions", "s3cret", &call).expect("signed");
        assert_eq!((request.method, request.url.as_str()), ("POST", "https://pbx.example.com/decisions"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON");
        assert_eq!(body["agent_endpoint"], "sip:alice@pbx.example.com");
        let signature = request.headers.iter().find(|(name, _)| name == "x-switchboard-signature").map(|(_, v)| v);
        assert!(super::super::social::verify("s3cret", &request.body, signature.map(String::as_str)).is_ok());
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&body);
        }

        #[test]
        fn arbitrary_fields_never_panic(kind in "(new_call|ivr|queued|hangup|transfer|x)", value in "\\PC{0,60}") {
            let body = serde_json::json!({"event": kind, "call_id": value, "from": value, "queue": value,
                "cause": value, "target": value});
            let _ = parse(body.to_string().as_bytes());
        }
    }
}
