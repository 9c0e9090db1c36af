//! The web chat's HTTP side (the format is [`crate::channels::web_chat`]):
//! the widget script, the chat's own page, and the visitors' WebSocket.
//!
//! - `GET /webchat/widget.js`: the widget, one static script, no build step.
//! - `GET /webchat/{tenant}/{channel}`: a page hosting the widget (a link to
//!   share, and what the widget's `data-channel` names).
//! - `GET /webchat/{tenant}/{channel}/ws`: the visitor's WebSocket.
//!
//! A socket learns of new messages in its conversation from
//! [`ChatWakeups`] (this replica's connector and intake wake it at once)
//! and by reading the store every [`READ_INTERVAL`] (what another replica
//! stored), so a visitor connected to any replica sees every message, and
//! one that reconnects is sent its conversation again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use switchboard_core::sync::lock_unpoisoned;
use switchboard_core::{ChannelId, ConversationId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::common::v1::Direction;
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::{Channel as ChannelResource, DeliveryState, WebChatSettings};

use crate::channels::web_chat::{self, ClientFrame, MAX_FRAME_BYTES, ServerFrame};
use crate::channels::{DeliveryState as ReportedState, DeliveryUpdate, web_form};
use crate::conversations::MessageRecord;
use crate::webhooks::{Webhooks, active_channel, count_request};

/// How often a socket reads its conversation from the store.
pub const READ_INTERVAL: Duration = Duration::from_secs(2);
/// How long a new socket has to say `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages a visitor may send per [`RATE_WINDOW`].
const MAX_MESSAGES_PER_WINDOW: usize = 20;
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// The messages of a conversation sent to a socket, at most.
const MAX_HISTORY: usize = 500;

const WIDGET_JS: &str = include_str!("../assets/webchat/widget.js");
const PAGE_HTML: &str = include_str!("../assets/webchat/page.html");

/// Wakes the sockets showing a conversation on this replica.
#[derive(Default)]
pub struct ChatWakeups {
    watching: Mutex<HashMap<(TenantId, ConversationId), Weak<tokio::sync::Notify>>>,
}

impl ChatWakeups {
    /// What a socket waits on for `conversation`; it stays registered while
    /// any socket holds it.
    pub fn watch(&self, tenant: &TenantId, conversation: &ConversationId) -> Arc<tokio::sync::Notify> {
        let mut watching = lock_unpoisoned(&self.watching);
        watching.retain(|_, notify| notify.strong_count() > 0);
        let key = (tenant.clone(), conversation.clone());
        if let Some(notify) = watching.get(&key).and_then(Weak::upgrade) {
            return notify;
        }
        let notify = Arc::new(tokio::sync::Notify::new());
        watching.insert(key, Arc::downgrade(&notify));
        notify
    }

    /// Wakes the sockets of `conversation`, if any.
    pub fn wake(&self, tenant: &TenantId, conversation: &ConversationId) {
        let key = (tenant.clone(), conversation.clone());
        if let Some(notify) = lock_unpoisoned(&self.watching).get(&key).and_then(Weak::upgrade) {
            notify.notify_waiters();
        }
    }
}

/// The web chat's routes, on the webhooks' state.
pub fn router(webhooks: Arc<Webhooks>) -> Router {
    Router::new()
        .route("/webchat/widget.js", get(widget))
        .route("/webchat/{tenant}/{channel}", get(page))
        .route("/webchat/{tenant}/{channel}/ws", get(connect))
        .with_state(webhooks)
}

async fn widget() -> Response {
    let headers = [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")];
    (headers, WIDGET_JS).into_response()
}

/// The chat channel of the path, or the answer to give instead.
async fn chat_channel(
    webhooks: &Webhooks,
    tenant: &str,
    channel: &str,
) -> Result<(TenantId, ChannelId, ChannelResource, WebChatSettings), Response> {
    match active_channel(webhooks, tenant, channel).await {
        Ok(Some((tenant, channel_id, resource))) => match &resource.provider {
            Some(Provider::WebChat(settings)) => {
                let settings = settings.clone();
                Ok((tenant, channel_id, resource, settings))
            }
            _ => Err(StatusCode::NOT_FOUND.into_response()),
        },
        Ok(None) => Err(StatusCode::NOT_FOUND.into_response()),
        Err(error) => {
            tracing::warn!(tenant = %tenant, channel = %channel, error = %error, "web chat channel not read");
            Err(StatusCode::SERVICE_UNAVAILABLE.into_response())
        }
    }
}

async fn page(State(webhooks): State<Arc<Webhooks>>, Path((tenant, channel)): Path<(String, String)>) -> Response {
    let (tenant, channel_id, resource, settings) = match chat_channel(&webhooks, &tenant, &channel).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let title = if settings.title.is_empty() { resource.display_name.clone() } else { settings.title.clone() };
    let html = PAGE_HTML
        .replace("{title}", &html_escape(&title))
        .replace("{channel_url}", &html_escape(&crate::channels_api::webchat_url("", &tenant, &channel_id)));
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

async fn connect(
    State(webhooks): State<Arc<Webhooks>>,
    Path((tenant, channel)): Path<(String, String)>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (tenant, channel_id, resource, settings) = match chat_channel(&webhooks, &tenant, &channel).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let origin = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok());
    if !web_form::origin_allowed(&settings.allowed_origins, origin) {
        count_request(tenant.as_str(), "web_chat", "forbidden_origin");
        return StatusCode::FORBIDDEN.into_response();
    }
    count_request(tenant.as_str(), "web_chat", "connected");
    let chat = ChatSocket { webhooks, tenant, channel_id, resource, settings };
    upgrade.max_message_size(MAX_FRAME_BYTES).on_upgrade(move |socket| chat.run(socket))
}

/// One visitor's socket.
struct ChatSocket {
    webhooks: Arc<Webhooks>,
    tenant: TenantId,
    channel_id: ChannelId,
    resource: ChannelResource,
    settings: WebChatSettings,
}

/// The visitor a socket speaks for, once it said `hello`.
struct Visitor {
    token: String,
    name: String,
    /// Its open conversation, once it has one.
    conversation: Option<ConversationId>,
    wakeup: Option<Arc<tokio::sync::Notify>>,
    /// Messages already sent to this socket, and in which state.
    shown: HashSet<String>,
    /// When its recent messages came, for the rate limit.
    recent: std::collections::VecDeque<tokio::time::Instant>,
}

impl ChatSocket {
    async fn run(self, mut socket: WebSocket) {
        let hello = tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await;
        let (token, name) = match hello {
            Ok(Some(Ok(Frame::Text(text)))) => match web_chat::parse_frame(&text) {
                Ok(ClientFrame::Hello { visitor_token, name }) => (visitor_token, name),
                Ok(_) => return refuse(socket, "say hello first").await,
                Err(reason) => return refuse(socket, &reason).await,
            },
            _ => return refuse(socket, "say hello first").await,
        };
        let mut visitor = Visitor {
            token,
            name,
            conversation: None,
            wakeup: None,
            shown: HashSet::new(),
            recent: std::collections::VecDeque::new(),
        };
        let title = if self.settings.title.is_empty() {
            self.resource.display_name.clone()
        } else {
            self.settings.title.clone()
        };
        let ready = ServerFrame::Ready { greeting: self.settings.greeting.clone(), title };
        if socket.send(Frame::Text(ready.to_json().into())).await.is_err() {
            return;
        }
        if let Err(reason) = self.serve(&mut socket, &mut visitor).await {
            tracing::info!(tenant = %self.tenant, channel = %self.channel_id, reason = ?reason, "web chat socket ended");
        }
    }

    /// Relays frames both ways until the socket closes; `Err` says why it
    /// ended otherwise.
    async fn serve(&self, socket: &mut WebSocket, visitor: &mut Visitor) -> Result<(), String> {
        self.find_conversation(visitor).await?;
        self.push_new(socket, visitor).await?;
        let mut reads = tokio::time::interval(READ_INTERVAL);
        loop {
            let woken = async {
                match &visitor.wakeup {
                    Some(wakeup) => wakeup.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                frame = socket.recv() => match frame {
                    Some(Ok(Frame::Text(text))) => self.on_frame(socket, visitor, &text).await?,
                    Some(Ok(Frame::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error.to_string()),
                },
                () = woken => self.push_new(socket, visitor).await?,
                _ = reads.tick() => {
                    // A tenant suspended or deleted meanwhile: the chat ends.
                    if self.webhooks.conversations.contacts.require_tenant(&self.tenant).is_err() {
                        return Err("the tenant no longer takes chats".to_owned());
                    }
                    if visitor.conversation.is_none() {
                        self.find_conversation(visitor).await?;
                    }
                    self.push_new(socket, visitor).await?;
                }
            }
        }
    }

    async fn on_frame(&self, socket: &mut WebSocket, visitor: &mut Visitor, text: &str) -> Result<(), String> {
        let frame = match web_chat::parse_frame(text) {
            Ok(frame) => frame,
            Err(reason) => return send(socket, &ServerFrame::Error { reason }).await,
        };
        match frame {
            ClientFrame::Hello { .. } => {
                send(socket, &ServerFrame::Error { reason: "hello was said".to_owned() }).await
            }
            ClientFrame::Message { id, text } => {
                let now = tokio::time::Instant::now();
                visitor.recent.retain(|at| now.duration_since(*at) < RATE_WINDOW);
                if visitor.recent.len() >= MAX_MESSAGES_PER_WINDOW {
                    let reason = "too many messages; wait a little".to_owned();
                    return send(socket, &ServerFrame::Error { reason }).await;
                }
                visitor.recent.push_back(now);
                let message = web_chat::inbound(&visitor.token, &visitor.name, id.clone(), text);
                let intake = &self.webhooks.conversations;
                match intake.take(&self.tenant, &self.channel_id, &self.resource, message).await {
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(tenant = %self.tenant, channel = %self.channel_id, error = %error, "chat message not taken");
                        // Not acknowledged: the widget sends it again.
                        let reason = "the message was not stored; it will be sent again".to_owned();
                        return send(socket, &ServerFrame::Error { reason }).await;
                    }
                }
                send(socket, &ServerFrame::Ack { id }).await?;
                if visitor.conversation.is_none() {
                    self.find_conversation(visitor).await?;
                }
                self.push_new(socket, visitor).await
            }
            ClientFrame::Delivered { name } => {
                let Some(message_id) = name.rsplit('/').next().filter(|_| visitor.shown.contains(&name)) else {
                    return Ok(());
                };
                let report = DeliveryUpdate {
                    provider_message_id: message_id.to_owned(),
                    state: ReportedState::Delivered,
                    at_ms: None,
                };
                let intake = &self.webhooks.conversations;
                if let Err(error) = intake.apply_report(&self.tenant, &self.channel_id, report).await {
                    tracing::warn!(tenant = %self.tenant, error = %error, "chat delivery not recorded");
                }
                Ok(())
            }
        }
    }

    async fn find_conversation(&self, visitor: &mut Visitor) -> Result<(), String> {
        let identity = web_chat::visitor_identity(&visitor.token);
        let store = &self.webhooks.conversations.conversations;
        let open = store.open_conversation(&self.tenant, &self.channel_id, &identity).await;
        if let Some(open) = open.map_err(|error| error.message)? {
            visitor.wakeup = Some(self.webhooks.conversations.chat_wakeups.watch(&self.tenant, &open.conversation_id));
            visitor.conversation = Some(open.conversation_id);
        }
        Ok(())
    }

    /// Sends the conversation's messages this socket has not shown; says
    /// `closed` (and forgets the conversation) once it has ended.
    async fn push_new(&self, socket: &mut WebSocket, visitor: &mut Visitor) -> Result<(), String> {
        let Some(conversation_id) = visitor.conversation.clone() else { return Ok(()) };
        let store = &self.webhooks.conversations.conversations;
        let page = PageRequest::resume_after(MAX_HISTORY, None);
        let messages = store.messages(&self.tenant, &conversation_id, &page).await.map_err(|error| error.message)?;
        for record in messages.iter().filter(|record| shown_to_visitor(record)) {
            if visitor.shown.insert(record.message.name.clone()) {
                send(socket, &message_frame(record)).await?;
            }
        }
        let conversation = store.get(&self.tenant, &conversation_id).await.map_err(|error| error.message)?;
        if conversation.is_none_or(|conversation| conversation.closed.is_some()) {
            visitor.conversation = None;
            visitor.wakeup = None;
            send(socket, &ServerFrame::Closed).await?;
        }
        Ok(())
    }
}

/// Inbound messages, and replies once the connector has sent them.
fn shown_to_visitor(record: &MessageRecord) -> bool {
    record.message.direction == Direction::Inbound as i32
        || !matches!(record.delivery_state(), DeliveryState::Queued | DeliveryState::Failed)
}

fn message_frame(record: &MessageRecord) -> ServerFrame {
    let inbound = record.message.direction == Direction::Inbound as i32;
    // An inbound message's provider id is `{channel}/{visitor}/{widget id}`.
    let client_id = if inbound { record.provider_message_id.rsplit('/').next().unwrap_or_default() } else { "" };
    ServerFrame::Message {
        name: record.message.name.clone(),
        direction: if inbound { "inbound" } else { "outbound" },
        client_id: client_id.to_owned(),
        text: record.message.text.clone(),
        author: if inbound { String::new() } else { record.message.author_display_name.clone() },
        time_ms: record.created_ms,
    }
}

async fn send(socket: &mut WebSocket, frame: &ServerFrame) -> Result<(), String> {
    socket.send(Frame::Text(frame.to_json().into())).await.map_err(|error| error.to_string())
}

async fn refuse(mut socket: WebSocket, reason: &str) {
    let _ = send(&mut socket, &ServerFrame::Error { reason: reason.to_owned() }).await;
    let close = CloseFrame { code: axum::extract::ws::close_code::POLICY, reason: "".into() };
    let _ = socket.send(Frame::Close(Some(close))).await;
}
