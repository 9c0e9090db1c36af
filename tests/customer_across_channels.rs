//! One customer across three channels, through the public interfaces only
//! (the heart of the brief): Ann chats on the website and types her e-mail
//! address; the agent's desktop attaches it to her customer. She e-mails
//! the next day and gives her phone number, which is attached too; then she
//! calls. CRM keeps one customer with one timeline of the three contacts,
//! on three channels.
//!
//! Run twice: on `switchboard dev` and on five `switchboard <service>`
//! processes against real Kafka, Redis and PostgreSQL.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use support::{Endpoints, authorized, eventually};
use switchboard_core::identity::identity_to_proto;
use switchboard_ingestion::channels::{social, web_chat};
use switchboard_proto::common::v1::{Channel as ChannelKind, CustomerIdentity, IdentityKind};
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::crm::v1::{AddCustomerIdentityRequest, ListTimelineEntriesRequest, ResolveCustomerRequest};
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::ingestion::v1::{Channel, CreateChannelRequest, CtiSettings, EmailSettings, WebChatSettings};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue};
use tokio_tungstenite::tungstenite::Message as Frame;

const ACME_ADMIN: &str = "dev-acme-admin";
const SECRET: &str = "e2e-signing-secret";
const VISITOR: &str = "ann-visitor-token-0001";
const WAIT: Duration = Duration::from_secs(60);

async fn prepare(endpoints: &Endpoints) {
    let mut routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    let queue = Queue { display_name: "Everything".to_owned(), ..Queue::default() };
    let request =
        CreateQueueRequest { parent: "tenants/acme".to_owned(), queue_id: "everything".to_owned(), queue: Some(queue) };
    routing.create_queue(authorized(ACME_ADMIN, request)).await.expect("queue");
    let mut channels = ChannelServiceClient::new(endpoints.channel("ingestion").await);
    let providers = [
        ("e2e-site", Provider::WebChat(WebChatSettings::default())),
        (
            "e2e-mail",
            Provider::Email(EmailSettings {
                address: "support@acme.example".to_owned(),
                signing_secret: SECRET.to_owned(),
                ..EmailSettings::default()
            }),
        ),
        ("e2e-pbx", Provider::Cti(CtiSettings { signing_secret: SECRET.to_owned(), ..CtiSettings::default() })),
    ];
    for (channel_id, provider) in providers {
        let channel = Channel {
            queue: "tenants/acme/queues/everything".to_owned(),
            provider: Some(provider),
            ..Channel::default()
        };
        let request = CreateChannelRequest {
            parent: "tenants/acme".to_owned(),
            channel_id: channel_id.to_owned(),
            channel: Some(channel),
        };
        channels.create_channel(authorized(ACME_ADMIN, request)).await.expect("channel");
    }
}

/// A signed POST to a channel's webhook; fails the test unless 200.
async fn post_signed(http_port: u16, channel: &str, body: &str) {
    let signature = social::signature(SECRET, body.as_bytes()).unwrap();
    let headers = [("x-switchboard-signature", signature.as_str())];
    let address = format!("127.0.0.1:{http_port}").parse().unwrap();
    let path = format!("/webhooks/acme/{channel}");
    let answer = switchboard_test_support::http_request(address, "POST", &path, &headers, body.as_bytes()).await;
    let answer = answer.unwrap();
    assert_eq!(answer.status, 200, "{channel}: {answer:?}");
}

/// Ann's customer, once CRM has taken in the contact of `identity`.
async fn customer_of(crm: &CrmServiceClient<tonic::transport::Channel>, identity: CustomerIdentity) -> String {
    eventually("CRM knows the sender", WAIT, || {
        let mut crm = crm.clone();
        let request = ResolveCustomerRequest {
            parent: "tenants/acme".to_owned(),
            identity: Some(identity.clone()),
            display_name: String::new(),
        };
        async move {
            let resolved = crm.resolve_customer(authorized(ACME_ADMIN, request)).await.ok()?.into_inner();
            (!resolved.created).then_some(resolved.customer?.name)
        }
    })
    .await
}

async fn attach(
    crm: &mut CrmServiceClient<tonic::transport::Channel>,
    customer: &str,
    kind: IdentityKind,
    value: &str,
) {
    let identity = CustomerIdentity { kind: kind as i32, value: value.to_owned() };
    let request = AddCustomerIdentityRequest { customer: customer.to_owned(), identity: Some(identity) };
    crm.add_customer_identity(authorized(ACME_ADMIN, request)).await.expect("identity attached");
}

async fn one_customer_three_channels(endpoints: &Endpoints, http_port: u16) {
    prepare(endpoints).await;
    let mut crm = CrmServiceClient::new(endpoints.channel("crm").await);

    // Day 1: Ann chats on the website.
    let url = format!("ws://127.0.0.1:{http_port}/webchat/acme/e2e-site/ws");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("chat socket");
    let hello = json!({"type": "hello", "visitor": VISITOR, "name": "Ann"});
    socket.send(Frame::Text(hello.to_string().into())).await.unwrap();
    let message = json!({"type": "message", "id": "m-1", "text": "Hi, my parcel is late. I'm ann@example.com"});
    socket.send(Frame::Text(message.to_string().into())).await.unwrap();
    let acknowledged = tokio::time::timeout(WAIT, async {
        while let Some(Ok(frame)) = socket.next().await {
            if let Frame::Text(text) = frame
                && text.contains(r#""type":"ack""#)
            {
                return;
            }
        }
        panic!("the chat closed before its ack");
    });
    acknowledged.await.expect("the chat message acknowledged");
    let customer = customer_of(&crm, identity_to_proto(&web_chat::visitor_identity(VISITOR))).await;
    // The agent's desktop attaches the address she typed.
    attach(&mut crm, &customer, IdentityKind::Email, "Ann@Example.com").await;

    // Day 2: she e-mails, and gives her phone number.
    let mail = "From: Ann <ann@example.com>\r\nTo: support@acme.example\r\nMessage-ID: <day2@example.com>\r\n\
                Subject: Still no parcel\r\n\r\nCall me on +1 555 010 0077.\r\n";
    post_signed(http_port, "e2e-mail", mail).await;
    let by_mail =
        customer_of(&crm, CustomerIdentity { kind: IdentityKind::Email as i32, value: "ann@example.com".to_owned() });
    assert_eq!(by_mail.await, customer, "the address she typed in the chat is the same customer");
    attach(&mut crm, &customer, IdentityKind::Phone, "+1 555 010 0077").await;

    // Day 3: she calls.
    post_signed(
        http_port,
        "e2e-pbx",
        &json!({"event": "new_call", "call_id": "ann-1", "from": "+15550100077"}).to_string(),
    )
    .await;
    post_signed(http_port, "e2e-pbx", &json!({"event": "queued", "call_id": "ann-1"}).to_string()).await;

    let channels = eventually("three contacts on one timeline", WAIT, || {
        let mut crm = crm.clone();
        let request = ListTimelineEntriesRequest { parent: customer.clone(), page_size: 10, page_token: String::new() };
        async move {
            let entries = crm.list_timeline_entries(authorized(ACME_ADMIN, request)).await.ok()?.into_inner().entries;
            let mut channels: Vec<i32> = entries.iter().map(|entry| entry.channel).collect();
            channels.sort_unstable();
            (channels.len() == 3).then_some(channels)
        }
    })
    .await;
    let mut expected = vec![ChannelKind::Chat as i32, ChannelKind::Email as i32, ChannelKind::Voice as i32];
    expected.sort_unstable();
    assert_eq!(channels, expected, "chat, e-mail and a call: one customer, one timeline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_customer_through_chat_mail_and_a_call_on_switchboard_dev() {
    support::on_dev("across-dev", one_customer_three_channels).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_customer_through_chat_mail_and_a_call_on_kafka_redis_postgres() {
    support::on_real_backends("across-real", one_customer_three_channels).await;
}
