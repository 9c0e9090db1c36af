//! One customer across three channels, through the public interfaces only
//! (the heart of the brief): Ann e-mails once, then chats on the website
//! and types her e-mail address; Alice takes both, and attaching the
//! address to the chat's customer finds it taken by the customer of the
//! e-mail, so the two are merged. Ann e-mails again and gives her phone
//! number, which is attached too; then she calls. CRM keeps one customer
//! with one timeline of the four contacts, on three channels. The queue prefers a
//! customer's last agent and takes turns otherwise: Bob, never offered
//! anything, would be next, but Alice is offered Ann's e-mail and her call.
//! Offered the call, Alice reads Ann's timeline and her chat of day 1; Bob
//! can read neither.
//!
//! Run twice: on `switchboard dev` and on five `switchboard <service>`
//! processes against real Kafka, Redis and PostgreSQL.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use support::desktop::AgentDesktop;
use support::{Endpoints, authorized, eventually};
use switchboard_core::identity::identity_to_proto;
use switchboard_ingestion::channels::{social, web_chat};
use switchboard_proto::common::v1::ChannelCapacity;
use switchboard_proto::common::v1::{Channel as ChannelKind, CustomerIdentity, IdentityKind};
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::crm::v1::{
    AddCustomerIdentityRequest, GetCustomerRequest, ListTimelineEntriesRequest, MergeCustomersRequest,
    ResolveCustomerRequest, TimelineEntry,
};
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::ingestion::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::ingestion::v1::{
    Channel, CreateChannelRequest, CtiSettings, EmailSettings, ListMessagesRequest, WebChatSettings,
};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{Agent, AgentState, CreateAgentRequest, DeleteAgentRequest, Offer};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue, RoutingStrategy};
use tokio_tungstenite::tungstenite::Message as Frame;
use tonic::Code;
use tonic::transport::Channel as GrpcChannel;

const ACME_ADMIN: &str = "dev-acme-admin";
const OPERATOR: &str = "dev-operator-admin";
const ALICE: &str = "dev-agent-alice";
const BOB: &str = "dev-agent-bob";
const SECRET: &str = "e2e-signing-secret";
const VISITOR: &str = "ann-visitor-token-0001";
const WAIT: Duration = Duration::from_secs(60);

async fn prepare(endpoints: &Endpoints) {
    let mut presence = PresenceServiceClient::new(endpoints.channel("presence").await);
    for agent_id in ["alice", "bob"] {
        // `dev` has its own alice and bob.
        let name = format!("agents/{agent_id}");
        let _ = presence.delete_agent(authorized(OPERATOR, DeleteAgentRequest { name })).await;
        let agent = Agent {
            display_name: agent_id.to_owned(),
            tenants: vec!["tenants/acme".to_owned()],
            capacities: [ChannelKind::Chat, ChannelKind::Email, ChannelKind::Voice]
                .iter()
                .map(|channel| ChannelCapacity { channel: *channel as i32, max_concurrent: 1 })
                .collect(),
            ..Agent::default()
        };
        let request = CreateAgentRequest { agent_id: agent_id.to_owned(), agent: Some(agent) };
        presence.create_agent(authorized(OPERATOR, request)).await.expect("agent");
    }
    let mut routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    let queue = Queue {
        display_name: "Everything".to_owned(),
        strategy: RoutingStrategy::RoundRobin as i32,
        preferred_agent_window: Some(prost_types::Duration { seconds: 600, nanos: 0 }),
        // Longer than the test waits: an offer to the wrong agent is not
        // passed on to the right one in time.
        offer_timeout: Some(prost_types::Duration { seconds: 300, nanos: 0 }),
        ..Queue::default()
    };
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

/// The offer `desktop` gets next, accepted.
async fn take_next(desktop: &mut AgentDesktop, channel: ChannelKind) -> Offer {
    let offer = desktop.next_offer().await;
    assert_eq!(offer.channel, channel as i32, "{offer:?}");
    desktop.accept(&offer.contact).await;
    offer
}

/// Ann's timeline as `key` reads it, naming `contact`.
async fn timeline_as(
    crm: &CrmServiceClient<GrpcChannel>,
    key: &str,
    customer: &str,
    contact: &str,
) -> Result<Vec<TimelineEntry>, tonic::Status> {
    let request = ListTimelineEntriesRequest {
        parent: customer.to_owned(),
        page_size: 10,
        page_token: String::new(),
        contact: contact.to_owned(),
    };
    Ok(crm.clone().list_timeline_entries(authorized(key, request)).await?.into_inner().entries)
}

async fn one_customer_three_channels(endpoints: &Endpoints, http_port: u16) {
    prepare(endpoints).await;
    let mut crm = CrmServiceClient::new(endpoints.channel("crm").await);
    let conversations = ConversationServiceClient::new(endpoints.channel("ingestion").await);
    let mut alice = AgentDesktop::connect(endpoints.channel("presence").await, ALICE, "agents/alice").await;
    alice.set_state(AgentState::Available).await;

    // Day 0: Ann e-mails once; Alice takes it.
    let first_mail = "From: Ann <ann@example.com>\r\nTo: support@acme.example\r\nMessage-ID: <day0@example.com>\r\n\
                      Subject: Order 1234\r\n\r\nWhen will order 1234 ship?\r\n";
    post_signed(http_port, "e2e-mail", first_mail).await;
    let day0 = take_next(&mut alice, ChannelKind::Email).await;
    alice.complete(&day0.contact, "order-status", "").await;

    // Day 1: Ann chats on the website; Alice takes it.
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
    let chat = take_next(&mut alice, ChannelKind::Chat).await;
    let visitor = customer_of(&crm, identity_to_proto(&web_chat::visitor_identity(VISITOR))).await;
    assert_eq!(chat.customer, visitor, "the offer names the customer, resolved before routing");
    // Alice's desktop attaches the address she typed: it is the customer
    // of day 0 already, so the two are merged into that one.
    let typed = CustomerIdentity { kind: IdentityKind::Email as i32, value: "Ann@Example.com".to_owned() };
    let request = AddCustomerIdentityRequest { customer: visitor.clone(), identity: Some(typed) };
    let taken = crm.add_customer_identity(authorized(ACME_ADMIN, request)).await.expect_err("her address is known");
    assert_eq!(taken.code(), Code::FailedPrecondition, "{taken:?}");
    let customer = day0.customer.clone();
    assert_eq!(support::error_resource(&taken), Some(customer.clone()), "IDENTITY_TAKEN names her customer");
    let request = MergeCustomersRequest { customer: customer.clone(), merged_customer: visitor.clone() };
    crm.merge_customers(authorized(ACME_ADMIN, request)).await.expect("the visitor is ann");
    alice.complete(&chat.contact, "parcel-late", "").await;

    // Bob comes online: never offered anything, he is next in turn.
    let mut bob = AgentDesktop::connect(endpoints.channel("presence").await, BOB, "agents/bob").await;
    bob.set_state(AgentState::Available).await;

    // Day 2: she e-mails, and gives her phone number. Alice, her last
    // agent, is offered it.
    let mail = "From: Ann <ann@example.com>\r\nTo: support@acme.example\r\nMessage-ID: <day2@example.com>\r\n\
                Subject: Still no parcel\r\n\r\nCall me on +1 555 010 0077.\r\n";
    post_signed(http_port, "e2e-mail", mail).await;
    let email = take_next(&mut alice, ChannelKind::Email).await;
    assert_eq!(email.customer, customer, "the address she typed in the chat is the same customer");
    attach(&mut crm, &customer, IdentityKind::Phone, "+1 555 010 0077").await;
    alice.complete(&email.contact, "parcel-late", "").await;

    // Day 3: she calls; Alice is offered the call.
    post_signed(
        http_port,
        "e2e-pbx",
        &json!({"event": "new_call", "call_id": "ann-1", "from": "+15550100077"}).to_string(),
    )
    .await;
    post_signed(http_port, "e2e-pbx", &json!({"event": "queued", "call_id": "ann-1"}).to_string()).await;
    let call = alice.next_offer().await;
    assert_eq!((call.channel, call.customer.as_str()), (ChannelKind::Voice as i32, customer.as_str()), "{call:?}");

    // Offered the call, Alice reads Ann: her timeline on three channels...
    let entries = eventually("three contacts on one timeline", WAIT, || {
        let crm = crm.clone();
        let (customer, contact) = (customer.clone(), call.contact.clone());
        async move {
            let entries = timeline_as(&crm, ALICE, &customer, &contact).await.ok()?;
            // The chat and the e-mails were conversations; the call is not.
            let threads = entries.iter().filter(|entry| !entry.conversation.is_empty()).count();
            (entries.len() == 4 && threads == 3).then_some(entries)
        }
    })
    .await;
    let mut channels: Vec<i32> = entries.iter().map(|entry| entry.channel).collect();
    channels.sort_unstable();
    let mut expected =
        vec![ChannelKind::Chat as i32, ChannelKind::Email as i32, ChannelKind::Email as i32, ChannelKind::Voice as i32];
    expected.sort_unstable();
    assert_eq!(channels, expected, "two e-mails, a chat and a call: one customer, one timeline");
    let request = GetCustomerRequest { name: customer.clone(), contact: call.contact.clone() };
    let seen = crm.get_customer(authorized(ALICE, request)).await.expect("alice reads the caller").into_inner();
    assert_eq!(seen.identities.len(), 3, "e-mail, visitor and phone: {seen:?}");
    // ... and what she wrote in the chat of day 1.
    let chat_entry = entries.iter().find(|entry| entry.channel == ChannelKind::Chat as i32).unwrap();
    assert_eq!(chat_entry.conversation, chat.conversation, "the timeline links the chat's conversation");
    let read_chat = |key: &str, contact: &str| {
        let request = ListMessagesRequest {
            parent: chat.conversation.clone(),
            page_size: 10,
            page_token: String::new(),
            contact: contact.to_owned(),
        };
        let mut conversations = conversations.clone();
        let request = authorized(key, request);
        async move { conversations.list_messages(request).await }
    };
    // (The chat was the visitor's customer's, merged into hers since.)
    let messages = read_chat(ALICE, &call.contact).await.expect("alice reads the earlier chat").into_inner().messages;
    assert!(messages.iter().any(|message| message.text.contains("my parcel is late")), "{messages:?}");

    // Bob holds nothing of Ann's: neither her timeline nor her chat.
    let refused = timeline_as(&crm, BOB, &customer, &call.contact).await.expect_err("not bob's contact");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    let unnamed = timeline_as(&crm, BOB, &customer, "").await.expect_err("an agent names its contact");
    assert_eq!(unnamed.code(), Code::InvalidArgument, "{unnamed:?}");
    assert_eq!(support::violated_fields(&unnamed), ["contact"]);
    let refused = read_chat(BOB, &call.contact).await.expect_err("not bob's contact");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    // A contact Alice no longer holds opens nothing.
    let refused = timeline_as(&crm, ALICE, &customer, &chat.contact).await.expect_err("an ended contact");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
}

/// A customer who writes again right after the agent completed her
/// contact — before routing's event closed its conversation — gets a new
/// contact, not a line in one nobody holds.
async fn a_message_right_after_completion_opens_the_next_contact(endpoints: &Endpoints, http_port: u16) {
    prepare(endpoints).await;
    let mut alice = AgentDesktop::connect(endpoints.channel("presence").await, ALICE, "agents/alice").await;
    alice.set_state(AgentState::Available).await;
    let first = "From: Ann <ann@example.com>\r\nTo: support@acme.example\r\nMessage-ID: <first@example.com>\r\n\
                 Subject: Order 1234\r\n\r\nWhen will order 1234 ship?\r\n";
    post_signed(http_port, "e2e-mail", first).await;
    let offer = take_next(&mut alice, ChannelKind::Email).await;
    alice.complete(&offer.contact, "order-status", "").await;
    // At once, and threaded under the first mail.
    let again = "From: Ann <ann@example.com>\r\nTo: support@acme.example\r\nMessage-ID: <again@example.com>\r\n\
                 In-Reply-To: <first@example.com>\r\nSubject: Re: Order 1234\r\n\r\nAnd can I change the address?\r\n";
    post_signed(http_port, "e2e-mail", again).await;
    let next = take_next(&mut alice, ChannelKind::Email).await;
    assert_ne!(next.contact, offer.contact, "a new contact");
    assert_ne!(next.conversation, offer.conversation, "in a new conversation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_right_after_completion_opens_the_next_contact_on_switchboard_dev() {
    support::on_dev("after-completion-dev", a_message_right_after_completion_opens_the_next_contact).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_right_after_completion_opens_the_next_contact_on_kafka_redis_postgres() {
    support::on_real_backends("after-completion-real", a_message_right_after_completion_opens_the_next_contact).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_customer_through_chat_mail_and_a_call_on_switchboard_dev() {
    support::on_dev("across-dev", one_customer_three_channels).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_customer_through_chat_mail_and_a_call_on_kafka_redis_postgres() {
    support::on_real_backends("across-real", one_customer_three_channels).await;
}
