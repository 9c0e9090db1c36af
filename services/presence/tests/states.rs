//! Agent states the platform sets, through the public gRPC API with a
//! routing service beside presence: wrap-up after a completed contact (its
//! timer, ending it early, routing holding work back meanwhile).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use prost_types::Duration as ProtoDuration;
use support::{Cluster, publish_contact_to};
use switchboard_proto::common::v1::Channel;
use switchboard_proto::presence::v1::{AgentState, agent_session_response};
use switchboard_proto::routing::v1::Queue;

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
