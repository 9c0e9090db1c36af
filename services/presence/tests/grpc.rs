//! The presence service through its public gRPC API, with a routing
//! service beside it on one in-process bus: agent management with bad input
//! and other tenants' keys, the `AgentSession` stream (hello rules, states,
//! offers pushed, decisions forwarded to routing with the agent's own key),
//! session replacement and the grace period after a dropped stream.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{Cluster, Desktop, KEYS, WAIT, next_state_change, publish_contact, status_of};
use switchboard_core::event::PRESENCE_TOPIC;
use switchboard_platform::Config;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::bus::{EventBus, StartFrom};
use switchboard_proto::common::v1::{Channel, ChannelCapacity};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{
    AcceptOffer, Agent, AgentSessionRequest, AgentState, CompleteContact, CreateAgentRequest, GetAgentRequest, Hello,
    ListAgentsRequest, agent_session_request, agent_session_response,
};
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue};
use switchboard_test_support::{access_with_keys, authorized, connect_when_ready, violated_fields};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel as GrpcChannel;

#[tokio::test]
async fn agent_management_checks_roles_fields_and_tenants() {
    let mut cluster = Cluster::start().await;
    let create = |agent_id: &str, agent: Agent| CreateAgentRequest { agent_id: agent_id.into(), agent: Some(agent) };
    let acme_agent = Agent { tenants: vec!["tenants/acme".into()], ..Agent::default() };
    let (code, _) =
        status_of(cluster.presence.create_agent(authorized("acme-admin", create("x", acme_agent.clone()))).await);
    assert_eq!(code, Code::PermissionDenied, "agents are the operator's to manage");
    for (request, field) in [
        (create("", acme_agent.clone()), "agent_id"),
        (create("x", Agent::default()), "agent.tenants"),
        (create("x", Agent { tenants: vec!["acme".into()], ..Agent::default() }), "agent.tenants[0]"),
        (
            create(
                "x",
                Agent { capacities: vec![ChannelCapacity { channel: 3, max_concurrent: 99 }], ..acme_agent.clone() },
            ),
            "agent.capacities[0].max_concurrent",
        ),
        (CreateAgentRequest { agent_id: "x".into(), agent: None }, "agent"),
    ] {
        let status = cluster.presence.create_agent(authorized("operator", request)).await.expect_err(field);
        assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec![field.to_owned()]));
    }
    let unknown_tenant = Agent { tenants: vec!["tenants/initech".into()], ..Agent::default() };
    let (code, _) = status_of(cluster.presence.create_agent(authorized("operator", create("x", unknown_tenant))).await);
    assert_eq!(code, Code::NotFound);

    cluster.create_alice().await;
    let (code, _) = status_of(cluster.presence.create_agent(authorized("operator", create("alice", acme_agent))).await);
    assert_eq!(code, Code::AlreadyExists);
    let get = || GetAgentRequest { name: "agents/alice".into() };
    let seen = cluster.presence.get_agent(authorized("acme-admin", get())).await.unwrap().into_inner();
    assert_eq!(seen.state, AgentState::Offline as i32, "a new agent is offline");
    let (code, _) = status_of(cluster.presence.get_agent(authorized("globex-admin", get())).await);
    assert_eq!(code, Code::NotFound, "an agent not serving globex is invisible to it");
    let listed = cluster
        .presence
        .list_agents(authorized("globex-admin", ListAgentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.agents.is_empty(), "globex lists only its own agents");
    let other = ListAgentsRequest { tenant: "tenants/acme".into(), ..ListAgentsRequest::default() };
    let (code, _) = status_of(cluster.presence.list_agents(authorized("globex-admin", other)).await);
    assert_eq!(code, Code::PermissionDenied);
    let (code, _) = status_of(cluster.presence.list_agents(authorized("alice", ListAgentsRequest::default())).await);
    assert_eq!(code, Code::PermissionDenied);

    let shared = Agent { tenants: vec!["tenants/acme".into(), "tenants/globex".into()], ..Agent::default() };
    cluster.presence.create_agent(authorized("operator", create("bob", shared))).await.unwrap();
    let bob = GetAgentRequest { name: "agents/bob".into() };
    let seen_by_acme = cluster.presence.get_agent(authorized("acme-admin", bob.clone())).await.unwrap().into_inner();
    assert_eq!(seen_by_acme.tenants, vec!["tenants/acme".to_owned()], "acme never learns who else bob serves");
    let listed_by_globex = cluster
        .presence
        .list_agents(authorized("globex-admin", ListAgentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed_by_globex.agents.len(), 1);
    assert_eq!(listed_by_globex.agents[0].tenants, vec!["tenants/globex".to_owned()]);
    let seen_by_operator = cluster.presence.get_agent(authorized("operator", bob)).await.unwrap().into_inner();
    assert_eq!(seen_by_operator.tenants.len(), 2, "the operator sees every tenant");
    cluster.stop().await;
}

#[tokio::test]
async fn sessions_open_only_for_the_keys_own_known_agent() {
    let mut cluster = Cluster::start().await;
    cluster.create_alice().await;
    let (code, _) = status_of(cluster.open_session("acme-admin", "alice").await.map(|_| ()));
    assert_eq!(code, Code::PermissionDenied, "only agent keys open sessions");
    let (code, _) = status_of(cluster.open_session("bob", "alice").await.map(|_| ()));
    assert_eq!(code, Code::PermissionDenied, "an agent cannot open another agent's session");
    let (code, _) = status_of(cluster.open_session("ghost", "ghost").await.map(|_| ()));
    assert_eq!(code, Code::NotFound, "an agent key without an agent definition");

    let (requests, outbound) = mpsc::channel(4);
    let heartbeat = AgentSessionRequest { kind: Some(agent_session_request::Kind::Heartbeat(Default::default())) };
    requests.send(heartbeat).await.unwrap();
    let (code, message) =
        status_of(cluster.presence.agent_session(authorized("alice", ReceiverStream::new(outbound))).await);
    assert_eq!(code, Code::InvalidArgument, "the first message must be hello: {message}");
    cluster.stop().await;
}

#[tokio::test]
async fn a_session_carries_states_offers_and_decisions() {
    let mut cluster = Cluster::start().await;
    cluster.create_alice().await;
    let queue = Queue { channels: vec![Channel::Chat as i32], ..Queue::default() };
    let request = CreateQueueRequest { parent: "tenants/acme".into(), queue_id: "support".into(), queue: Some(queue) };
    cluster.routing.create_queue(authorized("acme-admin", request)).await.unwrap();
    let mut presence_events = cluster.bus.subscribe("test", &[PRESENCE_TOPIC], StartFrom::Earliest).await.unwrap();

    let mut desktop = cluster.open_session("alice", "alice").await.unwrap();
    assert!(matches!(desktop.next().await, agent_session_response::Kind::SessionStarted(started)
        if started.agent == "agents/alice" && started.state == AgentState::Offline as i32));
    match desktop.set_state(AgentState::WrapUp, "").await {
        agent_session_response::Kind::Error(error) => assert_eq!(error.code, Code::InvalidArgument as i32),
        other => panic!("agents cannot choose wrap-up, got {other:?}"),
    }
    match desktop.set_state(AgentState::Available, "lunch").await {
        agent_session_response::Kind::Error(error) => assert_eq!(error.code, Code::InvalidArgument as i32),
        other => panic!("only AWAY takes a reason, got {other:?}"),
    }
    assert!(matches!(
        desktop.set_state(AgentState::Available, "").await,
        agent_session_response::Kind::StateChanged(_)
    ));
    let changed = next_state_change(&mut presence_events).await;
    assert_eq!(changed.state, AgentState::Available as i32);
    assert_eq!(changed.tenants, vec!["tenants/acme".to_owned()], "the event carries the agent's definition");
    assert_eq!(changed.skills.len(), 1);
    assert_eq!(cluster.agent_state("alice").await, AgentState::Available as i32);

    let contact = publish_contact(&cluster.bus).await;
    let offer = loop {
        if let agent_session_response::Kind::Offer(offer) = desktop.next().await {
            break offer;
        }
    };
    assert_eq!(offer.contact, contact);
    desktop
        .send(agent_session_request::Kind::AcceptOffer(AcceptOffer { contact: "tenants/acme/contacts/ct_nope".into() }))
        .await;
    match desktop.next().await {
        agent_session_response::Kind::Error(error) => {
            assert_eq!(error.code, Code::NotFound as i32, "{error:?}");
            assert_eq!(error.reason, "CONTACT_NOT_FOUND");
            assert_eq!(error.contact, "tenants/acme/contacts/ct_nope");
        }
        other => panic!("accepting an unknown contact fails on the stream, got {other:?}"),
    }
    desktop.send(agent_session_request::Kind::AcceptOffer(AcceptOffer { contact: contact.clone() })).await;
    assert!(
        matches!(desktop.next().await, agent_session_response::Kind::OfferAccepted(accepted) if accepted.contact == contact)
    );
    let complete =
        CompleteContact { contact: contact.clone(), disposition: "done".into(), resolved: true, notes: String::new() };
    desktop.send(agent_session_request::Kind::CompleteContact(complete)).await;
    assert!(
        matches!(desktop.next().await, agent_session_response::Kind::ContactCompleted(done) if done.contact == contact)
    );
    desktop.send(agent_session_request::Kind::AcceptOffer(AcceptOffer { contact: contact.clone() })).await;
    match desktop.next().await {
        agent_session_response::Kind::Error(error) => {
            assert_eq!((error.code, error.reason.as_str()), (Code::FailedPrecondition as i32, "CONTACT_ENDED"));
        }
        other => panic!("a completed contact cannot be accepted again, got {other:?}"),
    }
    cluster.stop().await;
}

#[tokio::test]
async fn a_newer_session_replaces_the_older_and_a_dropped_one_goes_offline_after_grace() {
    let mut cluster = Cluster::start().await;
    cluster.create_alice().await;
    let mut first = cluster.open_session("alice", "alice").await.unwrap();
    first.next().await;
    assert!(matches!(first.set_state(AgentState::Available, "").await, agent_session_response::Kind::StateChanged(_)));
    let mut second = cluster.open_session("alice", "alice").await.unwrap();
    assert!(
        matches!(second.next().await, agent_session_response::Kind::SessionStarted(started)
        if started.state == AgentState::Available as i32),
        "the new session sees the current state"
    );
    let replaced = tokio::time::timeout(WAIT, first.responses.message()).await.expect("in time");
    assert_eq!(replaced.expect_err("the old stream ends with an error").code(), Code::Aborted);
    assert_eq!(cluster.agent_state("alice").await, AgentState::Available as i32, "replacement keeps the state");

    drop(second);
    let deadline = tokio::time::Instant::now() + WAIT;
    while cluster.agent_state("alice").await != AgentState::Offline as i32 {
        assert!(tokio::time::Instant::now() < deadline, "the agent goes offline after the grace period");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.stop().await;
}

/// One presence replica sharing `agents`, `live` and `bus` with others.
async fn start_replica(
    bus: &MemoryBus,
    agents: Arc<dyn switchboard_presence::store::AgentStore>,
    live: Arc<dyn switchboard_presence::store::LiveStateStore>,
    routing_url: &str,
) -> (PresenceServiceClient<GrpcChannel>, switchboard_test_support::RunningService) {
    let mut config = Config::default();
    config.services.routing.url = routing_url.to_owned();
    config.presence.session_grace_ms = 300;
    config.instance_id = format!("replica-{}", switchboard_test_support::unique_suffix());
    let kit = switchboard_test_support::kit::<switchboard_presence::Presence>(
        config,
        Arc::new(bus.clone()),
        access_with_keys(&KEYS),
    );
    let service = switchboard_test_support::start_service(kit, switchboard_presence::Presence { agents, live }).await;
    (PresenceServiceClient::new(connect_when_ready(service.address).await.unwrap()), service)
}

#[tokio::test]
async fn replicas_keep_each_others_agents_and_take_over_a_dead_replicas_agents() {
    let bus = MemoryBus::new();
    let agents: Arc<dyn switchboard_presence::store::AgentStore> =
        Arc::new(switchboard_presence::store::memory::MemoryAgentStore::default());
    let live: Arc<dyn switchboard_presence::store::LiveStateStore> =
        Arc::new(switchboard_presence::store::memory::MemoryLiveStateStore::default());
    let routing_url = "http://127.0.0.1:9"; // decisions are not exercised here
    let (mut first, first_service) = start_replica(&bus, agents.clone(), live.clone(), routing_url).await;
    let agent = Agent {
        tenants: vec!["tenants/acme".into()],
        capacities: vec![ChannelCapacity { channel: Channel::Chat as i32, max_concurrent: 1 }],
        ..Agent::default()
    };
    first
        .create_agent(authorized("operator", CreateAgentRequest { agent_id: "alice".into(), agent: Some(agent) }))
        .await
        .unwrap();
    let (requests, outbound) = mpsc::channel(16);
    requests
        .send(AgentSessionRequest {
            kind: Some(agent_session_request::Kind::Hello(Hello { agent: "agents/alice".into() })),
        })
        .await
        .unwrap();
    let responses = first.agent_session(authorized("alice", ReceiverStream::new(outbound))).await.unwrap().into_inner();
    let mut desktop = Desktop::new(requests, responses);
    desktop.next().await;
    assert!(matches!(
        desktop.set_state(AgentState::Available, "").await,
        agent_session_response::Kind::StateChanged(_)
    ));

    // A second replica starts (a scale-out or a neighbour's restart): it
    // must leave Alice, connected to the first, alone well past the grace.
    let (mut second, second_service) = start_replica(&bus, agents, live, routing_url).await;
    let state_of = |client: &mut PresenceServiceClient<GrpcChannel>| {
        let mut client = client.clone();
        async move {
            let request = GetAgentRequest { name: "agents/alice".into() };
            client.get_agent(authorized("operator", request)).await.unwrap().into_inner().state
        }
    };
    let watch_until = tokio::time::Instant::now() + Duration::from_millis(1_200);
    while tokio::time::Instant::now() < watch_until {
        assert_eq!(state_of(&mut second).await, AgentState::Available as i32, "a live session elsewhere is kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The first replica dies: its leases stop being renewed, and the
    // second takes Alice offline once her lease runs out.
    first_service.stop().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while state_of(&mut second).await != AgentState::Offline as i32 {
        assert!(tokio::time::Instant::now() < deadline, "a dead replica's agent goes offline");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(desktop);
    second_service.stop().await;
}
