//! Presence restarts with agents connected (issue 3's guarantee): after a
//! `kill -9` of the presence process, an agent that reconnects finds its
//! state as it was, and an agent that never comes back goes offline once
//! its session lease runs out — nothing lost, nothing invented.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::{Process, authorized, eventually, free_port};
use switchboard_proto::common::v1::{Channel, ChannelCapacity};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{
    Agent, AgentSessionRequest, AgentSessionResponse, AgentState, CreateAgentRequest, GetAgentRequest, Hello, SetState,
    agent_session_request, agent_session_response,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel as GrpcChannel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const GRACE_MS: u64 = 3_000;

async fn ready(url: &str) {
    eventually("presence to be ready", Duration::from_secs(60), || {
        let url = url.to_owned();
        async move {
            let channel = GrpcChannel::from_shared(url).ok()?.connect().await.ok()?;
            let request = HealthCheckRequest { service: "switchboard.presence.v1.PresenceService".into() };
            let status = HealthClient::new(channel).check(request).await.ok()?.into_inner().status;
            (status == ServingStatus::Serving as i32).then_some(())
        }
    })
    .await;
}

/// Opens `agent`'s session and returns it with the state it started in.
async fn connect(
    client: &mut PresenceServiceClient<GrpcChannel>,
    agent: &str,
) -> (mpsc::Sender<AgentSessionRequest>, Streaming<AgentSessionResponse>, i32) {
    let (requests, outbound) = mpsc::channel(8);
    let hello = Hello { agent: format!("agents/{agent}") };
    requests.send(AgentSessionRequest { kind: Some(agent_session_request::Kind::Hello(hello)) }).await.unwrap();
    let mut responses = client
        .agent_session(authorized(&format!("dev-agent-{agent}"), ReceiverStream::new(outbound)))
        .await
        .unwrap()
        .into_inner();
    let first = responses.message().await.unwrap().unwrap().kind.unwrap();
    let agent_session_response::Kind::SessionStarted(started) = first else {
        panic!("session starts with SessionStarted")
    };
    (requests, responses, started.state)
}

async fn set_available(requests: &mpsc::Sender<AgentSessionRequest>, responses: &mut Streaming<AgentSessionResponse>) {
    let set = SetState { state: AgentState::Available as i32, reason: String::new() };
    requests.send(AgentSessionRequest { kind: Some(agent_session_request::Kind::SetState(set)) }).await.unwrap();
    let reply = responses.message().await.unwrap().unwrap().kind.unwrap();
    assert!(matches!(reply, agent_session_response::Kind::StateChanged(_)), "{reply:?}");
}

async fn state_of(client: &mut PresenceServiceClient<GrpcChannel>, agent: &str) -> i32 {
    let request = GetAgentRequest { name: format!("agents/{agent}") };
    client.get_agent(authorized("dev-operator-admin", request)).await.unwrap().into_inner().state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_reconnected_agents_keep_their_state_and_absent_ones_go_offline() {
    let Some(real) = support::real_run("presence-restart", GRACE_MS).await else { return };
    let (dir, run, config_arg) = (real.dir, real.run, real.config);
    let port = free_port();
    let env = vec![
        ("SWITCHBOARD_SERVICES__PRESENCE__LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        ("SWITCHBOARD_INSTANCE_ID".to_owned(), format!("first-{run}")),
    ];
    let url = format!("http://127.0.0.1:{port}");
    let mut first = Process::spawn("presence-1", &["presence", "--config", &config_arg], &env, &dir);
    ready(&url).await;
    let mut client = PresenceServiceClient::new(GrpcChannel::from_shared(url.clone()).unwrap().connect_lazy());
    for agent in ["alice", "bob"] {
        let definition = Agent {
            tenants: vec!["tenants/acme".into()],
            capacities: vec![ChannelCapacity { channel: Channel::Chat as i32, max_concurrent: 1 }],
            ..Agent::default()
        };
        let request = CreateAgentRequest { agent_id: agent.into(), agent: Some(definition) };
        client.create_agent(authorized("dev-operator-admin", request)).await.unwrap();
        let (requests, mut responses, _) = connect(&mut client, agent).await;
        set_available(&requests, &mut responses).await;
        // The streams die with the process below.
        std::mem::forget((requests, responses));
    }

    first.child.kill().expect("kill -9");
    first.child.wait().expect("killed");
    let env = vec![
        ("SWITCHBOARD_SERVICES__PRESENCE__LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        ("SWITCHBOARD_INSTANCE_ID".to_owned(), format!("second-{run}")),
    ];
    let second = Process::spawn("presence-2", &["presence", "--config", &config_arg], &env, &dir);
    ready(&url).await;
    let mut client = PresenceServiceClient::new(GrpcChannel::from_shared(url.clone()).unwrap().connect_lazy());

    // Alice reconnects at once: her state survived the crash.
    let (_alice_requests, _alice_responses, alice_state) = connect(&mut client, "alice").await;
    assert_eq!(alice_state, AgentState::Available as i32, "a reconnecting agent finds its state");
    // Bob never returns: offline once his lease runs out, not before.
    assert_eq!(state_of(&mut client, "bob").await, AgentState::Available as i32, "no state is invented early");
    eventually("bob to go offline after the grace period", Duration::from_secs(30), || {
        let mut client = client.clone();
        async move { (state_of(&mut client, "bob").await == AgentState::Offline as i32).then_some(()) }
    })
    .await;
    // Alice stays available, well past the grace period.
    let watch_until = tokio::time::Instant::now() + Duration::from_millis(GRACE_MS * 2);
    while tokio::time::Instant::now() < watch_until {
        assert_eq!(state_of(&mut client, "alice").await, AgentState::Available as i32, "a live session is kept");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = second.terminate();
    assert!(status.success(), "presence exits cleanly: {status}");
}
