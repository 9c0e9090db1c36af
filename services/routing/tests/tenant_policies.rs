//! The operator's policy for a tenant, as routing applies it: quotas and
//! caps on its queues, a limit on its waiting contacts, and its weight on
//! agents it shares with other tenants.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap};

use prost_types::{Duration as ProtoDuration, FieldMask};
use support::{Routing, WAIT, code_of};
use switchboard_platform::config::TenantPolicyConfig;
use switchboard_proto::presence::v1::AgentState;
use switchboard_proto::routing::v1::{
    AcceptOfferRequest, CompleteContactRequest, EndReason, Queue, UpdateQueueRequest, routing_event,
};
use switchboard_test_support::{authorized, error_reason, next_routing_event};
use tonic::Code;

fn policies(tenant: &str, policy: TenantPolicyConfig) -> BTreeMap<String, TenantPolicyConfig> {
    BTreeMap::from([(tenant.to_owned(), policy)])
}

#[tokio::test]
async fn queues_past_the_tenants_quota_or_over_its_caps_are_refused_and_other_tenants_are_free() {
    let limited = TenantPolicyConfig {
        max_queues: Some(2),
        max_offer_timeout_ms: Some(20_000),
        max_wrap_up_ms: Some(60_000),
        ..TenantPolicyConfig::default()
    };
    let mut routing = Routing::start_with_policies(policies("acme", limited)).await;
    routing.create_queue_of("acme", "first", 10).await.expect("within the caps");
    let (code, fields) = code_of(routing.create_queue_of("acme", "slow", 30).await);
    assert_eq!((code, fields), (Code::InvalidArgument, vec!["queue.offer_timeout".to_owned()]));
    routing.create_queue_of("acme", "second", 20).await.expect("at the cap");
    let refused = routing.create_queue_of("acme", "third", 10).await.expect_err("over the quota");
    assert_eq!((refused.code(), error_reason(&refused).as_deref()), (Code::ResourceExhausted, Some("QUOTA_EXCEEDED")));
    for queue in ["first", "second", "third"] {
        routing.create_queue_of("globex", queue, 60).await.expect("globex has no limits");
    }
    let longer_wrap_up = UpdateQueueRequest {
        queue: Some(Queue {
            name: "tenants/acme/queues/first".into(),
            wrap_up_time: Some(ProtoDuration { seconds: 120, nanos: 0 }),
            ..Queue::default()
        }),
        update_mask: Some(FieldMask { paths: vec!["wrap_up_time".into()] }),
    };
    let (code, fields) = code_of(routing.client.update_queue(authorized("acme-admin", longer_wrap_up)).await);
    assert_eq!((code, fields), (Code::InvalidArgument, vec!["queue.wrap_up_time".to_owned()]));
    routing.stop().await;
}

#[tokio::test]
async fn a_contact_past_the_tenants_waiting_limit_ends_at_once_and_the_others_wait() {
    let limited = TenantPolicyConfig { max_waiting_contacts: Some(2), ..TenantPolicyConfig::default() };
    let mut routing = Routing::start_with_policies(policies("acme", limited)).await;
    routing.create_queue("support", 30).await;
    let first = routing.contact("support").await;
    let second = routing.contact("support").await;
    // Different contacts are taken in concurrently: either may queue first.
    let mut queued = vec![next_queued(&mut routing).await, next_queued(&mut routing).await];
    queued.sort();
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(queued, expected);
    let third = routing.contact("support").await;
    let abandoned = next_routing_event(&mut routing.events, WAIT, |kind| match kind {
        routing_event::Kind::Abandoned(abandoned) => Some(abandoned),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!((abandoned.contact.as_str(), abandoned.reason), (third.as_str(), EndReason::TenantQueueFull as i32));
    for contact in [&first, &second] {
        assert_eq!(
            routing.status(contact).await,
            switchboard_proto::common::v1::ContactStatus::Queued as i32,
            "the earlier contacts still wait"
        );
    }
    routing.stop().await;
}

/// The contact of the next queued event.
async fn next_queued(routing: &mut Routing) -> String {
    let queued = next_routing_event(&mut routing.events, WAIT, |kind| match kind {
        routing_event::Kind::Queued(queued) => Some(queued),
        _ => None,
    })
    .await
    .unwrap();
    queued.contact
}

/// One agent serves acme (weight 3) and globex (weight 1), both with a
/// backlog; globex's contacts are older and more urgent. Offers still go
/// three to one.
#[tokio::test]
async fn a_shared_agent_is_offered_to_tenants_by_the_operators_weights() {
    let mut policy = policies("acme", TenantPolicyConfig { routing_weight: 3, ..TenantPolicyConfig::default() });
    policy.insert("globex".to_owned(), TenantPolicyConfig::default());
    let mut routing = Routing::start_with_policies(policy).await;
    routing.create_queue_of("acme", "support", 30).await.unwrap();
    routing.create_queue_of("globex", "support", 30).await.unwrap();
    let now = switchboard_core::time::now_millis();
    for index in 0..12 {
        routing.contact_in("globex", "support", 100, now - 60_000 + index, "cu_g").await;
    }
    for index in 0..12 {
        routing.contact_in("acme", "support", 0, now + index, "cu_a").await;
    }
    for _ in 0..24 {
        wait_for_any_queued(&mut routing).await;
    }
    routing.agent_serving("alice", &["acme", "globex"], AgentState::Available as i32, Vec::new(), 1).await;
    let mut offers_by_tenant: HashMap<String, usize> = HashMap::new();
    for _ in 0..12 {
        let offered = routing.offered().await;
        let tenant = offered.contact.split('/').nth(1).unwrap().to_owned();
        *offers_by_tenant.entry(tenant).or_default() += 1;
        routing
            .client
            .accept_offer(authorized("alice", AcceptOfferRequest { contact: offered.contact.clone() }))
            .await
            .unwrap();
        let complete = CompleteContactRequest {
            contact: offered.contact,
            disposition: "done".into(),
            resolved: true,
            notes: String::new(),
        };
        routing.client.complete_contact(authorized("alice", complete)).await.unwrap();
    }
    assert_eq!(offers_by_tenant.get("acme"), Some(&9), "three to one: {offers_by_tenant:?}");
    assert_eq!(offers_by_tenant.get("globex"), Some(&3), "three to one: {offers_by_tenant:?}");
    routing.stop().await;
}

async fn wait_for_any_queued(routing: &mut Routing) {
    next_routing_event(&mut routing.events, WAIT, |kind| match kind {
        routing_event::Kind::Queued(queued) => Some(queued),
        _ => None,
    })
    .await
    .unwrap();
}

/// A queue that leaves its offer timeout unset gets the default held to the
/// tenant's cap, and an update that does not touch a capped field is not
/// refused for it.
#[tokio::test]
async fn defaults_are_held_to_the_caps_and_other_edits_pass() {
    let capped = TenantPolicyConfig { max_offer_timeout_ms: Some(20_000), ..TenantPolicyConfig::default() };
    let mut routing = Routing::start_with_policies(policies("acme", capped)).await;
    let request = switchboard_proto::routing::v1::CreateQueueRequest {
        parent: "tenants/acme".into(),
        queue_id: "defaulted".into(),
        queue: Some(Queue { channels: vec![switchboard_proto::common::v1::Channel::Chat as i32], ..Queue::default() }),
    };
    let created = routing.client.create_queue(authorized("acme-admin", request)).await.expect("created").into_inner();
    assert_eq!(created.offer_timeout, Some(ProtoDuration { seconds: 20, nanos: 0 }), "the 30 s default, capped");
    let rename = UpdateQueueRequest {
        queue: Some(Queue {
            name: "tenants/acme/queues/defaulted".into(),
            display_name: "Renamed".into(),
            ..Queue::default()
        }),
        update_mask: Some(FieldMask { paths: vec!["display_name".into()] }),
    };
    routing.client.update_queue(authorized("acme-admin", rename)).await.expect("a rename touches no cap");
    routing.stop().await;
}
