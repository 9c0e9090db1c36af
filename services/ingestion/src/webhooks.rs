//! Channel webhooks on ingestion's HTTP server:
//! `POST /webhooks/{tenant}/{channel}` takes a provider's request, and
//! `GET` the same path answers Meta's subscription handshake.
//!
//! The tenant comes from the path, and counts only once the provider's
//! signature checks out against that tenant's channel's secret; until then
//! nothing is parsed or stored. Each customer message becomes a contact in
//! the channel's queue, keyed by the provider's message id, so a provider's
//! retry never makes a second one. An unknown or disabled channel is 404, a
//! bad signature 401, a malformed body 400, an oversized one 413, a store
//! or bus outage 503 (providers retry); each is counted in
//! `switchboard_webhook_requests_total`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::Uri;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use switchboard_core::identity::identity_to_proto;
use switchboard_core::{ChannelId, Error, ErrorCode, TenantId};
use switchboard_platform::metrics::{labels, metrics};
use switchboard_platform::rate_limit::TokenBuckets;
use switchboard_platform::ttl_cache::TtlCache;
use switchboard_proto::common::v1::Direction;
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::{Channel as ChannelResource, Contact, CreateContactRequest};

use crate::calls_api::CallDesk;
use crate::channel_settings::{meta_account, telegram_bot, twilio_account};
use crate::channels::web_form::Submission;
use crate::channels::{
    Inbound, InboundMessage, MAX_WEBHOOK_BODY_BYTES, WebhookRefusal, cti, email, meta, social, telegram, twilio,
    web_form,
};
use crate::channels_api::{is_active, provider_label, webhook_url};
use crate::conversations::intake::ConversationIntake;
use crate::domain::MAX_BODY_BYTES;
use crate::store::channels::ChannelStore;

/// Longest subject taken from a message's first line, in characters.
const SUBJECT_CHARS: usize = 120;

/// How long a webhook trusts a channel it read: a change to a channel
/// (secrets, queue, disabled) applies to its webhook within this time.
pub const CHANNEL_CACHE_TTL: Duration = Duration::from_secs(1);

/// Channels a webhook read recently, by tenant and id.
pub type RecentChannels = TtlCache<(TenantId, ChannelId), ChannelResource>;

/// What the webhook routes need.
pub struct Webhooks {
    pub channels: Arc<dyn ChannelStore>,
    /// Channels read in the last [`CHANNEL_CACHE_TTL`]; only existing ones
    /// (a channel just created answers at once). This replica's API
    /// forgets a channel it changes; another replica's change applies
    /// within the TTL.
    pub recent_channels: Arc<RecentChannels>,
    pub conversations: Arc<ConversationIntake>,
    /// As [`crate::channels_api::ChannelApi::webhook_url`] builds it: what
    /// Twilio's signature covers.
    pub public_base_url: String,
    /// The calls of `cti` channels.
    pub calls: Arc<CallDesk>,
    /// Messages per sender and channel (`ingestion.sender_messages_per_minute`).
    pub senders: TokenBuckets,
}

/// The routes, bodies capped at [`MAX_WEBHOOK_BODY_BYTES`] (413 beyond).
pub fn router(webhooks: Arc<Webhooks>) -> Router {
    Router::new()
        .route("/webhooks/{tenant}/{channel}", post(receive).get(handshake))
        .route("/webhooks/{tenant}/{channel}/calls/{call_id}", get(read_call))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY_BYTES))
        .with_state(webhooks)
}

/// Why a webhook request got the answer it got.
enum Outcome {
    Accepted(Response),
    UnknownChannel,
    Refused(WebhookRefusal),
    Unavailable(Error),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted(_) => "accepted",
            Outcome::UnknownChannel => "unknown_channel",
            Outcome::Refused(refusal) => refusal.reason(),
            Outcome::Unavailable(_) => "unavailable",
        }
    }

    fn into_response(self) -> Response {
        match self {
            Outcome::Accepted(response) => response,
            Outcome::UnknownChannel => (StatusCode::NOT_FOUND, "no such channel\n").into_response(),
            Outcome::Refused(refusal) => {
                let status = StatusCode::from_u16(refusal.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
                let text = match &refusal {
                    WebhookRefusal::Unauthenticated(why) => format!("{why}\n"),
                    WebhookRefusal::Malformed(what) => format!("malformed request: {what}\n"),
                    WebhookRefusal::TooLarge => "request body too large\n".to_owned(),
                    WebhookRefusal::ForbiddenOrigin => "this form may not be posted from that origin\n".to_owned(),
                    WebhookRefusal::RateLimited => {
                        let text = "too many messages from this sender: try again later\n";
                        return (status, [("retry-after", "60")], text).into_response();
                    }
                };
                (status, text).into_response()
            }
            Outcome::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response(),
        }
    }
}

fn count(tenant: &str, provider: &str, outcome: &Outcome) {
    count_request(tenant, provider, outcome.label());
}

/// Counts one request by its outcome:
/// `switchboard_webhook_requests_total{tenant,provider,outcome}`.
pub(crate) fn count_request(tenant: &str, provider: &str, outcome: &str) {
    let labels = labels([("tenant", tenant), ("provider", provider), ("outcome", outcome)]);
    metrics().webhook_requests.get_or_create(&labels).inc();
}

/// Counts one item of a webhook (or of a polled mailbox) by what became of
/// it: `switchboard_webhook_items_total{tenant,provider,item,outcome}`.
pub(crate) fn count_item(tenant: &TenantId, provider: &str, item: &str, outcome: &str) {
    let labels = labels([("tenant", tenant.as_str()), ("provider", provider), ("item", item), ("outcome", outcome)]);
    metrics().webhook_items.get_or_create(&labels).inc();
}

/// The channel of the path if it takes webhooks.
pub(crate) async fn active_channel(
    webhooks: &Webhooks,
    tenant: &str,
    channel: &str,
) -> Result<Option<(TenantId, ChannelId, ChannelResource)>, Error> {
    let (Ok(tenant), Ok(channel_id)) = (TenantId::parse(tenant, "tenant"), ChannelId::parse(channel, "channel")) else {
        return Ok(None);
    };
    // A suspended or deleted tenant's channels take nothing.
    if webhooks.conversations.contacts.require_tenant(&tenant).is_err() {
        return Ok(None);
    }
    let key = (tenant, channel_id);
    let channel = match webhooks.recent_channels.get(&key) {
        Some(channel) => Some(channel),
        None => {
            let stored = webhooks.channels.get(&key.0, &key.1).await?.map(|stored| stored.channel);
            if let Some(channel) = &stored {
                webhooks.recent_channels.insert(key.clone(), channel.clone());
            }
            stored
        }
    };
    let (tenant, channel_id) = key;
    Ok(channel.filter(is_active).map(|channel| (tenant, channel_id, channel)))
}

async fn receive(
    State(webhooks): State<Arc<Webhooks>>,
    Path((tenant, channel)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (provider, outcome) = match active_channel(&webhooks, &tenant, &channel).await {
        Err(error) => ("unknown", Outcome::Unavailable(error)),
        Ok(None) => ("unknown", Outcome::UnknownChannel),
        Ok(Some((tenant_id, channel_id, resource))) => {
            let provider = provider_label(&resource);
            let outcome = webhooks.take(&tenant_id, &channel_id, &resource, query.as_deref(), &headers, &body).await;
            (provider, outcome)
        }
    };
    count(&tenant, provider, &outcome);
    if let Outcome::Unavailable(error) = &outcome {
        tracing::warn!(tenant = %tenant, channel = %channel, error = %error, "webhook not taken, the provider should retry");
    }
    outcome.into_response()
}

/// A call as JSON, or why not.
fn call_outcome(call: Result<switchboard_proto::ingestion::v1::Call, Error>) -> Outcome {
    match call {
        Ok(call) => {
            let json = serde_json::json!({
                "name": call.name,
                "call_id": call.call_id,
                "stage": switchboard_proto::ingestion::v1::CallStage::try_from(call.stage)
                    .map_or("CALL_STAGE_UNSPECIFIED", |stage| stage.as_str_name()),
                "contact": call.contact,
                "agent": call.agent,
                "agent_endpoint": call.agent_endpoint,
                "ended_in_ivr": call.ended_in_ivr,
            });
            Outcome::Accepted(([(header::CONTENT_TYPE, "application/json")], json.to_string()).into_response())
        }
        Err(error) if matches!(error.code, ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::Aborted) => {
            Outcome::Unavailable(error)
        }
        Err(error) => Outcome::Refused(WebhookRefusal::malformed(error.message)),
    }
}

/// `GET /webhooks/{tenant}/{channel}/calls/{call_id}`, signed like a post
/// but over the request's path: the call, with its agent's endpoint.
async fn read_call(
    State(webhooks): State<Arc<Webhooks>>,
    Path((tenant, channel, call_id)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let outcome = match active_channel(&webhooks, &tenant, &channel).await {
        Err(error) => Outcome::Unavailable(error),
        Ok(Some((tenant_id, channel_id, ChannelResource { provider: Some(Provider::Cti(settings)), .. }))) => {
            let header = Webhooks::header(&headers, social::SIGNATURE_HEADER);
            match social::verify(&settings.signing_secret, uri.path().as_bytes(), header) {
                Err(refusal) => Outcome::Refused(refusal),
                Ok(()) => match webhooks.calls.get(&tenant_id, &channel_id, &call_id).await {
                    Err(error) if error.code == ErrorCode::NotFound => Outcome::UnknownChannel,
                    call => call_outcome(call),
                },
            }
        }
        Ok(_) => Outcome::UnknownChannel,
    };
    count(&tenant, "cti", &outcome);
    outcome.into_response()
}

/// Meta's subscription handshake: the challenge back when the verify token
/// matches.
async fn handshake(
    State(webhooks): State<Arc<Webhooks>>,
    Path((tenant, channel)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let outcome = match active_channel(&webhooks, &tenant, &channel).await {
        Err(error) => Outcome::Unavailable(error),
        Ok(Some((_, _, ChannelResource { provider: Some(Provider::Meta(settings)), .. }))) => {
            match meta::subscription_challenge(query.as_deref().unwrap_or_default(), &settings.verify_token) {
                Ok(challenge) => Outcome::Accepted(challenge.into_response()),
                Err(refusal) => Outcome::Refused(refusal),
            }
        }
        Ok(_) => Outcome::UnknownChannel,
    };
    count(&tenant, "meta", &outcome);
    outcome.into_response()
}

impl Webhooks {
    fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Verifies, parses and takes in one request of `resource`.
    async fn take(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        resource: &ChannelResource,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Outcome {
        let (parsed, acknowledgement) = match &resource.provider {
            Some(Provider::Twilio(settings)) => {
                let account = twilio_account(settings);
                let mut url = webhook_url(&self.public_base_url, tenant, channel_id);
                if let Some(query) = query {
                    url = format!("{url}?{query}");
                }
                let header = Self::header(headers, twilio::SIGNATURE_HEADER);
                let parsed = twilio::verify(&account.auth_token, &url, body, header).and_then(|()| twilio::parse(body));
                // An empty TwiML answer: no automatic reply.
                let empty_twiml = ([(header::CONTENT_TYPE, "text/xml")], "<Response></Response>").into_response();
                (parsed, empty_twiml)
            }
            Some(Provider::Meta(settings)) => {
                let account = meta_account(settings);
                let header = Self::header(headers, meta::SIGNATURE_HEADER);
                let parsed = meta::verify(&account.app_secret, body, header).and_then(|()| meta::parse(body));
                (parsed, "EVENT_RECEIVED".into_response())
            }
            Some(Provider::Telegram(settings)) => {
                let bot = telegram_bot(settings);
                let header = Self::header(headers, telegram::SECRET_HEADER);
                let parsed = telegram::verify(&bot.webhook_secret, body, header).and_then(|()| telegram::parse(body));
                (parsed, StatusCode::OK.into_response())
            }
            Some(Provider::Social(settings)) => {
                let header = Self::header(headers, social::SIGNATURE_HEADER);
                let parsed = social::verify(&settings.signing_secret, body, header)
                    .and_then(|()| social::parse(body))
                    .map(|message| vec![Inbound::Message(message)]);
                (parsed, StatusCode::OK.into_response())
            }
            Some(Provider::Cti(settings)) => {
                let header = Self::header(headers, social::SIGNATURE_HEADER);
                let event = social::verify(&settings.signing_secret, body, header).and_then(|()| cti::parse(body));
                let event = match event {
                    Ok(event) => event,
                    Err(refusal) => return Outcome::Refused(refusal),
                };
                let reported = self.calls.report(tenant, channel_id, resource, event).await;
                let outcome = call_outcome(reported);
                // Only a report is an item; a read of the call is not.
                let label = match &outcome {
                    Outcome::Accepted(_) => "applied",
                    Outcome::Unavailable(_) => "unavailable",
                    Outcome::UnknownChannel | Outcome::Refused(_) => "rejected",
                };
                count_item(tenant, "cti", "call_event", label);
                return outcome;
            }
            // Visitors use its WebSocket (`webchat`).
            Some(Provider::WebChat(_)) => return Outcome::UnknownChannel,
            // Polled only: nothing may be posted to it.
            Some(Provider::Email(settings)) if settings.signing_secret.is_empty() => return Outcome::UnknownChannel,
            Some(Provider::Email(settings)) => {
                let header = Self::header(headers, social::SIGNATURE_HEADER);
                if let Err(refusal) = social::verify(&settings.signing_secret, body, header) {
                    return Outcome::Refused(refusal);
                }
                if let Some(kind) = email::automatic(body) {
                    // Taken, so the relay does not retry; stored nowhere.
                    count_item(tenant, "email", "message", kind);
                    return Outcome::Accepted(StatusCode::OK.into_response());
                }
                let parsed = email::parse(body).map(|message| vec![Inbound::Message(message)]);
                (parsed, StatusCode::OK.into_response())
            }
            Some(Provider::WebForm(settings)) => {
                if !web_form::origin_allowed(&settings.allowed_origins, Self::header(headers, "origin")) {
                    return Outcome::Refused(WebhookRefusal::ForbiddenOrigin);
                }
                let thanks = form_thanks(&settings.success_url);
                let parsed = match web_form::parse(body, &settings.honeypot_field) {
                    Ok(Submission::Message(message)) => Ok(vec![Inbound::Message(*message)]),
                    Ok(Submission::Spam) => {
                        // Answered like a success, so the bot learns nothing.
                        count_item(tenant, "web_form", "message", "spam");
                        return Outcome::Accepted(thanks);
                    }
                    Err(refusal) => Err(refusal),
                };
                (parsed, thanks)
            }
            None => return Outcome::UnknownChannel,
        };
        let inbound = match parsed {
            Ok(inbound) => inbound,
            Err(refusal) => {
                tracing::info!(tenant = %tenant, channel = %channel_id, reason = refusal.reason(), "webhook refused");
                return Outcome::Refused(refusal);
            }
        };
        let provider = provider_label(resource);
        // A sender over its rate is told to come back (a provider retries,
        // and what it already delivered is stored once).
        let now = switchboard_core::time::now_millis();
        for item in &inbound {
            if let Inbound::Message(message) = item {
                let sender = format!("{tenant}/{channel_id}/{}:{}", message.from.kind.as_str(), message.from.value);
                if self.senders.take(&sender, now, "the sender").is_err() {
                    count_item(tenant, provider, "message", "rate_limited");
                    return Outcome::Refused(WebhookRefusal::RateLimited);
                }
            }
        }
        for item in inbound {
            let (kind, outcome) = match item {
                Inbound::Message(message) => {
                    let taken = self.conversations.take(tenant, channel_id, resource, message).await;
                    ("message", taken.map(|taken| taken.label()))
                }
                Inbound::Edit(edit) => {
                    let applied = self.conversations.apply_edit(tenant, channel_id, edit).await;
                    ("edit", applied.map(|found| if found { "applied" } else { "unknown_message" }))
                }
                Inbound::Status(report) => {
                    let applied = self.conversations.apply_report(tenant, channel_id, report).await;
                    ("status", applied.map(|found| if found { "applied" } else { "unknown_message" }))
                }
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(error)
                    if error.code == ErrorCode::InvalidArgument || error.code == ErrorCode::FailedPrecondition =>
                {
                    tracing::warn!(tenant = %tenant, channel = %channel_id, error = %error, "webhook message rejected");
                    "rejected"
                }
                Err(error) => return Outcome::Unavailable(error),
            };
            count_item(tenant, provider, kind, outcome);
        }
        Outcome::Accepted(acknowledgement)
    }
}

/// The `CreateContact` that opens a conversation with `message`, its
/// request id `request_id`: the channel's queue, the sender, the text as
/// the body and its first line as the subject, and what the provider said
/// about the sender and the message as attributes.
pub fn contact_request(
    tenant: &TenantId,
    channel_id: &ChannelId,
    resource: &ChannelResource,
    message: &InboundMessage,
    request_id: String,
) -> CreateContactRequest {
    let subject: String = message.text.lines().next().unwrap_or_default().chars().take(SUBJECT_CHARS).collect();
    let mut attributes = std::collections::HashMap::from([
        ("channel".to_owned(), channel_id.to_string()),
        ("provider".to_owned(), provider_label(resource).to_owned()),
    ]);
    let optional = [
        ("display_name", message.display_name.clone()),
        ("to", message.to.clone()),
        ("thread", message.thread.clone()),
    ];
    for (key, value) in optional {
        if !value.is_empty() {
            attributes.insert(key.to_owned(), value);
        }
    }
    CreateContactRequest {
        parent: switchboard_core::names::tenant_name(tenant),
        request_id,
        contact: Some(Contact {
            channel: message.channel as i32,
            direction: Direction::Inbound as i32,
            from: Some(identity_to_proto(&message.from)),
            queue: resource.queue.clone(),
            subject,
            body: within_bytes(message.text.clone(), MAX_BODY_BYTES),
            attributes,
            ..Contact::default()
        }),
    }
}

/// What a browser sees after posting a form: the channel's page, or a
/// short thank-you.
fn form_thanks(success_url: &str) -> Response {
    if success_url.is_empty() {
        let page = "<!doctype html><meta charset=\"utf-8\"><title>Thank you</title>\
                    <p>Thank you, we received your message and will get back to you.</p>";
        return ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, success_url.to_owned())]).into_response()
}

/// `text` cut at a character boundary to at most `max` bytes.
fn within_bytes(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
