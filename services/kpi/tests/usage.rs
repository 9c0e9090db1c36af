//! Usage metering over the real APIs: `GetUsage` and the CSV export agree,
//! count a month's contacts by channel with their handle time and its
//! outbound messages each once, and refuse another tenant's key and a
//! malformed month.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{ACME_READER_KEY, GLOBEX_READER_KEY, authorized, config, kit, publish};
use switchboard_core::event::{CONTACTS_TOPIC, envelope};
use switchboard_core::names::{contact_name, conversation_name, message_name};
use switchboard_core::time::timestamp_from_millis;
use switchboard_core::{ContactId, ConversationId, MessageId, QueueId, TenantId};
use switchboard_kpi::Kpi;
use switchboard_kpi::store::contract::{ContactStory, StoryOutcome};
use switchboard_platform::bus::EventBus;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::service::Service;
use switchboard_proto::common::v1::{Channel, Direction};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{ContactEvent, Message, MessageAdded, contact_event};
use switchboard_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use switchboard_proto::kpi::v1::{GetUsageRequest, Usage};
use switchboard_test_support::{http_request, start_service_with_http};
use tonic::Code;

/// 2026-12-03T10:00:00Z.
const ARRIVAL_MS: i64 = 1_796_292_000_000;

/// A handled contact; a wait divisible by 4 makes it a queued callback
/// (see the stories).
fn handled_story(contact: &str, channel: Channel, handle_ms: i64, wait_ms: i64, direction: Direction) -> ContactStory {
    ContactStory {
        tenant: TenantId::parse("acme", "tenant").unwrap(),
        contact: ContactId::parse(contact, "contact").unwrap(),
        queue: QueueId::parse("support", "queue").unwrap(),
        overflow_to: None,
        channel,
        direction,
        created_ms: ARRIVAL_MS,
        queue_delay_ms: Some(0),
        outcome: StoryOutcome::Answered { wait_ms, completion: Some((handle_ms, true)) },
        short_abandon_threshold_ms: None,
        service_level_threshold_ms: None,
    }
}

/// A `MessageAdded` of acme's conversation `ct_msg…`'s contact, for the
/// message `message` created at `created_ms`.
fn message_added(message: &MessageId, direction: Direction, channel: Channel, created_ms: i64) -> EventEnvelope {
    let tenant = TenantId::parse("acme", "tenant").unwrap();
    let conversation = ConversationId::parse("cv_usage0001", "conversation").unwrap();
    let contact = ContactId::parse("ct_usage0001", "contact").unwrap();
    let added = MessageAdded {
        conversation: conversation_name(&tenant, &conversation),
        contact: contact_name(&tenant, &contact),
        message: Some(Message {
            name: message_name(&tenant, &conversation, message),
            direction: direction as i32,
            create_time: Some(timestamp_from_millis(created_ms)),
            ..Message::default()
        }),
        channel_kind: channel as i32,
    };
    let event = ContactEvent { kind: Some(contact_event::Kind::MessageAdded(added)) };
    // One key, so the consumer sees them in this order.
    envelope(Some(&tenant), contact.as_str(), Payload::Contact(event))
}

/// A notification's `MessageAdded` before its customer answered: no
/// contact, keyed by the conversation.
fn notification_before_any_contact(message: &MessageId, created_ms: i64) -> EventEnvelope {
    let mut envelope = message_added(message, Direction::Outbound, Channel::Sms, created_ms);
    if let Some(Payload::Contact(ContactEvent { kind: Some(contact_event::Kind::MessageAdded(added)) })) =
        envelope.payload.as_mut()
    {
        added.contact.clear();
    }
    envelope.subject = "cv_usage0001".to_owned();
    envelope
}

#[tokio::test]
async fn a_months_usage_is_served_and_exported_by_channel() {
    let bus = MemoryBus::new();
    let mut kit = kit(&config(), &bus);
    let kpi = Kpi::in_memory(&mut kit);
    let service = start_service_with_http(kit, kpi).await;
    let mut client = KpiServiceClient::connect(service.url()).await.expect("connect");
    for story in [
        handled_story("ct_usage0001", Channel::Voice, 90_000, 5_000, Direction::Inbound),
        handled_story("ct_usage0002", Channel::Voice, 30_500, 5_001, Direction::Outbound),
        handled_story("ct_usage0003", Channel::Chat, 600_000, 5_000, Direction::Inbound),
    ] {
        publish(&bus, &story.events()).await;
    }
    // Two SMS replies (the first reported three times: a replay and an
    // edit's republication), one chat reply, a customer's message (not
    // metered), a reply of November, an SMS notification whose
    // conversation has no contact yet, and last a voice-channel message.
    let (sms, chat, november, last) =
        (MessageId::generate(), MessageId::generate(), MessageId::generate(), MessageId::generate());
    let (second_sms, notification) = (MessageId::generate(), MessageId::generate());
    let messages = [
        message_added(&sms, Direction::Outbound, Channel::Sms, ARRIVAL_MS),
        message_added(&sms, Direction::Outbound, Channel::Sms, ARRIVAL_MS),
        message_added(&sms, Direction::Outbound, Channel::Sms, ARRIVAL_MS + 60_000),
        message_added(&second_sms, Direction::Outbound, Channel::Sms, ARRIVAL_MS + 1),
        message_added(&chat, Direction::Outbound, Channel::Chat, ARRIVAL_MS),
        message_added(&MessageId::generate(), Direction::Inbound, Channel::Chat, ARRIVAL_MS),
        message_added(&november, Direction::Outbound, Channel::Sms, ARRIVAL_MS - 3 * 86_400_000),
        notification_before_any_contact(&notification, ARRIVAL_MS),
        message_added(&last, Direction::Outbound, Channel::Voice, ARRIVAL_MS),
    ];
    for envelope in &messages {
        bus.publish(CONTACTS_TOPIC, envelope).await.expect("publish");
    }
    let request = || GetUsageRequest { parent: "tenants/acme".to_owned(), month: "2026-12".to_owned() };
    let voice_message_counted = |usage: &Usage| {
        usage.channels.iter().any(|row| row.channel == Channel::Voice as i32 && row.outbound_messages == 1)
    };
    let usage = loop {
        let usage = client.get_usage(authorized(ACME_READER_KEY, request())).await.expect("usage").into_inner();
        // The voice message comes last on its key, so every message keyed
        // like it is counted by then; the notification is keyed apart.
        let totals = usage.total.as_ref().map(|total| (total.handled, total.outbound_messages));
        if totals.is_some_and(|(handled, sent)| handled == 3 && sent >= 5) && voice_message_counted(&usage) {
            break usage;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let rows: Vec<(i32, i64, i64, i64, i64)> = usage
        .channels
        .iter()
        .map(|row| (row.channel, row.contacts, row.handled, row.handle_minutes, row.outbound_messages))
        .collect();
    // Voice: 90 s + 30.5 s = 2 min 0.5 s, billed as 3 minutes; SMS had
    // messages but no contacts.
    let expected = vec![
        (Channel::Voice as i32, 2, 2, 3, 1),
        (Channel::Chat as i32, 1, 1, 10, 1),
        (Channel::Sms as i32, 0, 0, 0, 3),
    ];
    assert_eq!(rows, expected);
    assert_eq!(usage.total.as_ref().map(|total| total.outbound_messages), Some(5));
    let november = GetUsageRequest { month: "2026-11".to_owned(), ..request() };
    let nothing = client.get_usage(authorized(ACME_READER_KEY, november)).await.expect("usage").into_inner();
    let november_rows: Vec<(i32, i64, i64)> =
        nothing.channels.iter().map(|row| (row.channel, row.contacts, row.outbound_messages)).collect();
    assert_eq!(november_rows, vec![(Channel::Sms as i32, 0, 1)], "November holds one reply and no contact");

    let http = service.http_address.expect("http");
    let csv = http_request(
        http,
        "GET",
        "/usage.csv?tenant=acme&month=2026-12",
        &[("authorization", &format!("Bearer {ACME_READER_KEY}"))],
        b"",
    )
    .await
    .expect("csv");
    assert_eq!(csv.status, 200, "{csv:?}");
    assert_eq!(
        csv.body,
        "tenant,month,channel,contacts,answered,handled,handle_ms,handle_minutes,callbacks,outbound_contacts,\
         outbound_messages\n\
         acme,2026-12,voice,2,2,2,120500,3,1,1,1\n\
         acme,2026-12,chat,1,1,1,600000,10,1,0,1\n\
         acme,2026-12,sms,0,0,0,0,0,0,0,3\n\
         acme,2026-12,all,3,3,3,720500,13,2,1,5\n"
    );

    let foreign = client.get_usage(authorized(GLOBEX_READER_KEY, request())).await.expect_err("globex");
    assert_eq!(foreign.code(), Code::PermissionDenied);
    let refused = http_request(
        http,
        "GET",
        "/usage.csv?tenant=acme&month=2026-12",
        &[("authorization", &format!("Bearer {GLOBEX_READER_KEY}"))],
        b"",
    )
    .await
    .expect("refusal");
    assert_eq!(refused.status, 403);
    let malformed = GetUsageRequest { month: "2026-13".to_owned(), ..request() };
    let invalid = client.get_usage(authorized(ACME_READER_KEY, malformed)).await.expect_err("month");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    service.stop().await;
}
