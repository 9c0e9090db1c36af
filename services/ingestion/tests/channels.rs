//! Channels from outside: the `ChannelService` through a real tonic client,
//! and providers' webhook calls over real HTTP to the service's HTTP
//! server, signed as the providers sign them. On in-memory deps with fake
//! routing and CRM servers.

// Test code: a broken expectation panics, which is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared by the test binaries of this crate; each uses a part of it.
#[allow(dead_code)]
mod support;

use support::*;
use switchboard_core::event::ROUTING_TOPIC;
use switchboard_ingestion::channels::{meta, social, twilio};
use switchboard_platform::bus::EventBus;
use switchboard_platform::config::TenantPolicyConfig;
use switchboard_proto::common::v1::Channel as ChannelKind;
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::{
    Channel, Conversation, ConversationState, CreateChannelRequest, DeleteChannelRequest, EmailSettings,
    GetChannelRequest, ListChannelsRequest, ListContactsRequest, ListConversationsRequest, ListMessagesRequest,
    Message, MetaProduct, MetaSettings, SocialSettings, TelegramSettings, TwilioSettings, UpdateChannelRequest,
    WebFormSettings, contact_event,
};
use switchboard_proto::routing::v1::{ContactCompleted, RoutingEvent, routing_event};
use switchboard_test_support::{HttpAnswer, http_request, violated_fields};
use tonic::Code;

const TWILIO_TOKEN: &str = "0123456789abcdef0123456789abcdef";
const META_SECRET: &str = "meta-app-secret";
const TELEGRAM_SECRET: &str = "tg_hook-secret";

fn telegram_channel() -> Channel {
    Channel {
        display_name: "Support bot".to_owned(),
        queue: SUPPORT_QUEUE.to_owned(),
        provider: Some(Provider::Telegram(TelegramSettings {
            api_base_url: String::new(),
            bot_token: "123456:AAH-bot-token".to_owned(),
            webhook_secret: TELEGRAM_SECRET.to_owned(),
        })),
        ..Channel::default()
    }
}

fn twilio_channel() -> Channel {
    Channel {
        display_name: "SMS line".to_owned(),
        queue: SUPPORT_QUEUE.to_owned(),
        provider: Some(Provider::Twilio(TwilioSettings {
            account_sid: "AC0123456789abcdef0123456789abcdef".to_owned(),
            from: "+15551230000".to_owned(),
            api_base_url: String::new(),
            auth_token: TWILIO_TOKEN.to_owned(),
        })),
        ..Channel::default()
    }
}

fn whatsapp_channel() -> Channel {
    Channel {
        display_name: "WhatsApp".to_owned(),
        queue: SUPPORT_QUEUE.to_owned(),
        provider: Some(Provider::Meta(MetaSettings {
            product: MetaProduct::Whatsapp as i32,
            phone_number_id: "106540352242922".to_owned(),
            api_base_url: String::new(),
            app_secret: META_SECRET.to_owned(),
            verify_token: "verify-me".to_owned(),
            access_token: "EAAG-access-token".to_owned(),
        })),
        ..Channel::default()
    }
}

async fn create_channel(harness: &mut Harness, channel_id: &str, channel: Channel) -> Channel {
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: channel_id.to_owned(),
        channel: Some(channel),
    };
    harness.channels.create_channel(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner()
}

async fn acme_contacts(harness: &mut Harness) -> Vec<switchboard_proto::ingestion::v1::Contact> {
    let request = ListContactsRequest { parent: "tenants/acme".to_owned(), page_size: 100, page_token: String::new() };
    harness.client.list_contacts(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner().contacts
}

fn inbound_sms(message_sid: &str, body: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("MessageSid", message_sid),
        ("From", "+1 (555) 867-5310"),
        ("To", "+15551230000"),
        ("Body", body),
        ("NumMedia", "0"),
        ("SmsStatus", "received"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

/// Posts `fields` to the channel's webhook, signed for its public URL with
/// `token`.
async fn post_twilio(harness: &Harness, channel_id: &str, fields: &[(String, String)], token: &str) -> HttpAnswer {
    let path = format!("/webhooks/acme/{channel_id}");
    let signature = twilio::signature(token, &format!("{PUBLIC_BASE_URL}{path}"), fields).unwrap();
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("x-twilio-signature", signature.as_str())];
    http_request(harness.http, "POST", &path, &headers, body.as_bytes()).await.unwrap()
}

#[tokio::test]
async fn a_channel_keeps_its_secrets_write_only() {
    let mut harness = Harness::start().await;
    let created = create_channel(&mut harness, "support-bot", telegram_channel()).await;
    assert_eq!(created.name, "tenants/acme/channels/support-bot");
    assert_eq!(created.webhook_url, format!("{PUBLIC_BASE_URL}/webhooks/acme/support-bot"));
    assert_eq!(created.secrets_set, ["telegram.bot_token", "telegram.webhook_secret"]);
    let Some(Provider::Telegram(settings)) = &created.provider else { panic!("a telegram channel: {created:?}") };
    assert!(settings.bot_token.is_empty() && settings.webhook_secret.is_empty(), "secrets are never answered");

    let name = created.name.clone();
    let got = harness.channels.get_channel(authed(GetChannelRequest { name: name.clone() }, ACME_READER_KEY)).await;
    assert_eq!(got.unwrap().into_inner(), created, "a reader sees the channel, without secrets");
    let listed = harness
        .channels
        .list_channels(authed(
            ListChannelsRequest { parent: "tenants/acme".to_owned(), ..Default::default() },
            ACME_READER_KEY,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.channels, std::slice::from_ref(&created));

    let changes = Channel {
        name: name.clone(),
        display_name: "Night bot".to_owned(),
        provider: Some(Provider::Telegram(TelegramSettings {
            webhook_secret: "rotated_secret".to_owned(),
            ..Default::default()
        })),
        ..Channel::default()
    };
    let mask = prost_types::FieldMask { paths: vec!["display_name".to_owned(), "telegram.webhook_secret".to_owned()] };
    let update = UpdateChannelRequest { channel: Some(changes), update_mask: Some(mask) };
    let updated = harness.channels.update_channel(authed(update, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    assert_eq!(updated.display_name, "Night bot");
    assert_eq!(updated.secrets_set, ["telegram.bot_token", "telegram.webhook_secret"], "the unnamed secret is kept");

    let other_provider = Channel {
        name: name.clone(),
        provider: Some(Provider::Twilio(TwilioSettings { from: "+15550100".to_owned(), ..Default::default() })),
        ..Channel::default()
    };
    let mask = prost_types::FieldMask { paths: vec!["twilio.from".to_owned()] };
    let update = UpdateChannelRequest { channel: Some(other_provider), update_mask: Some(mask) };
    let error = harness.channels.update_channel(authed(update, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "the provider cannot change: {error:?}");

    let delete = DeleteChannelRequest { name: name.clone() };
    harness.channels.delete_channel(authed(delete, ACME_ADMIN_KEY)).await.unwrap();
    let gone = harness.channels.get_channel(authed(GetChannelRequest { name }, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn channels_past_the_tenants_quota_are_refused() {
    let mut harness = Harness::start_with(|config| {
        let policy = TenantPolicyConfig { max_channels: Some(1), ..TenantPolicyConfig::default() };
        config.auth.tenant_policies.insert("acme".to_owned(), policy);
    })
    .await;
    create_channel(&mut harness, "telegram", telegram_channel()).await;
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: "sms".to_owned(),
        channel: Some(twilio_channel()),
    };
    let refused = harness.channels.create_channel(authed(request, ACME_ADMIN_KEY)).await.expect_err("over the quota");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(switchboard_test_support::error_reason(&refused).as_deref(), Some("QUOTA_EXCEEDED"));
    let delete = DeleteChannelRequest { name: "tenants/acme/channels/telegram".to_owned() };
    harness.channels.delete_channel(authed(delete, ACME_ADMIN_KEY)).await.expect("deleted");
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: "sms".to_owned(),
        channel: Some(twilio_channel()),
    };
    harness.channels.create_channel(authed(request, ACME_ADMIN_KEY)).await.expect("room again once one is gone");
    harness.stop().await;
}

#[tokio::test]
async fn bad_channels_name_every_field_and_other_tenants_cannot_touch_them() {
    let mut harness = Harness::start().await;
    let mut no_secrets = telegram_channel();
    no_secrets.provider = Some(Provider::Telegram(TelegramSettings::default()));
    let request = |channel: Channel| CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: "bot".to_owned(),
        channel: Some(channel),
    };
    let error = harness.channels.create_channel(authed(request(no_secrets), ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&error), ["channel.telegram.bot_token", "channel.telegram.webhook_secret"]);

    let mut bad_twilio = twilio_channel();
    bad_twilio.provider = Some(Provider::Twilio(TwilioSettings {
        account_sid: "AC/../x".to_owned(),
        from: "not a number".to_owned(),
        api_base_url: "ftp://example.com".to_owned(),
        auth_token: "has space".to_owned(),
    }));
    let error = harness.channels.create_channel(authed(request(bad_twilio), ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!(
        violated_fields(&error),
        [
            "channel.twilio.account_sid",
            "channel.twilio.from",
            "channel.twilio.api_base_url",
            "channel.twilio.auth_token"
        ]
    );

    let short_window =
        Channel { conversation_window: Some(prost_types::Duration { seconds: 30, nanos: 0 }), ..telegram_channel() };
    let error = harness.channels.create_channel(authed(request(short_window), ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!(violated_fields(&error), ["channel.conversation_window"], "a window under a minute");
    let malformed_window = Channel {
        conversation_window: Some(prost_types::Duration { seconds: 3_600, nanos: -1 }),
        ..telegram_channel()
    };
    let error = harness.channels.create_channel(authed(request(malformed_window), ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!(violated_fields(&error), ["channel.conversation_window"], "mixed signs");

    let unknown_queue = Channel { queue: "tenants/acme/queues/nowhere".to_owned(), ..telegram_channel() };
    let error = harness.channels.create_channel(authed(request(unknown_queue), ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!((error.code(), violated_fields(&error)), (Code::NotFound, vec!["channel.queue".to_owned()]));

    let globex_queue = Channel { queue: "tenants/globex/queues/support".to_owned(), ..telegram_channel() };
    let error = harness.channels.create_channel(authed(request(globex_queue), ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!(violated_fields(&error), ["channel.queue"], "a queue of another tenant");

    let error =
        harness.channels.create_channel(authed(request(telegram_channel()), GLOBEX_ADMIN_KEY)).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied, "another tenant's admin");
    let error =
        harness.channels.create_channel(authed(request(telegram_channel()), ACME_READER_KEY)).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied, "a reader");
    let error =
        harness.channels.create_channel(authed(request(Channel::default()), ACME_READER_KEY)).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied, "a reader learns nothing of the body's faults");

    create_channel(&mut harness, "bot", telegram_channel()).await;
    let name = "tenants/acme/channels/bot".to_owned();
    let peek = harness.channels.get_channel(authed(GetChannelRequest { name: name.clone() }, GLOBEX_ADMIN_KEY)).await;
    assert_eq!(peek.unwrap_err().code(), Code::PermissionDenied);
    let delete = harness.channels.delete_channel(authed(DeleteChannelRequest { name }, GLOBEX_ADMIN_KEY)).await;
    assert_eq!(delete.unwrap_err().code(), Code::PermissionDenied);
    let duplicate = harness.channels.create_channel(authed(request(telegram_channel()), ACME_ADMIN_KEY)).await;
    assert_eq!(duplicate.unwrap_err().code(), Code::AlreadyExists);
}

/// The event's contact event kind, or a panic naming what came instead.
fn contact_event_kind(envelope: &EventEnvelope) -> contact_event::Kind {
    match &envelope.payload {
        Some(Payload::Contact(event)) => event.kind.clone().expect("a contact event kind"),
        other => panic!("not a contact event: {other:?}"),
    }
}

async fn acme_conversations(harness: &mut Harness) -> Vec<Conversation> {
    let request = ListConversationsRequest { parent: "tenants/acme".to_owned(), ..Default::default() };
    harness.conversations.list_conversations(authed(request, ACME_READER_KEY)).await.unwrap().into_inner().conversations
}

async fn messages_of(harness: &mut Harness, conversation: &str) -> Vec<Message> {
    let request = ListMessagesRequest { parent: conversation.to_owned(), ..Default::default() };
    harness.conversations.list_messages(authed(request, ACME_READER_KEY)).await.unwrap().into_inner().messages
}

#[tokio::test]
async fn a_customers_messages_make_one_conversation_and_one_contact_however_often_delivered() {
    let mut harness = Harness::start().await;
    create_channel(&mut harness, "sms-line", twilio_channel()).await;
    let fields = inbound_sms("SM1f0e2d3c4b5a69788796a5b4c3d2e1f0", "Where is my order?\nIt is late.");

    let answer = post_twilio(&harness, "sms-line", &fields, TWILIO_TOKEN).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("text/xml"));
    let contacts = acme_contacts(&mut harness).await;
    assert_eq!(contacts.len(), 1);
    let contact = &contacts[0];
    assert_eq!(contact.channel, ChannelKind::Sms as i32);
    assert_eq!(contact.from.as_ref().map(|from| from.value.as_str()), Some("+15558675310"), "normalised E.164");
    assert_eq!(contact.queue, SUPPORT_QUEUE);
    assert_eq!(contact.subject, "Where is my order?");
    assert_eq!(contact.body, "Where is my order?\nIt is late.");
    assert_eq!(contact.attributes.get("provider").map(String::as_str), Some("twilio"));
    let conversations = acme_conversations(&mut harness).await;
    assert_eq!(conversations.len(), 1);
    let conversation = &conversations[0];
    assert_eq!(conversation.contact, contact.name);
    assert_eq!(conversation.state, ConversationState::Open as i32);
    assert_eq!(conversation.channel, "tenants/acme/channels/sms-line");
    assert_eq!(contact.attributes.get("conversation"), Some(&conversation.name));
    let created = harness.next_event().await;
    assert!(matches!(contact_event_kind(&created), contact_event::Kind::Created(_)));
    assert_eq!((created.tenant.as_str(), created.subject.as_str()), ("acme", contact.name.rsplit('/').next().unwrap()));
    let added = harness.next_event().await;
    let contact_event::Kind::MessageAdded(added) = contact_event_kind(&added) else { panic!("a MessageAdded") };
    assert_eq!(
        (added.conversation.as_str(), added.contact.as_str()),
        (conversation.name.as_str(), contact.name.as_str())
    );

    let retried = post_twilio(&harness, "sms-line", &fields, TWILIO_TOKEN).await;
    assert_eq!(retried.status, 200, "a redelivery is acknowledged");
    let follow_up = inbound_sms("SM00000000000000000000000000000002", "Order 1234");
    assert_eq!(post_twilio(&harness, "sms-line", &follow_up, TWILIO_TOKEN).await.status, 200);
    assert_eq!(acme_contacts(&mut harness).await.len(), 1, "the redelivery and the follow-up make no second contact");
    let messages = messages_of(&mut harness, &conversation.name).await;
    let texts: Vec<&str> = messages.iter().map(|message| message.text.as_str()).collect();
    assert_eq!(texts, ["Where is my order?\nIt is late.", "Order 1234"], "both messages, once each, oldest first");
    assert_eq!(messages[0].provider_message_id, "sms-line/SM1f0e2d3c4b5a69788796a5b4c3d2e1f0");
    assert_eq!(messages[0].author, "+15558675310");
    let added = harness.next_event().await;
    assert!(matches!(contact_event_kind(&added), contact_event::Kind::MessageAdded(_)), "the follow-up's event");
    harness.assert_no_more_events().await;

    // Routing completes the contact: its conversation closes, and the
    // customer's next message opens a new conversation and contact.
    let completed = RoutingEvent {
        kind: Some(routing_event::Kind::Completed(ContactCompleted {
            contact: contact.name.clone(),
            ..ContactCompleted::default()
        })),
    };
    let tenant = switchboard_core::TenantId::parse("acme", "tenant").unwrap();
    let envelope = switchboard_core::event::envelope(Some(&tenant), &created.subject, Payload::Routing(completed));
    harness.bus.publish(ROUTING_TOPIC, &envelope).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while acme_conversations(&mut harness).await[0].state != ConversationState::Closed as i32 {
        assert!(tokio::time::Instant::now() < deadline, "the conversation closes once routing completes its contact");
        tokio::task::yield_now().await;
    }
    let closed = &acme_conversations(&mut harness).await[0];
    assert_eq!(closed.close_reason, "CONTACT_ENDED");
    let next_day = inbound_sms("SM00000000000000000000000000000003", "Me again");
    assert_eq!(post_twilio(&harness, "sms-line", &next_day, TWILIO_TOKEN).await.status, 200);
    assert_eq!(acme_contacts(&mut harness).await.len(), 2, "a new contact to route");
    let conversations = acme_conversations(&mut harness).await;
    assert_eq!(conversations.len(), 2);
    assert_eq!(conversations[0].state, ConversationState::Open as i32, "the newest is open");
    assert_eq!(messages_of(&mut harness, &conversations[0].name).await.len(), 1);
}

#[tokio::test]
async fn refused_webhooks_store_nothing() {
    let mut harness = Harness::start().await;
    create_channel(&mut harness, "sms-line", twilio_channel()).await;
    let fields = inbound_sms("SMaaaa", "hello");

    let forged = post_twilio(&harness, "sms-line", &fields, "another-token").await;
    assert_eq!(forged.status, 401, "{forged:?}");
    let unsigned =
        http_request(harness.http, "POST", "/webhooks/acme/sms-line", &[], b"MessageSid=SMaaaa").await.unwrap();
    assert_eq!(unsigned.status, 401);
    let unknown = post_twilio(&harness, "no-such-channel", &fields, TWILIO_TOKEN).await;
    assert_eq!(unknown.status, 404);
    let other_tenant = http_request(harness.http, "POST", "/webhooks/globex/sms-line", &[], b"").await.unwrap();
    assert_eq!(other_tenant.status, 404, "a channel belongs to its tenant's path only");

    let mut bad_sender = fields.clone();
    bad_sender[2].1 = "not a phone".to_owned();
    let malformed = post_twilio(&harness, "sms-line", &bad_sender, TWILIO_TOKEN).await;
    assert_eq!(malformed.status, 400, "{malformed:?}");
    assert!(malformed.body.contains("From"), "the answer names what is wrong: {}", malformed.body);

    let huge = vec![b'a'; 2 * 1024 * 1024];
    let oversized = http_request(harness.http, "POST", "/webhooks/acme/sms-line", &[], &huge).await.unwrap();
    assert_eq!(oversized.status, 413);

    let disable = UpdateChannelRequest {
        channel: Some(Channel {
            name: "tenants/acme/channels/sms-line".to_owned(),
            disabled: true,
            ..Channel::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["disabled".to_owned()] }),
    };
    harness.channels.update_channel(authed(disable, ACME_ADMIN_KEY)).await.unwrap();
    let disabled = post_twilio(&harness, "sms-line", &fields, TWILIO_TOKEN).await;
    assert_eq!(disabled.status, 404, "a disabled channel takes nothing");

    assert!(acme_contacts(&mut harness).await.is_empty(), "nothing was stored");
    harness.assert_no_more_events().await;
    let metrics = http_request(harness.http, "GET", "/metrics", &[], b"").await.unwrap().body;
    let refused = metrics.lines().any(|line| {
        line.starts_with("switchboard_webhook_requests_total")
            && line.contains("tenant=\"acme\"")
            && line.contains("outcome=\"unauthenticated\"")
    });
    assert!(refused, "refusals are counted by outcome:\n{metrics}");
}

#[tokio::test]
async fn whatsapp_cloud_subscribes_with_its_token_and_delivers_messages() {
    let mut harness = Harness::start().await;
    create_channel(&mut harness, "whatsapp", whatsapp_channel()).await;
    let query = "hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444";
    let handshake =
        http_request(harness.http, "GET", &format!("/webhooks/acme/whatsapp?{query}"), &[], b"").await.unwrap();
    assert_eq!((handshake.status, handshake.body.as_str()), (200, "1158201444"));
    let wrong = "hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1";
    let refused =
        http_request(harness.http, "GET", &format!("/webhooks/acme/whatsapp?{wrong}"), &[], b"").await.unwrap();
    assert_eq!(refused.status, 401);

    let payload = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1022", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
            "messages": [{"from": "16505551234", "id": "wamid.HBgL1", "timestamp": "1749416383",
                          "type": "text", "text": {"body": "Does it come in blue?"}}],
            "statuses": [{"id": "wamid.OUT1", "status": "delivered", "timestamp": "1749416390"}]
        }}]}]
    })
    .to_string();
    let signature = meta::signature(META_SECRET, payload.as_bytes()).unwrap();
    let headers = [("content-type", "application/json"), ("x-hub-signature-256", signature.as_str())];
    let answer =
        http_request(harness.http, "POST", "/webhooks/acme/whatsapp", &headers, payload.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let contacts = acme_contacts(&mut harness).await;
    assert_eq!(contacts.len(), 1, "the message is a contact; the delivery report is not");
    assert_eq!(contacts[0].channel, ChannelKind::Messenger as i32);
    assert_eq!(contacts[0].from.as_ref().map(|from| from.value.as_str()), Some("+16505551234"));
    assert_eq!(contacts[0].attributes.get("display_name").map(String::as_str), Some("Sheena Nelson"));

    let tampered = payload.replace("blue", "red");
    let forged =
        http_request(harness.http, "POST", "/webhooks/acme/whatsapp", &headers, tampered.as_bytes()).await.unwrap();
    assert_eq!(forged.status, 401, "a body changed after signing");
    assert_eq!(acme_contacts(&mut harness).await.len(), 1);
}

#[tokio::test]
async fn telegram_messages_need_the_secret_token() {
    let mut harness = Harness::start().await;
    create_channel(&mut harness, "bot", telegram_channel()).await;
    let update = serde_json::json!({
        "update_id": 873451001,
        "message": {"message_id": 52, "date": 1749417100, "text": "Здравствуйте",
                    "from": {"id": 418273645, "is_bot": false, "first_name": "Ivan"},
                    "chat": {"id": 418273645, "type": "private"}}
    })
    .to_string();
    let address = harness.http;
    let post = |secret: &'static str| {
        let body = update.clone();
        async move {
            let headers = [("content-type", "application/json"), ("x-telegram-bot-api-secret-token", secret)];
            http_request(address, "POST", "/webhooks/acme/bot", &headers, body.as_bytes()).await.unwrap()
        }
    };
    assert_eq!(post("wrong_secret").await.status, 401);
    assert!(acme_contacts(&mut harness).await.is_empty());
    assert_eq!(post(TELEGRAM_SECRET).await.status, 200);
    assert_eq!(post(TELEGRAM_SECRET).await.status, 200, "Telegram redelivers an update it got no answer for");
    let contacts = acme_contacts(&mut harness).await;
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].from.as_ref().map(|from| from.value.as_str()), Some("telegram:418273645"));
    assert_eq!(contacts[0].body, "Здравствуйте");

    // The customer edits the message: the conversation shows the edit.
    let edited = serde_json::json!({
        "update_id": 873451002,
        "edited_message": {"message_id": 52, "date": 1749417100, "edit_date": 1749417150, "text": "Здравствуйте!",
                           "from": {"id": 418273645, "is_bot": false, "first_name": "Ivan"},
                           "chat": {"id": 418273645, "type": "private"}}
    })
    .to_string();
    let headers = [("content-type", "application/json"), ("x-telegram-bot-api-secret-token", TELEGRAM_SECRET)];
    let answer = http_request(address, "POST", "/webhooks/acme/bot", &headers, edited.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 200);
    let conversation = contacts[0].attributes.get("conversation").expect("its conversation").clone();
    let messages = messages_of(&mut harness, &conversation).await;
    assert_eq!(messages.len(), 1, "an edit is no new message");
    assert_eq!(messages[0].text, "Здравствуйте!");
    assert!(messages[0].edit_time.is_some());
}

#[tokio::test]
async fn a_web_form_makes_a_contact_once_and_bots_and_other_sites_make_none() {
    let mut harness = Harness::start().await;
    let form_channel = Channel {
        queue: SUPPORT_QUEUE.to_owned(),
        provider: Some(Provider::WebForm(WebFormSettings {
            honeypot_field: String::new(),
            allowed_origins: vec!["https://www.acme.example".to_owned()],
            success_url: String::new(),
        })),
        ..Channel::default()
    };
    create_channel(&mut harness, "contact-form", form_channel).await;
    let post = |fields: &[(&str, &str)], origin: &'static str| {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let address = harness.http;
        async move {
            let headers = [("content-type", "application/x-www-form-urlencoded"), ("origin", origin)];
            http_request(address, "POST", "/webhooks/acme/contact-form", &headers, body.as_bytes()).await.unwrap()
        }
    };
    let person = [
        ("name", "Ann"),
        ("email", "ann@example.com"),
        ("subject", "Refund"),
        ("message", "Charged twice"),
        ("website", ""),
    ];
    let answer = post(&person, "https://www.acme.example").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.contains("Thank you"), "a thank-you page: {}", answer.body);
    assert_eq!(post(&person, "https://www.acme.example").await.status, 200, "a double submit");
    let bot = [("email", "bot@spam.example"), ("message", "cheap pills"), ("website", "http://spam.example")];
    let fooled = post(&bot, "https://www.acme.example").await;
    assert_eq!((fooled.status, fooled.body.contains("Thank you")), (200, true), "a bot is told it worked");
    assert_eq!(post(&person, "https://evil.example").await.status, 403, "another site's page");

    let contacts = acme_contacts(&mut harness).await;
    assert_eq!(contacts.len(), 1, "one person, one contact: {contacts:?}");
    assert_eq!(contacts[0].channel, ChannelKind::WebForm as i32);
    assert_eq!(contacts[0].from.as_ref().map(|from| from.value.as_str()), Some("ann@example.com"));
    assert_eq!(contacts[0].body, "Refund\n\nCharged twice");
}

#[tokio::test]
async fn a_signed_review_makes_a_social_contact() {
    let mut harness = Harness::start().await;
    let reviews = Channel {
        queue: SUPPORT_QUEUE.to_owned(),
        provider: Some(Provider::Social(SocialSettings { signing_secret: "review-secret".to_owned() })),
        ..Channel::default()
    };
    let created = create_channel(&mut harness, "reviews", reviews).await;
    assert_eq!(created.secrets_set, ["social.signing_secret"]);
    let review = r#"{"id":"rv-1","platform":"google_reviews","author":{"id":"109876","name":"Ann"},"text":"Slow delivery.","rating":2}"#;
    let signature = social::signature("review-secret", review.as_bytes()).unwrap();
    let headers = [("content-type", "application/json"), ("x-switchboard-signature", signature.as_str())];
    let answer =
        http_request(harness.http, "POST", "/webhooks/acme/reviews", &headers, review.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let forged = [("x-switchboard-signature", "sha256=00")];
    let refused =
        http_request(harness.http, "POST", "/webhooks/acme/reviews", &forged, review.as_bytes()).await.unwrap();
    assert_eq!(refused.status, 401);
    let contacts = acme_contacts(&mut harness).await;
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].channel, ChannelKind::Social as i32);
    assert_eq!(contacts[0].from.as_ref().map(|from| from.value.as_str()), Some("google_reviews:109876"));
    assert_eq!(contacts[0].body, "★★☆☆☆ Slow delivery.");
}

#[tokio::test]
async fn mail_posted_by_a_relay_threads_replies_into_their_conversation() {
    let mut harness = Harness::start().await;
    let mailbox = Channel {
        queue: SUPPORT_QUEUE.to_owned(),
        provider: Some(Provider::Email(EmailSettings {
            address: "support@acme.example".to_owned(),
            signing_secret: "relay-secret".to_owned(),
            ..EmailSettings::default()
        })),
        ..Channel::default()
    };
    create_channel(&mut harness, "support-mail", mailbox).await;
    let post = |raw: String| {
        let address = harness.http;
        async move {
            let signature = social::signature("relay-secret", raw.as_bytes()).unwrap();
            let headers = [("content-type", "message/rfc822"), ("x-switchboard-signature", signature.as_str())];
            http_request(address, "POST", "/webhooks/acme/support-mail", &headers, raw.as_bytes()).await.unwrap()
        }
    };
    let first = "From: Dana <dana@example.com>\r\nTo: support@acme.example\r\nMessage-ID: <m1@example.com>\r\n\
                 Subject: =?UTF-8?Q?Caf=C3=A9_order?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe cups are missing.\r\n";
    assert_eq!(post(first.to_owned()).await.status, 200);
    // She answers from her work address, in the same thread.
    let reply = "From: Dana Work <dana@work.example>\r\nTo: support@acme.example\r\nMessage-ID: <m2@work.example>\r\n\
                 In-Reply-To: <m1@example.com>\r\nReferences: <m1@example.com>\r\nSubject: Re: Cafe order\r\n\r\nAlso a saucer.\r\n";
    assert_eq!(post(reply.to_owned()).await.status, 200);
    let unrelated =
        "From: dana@work.example\r\nMessage-ID: <m3@work.example>\r\nSubject: New question\r\n\r\nInvoice?\r\n";
    let forged = [("x-switchboard-signature", "sha256=00")];
    let refused =
        http_request(harness.http, "POST", "/webhooks/acme/support-mail", &forged, unrelated.as_bytes()).await.unwrap();
    assert_eq!(refused.status, 401);

    let contacts = acme_contacts(&mut harness).await;
    assert_eq!(contacts.len(), 1, "the reply joined the thread: {contacts:?}");
    assert_eq!(contacts[0].channel, ChannelKind::Email as i32);
    assert_eq!(contacts[0].subject, "Café order");
    let conversation = contacts[0].attributes.get("conversation").expect("its conversation").clone();
    let texts: Vec<String> =
        messages_of(&mut harness, &conversation).await.into_iter().map(|message| message.text).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[1].starts_with("Re: Cafe order") && texts[1].contains("Also a saucer."), "{texts:?}");
}

#[tokio::test]
async fn a_sender_over_its_rate_is_told_to_retry_later_and_others_are_not() {
    let mut harness = Harness::start().await;
    create_channel(&mut harness, "bot", telegram_channel()).await;
    let address = harness.http;
    let post = |update_id: u64, sender: u64| async move {
        let update = serde_json::json!({
            "update_id": update_id,
            "message": {"message_id": update_id, "date": 1749417100, "text": "hello?",
                        "from": {"id": sender, "is_bot": false, "first_name": "Flo"},
                        "chat": {"id": sender, "type": "private"}}
        })
        .to_string();
        let headers = [("content-type", "application/json"), ("x-telegram-bot-api-secret-token", TELEGRAM_SECRET)];
        http_request(address, "POST", "/webhooks/acme/bot", &headers, update.as_bytes()).await.unwrap()
    };
    // The default burst is 20 messages per sender and channel.
    for update_id in 1..=20 {
        assert_eq!(post(update_id, 777).await.status, 200, "message {update_id} within the burst");
    }
    let refused = post(21, 777).await;
    assert_eq!(refused.status, 429, "{refused:?}");
    let retry_after = refused.headers.iter().find(|(name, _)| name == "retry-after").map(|(_, value)| value.as_str());
    assert_eq!(retry_after, Some("60"));
    assert_eq!(post(22, 888).await.status, 200, "another sender is not held back");
    let conversation = acme_contacts(&mut harness)
        .await
        .into_iter()
        .find(|contact| contact.from.as_ref().is_some_and(|from| from.value == "telegram:777"))
        .and_then(|contact| contact.attributes.get("conversation").cloned())
        .expect("flo's conversation");
    assert_eq!(messages_of(&mut harness, &conversation).await.len(), 20, "the refused message was not stored");
}
