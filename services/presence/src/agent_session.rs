//! One agent's session after `hello`: its requests, and the order they are
//! handled in. Decisions about different contacts (accept, reject,
//! complete) run concurrently, up to [`MAX_CONCURRENT_REQUESTS`], each
//! answered as it finishes (replies name their contact); a request about a
//! contact already in flight waits for it, and a state change waits for
//! every request before it, so what an agent does to one contact, and its
//! state, keep the order it sent them in.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use switchboard_core::names::agent_name;
use switchboard_core::{AgentId, Error};
use switchboard_platform::grpc::CallContext;
use switchboard_platform::status::from_status;
use switchboard_proto::presence::v1::{
    AgentSessionRequest, ContactCompleted, HeartbeatAck, OfferAccepted, OfferRevoked, SessionError, StateChangeSource,
    StateChanged, agent_session_request, agent_session_response,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{AcceptOfferRequest, CompleteContactRequest, RejectOfferRequest};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::domain::requested_state;
use crate::sessions::{PresenceCore, SessionSender, response};

/// The most requests of one session handled at once; the session reads no
/// further message until one finishes.
pub const MAX_CONCURRENT_REQUESTS: usize = 16;

/// The requests of one session in flight, and the contacts they are about.
#[derive(Default)]
pub(crate) struct InFlight {
    running: FuturesUnordered<BoxFuture<'static, String>>,
    contacts: HashSet<String>,
}

impl InFlight {
    /// Whether another request may start now.
    pub(crate) fn has_room(&self) -> bool {
        self.running.len() < MAX_CONCURRENT_REQUESTS
    }

    /// Waits for the next request in flight to finish; pending forever
    /// when none is (for a `select!`).
    pub(crate) async fn next_finished(&mut self) {
        match self.running.next().await {
            Some(contact) => self.forget(contact),
            None => std::future::pending().await,
        }
    }

    /// Starts `message` with `handle` in order: concurrently when it is a
    /// decision about a contact with nothing in flight, after every request
    /// in flight otherwise (a heartbeat is answered at once).
    pub(crate) async fn start(
        &mut self,
        message: AgentSessionRequest,
        handle: impl FnOnce(AgentSessionRequest) -> BoxFuture<'static, ()>,
    ) {
        let contact = match &message.kind {
            Some(agent_session_request::Kind::Heartbeat(_)) => return handle(message).await,
            Some(agent_session_request::Kind::AcceptOffer(accept)) => Some(accept.contact.clone()),
            Some(agent_session_request::Kind::RejectOffer(reject)) => Some(reject.contact.clone()),
            Some(agent_session_request::Kind::CompleteContact(complete)) => Some(complete.contact.clone()),
            _ => None,
        };
        let Some(contact) = contact.filter(|contact| !self.contacts.contains(contact)) else {
            self.drain().await;
            return handle(message).await;
        };
        self.contacts.insert(contact.clone());
        let handled = handle(message);
        self.running.push(Box::pin(async move {
            handled.await;
            contact
        }));
    }

    /// Waits for every request in flight.
    pub(crate) async fn drain(&mut self) {
        while let Some(contact) = self.running.next().await {
            self.forget(contact);
        }
    }

    fn forget(&mut self, contact: String) {
        self.contacts.remove(&contact);
    }
}

/// One agent's stream, after `hello`: what its requests need. Cloned for
/// each request handled concurrently.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) closed: CancellationToken,
    pub(crate) presence: Arc<PresenceCore>,
    pub(crate) routing: RoutingServiceClient<Channel>,
    pub(crate) call_context: CallContext,
    pub(crate) agent_id: AgentId,
    pub(crate) sender: SessionSender,
}

fn session_error(error: &Error, contact: &str) -> agent_session_response::Kind {
    agent_session_response::Kind::Error(SessionError {
        code: crate::status_code(error),
        message: error.message.clone(),
        contact: contact.to_owned(),
        reason: error.reason(),
    })
}

impl Session {
    async fn reply(&self, kind: agent_session_response::Kind) {
        // A desktop that sends requests but never reads replies is ended
        // rather than waited for.
        if let Err(mpsc::error::TrySendError::Full(_)) = self.sender.try_send(Ok(response(kind))) {
            tracing::warn!(agent = %self.agent_id, "agent session is not reading its replies, ending it");
            self.closed.cancel();
        }
    }

    /// Handles one request and sends its reply (or its `SessionError`).
    pub(crate) async fn handle(&self, message: AgentSessionRequest) {
        let Some(kind) = message.kind else {
            let error = Error::missing_field("kind");
            return self.reply(session_error(&error, "")).await;
        };
        let outcome = match kind {
            agent_session_request::Kind::Hello(_) => {
                Err((Error::invalid_field("hello", "the session is already open"), String::new()))
            }
            agent_session_request::Kind::Heartbeat(_) => {
                Ok(agent_session_response::Kind::HeartbeatAck(HeartbeatAck {}))
            }
            agent_session_request::Kind::SetState(set_state) => {
                self.set_state(set_state.state, &set_state.reason).await
            }
            agent_session_request::Kind::AcceptOffer(accept) => {
                let request = self.call_context.request(AcceptOfferRequest { contact: accept.contact.clone() });
                match self.routing.clone().accept_offer(request).await {
                    Ok(_) => {
                        // A failure only delays live messages until the
                        // routing events are consumed.
                        if let Err(error) = self.presence.live.hold(&self.agent_id, &accept.contact).await {
                            tracing::warn!(agent = %self.agent_id, contact = accept.contact, error = %error, "accepted contact not held yet");
                        }
                        Ok(agent_session_response::Kind::OfferAccepted(OfferAccepted { contact: accept.contact }))
                    }
                    Err(status) => Err((from_status(&status), accept.contact)),
                }
            }
            agent_session_request::Kind::RejectOffer(reject) => {
                let request = self
                    .call_context
                    .request(RejectOfferRequest { contact: reject.contact.clone(), reason: reject.reason });
                match self.routing.clone().reject_offer(request).await {
                    Ok(_) => Ok(agent_session_response::Kind::OfferRevoked(OfferRevoked {
                        contact: reject.contact,
                        reason: "REJECTED".to_owned(),
                    })),
                    Err(status) => Err((from_status(&status), reject.contact)),
                }
            }
            agent_session_request::Kind::CompleteContact(complete) => {
                let request = self.call_context.request(CompleteContactRequest {
                    contact: complete.contact.clone(),
                    disposition: complete.disposition,
                    resolved: complete.resolved,
                    notes: complete.notes,
                });
                match self.routing.clone().complete_contact(request).await {
                    Ok(_) => Ok(agent_session_response::Kind::ContactCompleted(ContactCompleted {
                        contact: complete.contact,
                    })),
                    Err(status) => Err((from_status(&status), complete.contact)),
                }
            }
        };
        match outcome {
            Ok(kind) => self.reply(kind).await,
            Err((error, contact)) => {
                tracing::info!(agent = %self.agent_id, contact, error = %error, "agent session request failed");
                self.reply(session_error(&error, &contact)).await;
            }
        }
    }

    async fn set_state(&self, state: i32, reason: &str) -> Result<agent_session_response::Kind, (Error, String)> {
        let state = requested_state(state, reason).map_err(|error| (error, String::new()))?;
        let agent = self.presence.agents.get_agent(&self.agent_id).await.map_err(|error| (error, String::new()))?;
        let agent = agent.ok_or_else(|| (Error::not_found(agent_name(&self.agent_id)), String::new()))?;
        self.presence
            .change_state(&agent, &self.agent_id, state, reason, StateChangeSource::Agent)
            .await
            .map_err(|error| (error, String::new()))?;
        Ok(agent_session_response::Kind::StateChanged(StateChanged {
            state: state as i32,
            reason: reason.to_owned(),
            wrap_up_end_time: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use switchboard_proto::presence::v1::{AcceptOffer, CompleteContact, Heartbeat, SetState};
    use tokio::sync::oneshot;

    use super::*;

    type Log = Arc<Mutex<Vec<String>>>;

    fn accept(contact: &str) -> AgentSessionRequest {
        let accept = AcceptOffer { contact: contact.to_owned() };
        AgentSessionRequest { kind: Some(agent_session_request::Kind::AcceptOffer(accept)) }
    }

    fn complete(contact: &str) -> AgentSessionRequest {
        let complete = CompleteContact { contact: contact.to_owned(), ..CompleteContact::default() };
        AgentSessionRequest { kind: Some(agent_session_request::Kind::CompleteContact(complete)) }
    }

    fn away() -> AgentSessionRequest {
        AgentSessionRequest { kind: Some(agent_session_request::Kind::SetState(SetState::default())) }
    }

    fn heartbeat() -> AgentSessionRequest {
        AgentSessionRequest { kind: Some(agent_session_request::Kind::Heartbeat(Heartbeat {})) }
    }

    /// A handler that finishes once `release` fires (at once without one)
    /// and then logs `label`.
    fn handler(
        log: &Log,
        label: &str,
        release: Option<oneshot::Receiver<()>>,
    ) -> impl FnOnce(AgentSessionRequest) -> BoxFuture<'static, ()> {
        let (log, label) = (Arc::clone(log), label.to_owned());
        move |_message| {
            Box::pin(async move {
                if let Some(release) = release {
                    let _ = release.await;
                }
                log.lock().unwrap().push(label);
            })
        }
    }

    fn logged(log: &Log) -> Vec<String> {
        log.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn decisions_about_different_contacts_run_at_once() {
        let (log, mut in_flight) = (Log::default(), InFlight::default());
        let (release_a, a_released) = oneshot::channel();
        in_flight.start(accept("a"), handler(&log, "accept a", Some(a_released))).await;
        in_flight.start(complete("b"), handler(&log, "complete b", None)).await;
        in_flight.next_finished().await;
        assert_eq!(logged(&log), ["complete b"], "b is not held behind a");
        release_a.send(()).unwrap();
        in_flight.next_finished().await;
        assert_eq!(logged(&log), ["complete b", "accept a"]);
    }

    #[tokio::test]
    async fn a_second_request_about_a_contact_waits_for_the_first() {
        let (log, mut in_flight) = (Log::default(), InFlight::default());
        let (release_accept, accept_released) = oneshot::channel();
        in_flight.start(accept("a"), handler(&log, "accept a", Some(accept_released))).await;
        let release = async { release_accept.send(()).unwrap() };
        tokio::join!(in_flight.start(complete("a"), handler(&log, "complete a", None)), release);
        assert_eq!(logged(&log), ["accept a", "complete a"]);
    }

    #[tokio::test]
    async fn a_state_change_waits_for_every_decision_before_it() {
        let (log, mut in_flight) = (Log::default(), InFlight::default());
        let (release_a, a_released) = oneshot::channel();
        let (release_b, b_released) = oneshot::channel();
        in_flight.start(accept("a"), handler(&log, "accept a", Some(a_released))).await;
        in_flight.start(complete("b"), handler(&log, "complete b", Some(b_released))).await;
        let release = async {
            release_b.send(()).unwrap();
            release_a.send(()).unwrap();
        };
        tokio::join!(in_flight.start(away(), handler(&log, "away", None)), release);
        let order = logged(&log);
        assert_eq!(order.len(), 3, "{order:?}");
        assert_eq!(order.last().map(String::as_str), Some("away"), "{order:?}");
    }

    #[tokio::test]
    async fn a_heartbeat_is_answered_while_decisions_wait() {
        let (log, mut in_flight) = (Log::default(), InFlight::default());
        let (_never, never_released) = oneshot::channel::<()>();
        in_flight.start(accept("a"), handler(&log, "accept a", Some(never_released))).await;
        in_flight.start(heartbeat(), handler(&log, "heartbeat", None)).await;
        assert_eq!(logged(&log), ["heartbeat"]);
    }

    #[tokio::test]
    async fn at_most_the_limit_of_requests_runs_at_once() {
        let (log, mut in_flight) = (Log::default(), InFlight::default());
        let mut releases = Vec::new();
        for contact in 0..MAX_CONCURRENT_REQUESTS {
            assert!(in_flight.has_room(), "room for request {contact}");
            let (release, released) = oneshot::channel();
            releases.push(release);
            in_flight.start(accept(&contact.to_string()), handler(&log, "accepted", Some(released))).await;
        }
        assert!(!in_flight.has_room(), "the session reads nothing more");
        releases.remove(0).send(()).unwrap();
        in_flight.next_finished().await;
        assert!(in_flight.has_room(), "room again once one finished");
    }
}
