//! An agent's desktop on `AgentSession`, as the end-to-end tests drive it.

use std::time::Duration;

use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{
    AcceptOffer, AgentSessionRequest, AgentSessionResponse, AgentState, CompleteContact, Hello, Offer, SetState,
    agent_session_request, agent_session_response,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use super::authorized;

const WAIT: Duration = Duration::from_secs(60);

pub struct AgentDesktop {
    pub requests: mpsc::Sender<AgentSessionRequest>,
    pub responses: Streaming<AgentSessionResponse>,
}

impl AgentDesktop {
    /// Opens `agent`'s session with `key` and waits for its start.
    pub async fn connect(presence: Channel, key: &str, agent: &str) -> AgentDesktop {
        let (requests, outbound) = mpsc::channel(16);
        let hello = Hello { agent: agent.to_owned() };
        requests
            .send(AgentSessionRequest { kind: Some(agent_session_request::Kind::Hello(hello)) })
            .await
            .expect("hello");
        let responses = PresenceServiceClient::new(presence)
            .agent_session(authorized(key, ReceiverStream::new(outbound)))
            .await
            .expect("the agent opens its session")
            .into_inner();
        let mut desktop = AgentDesktop { requests, responses };
        desktop
            .next_matching("session start", |kind| match kind {
                agent_session_response::Kind::SessionStarted(started) => Some(started),
                _ => None,
            })
            .await;
        desktop
    }

    pub async fn send(&self, kind: agent_session_request::Kind) {
        self.requests.send(AgentSessionRequest { kind: Some(kind) }).await.expect("session open");
    }

    /// The next response matching `pick`, skipping others (e.g. heartbeats).
    pub async fn next_matching<T>(
        &mut self,
        what: &str,
        pick: impl Fn(agent_session_response::Kind) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.responses.message())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what} on the agent session"))
                .expect("session stream healthy")
                .expect("session stream open");
            let kind = message.kind.expect("response kind");
            if let agent_session_response::Kind::Error(error) = &kind {
                panic!("agent session error while waiting for {what}: {error:?}");
            }
            if let Some(found) = pick(kind) {
                return found;
            }
        }
    }

    pub async fn set_state(&mut self, state: AgentState) {
        self.send(agent_session_request::Kind::SetState(SetState { state: state as i32, reason: String::new() })).await;
        let confirmed = self
            .next_matching("state confirmation", |kind| match kind {
                agent_session_response::Kind::StateChanged(changed) => Some(changed.state),
                _ => None,
            })
            .await;
        assert_eq!(confirmed, state as i32);
    }

    /// The next offer.
    pub async fn next_offer(&mut self) -> Offer {
        self.next_matching("an offer", |kind| match kind {
            agent_session_response::Kind::Offer(offer) => Some(offer),
            _ => None,
        })
        .await
    }

    /// Accepts `contact` and waits for the confirmation.
    pub async fn accept(&mut self, contact: &str) {
        self.send(agent_session_request::Kind::AcceptOffer(AcceptOffer { contact: contact.to_owned() })).await;
        self.next_matching("the accept confirmation", |kind| match kind {
            agent_session_response::Kind::OfferAccepted(accepted) => Some(accepted),
            _ => None,
        })
        .await;
    }

    /// Completes `contact` as resolved with `disposition` and waits for
    /// the confirmation.
    pub async fn complete(&mut self, contact: &str, disposition: &str, notes: &str) {
        let complete = CompleteContact {
            contact: contact.to_owned(),
            disposition: disposition.to_owned(),
            resolved: true,
            notes: notes.to_owned(),
        };
        self.send(agent_session_request::Kind::CompleteContact(complete)).await;
        self.next_matching("the completion confirmation", |kind| match kind {
            agent_session_response::Kind::ContactCompleted(completed) => Some(completed),
            _ => None,
        })
        .await;
    }
}
