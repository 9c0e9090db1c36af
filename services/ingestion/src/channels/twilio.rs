//! SMS and WhatsApp in Twilio's format: form-encoded webhooks signed with
//! `X-Twilio-Signature`, and the Messages API for replies.
//!
//! The signature is Base64(HMAC-SHA1(auth token, the full URL Twilio
//! called followed by every POST parameter's name and value, sorted by
//! name)). Inbound messages carry `MessageSid`, `From`, `To`, `Body`,
//! `NumMedia` with `MediaUrl{n}`/`MediaContentType{n}`, and for WhatsApp a
//! `whatsapp:` prefix on the addresses and the sender's `ProfileName`.
//! Status callbacks carry `MessageStatus` (and `ErrorCode` when failed).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use switchboard_core::identity::{IdentityKind, normalize_identity};
use switchboard_proto::common::v1::Channel;

use super::{
    Attachment, DeliveryState, DeliveryUpdate, Inbound, InboundMessage, MAX_ATTACHMENTS, OutboundMessage,
    OutboundRequest, WebhookRefusal, check_size, keyed_mac, required_token, safe_text,
};

/// The header Twilio signs its requests with.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
const WHATSAPP_PREFIX: &str = "whatsapp:";
const MAX_ID_BYTES: usize = 64;

/// A Twilio account as a channel's settings and secrets hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioAccount {
    pub account_sid: String,
    /// Write-only secret: signs webhooks and authenticates API calls.
    pub auth_token: String,
    /// The sender replies go out from (`+15550100` or `whatsapp:+15550100`).
    pub from: String,
    /// The API's base URL, without a trailing slash.
    pub api_base_url: String,
}

/// The form parameters of a request body, in order.
pub fn form_parameters(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).map(|(name, value)| (name.into_owned(), value.into_owned())).collect()
}

/// HMAC-SHA1 under the auth token of the URL followed by every parameter's
/// name and value, sorted (by name, then value for repeated names).
fn signing_mac(auth_token: &str, url: &str, parameters: &[(String, String)]) -> Result<Hmac<Sha1>, WebhookRefusal> {
    let mut sorted: Vec<&(String, String)> = parameters.iter().collect();
    sorted.sort();
    let mut mac: Hmac<Sha1> = keyed_mac(auth_token)?;
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Ok(mac)
}

/// The signature Twilio sends for a POST to `url` with `parameters`.
pub fn signature(auth_token: &str, url: &str, parameters: &[(String, String)]) -> Result<String, WebhookRefusal> {
    Ok(BASE64.encode(signing_mac(auth_token, url, parameters)?.finalize().into_bytes()))
}

/// Checks `X-Twilio-Signature` over the URL Twilio called (scheme, host,
/// path and query exactly as configured on the number) and the form body,
/// in constant time.
pub fn verify(auth_token: &str, url: &str, body: &[u8], header: Option<&str>) -> Result<(), WebhookRefusal> {
    check_size(body)?;
    let Some(header) = header.filter(|header| !header.is_empty()) else {
        return Err(WebhookRefusal::Unauthenticated("the X-Twilio-Signature header is missing"));
    };
    let Ok(claimed) = BASE64.decode(header.trim()) else {
        return Err(WebhookRefusal::Unauthenticated("the X-Twilio-Signature header is not Base64"));
    };
    signing_mac(auth_token, url, &form_parameters(body))?
        .verify_slice(&claimed)
        .map_err(|_| WebhookRefusal::Unauthenticated("the X-Twilio-Signature does not match"))
}

/// Reads a verified webhook body: one inbound message or one status
/// callback.
pub fn parse(body: &[u8]) -> Result<Vec<Inbound>, WebhookRefusal> {
    check_size(body)?;
    if std::str::from_utf8(body).is_err() {
        return Err(WebhookRefusal::malformed("the form body is not UTF-8"));
    }
    let parameters = form_parameters(body);
    let get = |name: &str| parameters.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let message_id = get("MessageSid").or_else(|| get("SmsMessageSid"));
    let message_id = required_token(message_id, "MessageSid", MAX_ID_BYTES)?;

    if let Some(status) = get("MessageStatus").filter(|status| *status != "received") {
        let state = match status {
            "accepted" | "queued" | "sending" | "sent" | "scheduled" => DeliveryState::Sent,
            "delivered" => DeliveryState::Delivered,
            "read" => DeliveryState::Read,
            "failed" | "undelivered" | "canceled" => {
                let code = get("ErrorCode").unwrap_or_default();
                let reason = if code.is_empty() { status.to_owned() } else { format!("{status} (error {code})") };
                DeliveryState::Failed { reason: safe_text(&reason) }
            }
            other => return Err(WebhookRefusal::malformed(format!("unknown MessageStatus `{}`", safe_text(other)))),
        };
        return Ok(vec![Inbound::Status(DeliveryUpdate { provider_message_id: message_id, state, at_ms: None })]);
    }

    let from = get("From").ok_or_else(|| WebhookRefusal::malformed("`From` is missing"))?;
    let (channel, phone) = match from.strip_prefix(WHATSAPP_PREFIX) {
        Some(phone) => (Channel::Messenger, phone),
        None => (Channel::Sms, from),
    };
    let from = normalize_identity(IdentityKind::Phone, phone, "From")
        .map_err(|error| WebhookRefusal::malformed(format!("`From` is not a phone number: {}", error.message)))?;
    let to = required_token(get("To"), "To", MAX_ID_BYTES)?;
    let media_count: usize = match get("NumMedia") {
        None | Some("") => 0,
        Some(count) => count.parse().map_err(|_| WebhookRefusal::malformed("`NumMedia` is not a number"))?,
    };
    let mut attachments = Vec::new();
    for index in 0..media_count.min(MAX_ATTACHMENTS) {
        let url_field = format!("MediaUrl{index}");
        let Some(url) = get(&url_field) else {
            return Err(WebhookRefusal::malformed(format!("`{url_field}` is missing")));
        };
        attachments.push(Attachment {
            content_type: safe_text(get(&format!("MediaContentType{index}")).unwrap_or_default()),
            reference: required_token(Some(url), &url_field, 2048)?,
            file_name: String::new(),
            size_bytes: None,
            caption: String::new(),
        });
    }
    Ok(vec![Inbound::Message(InboundMessage {
        channel,
        provider_message_id: message_id,
        from,
        display_name: safe_text(get("ProfileName").unwrap_or_default()),
        to,
        thread: String::new(),
        text: safe_text(get("Body").unwrap_or_default()),
        attachments,
        sent_at_ms: None,
        replied_to: Vec::new(),
        subject: String::new(),
    })])
}

/// The Messages API request that sends `message` from the account's
/// sender. The customer's address keeps the channel's form: a WhatsApp
/// account (sender `whatsapp:…`) writes to `whatsapp:` + the phone.
pub fn build_send(account: &TwilioAccount, message: &OutboundMessage) -> OutboundRequest {
    let to = if account.from.starts_with(WHATSAPP_PREFIX) && !message.to.starts_with(WHATSAPP_PREFIX) {
        format!("{WHATSAPP_PREFIX}{}", message.to)
    } else {
        message.to.clone()
    };
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("To", &to)
        .append_pair("From", &account.from)
        .append_pair("Body", &message.text)
        .finish();
    let credentials = BASE64.encode(format!("{}:{}", account.account_sid, account.auth_token));
    OutboundRequest {
        method: "POST",
        url: format!("{}/2010-04-01/Accounts/{}/Messages.json", account.api_base_url, account.account_sid),
        headers: vec![
            ("authorization".to_owned(), format!("Basic {credentials}")),
            ("content-type".to_owned(), "application/x-www-form-urlencoded".to_owned()),
        ],
        body: body.into_bytes(),
    }
}

/// The provider's id of a sent message from the API's answer (`sid`).
pub fn sent_message_id(response_body: &[u8]) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_slice(response_body).ok()?;
    let sid = answer.get("sid")?.as_str()?;
    required_token(Some(sid), "sid", MAX_ID_BYTES).ok()
}
