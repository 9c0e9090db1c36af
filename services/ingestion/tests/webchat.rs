//! The web chat from a visitor's side: a WebSocket client speaks the
//! widget's protocol to a running ingestion. Hello and history, a message
//! stored once however often it is resent, replies pushed to the visitor
//! (and their delivery recorded), a reconnect that gets the conversation
//! back, visitors kept apart, origins and bad frames refused, the widget
//! and the chat page served.

// Test code: a broken expectation panics, which is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared by the test binaries of this crate; each uses a part of it.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::*;
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::{
    Channel, CreateChannelRequest, DeliveryState, ListConversationsRequest, ListMessagesRequest, Message,
    SendMessageRequest, WebChatSettings,
};
use switchboard_test_support::http_request;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as Frame};

const PATIENCE: Duration = Duration::from_secs(20);
const VISITOR: &str = "visitor-token-0123456789";

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn chat_channel(harness: &mut Harness, allowed_origins: &[&str]) {
    let channel = Channel {
        display_name: "Acme".to_owned(),
        queue: SUPPORT_QUEUE.to_owned(),
        provider: Some(Provider::WebChat(WebChatSettings {
            allowed_origins: allowed_origins.iter().map(|origin| (*origin).to_owned()).collect(),
            greeting: "Hi! How can we help?".to_owned(),
            title: String::new(),
        })),
        ..Channel::default()
    };
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: "chat".to_owned(),
        channel: Some(channel),
    };
    let created = harness.channels.create_channel(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    assert_eq!(created.webhook_url, format!("{PUBLIC_BASE_URL}/webchat/acme/chat"));
}

async fn open_socket(harness: &Harness, origin: Option<&str>) -> Result<Socket, tungstenite::Error> {
    let mut request = format!("ws://{}/webchat/acme/chat/ws", harness.http).into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

async fn say(socket: &mut Socket, frame: Value) {
    socket.send(Frame::Text(frame.to_string().into())).await.unwrap();
}

/// The next JSON frame; fails the test if none comes.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(PATIENCE, socket.next()).await.expect("a frame in time");
        match frame.expect("the socket is open").unwrap() {
            Frame::Text(text) => return serde_json::from_str(&text).unwrap(),
            Frame::Close(_) => panic!("the socket closed"),
            _ => continue,
        }
    }
}

/// Frames until one of `kind`, which it returns.
async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let frame = next(socket).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

async fn hello(harness: &Harness, visitor: &str) -> Socket {
    let mut socket = open_socket(harness, None).await.unwrap();
    say(&mut socket, json!({"type": "hello", "visitor": visitor, "name": "Ann"})).await;
    let ready = next(&mut socket).await;
    assert_eq!(ready["type"], "ready");
    assert_eq!((ready["greeting"].as_str(), ready["title"].as_str()), (Some("Hi! How can we help?"), Some("Acme")));
    socket
}

async fn messages(harness: &mut Harness) -> (String, Vec<Message>) {
    let request = ListConversationsRequest { parent: "tenants/acme".to_owned(), ..Default::default() };
    let mut conversations =
        harness.conversations.list_conversations(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    assert_eq!(conversations.conversations.len(), 1, "one conversation");
    let name = conversations.conversations.remove(0).name;
    let request = ListMessagesRequest { parent: name.clone(), ..Default::default() };
    let listed = harness.conversations.list_messages(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    (name, listed.messages)
}

#[tokio::test]
async fn a_visitor_chats_replies_come_back_and_a_reconnect_loses_nothing() {
    let mut harness = Harness::start().await;
    chat_channel(&mut harness, &[]).await;
    let mut socket = hello(&harness, VISITOR).await;
    say(&mut socket, json!({"type": "message", "id": "m-1", "text": "Where is my order?"})).await;
    assert_eq!(next_of(&mut socket, "ack").await["id"], "m-1");
    let echoed = next_of(&mut socket, "message").await;
    assert_eq!((echoed["direction"].as_str(), echoed["client_id"].as_str()), (Some("inbound"), Some("m-1")));

    // The widget resends after a lost ack: stored once, acknowledged again.
    say(&mut socket, json!({"type": "message", "id": "m-1", "text": "Where is my order?"})).await;
    assert_eq!(next_of(&mut socket, "ack").await["id"], "m-1");
    let (conversation, stored) = messages(&mut harness).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].text, "Where is my order?");
    assert_eq!(stored[0].author_display_name, "Ann");
    assert!(stored[0].author.starts_with("webchat:") && !stored[0].author.contains(VISITOR), "{}", stored[0].author);

    let request = SendMessageRequest {
        parent: conversation.clone(),
        text: "It ships today.".to_owned(),
        request_id: "r-1".to_owned(),
    };
    let reply = harness.conversations.send_message(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    let pushed = next_of(&mut socket, "message").await;
    assert_eq!((pushed["direction"].as_str(), pushed["text"].as_str()), (Some("outbound"), Some("It ships today.")));
    assert_eq!(pushed["name"].as_str(), Some(reply.name.as_str()));
    say(&mut socket, json!({"type": "delivered", "name": reply.name})).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, stored) = messages(&mut harness).await;
        if stored[1].delivery_state == DeliveryState::Delivered as i32 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never delivered: {:?}", stored[1]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The page is reloaded: the new socket gets the whole conversation.
    drop(socket);
    let mut again = hello(&harness, VISITOR).await;
    let first = next_of(&mut again, "message").await;
    let second = next_of(&mut again, "message").await;
    assert_eq!(
        (first["text"].as_str(), second["text"].as_str()),
        (Some("Where is my order?"), Some("It ships today."))
    );

    // Another visitor sees none of it.
    let mut stranger = hello(&harness, "another-visitor-token-99").await;
    say(&mut stranger, json!({"type": "message", "id": "m-1", "text": "Hello?"})).await;
    assert_eq!(next_of(&mut stranger, "ack").await["id"], "m-1");
    let own = next_of(&mut stranger, "message").await;
    assert_eq!(own["text"], "Hello?", "only its own message");
}

#[tokio::test]
async fn origins_and_bad_frames_are_refused() {
    let mut harness = Harness::start().await;
    chat_channel(&mut harness, &["https://www.acme.example"]).await;
    let refused = open_socket(&harness, Some("https://evil.example")).await.unwrap_err();
    assert!(matches!(&refused, tungstenite::Error::Http(response) if response.status() == 403), "{refused:?}");
    let mut socket = open_socket(&harness, Some("https://www.acme.example")).await.unwrap();

    say(&mut socket, json!({"type": "message", "id": "m-1", "text": "no hello"})).await;
    let error = next(&mut socket).await;
    assert_eq!((error["type"].as_str(), error["reason"].as_str()), (Some("error"), Some("say hello first")));
    let closed = tokio::time::timeout(PATIENCE, socket.next()).await.unwrap();
    assert!(matches!(closed, Some(Ok(Frame::Close(_))) | None), "{closed:?}");

    let mut socket = open_socket(&harness, Some("https://www.acme.example")).await.unwrap();
    say(&mut socket, json!({"type": "hello", "visitor": VISITOR})).await;
    next_of(&mut socket, "ready").await;
    say(&mut socket, json!({"type": "message", "id": "bad id", "text": "x"})).await;
    assert!(next_of(&mut socket, "error").await["reason"].as_str().unwrap().contains("`id`"));
    let too_long = "x".repeat(5_000);
    say(&mut socket, json!({"type": "message", "id": "m-2", "text": too_long})).await;
    assert!(next_of(&mut socket, "error").await["reason"].as_str().unwrap().contains("at most"));
    let request = ListConversationsRequest { parent: "tenants/acme".to_owned(), ..Default::default() };
    let listed = harness.conversations.list_conversations(authed(request, ACME_ADMIN_KEY)).await.unwrap();
    assert!(listed.into_inner().conversations.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn the_widget_and_the_chat_page_are_served_and_other_channels_have_no_chat() {
    let mut harness = Harness::start().await;
    chat_channel(&mut harness, &[]).await;
    let script = http_request(harness.http, "GET", "/webchat/widget.js", &[], b"").await.unwrap();
    assert_eq!(script.status, 200);
    assert_eq!(script.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(script.body.contains("new WebSocket"));
    let page = http_request(harness.http, "GET", "/webchat/acme/chat", &[], b"").await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"data-channel="/webchat/acme/chat""#), "{}", page.body);
    assert!(page.body.contains("<title>Acme</title>"));
    for path in ["/webchat/acme/nope", "/webchat/globex/chat", "/webchat/acme/chat/../chat"] {
        let missing = http_request(harness.http, "GET", path, &[], b"").await.unwrap();
        assert_eq!(missing.status, 404, "{path}");
    }
    let posted = http_request(harness.http, "POST", "/webhooks/acme/chat", &[], b"{}").await.unwrap();
    assert_eq!(posted.status, 404, "a chat takes no webhooks");
}
