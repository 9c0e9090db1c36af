//! Customers' messages through providers' webhooks, end to end through the
//! public interfaces only: a tenant admin creates a queue and channels
//! (Twilio SMS, WhatsApp Cloud, Telegram) with the gRPC API, providers post
//! signed requests over HTTP; a customer's messages make one conversation
//! whose contact routing queues and CRM attaches to a customer. Forged, redelivered and
//! cross-tenant requests change nothing.
//!
//! Run twice: on `switchboard dev` and on five `switchboard <service>`
//! processes against real Kafka, Redis and PostgreSQL.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::{Endpoints, Process, authorized, eventually, free_port, scratch_dir, wait_until_ready};
use switchboard_ingestion::channels::{meta, twilio};
use switchboard_proto::common::v1::Channel as ChannelKind;
use switchboard_proto::common::v1::{CustomerIdentity, IdentityKind};
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::crm::v1::{AddCustomerIdentityRequest, ListTimelineEntriesRequest, ResolveCustomerRequest};
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::ingestion::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{
    Channel, Contact, CreateChannelRequest, ListContactsRequest, ListMessagesRequest, MetaProduct, MetaSettings,
    TelegramSettings, TwilioSettings,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, GetAssignmentRequest, Queue};
use switchboard_test_support::http_request;

const ACME_ADMIN: &str = "dev-acme-admin";
const PUBLIC_BASE_URL: &str = "https://switchboard.example.com";
const WAIT: Duration = Duration::from_secs(60);

/// The environment that puts ingestion's HTTP server on `http_port` behind
/// the public URL providers sign.
fn webhook_env(endpoints: &Endpoints, http_port: u16) -> Vec<(String, String)> {
    let mut env = support::ingestion_http_env(endpoints, http_port);
    env.push(("SWITCHBOARD_INGESTION__PUBLIC_BASE_URL".to_owned(), PUBLIC_BASE_URL.to_owned()));
    env
}

async fn create_channel(endpoints: &Endpoints, channel_id: &str, provider: Provider) {
    let mut channels = ChannelServiceClient::new(endpoints.channel("ingestion").await);
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: channel_id.to_owned(),
        channel: Some(Channel {
            display_name: channel_id.to_owned(),
            queue: "tenants/acme/queues/inbox".to_owned(),
            provider: Some(provider),
            ..Channel::default()
        }),
    };
    let created = channels.create_channel(authorized(ACME_ADMIN, request)).await.expect("channel created");
    assert_eq!(created.into_inner().webhook_url, format!("{PUBLIC_BASE_URL}/webhooks/acme/{channel_id}"));
}

async fn acme_contacts(endpoints: &Endpoints) -> Vec<Contact> {
    let mut ingestion = IngestionServiceClient::new(endpoints.channel("ingestion").await);
    let request = ListContactsRequest { parent: "tenants/acme".to_owned(), page_size: 100, page_token: String::new() };
    ingestion.list_contacts(authorized(ACME_ADMIN, request)).await.expect("contacts listed").into_inner().contacts
}

/// The one contact of acme that came through channel `channel_id`, once
/// routing has queued it.
async fn routed_contact(endpoints: &Endpoints, channel_id: &str) -> Contact {
    let contacts = acme_contacts(endpoints).await;
    let matching: Vec<&Contact> = contacts
        .iter()
        .filter(|contact| contact.attributes.get("channel").map(String::as_str) == Some(channel_id))
        .collect();
    assert_eq!(matching.len(), 1, "one contact for {channel_id}: {contacts:?}");
    let contact = matching[0].clone();
    let routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    eventually("routing queues the contact", WAIT, || {
        let request = GetAssignmentRequest { contact: contact.name.clone() };
        let mut routing = routing.clone();
        async move { routing.get_assignment(authorized(ACME_ADMIN, request)).await.ok() }
    })
    .await;
    contact
}

/// The texts of the messages of the conversation `contact` was made for.
async fn conversation_texts(endpoints: &Endpoints, contact: &Contact) -> Vec<String> {
    let conversation = contact.attributes.get("conversation").expect("the contact names its conversation");
    let mut conversations = ConversationServiceClient::new(endpoints.channel("ingestion").await);
    let request = ListMessagesRequest { parent: conversation.clone(), page_size: 10, ..Default::default() };
    let messages = conversations.list_messages(authorized(ACME_ADMIN, request)).await.expect("messages");
    messages.into_inner().messages.into_iter().map(|message| message.text).collect()
}

async fn webhooks_make_routed_contacts(endpoints: &Endpoints, http_port: u16) {
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
    let mut routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    let queue = CreateQueueRequest {
        parent: "tenants/acme".to_owned(),
        queue_id: "inbox".to_owned(),
        queue: Some(Queue { display_name: "Inbox".to_owned(), ..Queue::default() }),
    };
    routing.create_queue(authorized(ACME_ADMIN, queue)).await.expect("queue created");
    create_channel(
        endpoints,
        "e2e-sms",
        Provider::Twilio(TwilioSettings {
            account_sid: "AC0123456789abcdef0123456789abcdef".to_owned(),
            from: "+15551230000".to_owned(),
            api_base_url: String::new(),
            auth_token: "twilio-token".to_owned(),
        }),
    )
    .await;
    create_channel(
        endpoints,
        "e2e-whatsapp",
        Provider::Meta(MetaSettings {
            product: MetaProduct::Whatsapp as i32,
            phone_number_id: "106540352242922".to_owned(),
            api_base_url: String::new(),
            app_secret: "meta-secret".to_owned(),
            verify_token: "verify".to_owned(),
            access_token: "access".to_owned(),
        }),
    )
    .await;
    create_channel(
        endpoints,
        "e2e-telegram",
        Provider::Telegram(TelegramSettings {
            api_base_url: String::new(),
            bot_token: "1:bot".to_owned(),
            webhook_secret: "tg_secret".to_owned(),
        }),
    )
    .await;

    // SMS through Twilio, delivered twice.
    let fields: Vec<(String, String)> = [
        ("MessageSid", "SM00000000000000000000000000000001"),
        ("From", "+15558675310"),
        ("To", "+15551230000"),
        ("Body", "My parcel never arrived"),
        ("NumMedia", "0"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let signature =
        twilio::signature("twilio-token", &format!("{PUBLIC_BASE_URL}/webhooks/acme/e2e-sms"), &fields).unwrap();
    let form = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("x-twilio-signature", signature.as_str())];
    for delivery in 0..2 {
        let answer = http_request(http, "POST", "/webhooks/acme/e2e-sms", &headers, form.as_bytes()).await.unwrap();
        assert_eq!(answer.status, 200, "delivery {delivery}: {answer:?}");
    }
    let follow_up: Vec<(String, String)> = fields
        .iter()
        .map(|(name, value)| match name.as_str() {
            "MessageSid" => (name.clone(), "SM00000000000000000000000000000002".to_owned()),
            "Body" => (name.clone(), "Tracking number 1Z999".to_owned()),
            _ => (name.clone(), value.clone()),
        })
        .collect();
    let signature =
        twilio::signature("twilio-token", &format!("{PUBLIC_BASE_URL}/webhooks/acme/e2e-sms"), &follow_up).unwrap();
    let form_2 = form_urlencoded::Serializer::new(String::new()).extend_pairs(&follow_up).finish();
    let headers_2 = [("content-type", "application/x-www-form-urlencoded"), ("x-twilio-signature", signature.as_str())];
    let answer = http_request(http, "POST", "/webhooks/acme/e2e-sms", &headers_2, form_2.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let sms = routed_contact(endpoints, "e2e-sms").await;
    assert_eq!(sms.channel, ChannelKind::Sms as i32);
    assert_eq!(sms.body, "My parcel never arrived");
    assert_eq!(
        conversation_texts(endpoints, &sms).await,
        ["My parcel never arrived", "Tracking number 1Z999"],
        "one conversation, each message once"
    );

    // WhatsApp Cloud API.
    let payload = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {"metadata": {"display_phone_number": "15550783881"},
        "messages": [{"from": "15558675310", "id": "wamid.E2E1", "timestamp": "1767225600", "type": "text",
                      "text": {"body": "Any news on my parcel?"}}]}}]}]})
    .to_string();
    let signature = meta::signature("meta-secret", payload.as_bytes()).unwrap();
    let headers = [("content-type", "application/json"), ("x-hub-signature-256", signature.as_str())];
    let answer = http_request(http, "POST", "/webhooks/acme/e2e-whatsapp", &headers, payload.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let whatsapp = routed_contact(endpoints, "e2e-whatsapp").await;
    assert_eq!(whatsapp.channel, ChannelKind::Messenger as i32);

    // Telegram, with the wrong secret first.
    let update = serde_json::json!({"update_id": 7, "message": {"message_id": 3, "date": 1767225600,
        "text": "hello from telegram", "from": {"id": 777, "first_name": "Ann"}, "chat": {"id": 777, "type": "private"}}})
    .to_string();
    let forged = [("x-telegram-bot-api-secret-token", "guess")];
    let answer = http_request(http, "POST", "/webhooks/acme/e2e-telegram", &forged, update.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 401);
    let headers = [("x-telegram-bot-api-secret-token", "tg_secret")];
    let answer = http_request(http, "POST", "/webhooks/acme/e2e-telegram", &headers, update.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 200);
    let telegram = routed_contact(endpoints, "e2e-telegram").await;

    // The same phone on SMS and WhatsApp is one customer of acme, whose
    // timeline CRM builds from the events shows both contacts.
    let mut crm = CrmServiceClient::new(endpoints.channel("crm").await);
    let phone = CustomerIdentity { kind: IdentityKind::Phone as i32, value: "+15558675310".to_owned() };
    let resolve = ResolveCustomerRequest {
        parent: "tenants/acme".to_owned(),
        identity: Some(phone),
        display_name: String::new(),
    };
    let resolved = crm.resolve_customer(authorized(ACME_ADMIN, resolve)).await.expect("resolved").into_inner();
    let customer = resolved.customer.expect("a customer").name;
    let timeline = eventually("both contacts on the customer's timeline", WAIT, || {
        let mut crm = crm.clone();
        let request = ListTimelineEntriesRequest { parent: customer.clone(), page_size: 10, ..Default::default() };
        let expected = [sms.name.clone(), whatsapp.name.clone()];
        async move {
            let entries = crm.list_timeline_entries(authorized(ACME_ADMIN, request)).await.ok()?.into_inner().entries;
            let contacts: Vec<String> = entries.into_iter().map(|entry| entry.contact).collect();
            expected.iter().all(|contact| contacts.contains(contact)).then_some(contacts)
        }
    })
    .await;
    assert_eq!(timeline.len(), 2, "one phone, one customer, across channels: {timeline:?}");

    // The Telegram customer types a phone number in the chat; the agent's
    // desktop attaches it, and a text from that phone is the same customer.
    let telegram_customer = eventually("CRM knows the Telegram sender", WAIT, || {
        let mut crm = crm.clone();
        let handle = CustomerIdentity { kind: IdentityKind::Messenger as i32, value: "telegram:777".to_owned() };
        let request = ResolveCustomerRequest {
            parent: "tenants/acme".to_owned(),
            identity: Some(handle),
            display_name: String::new(),
        };
        async move {
            let resolved = crm.resolve_customer(authorized(ACME_ADMIN, request)).await.ok()?.into_inner();
            (!resolved.created).then_some(resolved.customer?.name)
        }
    })
    .await;
    let typed = CustomerIdentity { kind: IdentityKind::Phone as i32, value: "+1 555 000 1111".to_owned() };
    let attach = AddCustomerIdentityRequest { customer: telegram_customer.clone(), identity: Some(typed) };
    let attached = crm.add_customer_identity(authorized(ACME_ADMIN, attach)).await.expect("attached").into_inner();
    assert!(attached.identities.iter().any(|identity| identity.value == "+15550001111"), "{attached:?}");
    let texted: Vec<(String, String)> = [
        ("MessageSid", "SM00000000000000000000000000000009"),
        ("From", "+15550001111"),
        ("To", "+15551230000"),
        ("Body", "It's Ann from Telegram"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let signature =
        twilio::signature("twilio-token", &format!("{PUBLIC_BASE_URL}/webhooks/acme/e2e-sms"), &texted).unwrap();
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&texted).finish();
    let headers_3 = [("content-type", "application/x-www-form-urlencoded"), ("x-twilio-signature", signature.as_str())];
    let answer = http_request(http, "POST", "/webhooks/acme/e2e-sms", &headers_3, body.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let across = eventually("the Telegram and SMS contacts on one timeline", WAIT, || {
        let mut crm = crm.clone();
        let request =
            ListTimelineEntriesRequest { parent: telegram_customer.clone(), page_size: 10, ..Default::default() };
        let telegram_contact = telegram.name.clone();
        async move {
            let entries = crm.list_timeline_entries(authorized(ACME_ADMIN, request)).await.ok()?.into_inner().entries;
            let channels: Vec<i32> = entries.iter().map(|entry| entry.channel).collect();
            let has_telegram = entries.iter().any(|entry| entry.contact == telegram_contact);
            (has_telegram && channels.contains(&(ChannelKind::Sms as i32))).then_some(entries.len())
        }
    })
    .await;
    assert_eq!(across, 2, "one customer across Telegram and SMS");

    // Another tenant's path does not reach acme's channels.
    let answer = http_request(http, "POST", "/webhooks/globex/e2e-sms", &headers, form.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 404);
    assert_eq!(acme_contacts(endpoints).await.len(), 4, "four conversations, four contacts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_on_switchboard_dev() {
    let dir = scratch_dir("webhooks-dev");
    let endpoints = Endpoints::pick();
    let http_port = free_port();
    let mut processes = vec![Process::spawn("dev", &["dev"], &webhook_env(&endpoints, http_port), &dir)];
    wait_until_ready(&endpoints, &mut processes).await;
    webhooks_make_routed_contacts(&endpoints, http_port).await;
    let status = processes.pop().expect("dev process").terminate();
    assert!(status.success(), "switchboard dev exits cleanly on SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_on_kafka_redis_postgres() {
    let Some(real) = support::real_run("webhooks-real", 2_000).await else { return };
    let endpoints = Endpoints::pick();
    let http_port = free_port();
    let mut processes = real.spawn_services(&webhook_env(&endpoints, http_port));
    wait_until_ready(&endpoints, &mut processes).await;
    webhooks_make_routed_contacts(&endpoints, http_port).await;
    support::terminate_cleanly(processes);
}
