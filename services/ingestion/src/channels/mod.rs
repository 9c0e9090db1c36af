//! Provider formats: what each messaging provider's webhook says, and the
//! requests that send a reply through it. One module per provider, each
//! pure (bytes and headers in, typed items or a typed refusal out; no IO),
//! so the fixture corpus and the property tests exercise them without
//! servers, and the HTTP layer only moves bytes.
//!
//! Every parser follows the same rules:
//! - the signature is checked before anything is parsed, over the exact
//!   bytes received, in constant time; a missing or wrong one is
//!   [`WebhookRefusal::Unauthenticated`] and nothing else is looked at;
//! - a body larger than [`MAX_WEBHOOK_BODY_BYTES`] is refused unread;
//! - malformed input is [`WebhookRefusal::Malformed`] naming what is
//!   wrong, never a panic (property tests feed every parser arbitrary
//!   bytes);
//! - senders become normalised identities ([`switchboard_core::identity`]),
//!   the one place ingestion and CRM share, and text is made safe to store
//!   ([`switchboard_core::text`]).

pub mod cti;
pub mod email;
pub mod meta;
pub mod social;
pub mod telegram;
pub mod twilio;
pub mod web_chat;
pub mod web_form;

use switchboard_core::identity::Identity;
use switchboard_core::text::TextRule;
use switchboard_proto::common::v1::Channel;

/// The largest webhook body any provider endpoint reads.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 1024 * 1024;
/// The longest message text kept, in characters; longer text is cut and
/// marked, so a provider that allows more cannot make a contact unstorable.
pub const MAX_MESSAGE_TEXT_CHARS: usize = 16 * 1024;
/// The most attachments one inbound message keeps.
pub const MAX_ATTACHMENTS: usize = 20;

/// What a webhook request carried, in the order it carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A customer wrote.
    Message(InboundMessage),
    /// A customer changed a message it sent earlier.
    Edit(MessageEdit),
    /// A message the contact center sent moved on (sent, delivered, read,
    /// failed).
    Status(DeliveryUpdate),
}

/// One message from a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub channel: Channel,
    /// The provider's id of the message: a retry of the same webhook
    /// carries the same one, which is what makes intake idempotent.
    pub provider_message_id: String,
    /// The customer, normalised.
    pub from: Identity,
    /// The name the provider knows the customer by, if it said.
    pub display_name: String,
    /// The address the customer wrote to (our number, page or bot).
    pub to: String,
    /// The provider's thread, when it has one distinct from the sender
    /// (a Telegram chat); empty otherwise.
    pub thread: String,
    pub text: String,
    pub attachments: Vec<Attachment>,
    /// When the provider says the customer sent it, if it does.
    pub sent_at_ms: Option<i64>,
    /// The provider ids of the messages this one replies to, nearest first
    /// (e-mail's `In-Reply-To` and `References`); empty elsewhere.
    pub replied_to: Vec<String>,
    /// E-mail's (or a web form's) subject line; empty elsewhere.
    pub subject: String,
}

impl InboundMessage {
    /// A plain text message: no recipient, thread, attachments, send time,
    /// threading or subject known.
    pub fn text(
        channel: Channel,
        provider_message_id: String,
        from: Identity,
        display_name: String,
        text: String,
    ) -> Self {
        InboundMessage {
            channel,
            provider_message_id,
            from,
            display_name,
            to: String::new(),
            thread: String::new(),
            text,
            attachments: Vec::new(),
            sent_at_ms: None,
            replied_to: Vec::new(),
            subject: String::new(),
        }
    }
}

/// An attachment by reference: its bytes stay with the provider until
/// someone fetches them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// A MIME type when the provider gives one, else the provider's kind
    /// (`image`, `audio`, `document`…).
    pub content_type: String,
    /// A URL or the provider's media id.
    pub reference: String,
    pub file_name: String,
    pub size_bytes: Option<u64>,
    pub caption: String,
}

/// A customer's edit of a message it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEdit {
    pub channel: Channel,
    pub provider_message_id: String,
    pub from: Identity,
    pub text: String,
    pub edited_at_ms: Option<i64>,
}

/// Where a message the contact center sent has got to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryState {
    Sent,
    Delivered,
    Read,
    Failed { reason: String },
}

/// A provider's report on an outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryUpdate {
    pub provider_message_id: String,
    pub state: DeliveryState,
    pub at_ms: Option<i64>,
}

/// Why a webhook request was refused; nothing of it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookRefusal {
    /// No signature, or one that does not match: HTTP 401.
    Unauthenticated(&'static str),
    /// The body is not what the provider sends: HTTP 400, naming what.
    Malformed(String),
    /// The body exceeds [`MAX_WEBHOOK_BODY_BYTES`]: HTTP 413.
    TooLarge,
    /// A browser posted from an origin the channel does not allow: 403.
    ForbiddenOrigin,
    /// The sender is over its rate (`ingestion.sender_messages_per_minute`):
    /// 429 with `Retry-After`.
    RateLimited,
}

impl WebhookRefusal {
    pub fn malformed(what: impl Into<String>) -> WebhookRefusal {
        WebhookRefusal::Malformed(what.into())
    }

    /// The HTTP status the endpoint answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            WebhookRefusal::Unauthenticated(_) => 401,
            WebhookRefusal::Malformed(_) => 400,
            WebhookRefusal::TooLarge => 413,
            WebhookRefusal::ForbiddenOrigin => 403,
            WebhookRefusal::RateLimited => 429,
        }
    }

    /// A stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            WebhookRefusal::Unauthenticated(_) => "unauthenticated",
            WebhookRefusal::Malformed(_) => "malformed",
            WebhookRefusal::TooLarge => "too_large",
            WebhookRefusal::ForbiddenOrigin => "forbidden_origin",
            WebhookRefusal::RateLimited => "rate_limited",
        }
    }
}

/// A request to a provider's API, built but not sent: the connector's IO
/// layer sends it and reads the provider's id of the message from the
/// answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub method: &'static str,
    pub url: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A reply to send: the text, to whom, through which provider account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// The customer's address as the provider knows it (a phone, a PSID, a
    /// chat id).
    pub to: String,
    pub text: String,
    /// Our idempotency key for the send; providers that take one get it.
    pub idempotency_key: String,
}

/// An HMAC keyed with a channel's secret. HMAC takes keys of any length, so
/// this never fails; the error only keeps a panic out of the request path.
pub(crate) fn keyed_mac<M: hmac::Mac + hmac::digest::KeyInit>(secret: &str) -> Result<M, WebhookRefusal> {
    // Anyone can sign with an empty key: a channel without its secret
    // takes nothing signed.
    if secret.is_empty() {
        return Err(WebhookRefusal::Unauthenticated("the channel has no signing secret"));
    }
    <M as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes())
        .map_err(|_| WebhookRefusal::Unauthenticated("the channel's secret cannot key an HMAC"))
}

/// `sha256=` + hex(HMAC-SHA256(secret, body)): the signature header of Meta's
/// webhooks, and of the ones Switchboard defines (social posts, e-mail).
pub(crate) fn sha256_signature(secret: &str, body: &[u8]) -> Result<String, WebhookRefusal> {
    let mut mac: hmac::Hmac<sha2::Sha256> = keyed_mac(secret)?;
    hmac::Mac::update(&mut mac, body);
    Ok(format!("sha256={}", hex::encode(hmac::Mac::finalize(mac).into_bytes())))
}

/// Checks a [`sha256_signature`] header over the raw body, in constant time.
pub(crate) fn verify_sha256_signature(secret: &str, body: &[u8], header: Option<&str>) -> Result<(), WebhookRefusal> {
    check_size(body)?;
    let Some(header) = header.filter(|header| !header.is_empty()) else {
        return Err(WebhookRefusal::Unauthenticated("the signature header is missing"));
    };
    let Some(claimed) = header.trim().strip_prefix("sha256=").and_then(|digest| hex::decode(digest).ok()) else {
        return Err(WebhookRefusal::Unauthenticated("the signature header is not `sha256=<hex>`"));
    };
    let mut mac: hmac::Hmac<sha2::Sha256> = keyed_mac(secret)?;
    hmac::Mac::update(&mut mac, body);
    hmac::Mac::verify_slice(mac, &claimed).map_err(|_| WebhookRefusal::Unauthenticated("the signature does not match"))
}

/// Refuses bodies over the limit before any parsing.
pub(crate) fn check_size(body: &[u8]) -> Result<(), WebhookRefusal> {
    if body.len() > MAX_WEBHOOK_BODY_BYTES { Err(WebhookRefusal::TooLarge) } else { Ok(()) }
}

/// Message text as it may be stored: every character the stored-text rule
/// refuses (control characters other than line feeds and tabs, NUL breaks
/// PostgreSQL `text`; bidirectional overrides) dropped, cut at
/// [`MAX_MESSAGE_TEXT_CHARS`] with an ellipsis.
pub fn safe_text(raw: &str) -> String {
    let mut text = String::with_capacity(raw.len().min(MAX_MESSAGE_TEXT_CHARS * 4));
    // The stored-text rule of one line, plus line feeds and tabs: no
    // carriage return, so a first line is always a valid subject.
    let line = TextRule::line(usize::MAX);
    let allowed = |character: &char| matches!(character, '\n' | '\t') || line.allows(*character);
    for (count, character) in raw.chars().filter(allowed).enumerate() {
        if count == MAX_MESSAGE_TEXT_CHARS {
            text.push('…');
            break;
        }
        text.push(character);
    }
    text
}

/// A provider field that names something (an id, a number): required,
/// without control characters, at most `max` bytes.
pub(crate) fn required_token(value: Option<&str>, field: &str, max: usize) -> Result<String, WebhookRefusal> {
    let value = value.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err(WebhookRefusal::malformed(format!("`{field}` is missing")));
    }
    if value.len() > max || value.chars().any(char::is_control) {
        return Err(WebhookRefusal::malformed(format!("`{field}` is not a valid id")));
    }
    Ok(value.to_owned())
}

/// Seconds since the epoch, as providers send them, in milliseconds;
/// `None` when out of any sensible range.
pub(crate) fn seconds_to_millis(seconds: i64) -> Option<i64> {
    (0..=253_402_300_799).contains(&seconds).then(|| seconds * 1000)
}

#[cfg(test)]
mod tests;
