//! Replies to customers, from outside: a customer writes through a
//! provider's webhook, an agent (or a tenant admin) replies with
//! `SendMessage`, and the connector calls a local HTTP server standing in
//! for the provider's API, which checks the request's shape and
//! credentials. Retries, refusals, delivery reports and who may reply.

// Test code: a broken expectation panics, which is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared by the test binaries of this crate; each uses a part of it.
#[allow(dead_code)]
mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use support::*;
use switchboard_ingestion::channels::twilio;
use switchboard_proto::common::v1::Channel as ChannelKind;
use switchboard_proto::common::v1::ContactStatus;
use switchboard_proto::common::v1::{CustomerIdentity, IdentityKind};
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::{
    Channel, ContactEvent, Conversation, CreateChannelRequest, DeliveryState, ListConversationsRequest,
    ListMessagesRequest, Message, SendMessageRequest, StartConversationRequest, TelegramSettings, TwilioSettings,
    contact_event,
};
use switchboard_test_support::{error_reason, http_request, violated_fields};
use tonic::Code;

const PATIENCE: Duration = Duration::from_secs(20);
const BOT_TOKEN: &str = "4242:bot-token";

/// The provider API stand-in: records every request and answers with the
/// queued answers, then with `default_answer`.
#[derive(Default)]
struct ProviderStub {
    requests: Mutex<Vec<(String, HeaderMap, String)>>,
    answers: Mutex<VecDeque<(u16, String)>>,
}

async fn stub_endpoint(
    State(stub): State<Arc<ProviderStub>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    stub.requests.lock().unwrap().push((format!("/{path}"), headers, body));
    let answer = stub.answers.lock().unwrap().pop_front();
    let (status, body) = answer.unwrap_or((
        200,
        r#"{"ok":true,"result":{"message_id":901,"chat":{"id":777,"type":"private"},"date":1}}"#.to_owned(),
    ));
    (StatusCode::from_u16(status).unwrap(), body)
}

async fn start_stub() -> (Arc<ProviderStub>, String) {
    let stub = Arc::new(ProviderStub::default());
    let router = axum::Router::new().route("/{*path}", post(stub_endpoint)).with_state(Arc::clone(&stub));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (stub, format!("http://{address}"))
}

async fn telegram_channel(harness: &mut Harness, api_base_url: &str) {
    let channel = Channel {
        queue: SUPPORT_QUEUE.to_owned(),
        provider: Some(Provider::Telegram(TelegramSettings {
            api_base_url: api_base_url.to_owned(),
            bot_token: BOT_TOKEN.to_owned(),
            webhook_secret: "hook_secret".to_owned(),
        })),
        ..Channel::default()
    };
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: "bot".to_owned(),
        channel: Some(channel),
    };
    harness.channels.create_channel(authed(request, ACME_ADMIN_KEY)).await.unwrap();
}

/// A Telegram customer (user 777) writes; returns the conversation.
async fn customer_writes(harness: &mut Harness, text: &str, message_id: i64) -> Conversation {
    let update = serde_json::json!({"update_id": message_id, "message": {"message_id": message_id, "date": 1767225600,
        "text": text, "from": {"id": 777, "first_name": "Ann"}, "chat": {"id": 777, "type": "private"}}})
    .to_string();
    let headers = [("x-telegram-bot-api-secret-token", "hook_secret")];
    let answer = http_request(harness.http, "POST", "/webhooks/acme/bot", &headers, update.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let request = ListConversationsRequest { parent: "tenants/acme".to_owned(), ..Default::default() };
    let conversations = harness.conversations.list_conversations(authed(request, ACME_ADMIN_KEY)).await.unwrap();
    conversations.into_inner().conversations.remove(0)
}

fn send(conversation: &Conversation, text: &str, request_id: &str) -> SendMessageRequest {
    SendMessageRequest { parent: conversation.name.clone(), text: text.to_owned(), request_id: request_id.to_owned() }
}

async fn messages(harness: &mut Harness, conversation: &Conversation, key: &str) -> Vec<Message> {
    let request = ListMessagesRequest { parent: conversation.name.clone(), ..Default::default() };
    harness.conversations.list_messages(authed(request, key)).await.unwrap().into_inner().messages
}

/// Waits until the message `name` reaches `state`, failing after PATIENCE.
async fn until_state(harness: &mut Harness, conversation: &Conversation, name: &str, state: DeliveryState) -> Message {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let found =
            messages(harness, conversation, ACME_ADMIN_KEY).await.into_iter().find(|message| message.name == name);
        if let Some(message) = found.filter(|message| message.delivery_state == state as i32) {
            return message;
        }
        assert!(tokio::time::Instant::now() < deadline, "message {name} never reached {state:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_agents_reply_reaches_the_provider_once_and_reports_its_state() {
    let mut harness = Harness::start().await;
    let (stub, stub_url) = start_stub().await;
    telegram_channel(&mut harness, &stub_url).await;
    let conversation = customer_writes(&mut harness, "Where is my order?", 1).await;
    harness
        .routing
        .assignment_status_by_contact
        .lock()
        .unwrap()
        .insert(conversation.contact.clone(), ContactStatus::Answered);
    harness
        .routing
        .assignment_agent_by_contact
        .lock()
        .unwrap()
        .insert(conversation.contact.clone(), "agents/alice".to_owned());

    let history = messages(&mut harness, &conversation, ALICE_KEY).await;
    assert_eq!(history.len(), 1, "the handling agent reads the conversation");
    let queued = harness.conversations.send_message(authed(send(&conversation, "On its way!", "r-1"), ALICE_KEY)).await;
    let queued = queued.unwrap().into_inner();
    assert_eq!(queued.delivery_state, DeliveryState::Queued as i32);
    assert_eq!(queued.author, "agents/alice");
    let sent = until_state(&mut harness, &conversation, &queued.name, DeliveryState::Sent).await;
    assert_eq!(sent.provider_message_id, "bot/777:901");

    let retried =
        harness.conversations.send_message(authed(send(&conversation, "On its way!", "r-1"), ALICE_KEY)).await;
    assert_eq!(retried.unwrap().into_inner().name, queued.name, "a retry is the same message");
    let reused = harness.conversations.send_message(authed(send(&conversation, "Other text", "r-1"), ALICE_KEY)).await;
    assert_eq!(error_reason(&reused.unwrap_err()).as_deref(), Some("REQUEST_ID_REUSED"));
    let requests = stub.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "sent once: {requests:?}");
    let (path, headers, body) = &requests[0];
    assert_eq!(path, &format!("/bot{BOT_TOKEN}/sendMessage"));
    assert_eq!(headers.get("content-type").and_then(|value| value.to_str().ok()), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!((body["chat_id"].as_str(), body["text"].as_str()), (Some("777"), Some("On its way!")));
    let texts: Vec<String> =
        messages(&mut harness, &conversation, ALICE_KEY).await.into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["Where is my order?", "On its way!"], "the conversation holds both sides");
}

#[tokio::test]
async fn transient_failures_are_retried_and_refusals_fail_with_the_providers_reason() {
    let mut harness = Harness::start().await;
    let (stub, stub_url) = start_stub().await;
    telegram_channel(&mut harness, &stub_url).await;
    let conversation = customer_writes(&mut harness, "Hello?", 1).await;
    stub.answers.lock().unwrap().push_back((503, "upstream busy".to_owned()));
    let reply = harness.conversations.send_message(authed(send(&conversation, "Hi!", "r-1"), ACME_ADMIN_KEY)).await;
    let reply = reply.unwrap().into_inner();
    assert_eq!(reply.author, "keys/acme-admin", "a tenant admin may write to the customer");
    until_state(&mut harness, &conversation, &reply.name, DeliveryState::Sent).await;
    assert_eq!(stub.requests.lock().unwrap().len(), 2, "one failed attempt, one retry");

    stub.answers.lock().unwrap().push_back((
        403,
        r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#.to_owned(),
    ));
    let blocked =
        harness.conversations.send_message(authed(send(&conversation, "Still there?", "r-2"), ACME_ADMIN_KEY)).await;
    let blocked = blocked.unwrap().into_inner();
    let failed = until_state(&mut harness, &conversation, &blocked.name, DeliveryState::Failed).await;
    assert_eq!(failed.failure_reason, "HTTP 403: Forbidden: bot was blocked by the user");
    assert_eq!(stub.requests.lock().unwrap().len(), 3, "a refusal is not retried");
}

#[tokio::test]
async fn only_the_handling_agent_reads_and_replies() {
    let mut harness = Harness::start().await;
    let (_stub, stub_url) = start_stub().await;
    telegram_channel(&mut harness, &stub_url).await;
    let conversation = customer_writes(&mut harness, "Hello?", 1).await;
    let list = |key: &'static str| {
        let mut client = harness.conversations.clone();
        let request = ListMessagesRequest { parent: conversation.name.clone(), ..Default::default() };
        async move { client.list_messages(authed(request, key)).await }
    };
    assert_eq!(list(ALICE_KEY).await.unwrap_err().code(), Code::NotFound, "not offered to alice: invisible");

    harness
        .routing
        .assignment_status_by_contact
        .lock()
        .unwrap()
        .insert(conversation.contact.clone(), ContactStatus::Offered);
    harness
        .routing
        .assignment_agent_by_contact
        .lock()
        .unwrap()
        .insert(conversation.contact.clone(), "agents/alice".to_owned());
    assert!(list(ALICE_KEY).await.is_ok(), "offered to alice: she reads the history before accepting");
    assert_eq!(list(BOB_KEY).await.unwrap_err().code(), Code::NotFound, "bob sees nothing");
    let early = harness.conversations.send_message(authed(send(&conversation, "Hi", "r-1"), ALICE_KEY)).await;
    let early = early.unwrap_err();
    assert_eq!(
        (early.code(), error_reason(&early).as_deref()),
        (Code::FailedPrecondition, Some("NOT_ASSIGNED_TO_AGENT"))
    );
    let reader = harness.conversations.send_message(authed(send(&conversation, "Hi", "r-1"), ACME_READER_KEY)).await;
    assert_eq!(reader.unwrap_err().code(), Code::PermissionDenied, "a reader does not write");
    let other = harness.conversations.send_message(authed(send(&conversation, "Hi", "r-1"), GLOBEX_ADMIN_KEY)).await;
    assert_eq!(other.unwrap_err().code(), Code::PermissionDenied, "another tenant does not write");
    let empty = harness.conversations.send_message(authed(send(&conversation, " ", ""), ACME_ADMIN_KEY)).await;
    assert_eq!(switchboard_test_support::violated_fields(&empty.unwrap_err()), ["text", "request_id"]);
    assert_eq!(messages(&mut harness, &conversation, ACME_ADMIN_KEY).await.len(), 1, "nothing was sent");
}

#[tokio::test]
async fn twilio_delivery_reports_move_a_reply_on() {
    let mut harness = Harness::start().await;
    let (stub, stub_url) = start_stub().await;
    stub.answers
        .lock()
        .unwrap()
        .push_back((201, r#"{"sid":"SMreply0000000000000000000000001","status":"queued"}"#.to_owned()));
    let channel = Channel {
        queue: SUPPORT_QUEUE.to_owned(),
        provider: Some(Provider::Twilio(TwilioSettings {
            account_sid: "AC0123".to_owned(),
            from: "+15551230000".to_owned(),
            api_base_url: stub_url,
            auth_token: "twilio-token".to_owned(),
        })),
        ..Channel::default()
    };
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: "sms".to_owned(),
        channel: Some(channel),
    };
    harness.channels.create_channel(authed(request, ACME_ADMIN_KEY)).await.unwrap();
    let address = harness.http;
    let post = |fields: Vec<(&'static str, &'static str)>| async move {
        let fields: Vec<(String, String)> = fields.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let url = format!("{PUBLIC_BASE_URL}/webhooks/acme/sms");
        let signature = twilio::signature("twilio-token", &url, &fields).unwrap();
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
        let headers = [("x-twilio-signature", signature.as_str())];
        http_request(address, "POST", "/webhooks/acme/sms", &headers, body.as_bytes()).await.unwrap()
    };
    let inbound = vec![("MessageSid", "SMin1"), ("From", "+15558675310"), ("To", "+15551230000"), ("Body", "Hi")];
    assert_eq!(post(inbound).await.status, 200);
    let request = ListConversationsRequest { parent: "tenants/acme".to_owned(), ..Default::default() };
    let conversation = harness.conversations.list_conversations(authed(request, ACME_ADMIN_KEY)).await.unwrap();
    let conversation = conversation.into_inner().conversations.remove(0);
    let reply =
        harness.conversations.send_message(authed(send(&conversation, "Hello Ann", "r-1"), ACME_ADMIN_KEY)).await;
    let reply = reply.unwrap().into_inner();
    until_state(&mut harness, &conversation, &reply.name, DeliveryState::Sent).await;
    let (path, headers, body) = stub.requests.lock().unwrap()[0].clone();
    assert_eq!(path, "/2010-04-01/Accounts/AC0123/Messages.json");
    assert_eq!(
        headers.get("authorization").and_then(|value| value.to_str().ok()),
        Some("Basic QUMwMTIzOnR3aWxpby10b2tlbg==")
    );
    let form = twilio::form_parameters(body.as_bytes());
    assert!(
        form.contains(&("To".to_owned(), "+15558675310".to_owned()))
            && form.contains(&("Body".to_owned(), "Hello Ann".to_owned()))
    );

    let report = vec![("MessageSid", "SMreply0000000000000000000000001"), ("MessageStatus", "delivered")];
    assert_eq!(post(report).await.status, 200);
    until_state(&mut harness, &conversation, &reply.name, DeliveryState::Delivered).await;
    let stale = vec![("MessageSid", "SMreply0000000000000000000000001"), ("MessageStatus", "sent")];
    assert_eq!(post(stale).await.status, 200);
    let kept = messages(&mut harness, &conversation, ACME_ADMIN_KEY).await;
    assert_eq!(kept[1].delivery_state, DeliveryState::Delivered as i32, "a late report never moves it back");
}

#[tokio::test]
async fn the_contact_center_writes_first_and_the_customers_answer_joins_that_conversation() {
    let mut harness = Harness::start().await;
    let (stub, stub_url) = start_stub().await;
    telegram_channel(&mut harness, &stub_url).await;
    let start = |customer: CustomerIdentity, request_id: &str| StartConversationRequest {
        channel: "tenants/acme/channels/bot".to_owned(),
        customer: Some(customer),
        text: "Your callback is booked for 10:00.".to_owned(),
        request_id: request_id.to_owned(),
    };
    let ann = CustomerIdentity { kind: IdentityKind::Messenger as i32, value: "telegram:777".to_owned() };
    let first = harness.conversations.start_conversation(authed(start(ann.clone(), "remind-1"), ACME_ADMIN_KEY)).await;
    let first = first.unwrap().into_inner();
    assert_eq!((first.delivery_state, first.author.as_str()), (DeliveryState::Queued as i32, "keys/acme-admin"));
    // Published at once though no contact exists yet (usage meters it),
    // keyed by its conversation.
    let published = harness.next_event().await;
    let Some(Payload::Contact(ContactEvent { kind: Some(contact_event::Kind::MessageAdded(added)) })) =
        published.payload
    else {
        panic!("a MessageAdded: {published:?}");
    };
    let message = added.message.expect("the message");
    assert_eq!((added.contact.as_str(), message.name.as_str()), ("", first.name.as_str()));
    assert_eq!(added.channel_kind, ChannelKind::Messenger as i32);
    assert_eq!(published.subject, added.conversation.rsplit('/').next().unwrap(), "keyed by the conversation");
    let again = harness.conversations.start_conversation(authed(start(ann.clone(), "remind-1"), ACME_ADMIN_KEY)).await;
    assert_eq!(again.unwrap().into_inner().name, first.name, "a retry is the same message");

    let request = ListConversationsRequest { parent: "tenants/acme".to_owned(), ..Default::default() };
    let listed = harness.conversations.list_conversations(authed(request, ACME_ADMIN_KEY)).await.unwrap();
    let conversation = listed.into_inner().conversations.remove(0);
    assert!(conversation.contact.is_empty(), "nothing to route until the customer answers");
    until_state(&mut harness, &conversation, &first.name, DeliveryState::Sent).await;
    let requests = stub.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "sent once: {requests:?}");
    let body: serde_json::Value = serde_json::from_str(&requests[0].2).unwrap();
    assert_eq!(body["chat_id"].as_str(), Some("777"));

    // Ann answers: her message joins that conversation, which now gets a contact.
    let answered = customer_writes(&mut harness, "Perfect, thanks", 5).await;
    assert_eq!(answered.name, conversation.name);
    assert!(answered.contact.starts_with("tenants/acme/contacts/"), "{answered:?}");

    let phone = CustomerIdentity { kind: IdentityKind::Phone as i32, value: "+15550100".to_owned() };
    let wrong_kind = harness.conversations.start_conversation(authed(start(phone, "remind-2"), ACME_ADMIN_KEY)).await;
    let wrong_kind = wrong_kind.unwrap_err();
    assert_eq!((wrong_kind.code(), violated_fields(&wrong_kind)), (Code::InvalidArgument, vec!["customer".to_owned()]));
    let reader =
        harness.conversations.start_conversation(authed(start(ann.clone(), "remind-3"), ACME_READER_KEY)).await;
    assert_eq!(reader.unwrap_err().code(), Code::PermissionDenied);
    let other_tenant = harness.conversations.start_conversation(authed(start(ann, "remind-4"), GLOBEX_ADMIN_KEY)).await;
    assert_eq!(other_tenant.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(stub.requests.lock().unwrap().len(), 1, "refusals sent nothing");
}

/// A tenant admin writes channel settings: without
/// `allow_private_destinations` they cannot make ingestion reach the
/// deployment's own network (an SSRF found from outside: a Telegram
/// `api_base_url` on loopback had its reply echoed in `failure_reason`).
#[tokio::test]
async fn channel_settings_cannot_name_internal_addresses() {
    let mut harness = Harness::start_with(|config| config.ingestion.allow_private_destinations = false).await;
    let internal = [
        ("telegram", "http://127.0.0.1:8080/internal-admin"),
        ("telegram", "http://169.254.169.254/latest"),
        ("telegram", "http://[::ffff:10.0.0.7]/"),
        ("twilio", "http://192.168.1.10"),
    ];
    for (provider, url) in internal {
        let provider_settings = match provider {
            "telegram" => Provider::Telegram(TelegramSettings {
                api_base_url: url.to_owned(),
                bot_token: BOT_TOKEN.to_owned(),
                webhook_secret: "hook_secret".to_owned(),
            }),
            _ => Provider::Twilio(TwilioSettings {
                account_sid: "AC123".to_owned(),
                from: "+15550100".to_owned(),
                api_base_url: url.to_owned(),
                auth_token: "token".to_owned(),
            }),
        };
        let channel =
            Channel { queue: SUPPORT_QUEUE.to_owned(), provider: Some(provider_settings), ..Channel::default() };
        let request = CreateChannelRequest {
            parent: "tenants/acme".to_owned(),
            channel_id: "internal".to_owned(),
            channel: Some(channel),
        };
        let refused = harness.channels.create_channel(authed(request, ACME_ADMIN_KEY)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{url}: {refused:?}");
        assert_eq!(violated_fields(&refused), [format!("channel.{provider}.api_base_url")], "{url}");
    }
}

#[tokio::test]
async fn a_provider_name_that_resolves_to_loopback_is_never_connected() {
    let mut harness = Harness::start_with(|config| config.ingestion.allow_private_destinations = false).await;
    let (stub, stub_url) = start_stub().await;
    // A name, not an address: accepted as written, refused where it resolves.
    let by_name = stub_url.replace("127.0.0.1", "localhost");
    telegram_channel(&mut harness, &by_name).await;
    let conversation = customer_writes(&mut harness, "Hello?", 1).await;
    let reply = harness.conversations.send_message(authed(send(&conversation, "Hi!", "r-1"), ACME_ADMIN_KEY)).await;
    let failed =
        until_state(&mut harness, &conversation, &reply.unwrap().into_inner().name, DeliveryState::Failed).await;
    assert!(failed.failure_reason.contains("not a public address"), "{}", failed.failure_reason);
    assert!(stub.requests.lock().unwrap().is_empty(), "the internal address heard nothing");
}
