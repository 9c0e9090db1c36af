//! Live agent sessions on this replica and the presence core they share
//! with the routing-event consumer: state changes (published as events),
//! offers pushed down the agent's stream, and the grace period after a
//! stream drops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use switchboard_core::clock::Clock;
use switchboard_core::event::{PRESENCE_TOPIC, envelope};
use switchboard_core::names::{agent_name, parse_agent};
use switchboard_core::time::{millis_from_timestamp, optional_timestamp, timestamp_from_millis};
use switchboard_core::{AgentId, Error};
use switchboard_platform::bus::{Delivery, EventBus, publish_traced};
use switchboard_platform::readiness::ReadyFlag;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{ContactEvent, contact_event};
use switchboard_proto::presence::v1::{
    Agent, AgentSessionResponse, AgentState, AgentStateChanged, Offer, OfferRevoked, PresenceEvent, StateChangeSource,
    StateChanged, agent_session_response, presence_event,
};
use switchboard_proto::routing::v1::{WithdrawReason, routing_event};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::store::{AgentStore, LiveState, LiveStateStore};

pub type SessionSender = mpsc::Sender<Result<AgentSessionResponse, Status>>;

/// State changes kept for slow watchers.
pub const STATE_CHANGES_BUFFER: usize = 4_096;

struct ActiveSession {
    session_id: String,
    started_ms: i64,
    sender: SessionSender,
    /// Cancelled when this replica ends the session (replaced by a newer
    /// one, or its desktop stopped reading).
    closed: CancellationToken,
}

/// The presence core of one replica.
pub struct PresenceCore {
    pub agents: Arc<dyn AgentStore>,
    pub live: Arc<dyn LiveStateStore>,
    pub bus: Arc<dyn EventBus>,
    pub session_grace: Duration,
    /// Offers missed in a row before NOT_RESPONDING; 0 never.
    pub missed_offers_threshold: u32,
    /// The clock every replica agrees on: a session lease written by one
    /// replica is judged lapsed by another.
    pub clock: Clock,
    sessions: Mutex<HashMap<AgentId, ActiveSession>>,
    /// Every agent's state changes as this replica consumes them, for
    /// `WatchAgentStates`.
    state_changes: broadcast::Sender<AgentStateChanged>,
}

pub fn response(kind: agent_session_response::Kind) -> AgentSessionResponse {
    AgentSessionResponse { kind: Some(kind) }
}

fn status_of(error: &Error) -> Status {
    switchboard_platform::status::to_status(error)
}

impl PresenceCore {
    pub fn new(
        agents: Arc<dyn AgentStore>,
        live: Arc<dyn LiveStateStore>,
        bus: Arc<dyn EventBus>,
        session_grace: Duration,
        missed_offers_threshold: u32,
    ) -> PresenceCore {
        PresenceCore {
            agents,
            live,
            bus,
            session_grace,
            missed_offers_threshold,
            clock: Clock::system(),
            sessions: Mutex::new(HashMap::new()),
            state_changes: broadcast::channel(STATE_CHANGES_BUFFER).0,
        }
    }

    /// The core reading `clock` (the kit's, shared through Redis).
    pub fn with_clock(mut self, clock: Clock) -> PresenceCore {
        self.clock = clock;
        self
    }

    /// State changes from now on; a watcher that falls more than
    /// [`STATE_CHANGES_BUFFER`] behind is told it lagged.
    pub fn watch_states(&self) -> broadcast::Receiver<AgentStateChanged> {
        self.state_changes.subscribe()
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<AgentId, ActiveSession>> {
        // Single inserts and removes only: a poisoned map is still sound.
        switchboard_core::sync::lock_unpoisoned(&self.sessions)
    }

    /// Makes this the agent's session and ends the one it replaces. Returns
    /// the token that is cancelled when this replica ends the new session.
    pub fn register(&self, agent: &AgentId, session_id: &str, sender: SessionSender) -> CancellationToken {
        let closed = CancellationToken::new();
        let session = ActiveSession {
            session_id: session_id.to_owned(),
            started_ms: self.clock.now_millis(),
            sender,
            closed: closed.clone(),
        };
        if let Some(replaced) = self.sessions().insert(agent.clone(), session) {
            let error =
                Error::new(switchboard_core::ErrorCode::Aborted, "a newer session of this agent replaced this one");
            // Best effort: a replaced desktop that stopped reading just sees its stream end.
            let _ = replaced.sender.try_send(Err(status_of(&error)));
            replaced.closed.cancel();
        }
        closed
    }

    /// Removes the session if it is still the agent's current one.
    pub fn unregister(&self, agent: &AgentId, session_id: &str) -> bool {
        let mut sessions = self.sessions();
        if sessions.get(agent).is_some_and(|session| session.session_id == session_id) {
            sessions.remove(agent);
            return true;
        }
        false
    }

    pub fn has_session(&self, agent: &AgentId) -> bool {
        self.sessions().contains_key(agent)
    }

    fn current_sender(&self, agent: &AgentId) -> Option<(SessionSender, i64, String)> {
        self.sessions()
            .get(agent)
            .map(|session| (session.sender.clone(), session.started_ms, session.session_id.clone()))
    }

    /// Records a state and publishes the change with the agent's current
    /// definition, so routing needs no lookup.
    pub async fn change_state(
        &self,
        agent: &Agent,
        agent_id: &AgentId,
        state: AgentState,
        reason: &str,
        source: StateChangeSource,
    ) -> Result<(), Error> {
        let next = LiveState::new(state, reason, self.clock.now_millis());
        // A state chosen by a person starts the missed-offer count afresh.
        self.live.clear_missed_offers(agent_id).await?;
        let previous = self.live.set_state(agent_id, &next).await?;
        self.publish_state(agent, agent_id, &next, previous.state, source).await
    }

    /// Publishes a state change already recorded in the live state.
    pub(crate) async fn publish_state(
        &self,
        agent: &Agent,
        agent_id: &AgentId,
        next: &LiveState,
        previous: AgentState,
        source: StateChangeSource,
    ) -> Result<(), Error> {
        tracing::info!(
            agent = %agent_id,
            state = next.state.as_str_name(),
            previous = previous.as_str_name(),
            source = source.as_str_name(),
            "agent state changed"
        );
        let changed = AgentStateChanged {
            agent: agent_name(agent_id),
            state: next.state as i32,
            previous_state: previous as i32,
            reason: next.reason.clone(),
            tenants: agent.tenants.clone(),
            skills: agent.skills.clone(),
            capacities: agent.capacities.clone(),
            state_time: Some(timestamp_from_millis(next.since_ms)),
            source: source as i32,
            wrap_up_end_time: optional_timestamp(next.wrap_up_until_ms),
            voice_endpoint: agent.voice_endpoint.clone(),
        };
        let event = envelope(
            None,
            agent_id.as_str(),
            Payload::Presence(PresenceEvent { kind: Some(presence_event::Kind::StateChanged(changed)) }),
        );
        publish_traced(self.bus.as_ref(), PRESENCE_TOPIC, &event).await
    }

    /// Takes an agent offline when its session `ended_session` did not come
    /// back, unless a newer session (on any replica) owns the agent now.
    /// Returns whether the agent went offline.
    pub async fn go_offline_after(&self, agent_id: &AgentId, ended_session: &str) -> Result<bool, Error> {
        let agent = self.agent_or_bare(agent_id).await?;
        let offline = LiveState::new(AgentState::Offline, "", self.clock.now_millis());
        let Some(previous) = self.live.set_state_if_session(agent_id, ended_session, &offline).await? else {
            return Ok(false);
        };
        // Published even when it was already offline: a previous attempt may
        // have changed the state and then failed to publish.
        self.publish_state(&agent, agent_id, &offline, previous.state, StateChangeSource::Platform).await?;
        Ok(true)
    }

    /// When a lease granted now runs out.
    pub fn lease_until(&self) -> i64 {
        self.clock.now_millis() + i64::try_from(self.session_grace.as_millis()).unwrap_or(i64::MAX)
    }

    /// Sessions on this replica, as (agent, session id).
    fn local_sessions(&self) -> Vec<(AgentId, String)> {
        self.sessions().iter().map(|(agent, session)| (agent.clone(), session.session_id.clone())).collect()
    }

    fn is_local_session(&self, agent: &AgentId, session_id: &str) -> bool {
        self.sessions().get(agent).is_some_and(|session| session.session_id == session_id)
    }

    /// How often the leases of this replica's sessions are renewed: three
    /// times per grace period.
    pub fn lease_renewal_interval(&self) -> Duration {
        (self.session_grace / 3).max(Duration::from_millis(20))
    }

    /// Renews the lease of every session this replica holds: one round,
    /// run on a timer. A session another replica took over is ended here.
    pub async fn renew_leases(&self) -> Result<(), Error> {
        for (agent, session_id) in self.local_sessions() {
            match self.live.renew_lease(&agent, &session_id, self.lease_until()).await {
                Ok(true) => {}
                Ok(false) => {
                    let error = Error::new(switchboard_core::ErrorCode::Aborted, "the agent connected elsewhere");
                    self.end_session(&agent, &session_id, &error);
                }
                Err(error) => tracing::warn!(agent = %agent, error = %error, "lease renewal failed, retrying"),
            }
        }
        Ok(())
    }

    /// Takes offline every agent whose session lease ran out (its stream
    /// dropped and did not come back within the grace period, or its
    /// replica died), on whichever replica notices first, until `shutdown`.
    ///
    /// A replica starts sweeping only once it is ready (its consumers hold
    /// their partitions, so agents can connect to it) and one more grace period
    /// has passed: after the whole presence tier was down, agents get a
    /// full grace period to reconnect before anyone is taken offline.
    pub async fn run_janitor(self: Arc<Self>, ready: ReadyFlag, shutdown: CancellationToken) -> Result<(), Error> {
        let interval = (self.session_grace / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
        while !ready.is_ready() {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(interval) => {}
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(self.session_grace) => {}
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.take_expired_sessions_offline().await {
                tracing::warn!(error = %error, "lease scan failed, retrying");
            }
        }
    }

    /// Takes offline every agent whose session lease ran out and that no
    /// session of this replica holds.
    async fn take_expired_sessions_offline(&self) -> Result<(), Error> {
        for (agent, session_id) in self.live.expired_leases(self.clock.now_millis(), 1_000).await? {
            // The keeper may simply be late for a session held here.
            if self.is_local_session(&agent, &session_id) {
                continue;
            }
            match self.go_offline_after(&agent, &session_id).await {
                Ok(true) => tracing::info!(agent = %agent, "session lease ran out, agent went offline"),
                Ok(false) => {}
                Err(error) => tracing::warn!(agent = %agent, error = %error, "failed to take agent offline, retrying"),
            }
        }
        Ok(())
    }

    /// The agent's definition, or a bare one (no tenants) for an agent
    /// deleted meanwhile.
    pub(crate) async fn agent_or_bare(&self, agent_id: &AgentId) -> Result<Agent, Error> {
        Ok(self
            .agents
            .get_agent(agent_id)
            .await?
            .unwrap_or_else(|| Agent { name: agent_name(agent_id), ..Agent::default() }))
    }

    /// This replica's consumer (every replica sees every event): pushes
    /// offers and revocations, and state changes the agent did not make
    /// itself, to the agent's session on this replica, if it has one.
    pub async fn on_event(&self, delivery: Delivery) -> Result<(), Error> {
        let occurred_ms = delivery.envelope.occurred_at.as_ref().map_or(0, millis_from_timestamp);
        let event = match delivery.envelope.payload {
            Some(Payload::Routing(event)) => event,
            Some(Payload::Presence(PresenceEvent { kind: Some(presence_event::Kind::StateChanged(changed)) })) => {
                return self.on_state_changed(changed, occurred_ms).await;
            }
            Some(Payload::Contact(ContactEvent { kind: Some(kind) })) => {
                return self.on_conversation_event(kind, occurred_ms).await;
            }
            _ => return Ok(()),
        };
        match event.kind {
            Some(routing_event::Kind::Offered(offered)) => {
                let agent = parse_agent(&offered.agent, "offered.agent")?;
                let expire_ms = offered.expire_time.as_ref().map_or(0, millis_from_timestamp);
                // Replayed history: an expired offer is no longer the agent's.
                if expire_ms <= self.clock.now_millis() {
                    return Ok(());
                }
                let contact = offered.contact.clone();
                let offer = Offer {
                    contact: offered.contact,
                    queue: offered.queue,
                    channel: offered.channel,
                    customer: offered.customer,
                    expire_time: offered.expire_time,
                    subject: offered.subject,
                    callback_number: offered.callback_number,
                    session_url: offered.session_url,
                    conversation: offered.conversation,
                };
                // The mark is a statistic (was a timeout the agent's miss?):
                // failing to write it must not push the offer again, nor
                // hold up every later push of this replica.
                if self.push(&agent, occurred_ms, agent_session_response::Kind::Offer(offer)).await
                    && let Err(error) = self.live.mark_offer_seen(&agent, &contact).await
                {
                    tracing::warn!(agent = %agent, contact, error = %error, "offer sent but not marked seen");
                }
            }
            // A contact the agent held moved elsewhere (transfer, or its
            // agent went offline): the desktop drops it.
            Some(routing_event::Kind::Transferred(transferred)) if !transferred.from_agent.is_empty() => {
                let agent = parse_agent(&transferred.from_agent, "transferred.from_agent")?;
                let revoked = OfferRevoked { contact: transferred.contact, reason: "TRANSFERRED".to_owned() };
                self.push(&agent, occurred_ms, agent_session_response::Kind::OfferRevoked(revoked)).await;
            }
            Some(routing_event::Kind::OfferWithdrawn(withdrawn)) => {
                let agent = parse_agent(&withdrawn.agent, "offer_withdrawn.agent")?;
                let reason = WithdrawReason::try_from(withdrawn.reason).unwrap_or(WithdrawReason::Unspecified);
                let revoked = OfferRevoked { contact: withdrawn.contact, reason: reason.as_str_name().to_owned() };
                self.push(&agent, occurred_ms, agent_session_response::Kind::OfferRevoked(revoked)).await;
            }
            _ => {}
        }
        Ok(())
    }

    /// A conversation's message or a reply's new state goes to the agent
    /// holding the contact, if its desktop is connected here.
    async fn on_conversation_event(&self, kind: contact_event::Kind, occurred_ms: i64) -> Result<(), Error> {
        let (contact, push) = match kind {
            contact_event::Kind::MessageAdded(added) => {
                (added.contact.clone(), agent_session_response::Kind::MessageAdded(added))
            }
            contact_event::Kind::MessageStatusChanged(changed) => {
                (changed.contact.clone(), agent_session_response::Kind::MessageStatusChanged(changed))
            }
            contact_event::Kind::Created(_)
            | contact_event::Kind::Abandoned(_)
            | contact_event::Kind::SurveyAnswered(_)
            | contact_event::Kind::CustomerResolved(_) => return Ok(()),
        };
        // Every replica sees every message: one with no desktop connected
        // has nobody to push to, and asks Redis nothing; a message of a
        // conversation with no contact yet (a notification) has no holder.
        if self.sessions().is_empty() || contact.is_empty() {
            return Ok(());
        }
        if let Some(agent) = self.live.holder_of(&contact).await? {
            self.push(&agent, occurred_ms, push).await;
        }
        Ok(())
    }

    async fn on_state_changed(&self, changed: AgentStateChanged, occurred_ms: i64) -> Result<(), Error> {
        // No watcher is no error.
        let _ = self.state_changes.send(changed.clone());
        // The agent's own changes were answered on its session already.
        if changed.source == StateChangeSource::Agent as i32 {
            return Ok(());
        }
        let agent = parse_agent(&changed.agent, "state_changed.agent")?;
        let pushed =
            StateChanged { state: changed.state, reason: changed.reason, wrap_up_end_time: changed.wrap_up_end_time };
        self.push(&agent, occurred_ms, agent_session_response::Kind::StateChanged(pushed)).await;
        Ok(())
    }

    /// Sends `kind` to the agent's session on this replica, if it has one;
    /// true when it was handed to the session.
    async fn push(&self, agent: &AgentId, occurred_ms: i64, kind: agent_session_response::Kind) -> bool {
        let Some((sender, started_ms, session_id)) = self.current_sender(agent) else {
            return false;
        };
        // Events from before this session began were meant for an older one.
        // Offers are exempt: one still ringing belongs to the agent whatever
        // session it uses now.
        let is_offer = matches!(kind, agent_session_response::Kind::Offer(_));
        if !is_offer && occurred_ms < started_ms {
            return false;
        }
        // Never wait on one desktop: a stalled one would hold up every other
        // agent's offers on this replica. A desktop that stopped reading is
        // disconnected; it reconnects and its offer is re-offered on timeout.
        match sender.try_send(Ok(response(kind))) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(agent = %agent, "agent session is not reading, disconnecting it");
                let error = Error::new(switchboard_core::ErrorCode::ResourceExhausted, "the session stopped reading");
                self.end_session(agent, &session_id, &error);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::info!(agent = %agent, "agent session closed before the push");
                false
            }
        }
    }

    /// Ends the agent's session `session_id` if it is still the current one
    /// here: its task stops, the stream closes and its lease is no longer
    /// renewed.
    fn end_session(&self, agent: &AgentId, session_id: &str, error: &Error) {
        let mut sessions = self.sessions();
        let Some(session) = sessions.get(agent).filter(|session| session.session_id == session_id) else {
            return;
        };
        tracing::info!(agent = %agent, reason = ?error.message, "ending agent session");
        session.closed.cancel();
        sessions.remove(agent);
    }
}
