//! The channels `channel_webhooks.rs` leaves out, end to end through the
//! public interfaces only: a Messenger message and an Instagram direct
//! message (Meta's signed JSON), a WhatsApp message through Twilio, a
//! website's contact form (with a bot filling the honeypot), a signed
//! review, and an e-mail put in an IMAP mailbox that ingestion polls. Each
//! becomes one routed contact on its channel, from the sender's normalised
//! address, with its text in the contact's conversation.
//!
//! Run twice: on `switchboard dev` and on five `switchboard <service>`
//! processes against real Kafka, Redis and PostgreSQL. The mailbox is on the
//! test IMAP server (`scripts/test-env.sh`).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{Endpoints, authorized, eventually};
use switchboard_ingestion::channel_settings::{MailEndpoint, MailTls};
use switchboard_ingestion::channels::{meta, social, twilio};
use switchboard_ingestion::egress::Egress;
use switchboard_ingestion::mail;
use switchboard_proto::common::v1::Channel as ChannelKind;
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::ingestion::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{
    Channel, Contact, CreateChannelRequest, EmailSettings, ListContactsRequest, ListMessagesRequest, MailSecurity,
    MailServer, MetaProduct, MetaSettings, SocialSettings, TwilioSettings, WebFormSettings,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, GetAssignmentRequest, Queue};
use switchboard_test_support::{backend_url, http_request, unique_suffix};

const ACME_ADMIN: &str = "dev-acme-admin";
const META_SECRET: &str = "e2e-meta-app-secret";
const TWILIO_TOKEN: &str = "e2e-twilio-token";
const REVIEW_SECRET: &str = "e2e-review-secret";
const SITE: &str = "https://www.acme.example";
/// The test IMAP server takes any user name with this password.
const IMAP_PASSWORD: &str = "switchboard";
const WAIT: Duration = Duration::from_secs(60);

async fn create_channel(endpoints: &Endpoints, channel_id: &str, provider: Provider) {
    let mut channels = ChannelServiceClient::new(endpoints.channel("ingestion").await);
    let channel = Channel {
        display_name: channel_id.to_owned(),
        queue: "tenants/acme/queues/inbox".to_owned(),
        provider: Some(provider),
        ..Channel::default()
    };
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: channel_id.to_owned(),
        channel: Some(channel),
    };
    channels.create_channel(authorized(ACME_ADMIN, request)).await.expect("channel created");
}

fn meta(product: MetaProduct) -> Provider {
    Provider::Meta(MetaSettings {
        product: product as i32,
        app_secret: META_SECRET.to_owned(),
        verify_token: "verify".to_owned(),
        access_token: "access".to_owned(),
        ..MetaSettings::default()
    })
}

/// A POST to a channel's webhook; fails the test unless it answers `status`.
async fn post(http: SocketAddr, channel_id: &str, headers: &[(&str, &str)], body: &str, status: u16) {
    let path = format!("/webhooks/acme/{channel_id}");
    let answer = http_request(http, "POST", &path, headers, body.as_bytes()).await.unwrap();
    assert_eq!(answer.status, status, "{channel_id}: {answer:?}");
}

/// The contacts of acme that came through `channel_id`, once there are
/// `count` and routing knows each.
async fn routed_contacts(endpoints: &Endpoints, channel_id: &str, count: usize) -> Vec<Contact> {
    let ingestion = IngestionServiceClient::new(endpoints.channel("ingestion").await);
    let routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    eventually(&format!("{count} routed contact(s) of {channel_id}"), WAIT, || {
        let (mut ingestion, mut routing) = (ingestion.clone(), routing.clone());
        let request = ListContactsRequest { parent: "tenants/acme".to_owned(), page_size: 100, ..Default::default() };
        async move {
            let contacts = ingestion.list_contacts(authorized(ACME_ADMIN, request)).await.ok()?.into_inner().contacts;
            let of_channel: Vec<Contact> = contacts
                .into_iter()
                .filter(|contact| contact.attributes.get("channel").map(String::as_str) == Some(channel_id))
                .collect();
            if of_channel.len() != count {
                return None;
            }
            for contact in &of_channel {
                let request = GetAssignmentRequest { contact: contact.name.clone() };
                routing.get_assignment(authorized(ACME_ADMIN, request)).await.ok()?;
            }
            Some(of_channel)
        }
    })
    .await
}

/// The one contact of `channel_id`: its channel, its sender's address and
/// the texts of its conversation.
async fn the_contact(endpoints: &Endpoints, channel_id: &str) -> (i32, String, Vec<String>) {
    let [contact] = routed_contacts(endpoints, channel_id, 1).await.try_into().unwrap();
    let conversation = contact.attributes.get("conversation").expect("the contact names its conversation").clone();
    let mut conversations = ConversationServiceClient::new(endpoints.channel("ingestion").await);
    let request = ListMessagesRequest { parent: conversation, page_size: 10, ..Default::default() };
    let messages = conversations.list_messages(authorized(ACME_ADMIN, request)).await.expect("messages");
    let texts = messages.into_inner().messages.into_iter().map(|message| message.text).collect();
    (contact.channel, contact.from.map(|from| from.value).unwrap_or_default(), texts)
}

async fn meta_messages(endpoints: &Endpoints, http: SocketAddr) {
    create_channel(endpoints, "e2e-messenger", meta(MetaProduct::Messenger)).await;
    create_channel(endpoints, "e2e-instagram", meta(MetaProduct::Instagram)).await;
    let page = serde_json::json!({"object": "page", "entry": [{"id": "1234567890", "time": 1767225600000_i64,
        "messaging": [{"sender": {"id": "6783452189012345"}, "recipient": {"id": "1234567890"},
                       "timestamp": 1767225600123_i64, "message": {"mid": "m_e2e_1", "text": "Is my order shipped?"}}]}]})
    .to_string();
    let signature = meta::signature(META_SECRET, page.as_bytes()).unwrap();
    let forged = meta::signature("not-the-secret", page.as_bytes()).unwrap();
    post(http, "e2e-messenger", &[("content-type", "application/json"), ("x-hub-signature-256", &forged)], &page, 401)
        .await;
    for _delivery in 0..2 {
        let headers = [("content-type", "application/json"), ("x-hub-signature-256", signature.as_str())];
        post(http, "e2e-messenger", &headers, &page, 200).await;
    }
    let instagram = serde_json::json!({"object": "instagram", "entry": [{"id": "17841400000000999",
        "time": 1767225600000_i64, "messaging": [{"sender": {"id": "17841400000000001"},
        "recipient": {"id": "17841400000000999"}, "timestamp": 1767225600456_i64,
        "message": {"mid": "aWdfZAG1e2e", "text": "Do you ship to Canada?"}}]}]})
    .to_string();
    let signature = meta::signature(META_SECRET, instagram.as_bytes()).unwrap();
    let headers = [("content-type", "application/json"), ("x-hub-signature-256", signature.as_str())];
    post(http, "e2e-instagram", &headers, &instagram, 200).await;

    let (channel, from, texts) = the_contact(endpoints, "e2e-messenger").await;
    assert_eq!((channel, from.as_str()), (ChannelKind::Messenger as i32, "messenger:6783452189012345"));
    assert_eq!(texts, ["Is my order shipped?"], "a redelivery stores nothing more");
    let (channel, from, texts) = the_contact(endpoints, "e2e-instagram").await;
    assert_eq!((channel, from.as_str()), (ChannelKind::Messenger as i32, "instagram:17841400000000001"));
    assert_eq!(texts, ["Do you ship to Canada?"]);
}

async fn whatsapp_through_twilio(endpoints: &Endpoints, http: SocketAddr, public_base_url: &str) {
    let settings = TwilioSettings {
        account_sid: "AC0123456789abcdef0123456789abcdef".to_owned(),
        from: "whatsapp:+14155238886".to_owned(),
        api_base_url: String::new(),
        auth_token: TWILIO_TOKEN.to_owned(),
    };
    create_channel(endpoints, "e2e-wa-twilio", Provider::Twilio(settings)).await;
    let fields: Vec<(String, String)> = [
        ("MessageSid", "SM0000000000000000000000000000e2e1"),
        ("From", "whatsapp:+447700900123"),
        ("To", "whatsapp:+14155238886"),
        ("ProfileName", "Ann Example"),
        ("Body", "Where is my refund?"),
        ("NumMedia", "0"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let url = format!("{public_base_url}/webhooks/acme/e2e-wa-twilio");
    let signature = twilio::signature(TWILIO_TOKEN, &url, &fields).unwrap();
    let form = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("x-twilio-signature", signature.as_str())];
    post(http, "e2e-wa-twilio", &headers, &form, 200).await;
    let (channel, from, texts) = the_contact(endpoints, "e2e-wa-twilio").await;
    assert_eq!((channel, from.as_str()), (ChannelKind::Messenger as i32, "+447700900123"));
    assert_eq!(texts, ["Where is my refund?"]);
}

async fn a_form_and_a_review(endpoints: &Endpoints, http: SocketAddr) {
    let form_settings = WebFormSettings {
        honeypot_field: String::new(),
        allowed_origins: vec![SITE.to_owned()],
        success_url: String::new(),
    };
    create_channel(endpoints, "e2e-form", Provider::WebForm(form_settings)).await;
    let form = |fields: &[(&str, &str)]| form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("origin", SITE)];
    let person =
        form(&[("email", "Bea@Example.com"), ("subject", "Refund"), ("message", "Charged twice"), ("website", "")]);
    post(http, "e2e-form", &headers, &person, 200).await;
    let bot = form(&[("email", "bot@spam.example"), ("message", "cheap pills"), ("website", "http://spam.example")]);
    post(http, "e2e-form", &headers, &bot, 200).await;
    let elsewhere = [("content-type", "application/x-www-form-urlencoded"), ("origin", "https://evil.example")];
    post(http, "e2e-form", &elsewhere, &person, 403).await;

    let review_settings = SocialSettings { signing_secret: REVIEW_SECRET.to_owned() };
    create_channel(endpoints, "e2e-reviews", Provider::Social(review_settings)).await;
    let review = r#"{"id":"rv-e2e","platform":"google_reviews","author":{"id":"109876","name":"Cy"},"text":"Slow delivery.","rating":2}"#;
    let signature = social::signature(REVIEW_SECRET, review.as_bytes()).unwrap();
    post(http, "e2e-reviews", &[("x-switchboard-signature", &signature)], review, 200).await;

    let (channel, from, texts) = the_contact(endpoints, "e2e-form").await;
    assert_eq!((channel, from.as_str()), (ChannelKind::WebForm as i32, "bea@example.com"), "the bot made none");
    assert!(texts.iter().any(|text| text.contains("Charged twice")), "{texts:?}");
    let (channel, from, texts) = the_contact(endpoints, "e2e-reviews").await;
    assert_eq!((channel, from.as_str()), (ChannelKind::Social as i32, "google_reviews:109876"));
    assert!(texts.iter().any(|text| text.contains("Slow delivery.")), "{texts:?}");
}

async fn a_polled_mailbox(endpoints: &Endpoints) {
    // Outside CI without the test IMAP server, this part is skipped.
    let Some(imap) = backend_url("SWITCHBOARD_TEST_IMAP") else { return };
    let (host, port) = imap.rsplit_once(':').expect("host:port");
    let user = format!("e2e-{}", unique_suffix());
    let imap_server = MailServer {
        host: host.to_owned(),
        port: port.parse().expect("a port"),
        security: MailSecurity::None as i32,
        username: user.clone(),
        password: IMAP_PASSWORD.to_owned(),
    };
    let settings = EmailSettings {
        address: "support@acme.example".to_owned(),
        imap: Some(imap_server),
        ..EmailSettings::default()
    };
    create_channel(endpoints, "e2e-imap", Provider::Email(settings)).await;
    let endpoint = MailEndpoint {
        host: host.to_owned(),
        port: port.parse().expect("a port"),
        tls: MailTls::Plain,
        username: user,
        password: IMAP_PASSWORD.to_owned(),
    };
    let raw = "From: Dee <dee@example.com>\r\nTo: support@acme.example\r\nMessage-ID: <e2e-imap-1@example.com>\r\n\
               Subject: Broken lid\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe lid arrived cracked.\r\n";
    let mut session = mail::imap_login(&endpoint, Egress::Anywhere).await.unwrap();
    session.append("INBOX", None, None, raw.as_bytes()).await.unwrap();
    session.logout().await.unwrap();
    let (channel, from, texts) = the_contact(endpoints, "e2e-imap").await;
    assert_eq!((channel, from.as_str()), (ChannelKind::Email as i32, "dee@example.com"));
    assert!(texts.iter().any(|text| text.contains("The lid arrived cracked.")), "{texts:?}");
}

async fn every_other_channel(endpoints: &Endpoints, http_port: u16) {
    let http = SocketAddr::from(([127, 0, 0, 1], http_port));
    let mut routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    let queue = CreateQueueRequest {
        parent: "tenants/acme".to_owned(),
        queue_id: "inbox".to_owned(),
        queue: Some(Queue { display_name: "Inbox".to_owned(), ..Queue::default() }),
    };
    routing.create_queue(authorized(ACME_ADMIN, queue)).await.expect("queue created");
    meta_messages(endpoints, http).await;
    // Without a public base URL, a channel's URL is on ingestion's own
    // address, as Twilio is told to call it.
    whatsapp_through_twilio(endpoints, http, &format!("http://127.0.0.1:{http_port}")).await;
    a_form_and_a_review(endpoints, http).await;
    a_polled_mailbox(endpoints).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_channel_on_switchboard_dev() {
    support::on_dev("channels-dev", every_other_channel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_channel_on_kafka_redis_postgres() {
    support::on_real_backends("channels-real", every_other_channel).await;
}
