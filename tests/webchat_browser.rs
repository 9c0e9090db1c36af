//! The web chat end to end, in a real browser: headless Chromium opens the
//! chat page ingestion serves, a visitor types in the widget, routing
//! offers the conversation to alice on her `AgentSession`, she reads it,
//! receives the visitor's next message live and replies with
//! `SendMessage`; the reply appears in the page, and a reload (a lost
//! connection) brings the whole conversation back. A screenshot is kept in
//! `target/test-artifacts/`.
//!
//! Run twice: on `switchboard dev` and on five `switchboard <service>`
//! processes against real Kafka, Redis and PostgreSQL.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::browser::Browser;
use support::desktop::AgentDesktop;
use support::{Endpoints, authorized, eventually, scratch_dir};
use switchboard_proto::common::v1::{Channel as ChannelKind, ChannelCapacity};
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::ingestion::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::ingestion::v1::{
    Channel, CreateChannelRequest, DeliveryState, ListMessagesRequest, SendMessageRequest, WebChatSettings,
};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{Agent, AgentState, CreateAgentRequest, agent_session_response};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue};
use tonic::Code;

const ACME_ADMIN: &str = "dev-acme-admin";
const OPERATOR: &str = "dev-operator-admin";
const ALICE: &str = "dev-agent-alice";
const WAIT: Duration = Duration::from_secs(60);

fn created_or_existing<T>(outcome: Result<T, tonic::Status>, what: &str) {
    if let Err(status) = outcome {
        assert_eq!(status.code(), Code::AlreadyExists, "{what}: {status:?}");
    }
}

/// Acme's `webchat` queue and channel, and alice (as `dev` has her).
async fn prepare(endpoints: &Endpoints) {
    let mut presence = PresenceServiceClient::new(endpoints.channel("presence").await);
    let alice = Agent {
        display_name: "Alice".to_owned(),
        tenants: vec!["tenants/acme".to_owned()],
        capacities: vec![ChannelCapacity { channel: ChannelKind::Chat as i32, max_concurrent: 3 }],
        ..Agent::default()
    };
    let request = CreateAgentRequest { agent_id: "alice".to_owned(), agent: Some(alice) };
    created_or_existing(presence.create_agent(authorized(OPERATOR, request)).await, "alice");
    let mut routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    let queue =
        Queue { display_name: "Web chat".to_owned(), channels: vec![ChannelKind::Chat as i32], ..Queue::default() };
    let request =
        CreateQueueRequest { parent: "tenants/acme".to_owned(), queue_id: "webchat".to_owned(), queue: Some(queue) };
    routing.create_queue(authorized(ACME_ADMIN, request)).await.expect("queue");
    let mut channels = ChannelServiceClient::new(endpoints.channel("ingestion").await);
    let channel = Channel {
        display_name: "Acme Help".to_owned(),
        queue: "tenants/acme/queues/webchat".to_owned(),
        provider: Some(Provider::WebChat(WebChatSettings {
            greeting: "Hi! How can we help?".to_owned(),
            ..WebChatSettings::default()
        })),
        ..Channel::default()
    };
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: "webchat".to_owned(),
        channel: Some(channel),
    };
    channels.create_channel(authorized(ACME_ADMIN, request)).await.expect("channel");
}

/// Bubbles in the widget's log with `direction`, as a JS expression.
fn bubbles(direction: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('#switchboard-chat-log li[data-direction={direction}] .text'))\
         .map(node => node.textContent)"
    )
}

async fn chat_in_a_browser(endpoints: &Endpoints, http_port: u16, label: &str) {
    let Some(chromium) = switchboard_test_support::backend_url("SWITCHBOARD_TEST_CHROMIUM") else { return };
    prepare(endpoints).await;
    let mut desktop = AgentDesktop::connect(endpoints.channel("presence").await, ALICE, "agents/alice").await;
    desktop.set_state(AgentState::Available).await;

    let browser = Browser::launch(&chromium, &scratch_dir(&format!("chromium-{label}"))).await;
    let mut page = browser.page().await;
    page.navigate(&format!("http://127.0.0.1:{http_port}/webchat/acme/webchat")).await;
    let online = "document.getElementById('switchboard-chat-status')?.textContent === 'online'";
    page.until("the chat online", online).await;
    page.evaluate("document.getElementById('switchboard-chat-input').focus()").await;
    page.type_text("Hola! My order 1234 has not arrived.").await;
    page.press_enter().await;

    // Routing offers the conversation to alice; she accepts and reads it.
    let offer = desktop.next_offer().await;
    assert_eq!(offer.channel, ChannelKind::Chat as i32);
    assert!(offer.conversation.starts_with("tenants/acme/conversations/"), "{offer:?}");
    desktop.accept(&offer.contact).await;
    let mut conversations = ConversationServiceClient::new(endpoints.channel("ingestion").await);
    let list = ListMessagesRequest { parent: offer.conversation.clone(), ..Default::default() };
    let history = conversations.list_messages(authorized(ALICE, list)).await.expect("alice reads it").into_inner();
    assert_eq!(history.messages.len(), 1);
    assert_eq!(history.messages[0].text, "Hola! My order 1234 has not arrived.");

    // The visitor writes again: it reaches alice's desktop live.
    page.evaluate("document.getElementById('switchboard-chat-input').focus()").await;
    page.type_text("It was due on Monday.").await;
    page.evaluate("document.getElementById('switchboard-chat-send').click()").await;
    let live = desktop
        .next_matching("the visitor's message", |kind| match kind {
            agent_session_response::Kind::MessageAdded(added) => {
                added.message.filter(|message| message.text == "It was due on Monday.")
            }
            _ => None,
        })
        .await;
    assert!(live.author.starts_with("webchat:"), "{live:?}");

    let reply = SendMessageRequest {
        parent: offer.conversation.clone(),
        text: "Sorry about that! It ships today, tracking follows.".to_owned(),
        request_id: format!("browser-reply-{label}"),
    };
    let sent = conversations.send_message(authorized(ALICE, reply)).await.expect("alice replies").into_inner();
    let shown = format!("{}.includes('Sorry about that! It ships today, tracking follows.')", bubbles("outbound"));
    page.until("alice's reply", &shown).await;
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("../test-artifacts/webchat-{label}.png"));
    page.screenshot(&screenshot).await;
    let delivered = eventually("the reply reported delivered", WAIT, || {
        let mut conversations = conversations.clone();
        let list = ListMessagesRequest { parent: offer.conversation.clone(), ..Default::default() };
        let name = sent.name.clone();
        async move {
            let messages = conversations.list_messages(authorized(ALICE, list)).await.ok()?.into_inner().messages;
            let reply = messages.into_iter().find(|message| message.name == name)?;
            (reply.delivery_state == DeliveryState::Delivered as i32).then_some(reply)
        }
    })
    .await;
    assert_eq!(delivered.author, "agents/alice");

    // A reload (or a dropped connection) loses nothing.
    page.reload().await;
    page.until("the chat online again", online).await;
    let restored = format!(
        "{inbound}.length === 2 && {outbound}.includes('Sorry about that! It ships today, tracking follows.')",
        inbound = bubbles("inbound"),
        outbound = bubbles("outbound")
    );
    page.until("the conversation after a reload", &restored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_chat_in_a_browser_on_switchboard_dev() {
    support::on_dev("webchat-dev", async |endpoints: &Endpoints, http_port| {
        chat_in_a_browser(endpoints, http_port, "dev").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_chat_in_a_browser_on_kafka_redis_postgres() {
    support::on_real_backends("webchat-real", async |endpoints: &Endpoints, http_port| {
        chat_in_a_browser(endpoints, http_port, "real").await;
    })
    .await;
}
