//! The routing service through its public gRPC API and events, on the
//! in-process bus and in-memory stores: queue management with bad input and
//! other tenants' keys, offers and their every ending (accept, timeout,
//! customer leaving, agent leaving), and agent-only decisions.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use prost_types::{Duration as ProtoDuration, FieldMask};
use switchboard_core::time::now_millis;
use switchboard_proto::common::v1::{Channel, ContactStatus, Skill};
use switchboard_proto::presence::v1::AgentState;
use switchboard_proto::routing::v1::{
    AbandonStage, AcceptOfferRequest, CompleteContactRequest, CreateQueueRequest, DeleteQueueRequest,
    GetAssignmentRequest, GetQueueRequest, ListQueuesRequest, Queue, RejectOfferRequest, RoutingStrategy,
    UpdateQueueRequest, WithdrawReason, routing_event,
};
use switchboard_test_support::{authorized, error_reason, next_routing_event};
use tonic::Code;

mod support;

use support::{Routing, WAIT, code_of};

#[tokio::test]
async fn queue_api_rejects_bad_input_and_other_tenants_and_changes_nothing() {
    let mut routing = Routing::start().await;
    let create = |queue_id: &str, queue: Queue| CreateQueueRequest {
        parent: "tenants/acme".into(),
        queue_id: queue_id.into(),
        queue: Some(queue),
    };
    let bad_cases = [
        (create("", Queue::default()), "queue_id"),
        (create("Bad_Id", Queue::default()), "queue_id"),
        (create("q", Queue { priority: 101, ..Queue::default() }), "queue.priority"),
        (create("q", Queue { channels: vec![99], ..Queue::default() }), "queue.channels"),
        (create("q", Queue { channels: vec![3, 3], ..Queue::default() }), "queue.channels"),
        (
            create(
                "q",
                Queue {
                    required_skills: vec![Skill { name: "x".into(), level: 9, ..Skill::default() }],
                    ..Queue::default()
                },
            ),
            "queue.required_skills[0].level",
        ),
        (
            create(
                "q",
                Queue {
                    required_skills: vec![Skill { name: "../etc".into(), level: 3, ..Skill::default() }],
                    ..Queue::default()
                },
            ),
            "queue.required_skills[0].name",
        ),
        (
            create(
                "q",
                Queue {
                    required_skills: vec![Skill { name: "bil\0ling".into(), level: 3, ..Skill::default() }],
                    ..Queue::default()
                },
            ),
            "queue.required_skills[0].name",
        ),
        (
            create(
                "q",
                Queue {
                    required_skills: vec![Skill { name: "billing".into(), level: 3, tenant: "tenants/globex".into() }],
                    ..Queue::default()
                },
            ),
            "queue.required_skills[0].tenant",
        ),
        (
            create(
                "q",
                Queue { offer_timeout: Some(ProtoDuration { seconds: 5, nanos: 1_000_000_000 }), ..Queue::default() },
            ),
            "queue.offer_timeout",
        ),
        (
            create("q", Queue { wrap_up_time: Some(ProtoDuration { seconds: 5, nanos: -1 }), ..Queue::default() }),
            "queue.wrap_up_time",
        ),
        (create("q", Queue { display_name: "Support\u{1b}[2J".into(), ..Queue::default() }), "queue.display_name"),
        (
            create("q", Queue { offer_timeout: Some(ProtoDuration { seconds: -1, nanos: 0 }), ..Queue::default() }),
            "queue.offer_timeout",
        ),
        (create("q", Queue { display_name: "x".repeat(201), ..Queue::default() }), "queue.display_name"),
        (create("q", Queue { strategy: 99, ..Queue::default() }), "queue.strategy"),
        (
            create(
                "q",
                Queue { priority_aging_step: Some(ProtoDuration { seconds: 0, nanos: 0 }), ..Queue::default() },
            ),
            "queue.priority_aging_step",
        ),
        (
            create("q", Queue { wrap_up_time: Some(ProtoDuration { seconds: 3_601, nanos: 0 }), ..Queue::default() }),
            "queue.wrap_up_time",
        ),
        (
            create("q", Queue { wrap_up_time: Some(ProtoDuration { seconds: -1, nanos: 0 }), ..Queue::default() }),
            "queue.wrap_up_time",
        ),
        (CreateQueueRequest { parent: "acme".into(), queue_id: "q".into(), queue: None }, "parent"),
    ];
    for (request, field) in bad_cases {
        let (code, fields) = code_of(routing.client.create_queue(authorized("acme-admin", request)).await);
        assert_eq!(code, Code::InvalidArgument, "{field}");
        assert_eq!(fields, vec![field.to_owned()], "the error names `{field}`");
    }
    let (code, _) =
        code_of(routing.client.create_queue(authorized("acme-reader", create("q", Queue::default()))).await);
    assert_eq!(code, Code::PermissionDenied, "readers cannot create queues");
    let invalid = Queue { wrap_up_time: Some(ProtoDuration { seconds: -1, nanos: 0 }), ..Queue::default() };
    let (code, fields) = code_of(routing.client.create_queue(authorized("acme-reader", create("q", invalid))).await);
    assert_eq!((code, fields), (Code::PermissionDenied, Vec::new()), "a reader learns nothing of the body's faults");
    let (code, _) =
        code_of(routing.client.create_queue(authorized("globex-admin", create("q", Queue::default()))).await);
    assert_eq!(code, Code::PermissionDenied, "another tenant's admin cannot create acme's queues");
    let (code, _) = code_of(routing.client.create_queue(tonic::Request::new(create("q", Queue::default()))).await);
    assert_eq!(code, Code::Unauthenticated);
    let unknown_tenant = CreateQueueRequest { parent: "tenants/initech".into(), queue_id: "q".into(), queue: None };
    let (code, _) = code_of(routing.client.create_queue(authorized("operator", unknown_tenant)).await);
    assert_eq!(code, Code::NotFound);

    let created =
        routing.client.create_queue(authorized("acme-admin", create("support", Queue::default()))).await.unwrap();
    let created = created.into_inner();
    assert_eq!(created.name, "tenants/acme/queues/support");
    assert_eq!(created.service_level_threshold, Some(ProtoDuration { seconds: 20, nanos: 0 }), "defaults are filled");
    assert_eq!(created.strategy, RoutingStrategy::LongestIdle as i32, "the effective strategy is shown");
    let (code, _) =
        code_of(routing.client.create_queue(authorized("acme-admin", create("support", Queue::default()))).await);
    assert_eq!(code, Code::AlreadyExists);
    let listed = routing
        .client
        .list_queues(authorized(
            "acme-reader",
            ListQueuesRequest { parent: "tenants/acme".into(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.queues.len(), 1, "rejected creates left nothing behind");
    let get_other = GetQueueRequest { name: "tenants/acme/queues/support".into() };
    let (code, _) = code_of(routing.client.get_queue(authorized("globex-admin", get_other)).await);
    assert_eq!(code, Code::PermissionDenied);

    let rename = |paths: Vec<&str>| UpdateQueueRequest {
        queue: Some(Queue {
            name: "tenants/acme/queues/support".into(),
            display_name: "Support".into(),
            priority: 7,
            wrap_up_time: Some(ProtoDuration { seconds: 30, nanos: 0 }),
            ..Queue::default()
        }),
        update_mask: Some(FieldMask { paths: paths.into_iter().map(str::to_owned).collect() }),
    };
    let (_, fields) = code_of(routing.client.update_queue(authorized("acme-admin", rename(vec![]))).await);
    assert_eq!(fields, vec!["update_mask".to_owned()]);
    let (_, fields) = code_of(routing.client.update_queue(authorized("acme-admin", rename(vec!["name"]))).await);
    assert_eq!(fields, vec!["update_mask".to_owned()]);
    let updated = routing.client.update_queue(authorized("acme-admin", rename(vec!["display_name"]))).await.unwrap();
    let updated = updated.into_inner();
    assert_eq!((updated.display_name.as_str(), updated.priority), ("Support", 0), "only masked fields change");
    assert_eq!(updated.wrap_up_time, None, "wrap-up is unset unless masked");
    let updated = routing.client.update_queue(authorized("acme-admin", rename(vec!["wrap_up_time"]))).await.unwrap();
    assert_eq!(updated.into_inner().wrap_up_time, Some(ProtoDuration { seconds: 30, nanos: 0 }));

    let delete = DeleteQueueRequest { name: "tenants/acme/queues/support".into() };
    routing.client.delete_queue(authorized("acme-admin", delete.clone())).await.unwrap();
    let (code, _) = code_of(routing.client.delete_queue(authorized("acme-admin", delete)).await);
    assert_eq!(code, Code::NotFound);
    routing.stop().await;
}

#[tokio::test]
async fn a_page_token_works_only_on_the_list_that_issued_it() {
    let mut routing = Routing::start().await;
    let create = |tenant: &str, id: &str| CreateQueueRequest {
        parent: format!("tenants/{tenant}"),
        queue_id: id.into(),
        queue: Some(Queue::default()),
    };
    for id in ["billing", "sales", "support"] {
        routing.client.create_queue(authorized("acme-admin", create("acme", id))).await.unwrap();
        routing.client.create_queue(authorized("globex-admin", create("globex", id))).await.unwrap();
    }
    let list = |tenant: &str, page_token: String| ListQueuesRequest {
        parent: format!("tenants/{tenant}"),
        page_size: 1,
        page_token,
    };
    let first = routing.client.list_queues(authorized("acme-reader", list("acme", String::new()))).await.unwrap();
    let token = first.into_inner().next_page_token;
    assert!(!token.is_empty() && !token.contains("billing"), "an opaque token: {token}");
    let second = routing.client.list_queues(authorized("acme-reader", list("acme", token.clone()))).await.unwrap();
    assert_eq!(second.into_inner().queues[0].name, "tenants/acme/queues/sales", "the token resumes its own list");
    let (code, fields) =
        code_of(routing.client.list_queues(authorized("globex-admin", list("globex", token.clone()))).await);
    assert_eq!((code, fields), (Code::InvalidArgument, vec!["page_token".to_owned()]), "not another tenant's list");
    let forged: String = "billing".bytes().map(|byte| format!("{byte:02x}")).collect();
    let (code, fields) = code_of(routing.client.list_queues(authorized("acme-reader", list("acme", forged))).await);
    assert_eq!((code, fields), (Code::InvalidArgument, vec!["page_token".to_owned()]), "nor a made-up one");
}

#[tokio::test]
async fn an_agent_state_this_build_does_not_know_takes_no_work_and_keeps_what_it_holds() {
    let mut routing = Routing::start().await;
    routing.create_queue("support", 30).await;
    routing.agent_with("alice", AgentState::Available, Vec::new(), 2).await;
    let answered = routing.contact("support").await;
    routing.offered().await;
    routing.client.accept_offer(authorized("alice", AcceptOfferRequest { contact: answered.clone() })).await.unwrap();
    let ringing = routing.contact("support").await;
    routing.offered().await;

    routing.agent_in_raw_state("alice", 99, Vec::new(), 2).await;
    routing.withdrawn().await;
    assert_eq!(routing.status(&ringing).await, ContactStatus::Queued as i32, "a ringing offer goes back");
    assert_eq!(routing.status(&answered).await, ContactStatus::Answered as i32, "answered work stays hers");
}

#[tokio::test]
async fn a_late_accept_is_told_the_offer_expired_and_others_still_see_nothing() {
    let (mut routing, contact) = Routing::offering_to_alice().await;
    // Alice's desktop goes offline: her offer is withdrawn, the contact
    // waits again, and no one else is available to take it.
    routing.agent("alice", AgentState::Offline).await;
    routing.withdrawn().await;
    assert_eq!(routing.status(&contact).await, ContactStatus::Queued as i32);

    let accept = || AcceptOfferRequest { contact: contact.clone() };
    let late = routing.client.accept_offer(authorized("alice", accept())).await.expect_err("expired");
    assert_eq!((late.code(), error_reason(&late).as_deref()), (Code::FailedPrecondition, Some("OFFER_EXPIRED")));
    let (code, _) = code_of(routing.client.accept_offer(authorized("bob", accept())).await);
    assert_eq!(code, Code::NotFound, "a contact never offered to bob stays invisible to him");
    assert_eq!(routing.status(&contact).await, ContactStatus::Queued as i32, "the late accept changed nothing");
}

#[tokio::test]
async fn an_accepted_offer_is_answered_and_completed_by_its_agent_only() {
    let mut routing = Routing::start().await;
    routing.create_queue("support", 30).await;
    routing.agent("alice", AgentState::Available).await;
    let contact = routing.contact("support").await;
    let offered = routing.offered().await;
    assert_eq!((offered.contact.as_str(), offered.agent.as_str()), (contact.as_str(), "agents/alice"));
    assert_eq!(routing.status(&contact).await, ContactStatus::Offered as i32);

    let accept = || AcceptOfferRequest { contact: contact.clone() };
    let (code, _) = code_of(routing.client.accept_offer(authorized("acme-admin", accept())).await);
    assert_eq!(code, Code::PermissionDenied, "only agents accept offers");
    let (code, _) = code_of(routing.client.accept_offer(authorized("bob", accept())).await);
    assert_eq!(code, Code::NotFound, "another agent's offer is invisible");
    let answered = routing.client.accept_offer(authorized("alice", accept())).await.unwrap().into_inner();
    assert_eq!(answered.status, ContactStatus::Answered as i32);
    routing.client.accept_offer(authorized("alice", accept())).await.expect("a retried accept succeeds");

    let complete = |disposition: &str| CompleteContactRequest {
        contact: contact.clone(),
        disposition: disposition.into(),
        resolved: true,
        notes: String::new(),
    };
    let (code, fields) = code_of(routing.client.complete_contact(authorized("alice", complete(""))).await);
    assert_eq!((code, fields), (Code::InvalidArgument, vec!["disposition".to_owned()]));
    routing.client.complete_contact(authorized("alice", complete("billing"))).await.unwrap();
    let completed = next_routing_event(&mut routing.events, WAIT, |kind| match kind {
        routing_event::Kind::Completed(completed) => Some(completed),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!((completed.disposition.as_str(), completed.resolved), ("billing", true));
    let (code, _) = code_of(
        routing
            .client
            .get_assignment(authorized("globex-admin", GetAssignmentRequest { contact: contact.clone() }))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    routing.stop().await;
}

#[tokio::test]
async fn an_unanswered_offer_times_out_and_is_offered_again() {
    let mut routing = Routing::start().await;
    routing.create_queue("support", 1).await;
    routing.agent("alice", AgentState::Available).await;
    let contact = routing.contact("support").await;
    let first = routing.offered().await;
    let withdrawn = routing.withdrawn().await;
    assert_eq!(withdrawn.contact, contact);
    assert_eq!(withdrawn.reason, WithdrawReason::TimedOut as i32);
    let second = routing.offered().await;
    assert_eq!(second.contact, contact, "the contact is offered again after the timeout");
    let millis = |offered: &switchboard_proto::routing::v1::ContactOffered| {
        switchboard_core::time::millis_from_timestamp(offered.offer_time.as_ref().unwrap())
    };
    assert!(millis(&second) >= millis(&first) + 1_000, "the second offer follows the one-second timeout");
    routing.stop().await;
}

#[tokio::test]
async fn a_rejected_offer_goes_to_the_next_agent() {
    let mut routing = Routing::start().await;
    routing.create_queue("support", 30).await;
    routing.agent("alice", AgentState::Available).await;
    let contact = routing.contact("support").await;
    assert_eq!(routing.offered().await.agent, "agents/alice");
    routing.agent("bob", AgentState::Available).await;
    // Bob's availability reaches routing asynchronously: until it has, a
    // rejected contact can only go back to Alice. Each rejection restarts
    // Alice's idle time, so once Bob is known he has waited longer.
    let mut rejections = 0;
    let next_agent = loop {
        let reject = RejectOfferRequest { contact: contact.clone(), reason: "busy".into() };
        routing.client.reject_offer(authorized("alice", reject)).await.unwrap();
        rejections += 1;
        assert_eq!(routing.withdrawn().await.reason, WithdrawReason::Rejected as i32);
        let offered = routing.offered().await;
        assert_eq!(offered.contact, contact);
        if offered.agent != "agents/alice" || rejections == 20 {
            break offered.agent;
        }
    };
    assert_eq!(next_agent, "agents/bob", "a rejected contact goes to the next agent");
    routing.stop().await;
}

#[tokio::test]
async fn a_customer_leaving_while_ringing_ends_the_offer_and_the_contact() {
    let (mut routing, contact) = Routing::offering_to_alice().await;
    routing.customer_leaves(&contact).await;
    let withdrawn = routing.withdrawn().await;
    assert_eq!(withdrawn.reason, WithdrawReason::CustomerLeft as i32);
    let abandoned = next_routing_event(&mut routing.events, WAIT, |kind| match kind {
        routing_event::Kind::Abandoned(abandoned) => Some(abandoned),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(abandoned.stage, AbandonStage::Offered as i32);
    assert_eq!(routing.status(&contact).await, ContactStatus::Abandoned as i32);
    let (code, _) = code_of(routing.client.accept_offer(authorized("alice", AcceptOfferRequest { contact })).await);
    assert_eq!(code, Code::FailedPrecondition, "an abandoned contact cannot be accepted");
    routing.stop().await;
}

#[tokio::test]
async fn an_agent_going_away_returns_its_offers_to_the_queue() {
    let (mut routing, contact) = Routing::offering_to_alice().await;
    routing.agent("alice", AgentState::Offline).await;
    assert_eq!(routing.withdrawn().await.reason, WithdrawReason::AgentUnavailable as i32);
    assert_eq!(routing.status(&contact).await, ContactStatus::Queued as i32);
    let waiting = routing
        .client
        .get_assignment(authorized("acme-reader", GetAssignmentRequest { contact: contact.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(waiting.position, 1, "it keeps its place at the head of the queue");
    assert_eq!(waiting.estimated_wait, None, "no answer history yet, so no estimate is invented");
    routing.agent("bob", AgentState::Available).await;
    let offered = routing.offered().await;
    assert_eq!((offered.contact, offered.agent.as_str()), (contact, "agents/bob"));
    routing.stop().await;
}

#[tokio::test]
async fn priority_aging_lets_a_long_wait_overtake_a_higher_priority() {
    let mut routing = Routing::start().await;
    for (queue_id, aging) in [("aging", Some(ProtoDuration { seconds: 1, nanos: 0 })), ("strict", None)] {
        let queue = Queue { channels: vec![Channel::Chat as i32], priority_aging_step: aging, ..Queue::default() };
        let request =
            CreateQueueRequest { parent: "tenants/acme".into(), queue_id: queue_id.into(), queue: Some(queue) };
        routing.client.create_queue(authorized("acme-admin", request)).await.unwrap();
    }
    let now = now_millis();
    for (queue, patient_first) in [("aging", true), ("strict", false)] {
        // Waited 10 s at priority 0, versus just arrived at priority 5: with
        // one level worth 1 s the wait wins; with strict priority it never does.
        let patient = routing.contact_with(queue, 0, now - 10_000).await;
        let urgent = routing.contact_with(queue, 5, now).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        let positions = loop {
            let mut positions = Vec::new();
            for contact in [&patient, &urgent] {
                let request = GetAssignmentRequest { contact: contact.clone() };
                if let Ok(assignment) = routing.client.get_assignment(authorized("acme-reader", request)).await {
                    positions.push(assignment.into_inner().position);
                }
            }
            if positions.len() == 2 {
                break positions;
            }
            assert!(tokio::time::Instant::now() < deadline, "routing queues both contacts");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let expected = if patient_first { vec![1, 2] } else { vec![2, 1] };
        assert_eq!(positions, expected, "queue {queue}: positions of (patient, urgent)");
    }
    routing.stop().await;
}
