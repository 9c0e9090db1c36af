//! Telegram Bot API: `Update` objects posted to the webhook with the
//! secret token set by `setWebhook` in `X-Telegram-Bot-Api-Secret-Token`,
//! and `sendMessage` for replies.
//!
//! A message id is unique only within its chat, so the provider message id
//! kept is `{chat id}:{message id}`; Telegram redelivers an update it got
//! no 2xx for with the same ids. The customer is the `telegram:{user id}`
//! handle; bots' messages, channel posts and callback queries are skipped.

use serde_json::{Value, json};
use switchboard_core::identity::provider_handle;
use switchboard_proto::common::v1::Channel;

use super::{
    Attachment, Inbound, InboundMessage, MessageEdit, OutboundMessage, OutboundRequest, WebhookRefusal, check_size,
    safe_text, seconds_to_millis,
};

/// The header carrying the webhook's secret token.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// Media fields of a message, each an object with a `file_id`.
const MEDIA_FIELDS: [&str; 6] = ["document", "voice", "audio", "video", "video_note", "sticker"];

/// A bot as a channel's settings and secrets hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramBot {
    /// Write-only secret: the bot token from BotFather.
    pub bot_token: String,
    /// Write-only secret: the `secret_token` given to `setWebhook`.
    pub webhook_secret: String,
    /// The Bot API's base URL, without a trailing slash.
    pub api_base_url: String,
}

/// Whether `secret` may be a `setWebhook` secret token: 1–256 characters
/// of `A-Z`, `a-z`, `0-9`, `_` and `-`.
pub fn is_valid_secret(secret: &str) -> bool {
    (1..=256).contains(&secret.len())
        && secret.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Checks the secret token header, in constant time.
pub fn verify(webhook_secret: &str, body: &[u8], header: Option<&str>) -> Result<(), WebhookRefusal> {
    check_size(body)?;
    let Some(header) = header.filter(|header| !header.is_empty()) else {
        return Err(WebhookRefusal::Unauthenticated("the X-Telegram-Bot-Api-Secret-Token header is missing"));
    };
    let matches: bool = subtle::ConstantTimeEq::ct_eq(header.as_bytes(), webhook_secret.as_bytes()).into();
    if !matches || !is_valid_secret(webhook_secret) {
        return Err(WebhookRefusal::Unauthenticated("the X-Telegram-Bot-Api-Secret-Token does not match"));
    }
    Ok(())
}

/// Reads a verified `Update`: a customer's message or its edit; every
/// other kind of update carries nothing for a contact center.
pub fn parse(body: &[u8]) -> Result<Vec<Inbound>, WebhookRefusal> {
    check_size(body)?;
    let update: Value =
        serde_json::from_slice(body).map_err(|error| WebhookRefusal::malformed(format!("not JSON: {error}")))?;
    if update.get("update_id").and_then(Value::as_i64).is_none() {
        return Err(WebhookRefusal::malformed("`update_id` is missing"));
    }
    if let Some(message) = update.get("message") {
        return Ok(read_message(message)?.map(Inbound::Message).into_iter().collect());
    }
    if let Some(edited) = update.get("edited_message") {
        let Some(message) = read_message(edited)? else { return Ok(Vec::new()) };
        let edited_at_ms = edited.get("edit_date").and_then(Value::as_i64).and_then(seconds_to_millis);
        return Ok(vec![Inbound::Edit(MessageEdit {
            channel: message.channel,
            provider_message_id: message.provider_message_id,
            from: message.from,
            text: message.text,
            edited_at_ms,
        })]);
    }
    Ok(Vec::new())
}

fn integer(value: &Value, field: &str) -> Result<i64, WebhookRefusal> {
    value.get(field).and_then(Value::as_i64).ok_or_else(|| WebhookRefusal::malformed(format!("`{field}` is missing")))
}

fn text_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// A customer's message; `None` for a bot's.
fn read_message(message: &Value) -> Result<Option<InboundMessage>, WebhookRefusal> {
    let from = message.get("from").ok_or_else(|| WebhookRefusal::malformed("`message.from` is missing"))?;
    if from.get("is_bot").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let user_id = integer(from, "id")?;
    let chat = message.get("chat").ok_or_else(|| WebhookRefusal::malformed("`message.chat` is missing"))?;
    let chat_id = integer(chat, "id")?;
    let message_id = integer(message, "message_id")?;
    let display_name = [text_of(from, "first_name"), text_of(from, "last_name")]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let caption = text_of(message, "caption");
    let mut text = message.get("text").and_then(Value::as_str).unwrap_or(caption).to_owned();
    let mut attachments = Vec::new();
    // A photo comes in several sizes, the largest last.
    if let Some(largest) = message.get("photo").and_then(Value::as_array).and_then(|sizes| sizes.last()) {
        attachments.push(attachment("image", largest, caption)?);
    }
    for field in MEDIA_FIELDS {
        if let Some(media) = message.get(field) {
            attachments.push(attachment(field, media, caption)?);
        }
    }
    if let Some(location) = message.get("location") {
        let coordinate = |name: &str| location.get(name).and_then(Value::as_f64);
        let (Some(latitude), Some(longitude)) = (coordinate("latitude"), coordinate("longitude")) else {
            return Err(WebhookRefusal::malformed("a location has no coordinates"));
        };
        text = format!("location: {latitude}, {longitude}");
    }
    if let Some(contact) = message.get("contact") {
        text = format!("contact: {} {}", text_of(contact, "first_name"), text_of(contact, "phone_number"));
    }
    let from = provider_handle("telegram", &user_id.to_string(), "message.from.id")
        .map_err(|error| WebhookRefusal::malformed(error.message))?;
    Ok(Some(InboundMessage {
        channel: Channel::Messenger,
        provider_message_id: format!("{chat_id}:{message_id}"),
        from,
        display_name: safe_text(&display_name),
        to: String::new(),
        thread: chat_id.to_string(),
        text: safe_text(&text),
        attachments,
        sent_at_ms: message.get("date").and_then(Value::as_i64).and_then(seconds_to_millis),
        replied_to: Vec::new(),
        subject: String::new(),
    }))
}

fn attachment(kind: &str, media: &Value, caption: &str) -> Result<Attachment, WebhookRefusal> {
    let file_id = super::required_token(media.get("file_id").and_then(Value::as_str), "file_id", 256)?;
    let content_type = media.get("mime_type").and_then(Value::as_str).unwrap_or(kind);
    Ok(Attachment {
        content_type: safe_text(content_type),
        reference: file_id,
        file_name: safe_text(text_of(media, "file_name")),
        size_bytes: media.get("file_size").and_then(Value::as_u64),
        caption: safe_text(caption),
    })
}

/// The `sendMessage` request that writes `message.text` to the chat
/// `message.to`.
pub fn build_send(bot: &TelegramBot, message: &OutboundMessage) -> OutboundRequest {
    let body = json!({ "chat_id": message.to, "text": message.text });
    OutboundRequest {
        method: "POST",
        url: format!("{}/bot{}/sendMessage", bot.api_base_url, bot.bot_token),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: body.to_string().into_bytes(),
    }
}

/// The provider message id (`{chat id}:{message id}`) of a sent message
/// from `sendMessage`'s answer.
pub fn sent_message_id(response_body: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(response_body).ok()?;
    if answer.get("ok").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let result = answer.get("result")?;
    let chat_id = result.get("chat")?.get("id")?.as_i64()?;
    let message_id = result.get("message_id")?.as_i64()?;
    Some(format!("{chat_id}:{message_id}"))
}
