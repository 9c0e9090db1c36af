//! Agent states the platform sets, through the public gRPC API with a
//! routing service beside presence: wrap-up after a completed contact (its
//! timer, ending it early, routing holding work back meanwhile), and
//! not-responding after offers time out in a row; the work a reconnecting
//! desktop is sent again; and a conversation's messages, live.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use prost_types::Duration as ProtoDuration;
use support::{Cluster, Desktop, WAIT, publish_contact_to};
use switchboard_core::event::{CONTACTS_TOPIC, ROUTING_TOPIC};
use switchboard_platform::bus::{EventBus, StartFrom};
use switchboard_proto::common::v1::Channel;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{ContactEvent, Message, MessageAdded, contact_event};
use switchboard_proto::presence::v1::{
    AcceptOffer, AgentState, ContactInProgress, Offer, SetAgentStateRequest, agent_session_request,
    agent_session_response,
};
use switchboard_proto::routing::v1::{Queue, WithdrawReason, routing_event};
use switchboard_test_support::{authorized, next_routing_event};

fn chat_queue(wrap_up_ms: i32) -> Queue {
    Queue {
        channels: vec![Channel::Chat as i32],
        wrap_up_time: Some(ProtoDuration { seconds: 0, nanos: wrap_up_ms * 1_000_000 }),
        ..Queue::default()
    }
}

#[tokio::test]
async fn wrap_up_follows_a_completed_contact_and_ends_by_itself() {
    let mut cluster = Cluster::start().await;
    cluster.create_alice().await;
    cluster.create_queue("support", chat_queue(300)).await;
    let mut desktop = cluster.available_desktop("alice").await;

    let first = publish_contact_to(&cluster.bus, "support").await;
    assert_eq!(desktop.until_offer().await.contact, first);
    desktop.handle(&first).await;
    let wrap_up = desktop.until_state(AgentState::WrapUp).await;
    assert!(wrap_up.wrap_up_end_time.is_some(), "the desktop learns when wrap-up ends");
    assert_eq!(cluster.agent_state("alice").await, AgentState::WrapUp as i32);

    // Work arriving during wrap-up waits for the agent: routing treats
    // WRAP_UP as unavailable (an offer made in the instant between the
    // completion and routing learning of the wrap-up is withdrawn again).
    let second = publish_contact_to(&cluster.bus, "support").await;
    desktop.until_state(AgentState::Available).await;
    assert_eq!(cluster.agent_state("alice").await, AgentState::Available as i32);
    assert_eq!(desktop.until_offer().await.contact, second, "the waiting contact is offered once wrap-up ends");
    cluster.stop().await;
}

#[tokio::test]
async fn the_agent_ends_wrap_up_early() {
    let mut cluster = Cluster::start().await;
    cluster.create_alice().await;
    cluster
        .create_queue("slow", Queue { wrap_up_time: Some(ProtoDuration { seconds: 600, nanos: 0 }), ..chat_queue(0) })
        .await;
    let mut desktop = cluster.available_desktop("alice").await;
    let first = publish_contact_to(&cluster.bus, "slow").await;
    assert_eq!(desktop.until_offer().await.contact, first);
    desktop.handle(&first).await;
    desktop.until_state(AgentState::WrapUp).await;

    assert!(matches!(
        desktop.set_state(AgentState::Available, "").await,
        agent_session_response::Kind::StateChanged(changed) if changed.state == AgentState::Available as i32
    ));
    assert_eq!(cluster.agent_state("alice").await, AgentState::Available as i32);
    let second = publish_contact_to(&cluster.bus, "slow").await;
    assert_eq!(desktop.until_offer().await.contact, second, "an agent who ended wrap-up gets work at once");

    // A queue without wrap-up leaves the agent available.
    cluster.create_queue("quick", chat_queue(0)).await;
    desktop.handle(&second).await;
    desktop.until_state(AgentState::WrapUp).await;
    assert!(matches!(
        desktop.set_state(AgentState::Available, "").await,
        agent_session_response::Kind::StateChanged(_)
    ));
    let third = publish_contact_to(&cluster.bus, "quick").await;
    assert_eq!(desktop.until_offer().await.contact, third);
    desktop.handle(&third).await;
    let fourth = publish_contact_to(&cluster.bus, "quick").await;
    assert_eq!(desktop.until_offer().await.contact, fourth, "no wrap-up after a queue without one");
    assert_eq!(cluster.agent_state("alice").await, AgentState::Available as i32);
    cluster.stop().await;
}

fn quick_offers(wrap_up_ms: i32) -> Queue {
    Queue { offer_timeout: Some(ProtoDuration { seconds: 1, nanos: 0 }), ..chat_queue(wrap_up_ms) }
}

#[tokio::test]
async fn offers_timing_out_in_a_row_make_the_agent_not_responding_until_it_chooses_a_state() {
    let mut cluster = Cluster::start_with(|config| config.presence.missed_offers_threshold = 2).await;
    cluster.create_alice().await;
    cluster.create_queue("support", quick_offers(0)).await;
    let mut desktop = cluster.available_desktop("alice").await;

    // One miss, then an answer: the count starts again.
    let first = publish_contact_to(&cluster.bus, "support").await;
    assert_eq!(desktop.until_offer().await.contact, first);
    let revoked = desktop.until_revoked().await;
    assert_eq!((revoked.contact.as_str(), revoked.reason.as_str()), (first.as_str(), "WITHDRAW_REASON_TIMED_OUT"));
    assert_eq!(desktop.until_offer().await.contact, first, "the only agent is offered the contact again");
    desktop.handle(&first).await;
    assert_eq!(cluster.agent_state("alice").await, AgentState::Available as i32, "one miss is within the limit");

    // Two misses in a row.
    let second = publish_contact_to(&cluster.bus, "support").await;
    assert_eq!(desktop.until_offer().await.contact, second);
    desktop.until_revoked().await;
    assert_eq!(desktop.until_offer().await.contact, second);
    desktop.until_revoked().await;
    desktop.until_state(AgentState::NotResponding).await;
    assert_eq!(cluster.agent_state("alice").await, AgentState::NotResponding as i32);

    // Back by the agent's own choice, and offered work again.
    assert!(matches!(
        desktop.set_state(AgentState::Available, "").await,
        agent_session_response::Kind::StateChanged(changed) if changed.state == AgentState::Available as i32
    ));
    accept_a_current_offer(&mut desktop, &second).await;
    assert_eq!(cluster.agent_state("alice").await, AgentState::Available as i32);
    cluster.stop().await;
}

/// Accepts an offer of `contact`: routing may have offered it once more
/// while the agent was going NOT_RESPONDING, and that offer, read
/// meanwhile, times out unanswered; the accept of a later offer succeeds.
async fn accept_a_current_offer(desktop: &mut Desktop, contact: &str) {
    for _ in 0..3 {
        assert_eq!(desktop.until_offer().await.contact, contact);
        desktop.send(agent_session_request::Kind::AcceptOffer(AcceptOffer { contact: contact.to_owned() })).await;
        let accepted = desktop
            .until(|kind| match kind {
                agent_session_response::Kind::OfferAccepted(accepted) if accepted.contact == contact => Some(true),
                agent_session_response::Kind::Error(error) if error.contact == contact => {
                    assert_eq!(error.reason, "OFFER_EXPIRED", "only a stale offer may be refused: {error:?}");
                    Some(false)
                }
                _ => None,
            })
            .await;
        if accepted {
            return;
        }
    }
    panic!("no offer of {contact} could be accepted");
}

/// Offers that time out before reaching the agent's desktop (presence or
/// the desktop's connection was down) are not the agent's misses; once a
/// desktop is sent them, they count again.
#[tokio::test]
async fn offers_that_never_reached_the_desktop_are_not_missed_offers() {
    let mut cluster = Cluster::start_with(|config| config.presence.missed_offers_threshold = 2).await;
    cluster.create_alice().await;
    cluster.create_queue("support", quick_offers(0)).await;
    let mut events = cluster.bus.subscribe("unseen-test", &[ROUTING_TOPIC], StartFrom::Earliest).await.unwrap();
    // Available by a supervisor, with no desktop connected.
    let request = SetAgentStateRequest {
        name: "agents/alice".into(),
        state: AgentState::Available as i32,
        reason: String::new(),
    };
    cluster.presence.set_agent_state(authorized("operator", request)).await.unwrap();
    let contact = publish_contact_to(&cluster.bus, "support").await;
    for _ in 0..3 {
        next_routing_event(&mut events, WAIT, |kind| match kind {
            routing_event::Kind::OfferWithdrawn(withdrawn) if withdrawn.reason == WithdrawReason::TimedOut as i32 => {
                Some(())
            }
            _ => None,
        })
        .await
        .unwrap();
    }
    assert_eq!(cluster.agent_state("alice").await, AgentState::Available as i32, "unseen offers are not misses");

    // A desktop connects and is sent the ringing offer: its misses count.
    let mut desktop = cluster.open_session("alice", "alice").await.unwrap();
    assert_eq!(desktop.until_offer().await.contact, contact);
    desktop.until_revoked().await;
    assert_eq!(desktop.until_offer().await.contact, contact);
    desktop.until_revoked().await;
    desktop.until_state(AgentState::NotResponding).await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_threshold_of_zero_never_sets_not_responding() {
    let mut cluster = Cluster::start_with(|config| config.presence.missed_offers_threshold = 0).await;
    cluster.create_alice().await;
    cluster.create_queue("support", quick_offers(0)).await;
    let mut desktop = cluster.available_desktop("alice").await;
    let contact = publish_contact_to(&cluster.bus, "support").await;
    for _ in 0..2 {
        assert_eq!(desktop.until_offer().await.contact, contact);
        desktop.until_revoked().await;
    }
    assert_eq!(desktop.until_offer().await.contact, contact, "still offered work after two misses");
    assert_eq!(cluster.agent_state("alice").await, AgentState::Available as i32);
    cluster.stop().await;
}

#[tokio::test]
async fn a_reconnecting_desktop_is_sent_its_ringing_offers_and_contacts_in_progress() {
    let mut cluster = Cluster::start().await;
    cluster.create_alice().await;
    cluster.create_queue("support", chat_queue(0)).await;
    let mut desktop = cluster.available_desktop("alice").await;
    let contact = publish_contact_to(&cluster.bus, "support").await;
    assert_eq!(desktop.until_offer().await.contact, contact);
    cluster.wait_for_work("alice", 1).await;

    // The desktop crashes while the offer rings and comes back within the
    // grace period: the offer is sent again.
    drop(desktop);
    let mut desktop = cluster.open_session("alice", "alice").await.unwrap();
    assert!(matches!(desktop.next().await, agent_session_response::Kind::SessionStarted(started)
        if started.state == AgentState::Available as i32));
    assert_eq!(desktop.until_offer().await.contact, contact, "the ringing offer is sent again");
    desktop.accept(&contact).await;
    cluster.wait_for_answered("alice", &contact).await;

    // And again while handling it: the contact in progress is sent.
    drop(desktop);
    let mut desktop = cluster.open_session("alice", "alice").await.unwrap();
    let in_progress = desktop.until_in_progress().await;
    assert_eq!(in_progress.contact, contact);
    assert_eq!(in_progress.queue, "tenants/acme/queues/support");
    assert!(in_progress.answer_time.is_some());
    desktop.handle_accepted(&contact).await;
    cluster.wait_for_work("alice", 0).await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_conversations_messages_reach_the_desktop_of_the_agent_holding_its_contact() {
    let mut cluster = Cluster::start().await;
    cluster.create_alice().await;
    cluster.create_queue("support", chat_queue(0)).await;
    let mut desktop = cluster.available_desktop("alice").await;
    let contact = publish_contact_to(&cluster.bus, "support").await;
    assert_eq!(desktop.until_offer().await.contact, contact);
    desktop.accept(&contact).await;
    cluster.wait_for_answered("alice", &contact).await;

    let (tenant, contact_id) = switchboard_core::names::parse_contact(&contact, "contact").unwrap();
    let added = MessageAdded {
        conversation: "tenants/acme/conversations/cv_0190a5b2c3d47e8f9a0b1c2d3e4f5a6b".to_owned(),
        contact: contact.clone(),
        message: Some(Message { text: "Is anyone there?".to_owned(), ..Message::default() }),
        channel_kind: switchboard_proto::common::v1::Channel::Chat as i32,
    };
    let event = ContactEvent { kind: Some(contact_event::Kind::MessageAdded(added.clone())) };
    let envelope = switchboard_core::event::envelope(Some(&tenant), contact_id.as_str(), Payload::Contact(event));
    cluster.bus.publish(CONTACTS_TOPIC, &envelope).await.unwrap();
    let pushed = desktop
        .until(|kind| match kind {
            agent_session_response::Kind::MessageAdded(pushed) => Some(pushed.clone()),
            _ => None,
        })
        .await;
    assert_eq!(pushed, added, "the customer's message reaches the handling agent live");

    // A message of a contact nobody holds goes nowhere, and nothing breaks.
    let stray =
        MessageAdded { contact: "tenants/acme/contacts/ct_0190a5b2c3d47e8f9a0b1c2d3e4f5a6b".to_owned(), ..added };
    let event = ContactEvent { kind: Some(contact_event::Kind::MessageAdded(stray)) };
    let envelope = switchboard_core::event::envelope(
        Some(&tenant),
        "ct_0190a5b2c3d47e8f9a0b1c2d3e4f5a6b",
        Payload::Contact(event),
    );
    cluster.bus.publish(CONTACTS_TOPIC, &envelope).await.unwrap();
    desktop.handle_accepted(&contact).await;
    cluster.wait_for_work("alice", 0).await;
    cluster.stop().await;
}

/// Publishes `contact`'s creation in queue `queue_id` (of `channel`),
/// lets alice accept its offer, reconnects her desktop: the offer and the
/// contact in progress she gets.
async fn offered_then_in_progress(
    queue_id: &str,
    channel: Channel,
    contact: switchboard_proto::ingestion::v1::Contact,
) -> (Offer, ContactInProgress) {
    let mut cluster = Cluster::start().await;
    cluster.create_alice().await;
    cluster.create_queue(queue_id, Queue { channels: vec![channel as i32], ..Queue::default() }).await;
    let mut desktop = cluster.available_desktop("alice").await;
    let tenant = switchboard_core::TenantId::parse("acme", "t").unwrap();
    let contact_id = switchboard_core::ContactId::generate();
    let contact = switchboard_proto::ingestion::v1::Contact {
        name: switchboard_core::names::contact_name(&tenant, &contact_id),
        channel: channel as i32,
        queue: format!("tenants/acme/queues/{queue_id}"),
        create_time: Some(switchboard_core::time::timestamp_from_millis(switchboard_core::time::now_millis())),
        ..contact
    };
    let created = switchboard_proto::ingestion::v1::ContactCreated { contact: Some(contact.clone()) };
    let event = ContactEvent { kind: Some(contact_event::Kind::Created(created)) };
    let envelope = switchboard_core::event::envelope(Some(&tenant), contact_id.as_str(), Payload::Contact(event));
    cluster.bus.publish(CONTACTS_TOPIC, &envelope).await.unwrap();
    let offer = desktop.until_offer().await;
    assert_eq!(offer.contact, contact.name);
    desktop.accept(&contact.name).await;
    cluster.wait_for_answered("alice", &contact.name).await;
    // A desktop that reconnects mid-contact gets it again.
    drop(desktop);
    let mut desktop = cluster.open_session("alice", "alice").await.unwrap();
    let in_progress = desktop.until_in_progress().await;
    desktop.handle_accepted(&contact.name).await;
    cluster.wait_for_work("alice", 0).await;
    cluster.stop().await;
    (offer, in_progress)
}

#[tokio::test]
async fn a_video_contacts_offer_carries_its_session_link() {
    let contact = switchboard_proto::ingestion::v1::Contact {
        session_url: "https://meet.example.com/r/abc-123".to_owned(),
        ..Default::default()
    };
    let (offer, in_progress) = offered_then_in_progress("video", Channel::Video, contact).await;
    assert_eq!(offer.session_url, "https://meet.example.com/r/abc-123");
    assert_eq!(in_progress.session_url, "https://meet.example.com/r/abc-123");
    assert!(offer.conversation.is_empty());
}

#[tokio::test]
async fn a_conversations_offer_names_its_conversation() {
    let conversation = "tenants/acme/conversations/cv_0123".to_owned();
    let contact = switchboard_proto::ingestion::v1::Contact {
        attributes: [("conversation".to_owned(), conversation.clone())].into_iter().collect(),
        ..Default::default()
    };
    let (offer, in_progress) = offered_then_in_progress("chat", Channel::Chat, contact).await;
    assert_eq!(offer.conversation, conversation);
    assert_eq!(in_progress.conversation, conversation, "a desktop that reconnects finds the conversation again");
}
