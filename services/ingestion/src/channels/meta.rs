//! WhatsApp Cloud API, Messenger and Instagram: Meta's Graph webhooks
//! (JSON signed with `X-Hub-Signature-256`, subscribed with the
//! `hub.challenge` handshake) and the Graph API's send endpoints.
//!
//! The signature is `sha256=` + hex(HMAC-SHA256(app secret, raw body)).
//! WhatsApp posts `object: whatsapp_business_account` with
//! `entry[].changes[].value.{messages,statuses,contacts,metadata}`;
//! Messenger (`object: page`) and Instagram (`object: instagram`) post
//! `entry[].messaging[]` events: `message` (our own sends come back with
//! `is_echo`), `message_edit`, `delivery` and `read`.

use serde_json::{Value, json};
use switchboard_core::identity::{Identity, IdentityKind, normalize_identity, provider_handle};
use switchboard_proto::common::v1::Channel;

use super::{
    Attachment, DeliveryState, DeliveryUpdate, Inbound, InboundMessage, MAX_ATTACHMENTS, MessageEdit, OutboundMessage,
    OutboundRequest, WebhookRefusal, check_size, required_token, safe_text, seconds_to_millis, sha256_signature,
    verify_sha256_signature,
};

/// The header Meta signs its webhooks with.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
const MAX_ID_BYTES: usize = 256;
/// WhatsApp message types whose payload is media with an id.
const WHATSAPP_MEDIA_TYPES: [&str; 5] = ["image", "audio", "video", "document", "sticker"];

/// Which of Meta's products a channel is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaProduct {
    /// WhatsApp Cloud API, sending from one business phone number.
    WhatsApp { phone_number_id: String },
    /// A Facebook page's Messenger inbox.
    Messenger,
    /// An Instagram professional account's direct messages.
    Instagram,
}

/// A Meta app and page or number as a channel's settings and secrets hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaAccount {
    pub product: MetaProduct,
    /// Write-only secret: signs webhooks.
    pub app_secret: String,
    /// The token the subscription handshake must present.
    pub verify_token: String,
    /// Write-only secret: the page's or system user's access token.
    pub access_token: String,
    /// The Graph API's base URL with its version, without a trailing slash.
    pub api_base_url: String,
}

/// Answers Meta's subscription handshake (`GET ?hub.mode=subscribe&
/// hub.verify_token=…&hub.challenge=…`): the challenge to echo when the
/// token matches.
pub fn subscription_challenge(query: &str, verify_token: &str) -> Result<String, WebhookRefusal> {
    let parameters: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).map(|(key, value)| (key.into_owned(), value.into_owned())).collect();
    let get = |name: &str| parameters.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    if get("hub.mode") != Some("subscribe") {
        return Err(WebhookRefusal::malformed("`hub.mode` must be `subscribe`"));
    }
    let presented = get("hub.verify_token").unwrap_or_default();
    let matches: bool = subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), verify_token.as_bytes()).into();
    if !matches || verify_token.is_empty() {
        return Err(WebhookRefusal::Unauthenticated("`hub.verify_token` does not match"));
    }
    required_token(get("hub.challenge"), "hub.challenge", MAX_ID_BYTES)
}

/// The signature header Meta sends for `body`.
pub fn signature(app_secret: &str, body: &[u8]) -> Result<String, WebhookRefusal> {
    sha256_signature(app_secret, body)
}

/// Checks `X-Hub-Signature-256` over the raw body, in constant time.
pub fn verify(app_secret: &str, body: &[u8], header: Option<&str>) -> Result<(), WebhookRefusal> {
    verify_sha256_signature(app_secret, body, header)
}

/// Reads a verified webhook body into what it carries, in order. Events
/// of kinds this platform does not take (reactions, postbacks, account
/// changes) are skipped; our own sends echoed back are skipped.
pub fn parse(body: &[u8]) -> Result<Vec<Inbound>, WebhookRefusal> {
    check_size(body)?;
    let payload: Value =
        serde_json::from_slice(body).map_err(|error| WebhookRefusal::malformed(format!("not JSON: {error}")))?;
    let object = payload.get("object").and_then(Value::as_str).unwrap_or_default();
    let entries = array(&payload, "entry")?;
    let mut inbound = Vec::new();
    for entry in entries {
        match object {
            "whatsapp_business_account" => {
                for change in array(entry, "changes")? {
                    if change.get("field").and_then(Value::as_str) == Some("messages") {
                        let value =
                            change.get("value").ok_or_else(|| WebhookRefusal::malformed("`value` is missing"))?;
                        read_whatsapp(value, &mut inbound)?;
                    }
                }
            }
            "page" => read_messaging(entry, "messenger", &mut inbound)?,
            "instagram" => read_messaging(entry, "instagram", &mut inbound)?,
            other => return Err(WebhookRefusal::malformed(format!("unknown object `{}`", safe_text(other)))),
        }
    }
    Ok(inbound)
}

/// The array under `field`, empty when absent; anything else is malformed.
fn array<'a>(value: &'a Value, field: &str) -> Result<&'a [Value], WebhookRefusal> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(WebhookRefusal::malformed(format!("`{field}` is not an array"))),
    }
}

fn text_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |value, key| value.get(key))?.as_str()
}

/// A timestamp given as seconds, in a string (WhatsApp) or a number.
fn seconds_field(value: &Value, field: &str) -> Option<i64> {
    let seconds = match value.get(field)? {
        Value::String(text) => text.parse().ok()?,
        Value::Number(number) => number.as_i64()?,
        _ => return None,
    };
    seconds_to_millis(seconds)
}

fn whatsapp_sender(wa_id: &str) -> Result<Identity, WebhookRefusal> {
    normalize_identity(IdentityKind::Phone, wa_id, "from")
        .map_err(|error| WebhookRefusal::malformed(format!("`from` is not a phone number: {}", error.message)))
}

fn read_whatsapp(value: &Value, inbound: &mut Vec<Inbound>) -> Result<(), WebhookRefusal> {
    let to = text_at(value, &["metadata", "display_phone_number"]).unwrap_or_default();
    for message in array(value, "messages")? {
        let from = required_token(message.get("from").and_then(Value::as_str), "messages[].from", MAX_ID_BYTES)?;
        let display_name = array(value, "contacts")?
            .iter()
            .find(|contact| contact.get("wa_id").and_then(Value::as_str) == Some(from.as_str()))
            .and_then(|contact| text_at(contact, &["profile", "name"]))
            .unwrap_or_default();
        let kind = message.get("type").and_then(Value::as_str).unwrap_or_default();
        let mut attachments = Vec::new();
        let text = match kind {
            "text" => text_at(message, &["text", "body"]).unwrap_or_default().to_owned(),
            "button" => text_at(message, &["button", "text"]).unwrap_or_default().to_owned(),
            "interactive" => text_at(message, &["interactive", "button_reply", "title"])
                .or_else(|| text_at(message, &["interactive", "list_reply", "title"]))
                .unwrap_or_default()
                .to_owned(),
            "location" => {
                let location = message.get("location").unwrap_or(&Value::Null);
                let coordinate = |name: &str| location.get(name).and_then(Value::as_f64);
                match (coordinate("latitude"), coordinate("longitude")) {
                    (Some(latitude), Some(longitude)) => format!("location: {latitude}, {longitude}"),
                    _ => return Err(WebhookRefusal::malformed("a location message has no coordinates")),
                }
            }
            media if WHATSAPP_MEDIA_TYPES.contains(&media) => {
                let payload = message.get(media).unwrap_or(&Value::Null);
                let media_id = required_token(payload.get("id").and_then(Value::as_str), "media id", MAX_ID_BYTES)?;
                attachments.push(Attachment {
                    content_type: safe_text(payload.get("mime_type").and_then(Value::as_str).unwrap_or(media)),
                    reference: media_id,
                    file_name: safe_text(payload.get("filename").and_then(Value::as_str).unwrap_or_default()),
                    size_bytes: None,
                    caption: safe_text(payload.get("caption").and_then(Value::as_str).unwrap_or_default()),
                });
                String::new()
            }
            // Reactions, system notices and unsupported types carry no
            // customer message.
            _ => continue,
        };
        inbound.push(Inbound::Message(InboundMessage {
            channel: Channel::Messenger,
            provider_message_id: required_token(
                message.get("id").and_then(Value::as_str),
                "messages[].id",
                MAX_ID_BYTES,
            )?,
            from: whatsapp_sender(&from)?,
            display_name: safe_text(display_name),
            to: safe_text(to),
            thread: String::new(),
            text: safe_text(&text),
            attachments,
            sent_at_ms: seconds_field(message, "timestamp"),
            replied_to: Vec::new(),
            subject: String::new(),
        }));
    }
    for status in array(value, "statuses")? {
        let id = required_token(status.get("id").and_then(Value::as_str), "statuses[].id", MAX_ID_BYTES)?;
        let state = match status.get("status").and_then(Value::as_str).unwrap_or_default() {
            "sent" => DeliveryState::Sent,
            "delivered" => DeliveryState::Delivered,
            "read" => DeliveryState::Read,
            "failed" => {
                let error = array(status, "errors")?.first();
                let reason = error
                    .and_then(|error| text_at(error, &["title"]).or_else(|| text_at(error, &["message"])))
                    .unwrap_or("failed");
                DeliveryState::Failed { reason: safe_text(reason) }
            }
            other => return Err(WebhookRefusal::malformed(format!("unknown status `{}`", safe_text(other)))),
        };
        inbound.push(Inbound::Status(DeliveryUpdate {
            provider_message_id: id,
            state,
            at_ms: seconds_field(status, "timestamp"),
        }));
    }
    Ok(())
}

fn read_messaging(entry: &Value, provider: &str, inbound: &mut Vec<Inbound>) -> Result<(), WebhookRefusal> {
    for event in array(entry, "messaging")? {
        let sender = text_at(event, &["sender", "id"]);
        let at_ms = event.get("timestamp").and_then(Value::as_i64).filter(|millis| *millis >= 0);
        if let Some(message) = event.get("message") {
            if message.get("is_echo").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let sender = required_token(sender, "sender.id", MAX_ID_BYTES)?;
            let mut attachments = Vec::new();
            for attachment in array(message, "attachments")?.iter().take(MAX_ATTACHMENTS) {
                let Some(url) = text_at(attachment, &["payload", "url"]) else { continue };
                attachments.push(Attachment {
                    content_type: safe_text(attachment.get("type").and_then(Value::as_str).unwrap_or_default()),
                    reference: required_token(Some(url), "attachments[].payload.url", 4096)?,
                    file_name: String::new(),
                    size_bytes: None,
                    caption: String::new(),
                });
            }
            inbound.push(Inbound::Message(InboundMessage {
                channel: Channel::Messenger,
                provider_message_id: required_token(
                    message.get("mid").and_then(Value::as_str),
                    "message.mid",
                    MAX_ID_BYTES,
                )?,
                from: handle(provider, &sender)?,
                display_name: String::new(),
                to: safe_text(text_at(event, &["recipient", "id"]).unwrap_or_default()),
                thread: String::new(),
                text: safe_text(message.get("text").and_then(Value::as_str).unwrap_or_default()),
                attachments,
                sent_at_ms: at_ms,
                replied_to: Vec::new(),
                subject: String::new(),
            }));
        } else if let Some(edit) = event.get("message_edit") {
            let sender = required_token(sender, "sender.id", MAX_ID_BYTES)?;
            inbound.push(Inbound::Edit(MessageEdit {
                channel: Channel::Messenger,
                provider_message_id: required_token(
                    edit.get("mid").and_then(Value::as_str),
                    "message_edit.mid",
                    MAX_ID_BYTES,
                )?,
                from: handle(provider, &sender)?,
                text: safe_text(edit.get("text").and_then(Value::as_str).unwrap_or_default()),
                edited_at_ms: at_ms,
            }));
        } else if let Some(delivery) = event.get("delivery") {
            for mid in array(delivery, "mids")? {
                let mid = required_token(mid.as_str(), "delivery.mids[]", MAX_ID_BYTES)?;
                inbound.push(Inbound::Status(DeliveryUpdate {
                    provider_message_id: mid,
                    state: DeliveryState::Delivered,
                    at_ms,
                }));
            }
        }
        // `read` names a watermark, not messages; postbacks, reactions
        // and referrals are not customer messages.
    }
    Ok(())
}

fn handle(provider: &str, sender: &str) -> Result<Identity, WebhookRefusal> {
    provider_handle(provider, sender, "sender.id")
        .map_err(|error| WebhookRefusal::malformed(format!("`sender.id`: {}", error.message)))
}

/// The Graph API request that sends `message`: WhatsApp's `messages`
/// endpoint of the business number, or the page's `me/messages` as a
/// reply within the customer's messaging window.
pub fn build_send(account: &MetaAccount, message: &OutboundMessage) -> OutboundRequest {
    let (url, body) = match &account.product {
        MetaProduct::WhatsApp { phone_number_id } => (
            format!("{}/{phone_number_id}/messages", account.api_base_url),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": message.to.trim_start_matches('+'),
                "type": "text",
                "text": { "body": message.text },
            }),
        ),
        MetaProduct::Messenger | MetaProduct::Instagram => (
            format!("{}/me/messages", account.api_base_url),
            json!({
                "recipient": { "id": message.to },
                "messaging_type": "RESPONSE",
                "message": { "text": message.text },
            }),
        ),
    };
    OutboundRequest {
        method: "POST",
        url,
        headers: vec![
            ("authorization".to_owned(), format!("Bearer {}", account.access_token)),
            ("content-type".to_owned(), "application/json".to_owned()),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// The provider's id of a sent message from the Graph API's answer
/// (`messages[0].id` for WhatsApp, `message_id` for Messenger/Instagram).
pub fn sent_message_id(response_body: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(response_body).ok()?;
    let id = answer
        .get("messages")
        .and_then(|messages| messages.get(0))
        .and_then(|message| message.get("id"))
        .or_else(|| answer.get("message_id"))?
        .as_str()?;
    required_token(Some(id), "message id", MAX_ID_BYTES).ok()
}
