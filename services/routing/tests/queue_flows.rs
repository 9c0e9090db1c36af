//! Queue flows beyond plain offers, through the public API and events on
//! in-memory stores: bullseye escalation, preferred agent, max wait with
//! overflow or loss, business hours, transfers, queued callbacks and the
//! queue status a wallboard or IVR reads, each with its bad input.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use prost_types::{Duration as ProtoDuration, FieldMask};
use switchboard_core::time::now_millis;
use switchboard_proto::common::v1::{Channel, ContactStatus, Skill};
use switchboard_proto::presence::v1::AgentState;
use switchboard_proto::routing::v1::{
    AcceptOfferRequest, Assignment, BusinessHours, ClosedAction, CompleteContactRequest, CreateQueueRequest, EndReason,
    EscalationStep, GetAssignmentRequest, GetQueueStatusRequest, Queue, RequestCallbackRequest, RoutingStrategy,
    TransferContactRequest, TransferReason, UpdateQueueRequest, WithdrawReason, routing_event,
    transfer_contact_request,
};
use switchboard_test_support::{authorized, next_routing_event};
use tonic::Code;

use support::{Routing, WAIT, code_of};

fn seconds(seconds: i64) -> Option<ProtoDuration> {
    Some(ProtoDuration { seconds, nanos: 0 })
}

fn chat_queue() -> Queue {
    Queue { channels: vec![Channel::Chat as i32], offer_timeout: seconds(30), ..Queue::default() }
}

fn billing(level: i32) -> Skill {
    Skill { name: "billing".into(), level, ..Skill::default() }
}

impl Routing {
    async fn queue(&mut self, queue_id: &str, queue: Queue) {
        let request =
            CreateQueueRequest { parent: "tenants/acme".into(), queue_id: queue_id.into(), queue: Some(queue) };
        self.client.create_queue(authorized("acme-admin", request)).await.unwrap();
    }

    async fn assignment(&mut self, contact: &str) -> Assignment {
        let request = GetAssignmentRequest { contact: contact.into() };
        self.client.get_assignment(authorized("acme-reader", request)).await.unwrap().into_inner()
    }

    /// Polls the assignment until `done` holds.
    async fn assignment_until(&mut self, contact: &str, done: impl Fn(&Assignment) -> bool) -> Assignment {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let assignment = self.assignment(contact).await;
            if done(&assignment) {
                return assignment;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out; last assignment {assignment:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn transferred(&mut self) -> switchboard_proto::routing::v1::ContactTransferred {
        next_routing_event(&mut self.events, WAIT, |kind| match kind {
            routing_event::Kind::Transferred(transferred) => Some(transferred),
            _ => None,
        })
        .await
        .unwrap()
    }

    async fn answer(&mut self, agent: &str, contact: &str) {
        let request = AcceptOfferRequest { contact: contact.into() };
        self.client.accept_offer(authorized(agent, request)).await.unwrap();
    }

    async fn complete(&mut self, agent: &str, contact: &str) {
        let request =
            CompleteContactRequest { contact: contact.into(), disposition: "done".into(), ..Default::default() };
        self.client.complete_contact(authorized(agent, request)).await.unwrap();
    }
}

#[tokio::test]
async fn escalation_widens_the_agents_after_a_wait() {
    let mut routing = Routing::start().await;
    let queue = Queue {
        required_skills: vec![billing(5)],
        escalation_steps: vec![EscalationStep { after: seconds(1), required_skills: vec![billing(2)] }],
        ..chat_queue()
    };
    routing.queue("billing", queue).await;
    routing.agent_with("alice", AgentState::Available, vec![billing(2)], 2).await;
    let fresh = routing.contact("billing").await;
    let waited = routing.contact_with("billing", 0, now_millis() - 3_000).await;
    let first = routing.offered().await;
    assert_eq!(first.contact, waited, "only the contact past its escalation step fits a level-2 agent");
    assert_eq!(routing.assignment(&fresh).await.status, ContactStatus::Queued as i32);
    let second = routing.offered().await;
    assert_eq!(second.contact, fresh, "after a second of waiting the fresh contact escalates too");
    routing.stop().await;
}

#[tokio::test]
async fn a_contact_behind_more_heads_than_a_shallow_pass_reads_reaches_the_agent_who_can_take_it() {
    let mut routing = Routing::start().await;
    let queue = Queue {
        required_skills: vec![billing(5)],
        escalation_steps: vec![EscalationStep { after: seconds(60), required_skills: vec![billing(2)] }],
        ..chat_queue()
    };
    routing.queue("billing", queue).await;
    routing.agent_with("alice", AgentState::Available, vec![billing(2)], 2).await;
    // Ahead in the line (higher priority) and more than a shallow pass
    // reads, none of which alice may take for the next minute.
    let mut heads = Vec::new();
    for _ in 0..12 {
        heads.push(routing.contact_with("billing", 50, now_millis()).await);
    }
    let escalated = routing.contact_with("billing", 0, now_millis() - 61_000).await;
    let offer = routing.offered().await;
    assert_eq!(
        (offer.contact.as_str(), offer.agent.as_str()),
        (escalated.as_str(), "agents/alice"),
        "the matcher looks past heads nobody free can take"
    );
    for head in &heads {
        assert_eq!(routing.assignment(head).await.status, ContactStatus::Queued as i32);
    }
    routing.stop().await;
}

#[tokio::test]
async fn the_customers_last_agent_gets_the_next_contact_first() {
    let mut routing = Routing::start().await;
    let queue =
        Queue { preferred_agent_window: seconds(60), strategy: RoutingStrategy::LeastOccupied as i32, ..chat_queue() };
    routing.queue("support", queue).await;
    routing.agent_with("alice", AgentState::Available, Vec::new(), 2).await;
    let first = routing.contact_of("support", 0, now_millis(), "cu_7").await;
    assert_eq!(routing.offered().await.agent, "agents/alice");
    routing.answer("alice", &first).await;
    routing.complete("alice", &first).await;
    let busy = routing.contact_of("support", 0, now_millis(), "cu_1").await;
    assert_eq!(routing.offered().await.agent, "agents/alice");
    routing.answer("alice", &busy).await;
    // Bob joins with more room: least occupied prefers him (0 of 3, then
    // 1 of 3, against alice's 1 of 2).
    routing.agent_with("bob", AgentState::Available, Vec::new(), 3).await;
    let other_customer = routing.contact_of("support", 0, now_millis(), "cu_8").await;
    let offer = routing.offered().await;
    assert_eq!((offer.contact.as_str(), offer.agent.as_str()), (other_customer.as_str(), "agents/bob"));
    routing.answer("bob", &other_customer).await;
    let returning = routing.contact_of("support", 0, now_millis(), "cu_7").await;
    let offer = routing.offered().await;
    assert_eq!(
        (offer.contact.as_str(), offer.agent.as_str()),
        (returning.as_str(), "agents/alice"),
        "the customer's last agent first, although bob is less occupied"
    );
    routing.stop().await;
}

/// A contact that arrived without its customer (intake could not ask CRM)
/// and is still waiting takes the customer CRM resolved later, and with it
/// the customer's last agent first: bob, free, does not get it while
/// alice, full, is available (he gets a newer contact instead).
#[tokio::test]
async fn a_customer_resolved_after_arrival_brings_the_last_agent_to_a_waiting_contact() {
    let mut routing = Routing::start().await;
    routing.queue("support", Queue { preferred_agent_window: seconds(60), ..chat_queue() }).await;
    routing.agent_with("alice", AgentState::Available, Vec::new(), 2).await;
    let earlier = routing.contact_of("support", 0, now_millis(), "cu_7").await;
    assert_eq!(routing.offered().await.agent, "agents/alice");
    routing.answer("alice", &earlier).await;
    routing.complete("alice", &earlier).await;
    let mut busy = Vec::new();
    for customer in ["cu_1", "cu_2"] {
        let contact = routing.contact_of("support", 0, now_millis(), customer).await;
        assert_eq!(routing.offered().await.contact, contact);
        routing.answer("alice", &contact).await;
        busy.push(contact);
    }
    let late = routing.contact_of("support", 0, now_millis(), "").await;
    let waiting = routing.assignment(&late).await;
    assert_eq!((waiting.status, waiting.customer.as_str()), (ContactStatus::Queued as i32, ""));
    routing.customer_resolved(&late, "cu_7").await;
    routing.assignment_until(&late, |assignment| assignment.customer == "tenants/acme/customers/cu_7").await;
    // Bob comes online and a newer contact arrives: bob gets that one,
    // the older contact being held for alice.
    routing.agent_with("bob", AgentState::Available, Vec::new(), 3).await;
    let newer = routing.contact_of("support", 0, now_millis(), "cu_3").await;
    let offer = routing.offered().await;
    assert_eq!((offer.contact.as_str(), offer.agent.as_str()), (newer.as_str(), "agents/bob"));
    routing.complete("alice", &busy[0]).await;
    let offer = routing.offered().await;
    assert_eq!(
        (offer.contact.as_str(), offer.agent.as_str()),
        (late.as_str(), "agents/alice"),
        "the customer's last agent first, once she has room"
    );
    routing.stop().await;
}

/// A contact answered before CRM resolved its customer makes its agent the
/// customer's last, so the customer's next contact prefers that agent.
#[tokio::test]
async fn a_customer_resolved_after_the_answer_remembers_the_agent() {
    let mut routing = Routing::start().await;
    let queue =
        Queue { preferred_agent_window: seconds(60), strategy: RoutingStrategy::LeastOccupied as i32, ..chat_queue() };
    routing.queue("support", queue).await;
    routing.agent_with("alice", AgentState::Available, Vec::new(), 2).await;
    let late = routing.contact_of("support", 0, now_millis(), "").await;
    assert_eq!(routing.offered().await.agent, "agents/alice");
    routing.answer("alice", &late).await;
    routing.customer_resolved(&late, "cu_9").await;
    routing.assignment_until(&late, |assignment| assignment.customer == "tenants/acme/customers/cu_9").await;
    // Bob, emptier, would win by least occupancy.
    routing.agent_with("bob", AgentState::Available, Vec::new(), 3).await;
    let next = routing.contact_of("support", 0, now_millis(), "cu_9").await;
    let offer = routing.offered().await;
    assert_eq!((offer.contact.as_str(), offer.agent.as_str()), (next.as_str(), "agents/alice"));
    routing.stop().await;
}

#[tokio::test]
async fn a_contact_past_max_wait_overflows_keeping_its_age_or_ends_as_lost() {
    let mut routing = Routing::start().await;
    routing.queue("front", Queue { max_wait: seconds(1), overflow_queue: "backup".into(), ..chat_queue() }).await;
    routing.queue("backup", Queue { max_wait: seconds(1), ..chat_queue() }).await;
    let contact = routing.contact("front").await;
    let queued = routing.assignment(&contact).await;
    let moved = routing.transferred().await;
    assert_eq!((moved.contact.as_str(), moved.to_queue.as_str()), (contact.as_str(), "tenants/acme/queues/backup"));
    assert_eq!(moved.reason, TransferReason::MaxWait as i32);
    let lost = routing.assignment_until(&contact, |a| a.status == ContactStatus::Abandoned as i32).await;
    assert_eq!(lost.end_reason, EndReason::MaxWait as i32, "routing ended it, the customer did not leave");
    assert_eq!(lost.queue, "tenants/acme/queues/backup");
    assert_eq!(lost.enqueue_time, queued.enqueue_time, "the age is kept across the overflow");
    let abandoned = next_routing_event(&mut routing.events, WAIT, |kind| match kind {
        routing_event::Kind::Abandoned(abandoned) => Some(abandoned),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(abandoned.reason, EndReason::MaxWait as i32);
    routing.stop().await;
}

#[tokio::test]
async fn closed_queues_reject_overflow_or_keep_contacts_by_their_closed_action() {
    let mut routing = Routing::start().await;
    // Open one minute a week, on a holiday: closed whenever this runs.
    let closed = |action: ClosedAction| BusinessHours {
        time_zone: "Europe/Moscow".into(),
        weekly: vec![switchboard_proto::routing::v1::OpeningHours {
            day_of_week: 1,
            open: "03:00".into(),
            close: "03:01".into(),
        }],
        holidays: Vec::new(),
        closed_action: action as i32,
    };
    routing.queue("night", Queue { business_hours: Some(closed(ClosedAction::Reject)), ..chat_queue() }).await;
    routing.queue("day", chat_queue()).await;
    let overflowing =
        Queue { business_hours: Some(closed(ClosedAction::Overflow)), overflow_queue: "day".into(), ..chat_queue() };
    routing.queue("evening", overflowing).await;
    routing.queue("mail", Queue { business_hours: Some(closed(ClosedAction::Queue)), ..chat_queue() }).await;
    let to_nowhere =
        Queue { business_hours: Some(closed(ClosedAction::Overflow)), overflow_queue: "ghost".into(), ..chat_queue() };
    routing.queue("late", to_nowhere).await;

    let status = routing
        .client
        .get_queue_status(authorized("acme-reader", GetQueueStatusRequest { name: "tenants/acme/queues/night".into() }))
        .await
        .unwrap()
        .into_inner();
    if status.open {
        // The one open minute: nothing about closing can be observed now.
        routing.stop().await;
        return;
    }
    let rejected = routing.contact("night").await;
    let ended = routing.assignment_until(&rejected, |a| a.status == ContactStatus::Abandoned as i32).await;
    assert_eq!(ended.end_reason, EndReason::Closed as i32);
    let stranded = routing.contact("late").await;
    let ended = routing.assignment_until(&stranded, |a| a.status == ContactStatus::Abandoned as i32).await;
    assert_eq!(ended.end_reason, EndReason::Closed as i32, "an overflow queue that does not exist rejects");
    let redirected = routing.contact("evening").await;
    let moved = routing.transferred().await;
    assert_eq!((moved.contact.as_str(), moved.reason), (redirected.as_str(), TransferReason::Closed as i32));
    let kept = routing.contact("mail").await;
    routing.agent("alice", AgentState::Available).await;
    let mut offered = vec![routing.offered().await.contact];
    routing.agent_with("bob", AgentState::Available, Vec::new(), 1).await;
    offered.push(routing.offered().await.contact);
    offered.sort();
    let mut expected = vec![redirected, kept];
    expected.sort();
    assert_eq!(offered, expected, "the overflowed and the kept contact are served, the rejected one is not");
    routing.stop().await;
}

#[tokio::test]
async fn transfers_keep_age_release_the_agent_and_reject_bad_targets() {
    let mut routing = Routing::start().await;
    routing.queue("support", chat_queue()).await;
    routing.queue("billing", chat_queue()).await;
    routing.agent("alice", AgentState::Available).await;
    let contact = routing.contact_with("support", 0, now_millis() - 10_000).await;
    assert_eq!(routing.offered().await.agent, "agents/alice");
    routing.answer("alice", &contact).await;
    let before = routing.assignment(&contact).await;

    let transfer = |target: transfer_contact_request::Target| TransferContactRequest {
        contact: contact.clone(),
        target: Some(target),
    };
    let to_queue = |queue: &str| transfer(transfer_contact_request::Target::Queue(queue.into()));
    let to_agent = |agent: &str| transfer(transfer_contact_request::Target::Agent(agent.into()));
    let cases = [
        ("globex-admin", to_queue("tenants/acme/queues/billing"), Code::PermissionDenied, vec![]),
        ("acme-reader", to_queue("tenants/acme/queues/billing"), Code::PermissionDenied, vec![]),
        ("acme-admin", to_queue("tenants/globex/queues/billing"), Code::InvalidArgument, vec!["queue".to_owned()]),
        ("acme-admin", to_queue("tenants/acme/queues/nowhere"), Code::NotFound, vec![]),
        ("acme-admin", to_agent("agents/nobody"), Code::InvalidArgument, vec!["agent".to_owned()]),
        (
            "acme-admin",
            TransferContactRequest { contact: contact.clone(), target: None },
            Code::InvalidArgument,
            vec!["queue".to_owned()],
        ),
        ("bob", to_queue("tenants/acme/queues/billing"), Code::NotFound, vec![]),
    ];
    for (key, request, code, fields) in cases {
        let (got, violated) = code_of(routing.client.transfer_contact(authorized(key, request)).await);
        assert_eq!((got, violated), (code, fields), "{key}");
    }
    assert_eq!(routing.assignment(&contact).await, before, "rejected transfers change nothing");

    routing.client.transfer_contact(authorized("alice", to_queue("tenants/acme/queues/billing"))).await.unwrap();
    let moved = routing.transferred().await;
    assert_eq!((moved.from_agent.as_str(), moved.to_queue.as_str()), ("agents/alice", "tenants/acme/queues/billing"));
    let after = routing.assignment(&contact).await;
    assert_eq!(after.enqueue_time, before.enqueue_time, "the contact keeps its age");
    // Alice was released, so she can be offered it again, now from billing.
    let offer = routing.offered().await;
    assert_eq!((offer.agent.as_str(), offer.queue.as_str()), ("agents/alice", "tenants/acme/queues/billing"));

    // A ringing contact handed to bob, who is not even available yet: alice
    // loses the offer, and only bob gets it once he is.
    routing.agent("bob", AgentState::Away).await;
    routing.assignment_until(&contact, |a| a.status == ContactStatus::Offered as i32).await;
    let wait_for_bob = routing.client.transfer_contact(authorized("acme-admin", to_agent("agents/bob"))).await;
    wait_for_bob.unwrap();
    let withdrawn = routing.withdrawn().await;
    assert_eq!((withdrawn.agent.as_str(), withdrawn.reason), ("agents/alice", WithdrawReason::Transferred as i32));
    routing.agent("bob", AgentState::Available).await;
    assert_eq!(routing.offered().await.agent, "agents/bob", "pinned to bob although alice is free");
    routing.stop().await;
}

#[tokio::test]
async fn chats_of_an_agent_who_goes_offline_return_to_their_queue_keeping_their_age() {
    let mut routing = Routing::start().await;
    routing.queue("support", chat_queue()).await;
    routing.agent("alice", AgentState::Available).await;
    let contact = routing.contact_with("support", 0, now_millis() - 60_000).await;
    assert_eq!(routing.offered().await.agent, "agents/alice");
    routing.answer("alice", &contact).await;
    let answered = routing.assignment(&contact).await;
    routing.agent("alice", AgentState::Away).await;
    routing.agent("bob", AgentState::Away).await;
    routing.agent("alice", AgentState::Offline).await;
    let moved = routing.transferred().await;
    assert_eq!((moved.contact.as_str(), moved.from_agent.as_str()), (contact.as_str(), "agents/alice"));
    assert_eq!(moved.reason, TransferReason::AgentLost as i32);
    let waiting = routing.assignment(&contact).await;
    assert_eq!((waiting.status, waiting.enqueue_time), (ContactStatus::Queued as i32, answered.enqueue_time));
    routing.agent("bob", AgentState::Available).await;
    assert_eq!(routing.offered().await.agent, "agents/bob", "another agent takes over");
    routing.stop().await;
}

#[tokio::test]
async fn an_offer_ringing_when_wrap_up_starts_can_still_be_answered() {
    let mut routing = Routing::start().await;
    routing.queue("support", chat_queue()).await;
    routing.agent_with("alice", AgentState::Available, Vec::new(), 2).await;
    let first = routing.contact("support").await;
    assert_eq!(routing.offered().await.contact, first);
    routing.answer("alice", &first).await;
    let second = routing.contact("support").await;
    assert_eq!(routing.offered().await.contact, second);
    // Alice finishes the first contact and presence puts her in wrap-up;
    // then bob arrives. Presence events are handled in order, so once a new
    // contact is offered to bob, the wrap-up was handled too.
    routing.agent_with("alice", AgentState::WrapUp, Vec::new(), 2).await;
    routing.agent("bob", AgentState::Available).await;
    let third = routing.contact("support").await;
    let offer = routing.offered().await;
    assert_eq!((offer.contact.as_str(), offer.agent.as_str()), (third.as_str(), "agents/bob"));
    let ringing = routing.assignment(&second).await;
    assert_eq!((ringing.status, ringing.agent.as_str()), (ContactStatus::Offered as i32, "agents/alice"));
    routing.answer("alice", &second).await;
    let answered = routing.assignment(&second).await;
    assert_eq!((answered.status, answered.agent.as_str()), (ContactStatus::Answered as i32, "agents/alice"));
    routing.stop().await;
}

#[tokio::test]
async fn a_queued_callback_keeps_its_place_when_the_customer_hangs_up() {
    let mut routing = Routing::start().await;
    routing.queue("support", chat_queue()).await;
    let contact = routing.contact("support").await;
    routing.assignment_until(&contact, |a| a.status == ContactStatus::Queued as i32).await;
    for (key, number, code, fields) in [
        ("acme-admin", "", Code::InvalidArgument, vec!["phone_number".to_owned()]),
        ("acme-admin", "0151 1234", Code::InvalidArgument, vec!["phone_number".to_owned()]),
        ("acme-reader", "+4915112345678", Code::PermissionDenied, vec![]),
        ("globex-admin", "+4915112345678", Code::PermissionDenied, vec![]),
    ] {
        let request = RequestCallbackRequest { contact: contact.clone(), phone_number: number.into() };
        let (got, violated) = code_of(routing.client.request_callback(authorized(key, request)).await);
        assert_eq!((got, violated), (code, fields), "{key} {number}");
    }
    let request = RequestCallbackRequest { contact: contact.clone(), phone_number: "+4915112345678".into() };
    let assignment = routing.client.request_callback(authorized("acme-admin", request)).await.unwrap().into_inner();
    assert_eq!((assignment.callback_number.as_str(), assignment.position), ("+4915112345678", 1));
    routing.customer_leaves(&contact).await;
    let later = routing.contact("support").await;
    routing.assignment_until(&later, |a| a.status == ContactStatus::Queued as i32).await;
    assert_eq!(routing.assignment(&contact).await.position, 1, "still first in line after hanging up");
    routing.agent("alice", AgentState::Available).await;
    let offer = routing.offered().await;
    assert_eq!((offer.contact.as_str(), offer.callback_number.as_str()), (contact.as_str(), "+4915112345678"));
    routing.stop().await;
}

#[tokio::test]
async fn queue_status_counts_the_waiting_and_refuses_other_tenants() {
    let mut routing = Routing::start().await;
    routing.queue("support", chat_queue()).await;
    let oldest = routing.contact_with("support", 0, now_millis() - 5_000).await;
    let mut last = oldest.clone();
    for _ in 0..2 {
        last = routing.contact("support").await;
    }
    routing.assignment_until(&last, |a| a.status == ContactStatus::Queued as i32).await;
    let request = || GetQueueStatusRequest { name: "tenants/acme/queues/support".into() };
    let status = routing.client.get_queue_status(authorized("acme-reader", request())).await.unwrap().into_inner();
    assert!(status.open, "no business hours: always open");
    assert_eq!(status.channels.len(), 1, "one line per channel of the queue");
    let chat = &status.channels[0];
    assert_eq!((chat.channel, chat.waiting), (Channel::Chat as i32, 3));
    assert!(chat.head_wait.as_ref().is_some_and(|wait| wait.seconds >= 5), "{chat:?}");
    assert_eq!(chat.estimated_wait, None, "no answers yet, no estimate");
    let (code, _) = code_of(routing.client.get_queue_status(authorized("globex-admin", request())).await);
    assert_eq!(code, Code::PermissionDenied);
    let missing = GetQueueStatusRequest { name: "tenants/acme/queues/nowhere".into() };
    let (code, _) = code_of(routing.client.get_queue_status(authorized("acme-reader", missing)).await);
    assert_eq!(code, Code::NotFound);
    let (code, fields) = code_of(
        routing.client.get_queue_status(authorized("acme-reader", GetQueueStatusRequest { name: "x".into() })).await,
    );
    assert_eq!((code, fields), (Code::InvalidArgument, vec!["name".to_owned()]));
    routing.stop().await;
}

#[tokio::test]
async fn queue_rules_are_validated_field_by_field() {
    let mut routing = Routing::start().await;
    let hours = |time_zone: &str, action: ClosedAction| BusinessHours {
        time_zone: time_zone.into(),
        weekly: Vec::new(),
        holidays: Vec::new(),
        closed_action: action as i32,
    };
    let cases = [
        (
            Queue {
                escalation_steps: vec![
                    EscalationStep { after: seconds(10), required_skills: vec![] },
                    EscalationStep { after: seconds(5), required_skills: vec![] },
                ],
                ..chat_queue()
            },
            "queue.escalation_steps[1].after",
        ),
        (
            Queue {
                escalation_steps: vec![EscalationStep { after: seconds(5), required_skills: vec![billing(9)] }],
                ..chat_queue()
            },
            "queue.escalation_steps[0].required_skills[0].level",
        ),
        (
            Queue {
                escalation_steps: vec![EscalationStep {
                    after: seconds(5),
                    required_skills: vec![Skill { tenant: "tenants/globex".into(), ..billing(2) }],
                }],
                ..chat_queue()
            },
            "queue.escalation_steps[0].required_skills[0].tenant",
        ),
        (
            Queue {
                escalation_steps: vec![EscalationStep {
                    after: Some(ProtoDuration { seconds: 5, nanos: 2_000_000_000 }),
                    required_skills: vec![],
                }],
                ..chat_queue()
            },
            "queue.escalation_steps[0].after",
        ),
        (Queue { max_wait: seconds(0), ..chat_queue() }, "queue.max_wait"),
        (Queue { overflow_queue: "Not A Queue".into(), ..chat_queue() }, "queue.overflow_queue"),
        (Queue { overflow_queue: "q".into(), ..chat_queue() }, "queue.overflow_queue"),
        (Queue { preferred_agent_window: seconds(3_600), ..chat_queue() }, "queue.preferred_agent_window"),
        (
            Queue { business_hours: Some(hours("Mars/Olympus", ClosedAction::Reject)), ..chat_queue() },
            "queue.business_hours.time_zone",
        ),
        (Queue { business_hours: Some(hours("UTC", ClosedAction::Overflow)), ..chat_queue() }, "queue.overflow_queue"),
    ];
    for (queue, field) in cases {
        let request = CreateQueueRequest { parent: "tenants/acme".into(), queue_id: "q".into(), queue: Some(queue) };
        let (code, fields) = code_of(routing.client.create_queue(authorized("acme-admin", request)).await);
        assert_eq!((code, fields), (Code::InvalidArgument, vec![field.to_owned()]), "{field}");
    }
    // Every bad field at once, the queue id among them (found from
    // outside: only `queue_id` was named).
    let many = Queue { priority: 101, offer_timeout: seconds(0), display_name: "a\u{0}b".into(), ..chat_queue() };
    let request = CreateQueueRequest { parent: "tenants/acme".into(), queue_id: "Bad Id".into(), queue: Some(many) };
    let (code, mut fields) = code_of(routing.client.create_queue(authorized("acme-admin", request)).await);
    fields.sort();
    let expected = ["queue.display_name", "queue.offer_timeout", "queue.priority", "queue_id"];
    assert_eq!((code, fields), (Code::InvalidArgument, expected.map(str::to_owned).to_vec()));
    routing.queue("q", chat_queue()).await;
    let update = UpdateQueueRequest {
        queue: Some(Queue { name: "tenants/acme/queues/q".into(), overflow_queue: "q".into(), ..chat_queue() }),
        update_mask: Some(FieldMask { paths: vec!["overflow_queue".into()] }),
    };
    let (code, fields) = code_of(routing.client.update_queue(authorized("acme-admin", update)).await);
    assert_eq!((code, fields), (Code::InvalidArgument, vec!["queue.overflow_queue".to_owned()]), "not to itself");
    let update = UpdateQueueRequest {
        queue: Some(Queue { name: "tenants/acme/queues/q".into(), max_wait: seconds(30), ..chat_queue() }),
        update_mask: Some(FieldMask { paths: vec!["max_wait".into()] }),
    };
    let updated = routing.client.update_queue(authorized("acme-admin", update)).await.unwrap().into_inner();
    assert_eq!(updated.max_wait, seconds(30));
    routing.stop().await;
}

/// Ingestion takes contacts in while routing is unreachable, unchecked:
/// routing checks the queue when it takes the contact (found from outside:
/// a contact for a queue that never existed was queued and offered).
#[tokio::test]
async fn a_contact_for_a_missing_queue_or_a_refused_channel_ends_lost_with_the_reason() {
    let mut routing = Routing::start().await;
    routing.queue("calls", Queue { channels: vec![Channel::Voice as i32], ..chat_queue() }).await;
    let nowhere = routing.contact("ghost").await;
    let ended = routing.assignment_until(&nowhere, |a| a.status == ContactStatus::Abandoned as i32).await;
    assert_eq!(ended.end_reason, EndReason::QueueNotFound as i32);
    let chat_for_calls = routing.contact("calls").await;
    let ended = routing.assignment_until(&chat_for_calls, |a| a.status == ContactStatus::Abandoned as i32).await;
    assert_eq!(ended.end_reason, EndReason::ChannelNotAccepted as i32);
    routing.stop().await;
}
