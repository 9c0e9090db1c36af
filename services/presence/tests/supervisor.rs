//! Supervisor APIs through the public gRPC API: listing agents with their
//! live state and work, forcing a state (roles, tenants, bad input, unknown
//! agents), and watching state changes with tenant redaction.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::{Cluster, WAIT, publish_contact_to, status_of};
use switchboard_proto::common::v1::{Channel, ContactStatus};
use switchboard_proto::presence::v1::{
    AcceptOffer, ActiveContact, AgentState, AgentStateChanged, ListAgentsRequest, SetAgentStateRequest,
    StateChangeSource, WatchAgentStatesRequest, agent_session_request,
};
use switchboard_proto::routing::v1::Queue;
use switchboard_test_support::{authorized, violated_fields};
use tonic::{Code, Streaming};

fn force(agent: &str, state: AgentState, reason: &str) -> SetAgentStateRequest {
    SetAgentStateRequest { name: format!("agents/{agent}"), state: state as i32, reason: reason.into() }
}

async fn next_change(watch: &mut Streaming<AgentStateChanged>) -> AgentStateChanged {
    tokio::time::timeout(WAIT, watch.message()).await.expect("a change in time").expect("healthy").expect("open")
}

/// alice's work as `key` lists it, polled until `done` holds.
async fn listed_work(cluster: &mut Cluster, key: &str, done: impl Fn(&[ActiveContact]) -> bool) -> Vec<ActiveContact> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listed = cluster.presence.list_agents(authorized(key, ListAgentsRequest::default())).await.unwrap();
        let alice = listed.into_inner().agents.into_iter().find(|agent| agent.name == "agents/alice").expect("alice");
        if done(&alice.active_contacts) {
            return alice.active_contacts;
        }
        assert!(tokio::time::Instant::now() < deadline, "alice's work never matched: {:?}", alice.active_contacts);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn supervisors_see_live_work_and_force_states_within_their_rights() {
    let mut cluster = Cluster::start().await;
    cluster.create_alice().await;
    cluster.create_shared_bob().await;
    cluster.create_queue("support", Queue { channels: vec![Channel::Chat as i32], ..Queue::default() }).await;
    let mut desktop = cluster.available_desktop("alice").await;

    let contact = publish_contact_to(&cluster.bus, "support").await;
    desktop.until_offer().await;
    let ringing = listed_work(&mut cluster, "acme-admin", |work| !work.is_empty()).await;
    assert_eq!((ringing[0].contact.as_str(), ringing[0].status), (contact.as_str(), ContactStatus::Offered as i32));
    desktop.send(agent_session_request::Kind::AcceptOffer(AcceptOffer { contact: contact.clone() })).await;
    let answered = listed_work(&mut cluster, "operator", |work| {
        work.iter().any(|held| held.status == ContactStatus::Answered as i32)
    })
    .await;
    assert!(answered[0].answer_time.is_some());

    // Bad input, unknown agents and other tenants' keys.
    for (request, field) in [
        (force("alice", AgentState::WrapUp, ""), "state"),
        (force("alice", AgentState::Available, "coaching"), "reason"),
        (force("alice", AgentState::Away, &"x".repeat(65)), "reason"),
        (SetAgentStateRequest { name: "alice".into(), ..force("alice", AgentState::Away, "") }, "name"),
    ] {
        let status = cluster.presence.set_agent_state(authorized("operator", request)).await.expect_err(field);
        assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec![field.to_owned()]));
    }
    for (key, agent, code) in [
        ("operator", "nobody", Code::NotFound),
        ("globex-admin", "alice", Code::NotFound),
        ("acme-reader", "alice", Code::PermissionDenied),
        ("alice", "alice", Code::PermissionDenied),
        ("acme-admin", "bob", Code::PermissionDenied),
    ] {
        let (got, message) =
            status_of(cluster.presence.set_agent_state(authorized(key, force(agent, AgentState::Away, ""))).await);
        assert_eq!(got, code, "{key} forcing {agent}: {message}");
    }

    // Watchers: the operator sees everything, globex only agents serving
    // it, with the other tenants they serve hidden.
    let mut everything = cluster
        .presence
        .watch_agent_states(authorized("operator", WatchAgentStatesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let mut globex = cluster
        .presence
        .watch_agent_states(authorized("globex-admin", WatchAgentStatesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let other_tenant = WatchAgentStatesRequest { tenant: "tenants/acme".into() };
    let (code, _) = status_of(cluster.presence.watch_agent_states(authorized("globex-admin", other_tenant)).await);
    assert_eq!(code, Code::PermissionDenied);
    let (code, _) =
        status_of(cluster.presence.watch_agent_states(authorized("alice", WatchAgentStatesRequest::default())).await);
    assert_eq!(code, Code::PermissionDenied);

    let forced = cluster
        .presence
        .set_agent_state(authorized("acme-admin", force("alice", AgentState::Away, "coaching")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((forced.state, forced.state_reason.as_str()), (AgentState::Away as i32, "coaching"));
    let told = desktop.until_state(AgentState::Away).await;
    assert_eq!(told.reason, "coaching", "the agent's desktop is told why");
    let seen = next_change(&mut everything).await;
    assert_eq!(
        (seen.agent.as_str(), seen.state, seen.source),
        ("agents/alice", AgentState::Away as i32, StateChangeSource::Supervisor as i32)
    );

    cluster.presence.set_agent_state(authorized("operator", force("bob", AgentState::Offline, ""))).await.unwrap();
    let seen_by_globex = next_change(&mut globex).await;
    assert_eq!(seen_by_globex.agent, "agents/bob", "alice (acme only) never reaches globex's watch");
    assert_eq!(seen_by_globex.tenants, vec!["tenants/globex".to_owned()], "globex never learns who else bob serves");
    assert_eq!(next_change(&mut everything).await.agent, "agents/bob");

    let listed = cluster
        .presence
        .list_agents(authorized("acme-admin", ListAgentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let alice = listed.agents.iter().find(|agent| agent.name == "agents/alice").unwrap();
    assert_eq!((alice.state, alice.state_reason.as_str()), (AgentState::Away as i32, "coaching"));
    let listed = cluster
        .presence
        .list_agents(authorized("globex-admin", ListAgentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.agents.iter().all(|agent| agent.active_contacts.is_empty()), "globex sees no acme work");
    drop(desktop);
    cluster.stop().await;
}

#[tokio::test]
async fn a_shared_agents_work_is_shown_only_to_the_tenant_it_belongs_to() {
    let mut cluster = Cluster::start().await;
    cluster.create_shared_bob().await;
    cluster.create_queue("support", Queue { channels: vec![Channel::Chat as i32], ..Queue::default() }).await;
    let mut desktop = cluster.available_desktop("bob").await;
    let contact = publish_contact_to(&cluster.bus, "support").await;
    desktop.until_offer().await;
    cluster.wait_for_work("bob", 1).await;
    let bob_as_seen_by = |key: &'static str| {
        let mut presence = cluster.presence.clone();
        async move {
            let listed = presence.list_agents(authorized(key, ListAgentsRequest::default())).await.unwrap();
            listed.into_inner().agents.into_iter().find(|agent| agent.name == "agents/bob").expect("bob is listed")
        }
    };
    let for_acme = bob_as_seen_by("acme-admin").await;
    assert_eq!(for_acme.active_contacts.len(), 1);
    assert_eq!(for_acme.active_contacts[0].contact, contact);
    let for_globex = bob_as_seen_by("globex-admin").await;
    assert_eq!(for_globex.tenants, vec!["tenants/globex".to_owned()], "acme is not revealed to globex");
    assert!(for_globex.active_contacts.is_empty(), "acme's contact is not shown to globex: {for_globex:?}");
    cluster.stop().await;
}

/// A key holds at most `auth.rate_limit.streams_per_key` watches open in a
/// process; one it closes frees its slot.
#[tokio::test]
async fn a_key_may_hold_only_so_many_watches_open() {
    let access = support::access(|auth| auth.rate_limit.streams_per_key = 2);
    let mut cluster = Cluster::start_with_access(|_| {}, access).await;
    let watch =
        || authorized("acme-admin", switchboard_proto::presence::v1::WatchAgentStatesRequest { tenant: String::new() });
    let first = cluster.presence.watch_agent_states(watch()).await.expect("one").into_inner();
    let _second = cluster.presence.watch_agent_states(watch()).await.expect("two").into_inner();
    let refused = cluster.presence.watch_agent_states(watch()).await.expect_err("three");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(switchboard_test_support::error_reason(&refused).as_deref(), Some("TOO_MANY_STREAMS"));
    let other_key = authorized("operator", switchboard_proto::presence::v1::WatchAgentStatesRequest::default());
    cluster.presence.watch_agent_states(other_key).await.expect("another key is not held back");
    drop(first);
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while cluster.presence.watch_agent_states(watch()).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the closed watch never freed its slot");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cluster.stop().await;
}
