//! Presence stores: agent definitions (PostgreSQL or memory) and live
//! agent state (Redis or memory).

#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod memory;
pub mod postgres;
pub mod redis;

use async_trait::async_trait;
use switchboard_core::{AgentId, Error, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::presence::v1::{ActiveContact, Agent, AgentState};

/// Agent definitions, operator-wide.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Fails with ALREADY_EXISTS when the agent exists.
    async fn create_agent(&self, agent_id: &AgentId, agent: &Agent) -> Result<(), Error>;
    async fn get_agent(&self, agent_id: &AgentId) -> Result<Option<Agent>, Error>;
    /// Up to `page.size + 1` agents by id after `page.after`, only those
    /// serving `tenant` when given.
    async fn list_agents(&self, tenant: Option<&TenantId>, page: &PageRequest) -> Result<Vec<Agent>, Error>;
    /// Replaces the agent's definition; false when it does not exist.
    async fn update_agent(&self, agent_id: &AgentId, agent: &Agent) -> Result<bool, Error>;
    async fn delete_agent(&self, agent_id: &AgentId) -> Result<bool, Error>;
}

/// An agent's live state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveState {
    pub state: AgentState,
    pub reason: String,
    pub since_ms: i64,
    /// In WRAP_UP: when the wrap-up ends by itself; 0 in any other state.
    pub wrap_up_until_ms: i64,
}

impl LiveState {
    pub fn new(state: AgentState, reason: &str, since_ms: i64) -> LiveState {
        LiveState { state, reason: reason.to_owned(), since_ms, wrap_up_until_ms: 0 }
    }

    pub fn offline() -> LiveState {
        LiveState::new(AgentState::Offline, "", 0)
    }

    pub fn wrap_up(since_ms: i64, until_ms: i64) -> LiveState {
        LiveState { wrap_up_until_ms: until_ms, ..LiveState::new(AgentState::WrapUp, "", since_ms) }
    }
}

#[async_trait]
pub trait LiveStateStore: Send + Sync {
    /// OFFLINE (since 0) for an agent never seen.
    async fn get_state(&self, agent: &AgentId) -> Result<LiveState, Error>;
    /// Sets the state and returns the previous one, atomically. A state
    /// other than WRAP_UP ends any wrap-up timer.
    async fn set_state(&self, agent: &AgentId, state: &LiveState) -> Result<LiveState, Error>;
    /// Compare-and-set: sets `next` only while the agent is in `expected`
    /// and has been since at most `not_after_ms` (so a change made after
    /// the event that justified this one wins). Returns the previous state,
    /// or `None` when nothing changed.
    async fn set_state_if(
        &self,
        agent: &AgentId,
        expected: AgentState,
        not_after_ms: i64,
        next: &LiveState,
    ) -> Result<Option<LiveState>, Error>;
    /// Records one missed offer of the agent, identified by `offer_id` (a
    /// redelivered miss counts once), and returns how many it has missed
    /// since [`LiveStateStore::clear_missed_offers`].
    async fn record_missed_offer(&self, agent: &AgentId, offer_id: &str) -> Result<usize, Error>;
    async fn clear_missed_offers(&self, agent: &AgentId) -> Result<(), Error>;
    /// Records that the offer of `contact` reached the agent's desktop (a
    /// live session was sent it), so that its timing out is the agent's
    /// miss, not an outage's.
    async fn mark_offer_seen(&self, agent: &AgentId, contact: &str) -> Result<(), Error>;
    /// Whether the offer of `contact` reached the agent's desktop; forgets
    /// it either way.
    async fn take_offer_seen(&self, agent: &AgentId, contact: &str) -> Result<bool, Error>;
    /// Records (or replaces) work the agent holds, by contact name.
    async fn put_active_contact(&self, agent: &AgentId, contact: &ActiveContact) -> Result<(), Error>;
    /// The agent answered an offer: `contact` is work it holds now, whether
    /// the offer was seen no longer matters, and its missed offers start
    /// over. (Redis does the three in one round trip.)
    async fn offer_answered(&self, agent: &AgentId, contact: &ActiveContact) -> Result<(), Error> {
        self.put_active_contact(agent, contact).await?;
        self.take_offer_seen(agent, &contact.contact).await?;
        self.clear_missed_offers(agent).await
    }
    /// Forgets the agent's contact; false when it held no such contact.
    async fn remove_active_contact(&self, agent: &AgentId, contact: &str) -> Result<bool, Error>;
    /// The work the agent holds, by contact name.
    async fn active_contacts(&self, agent: &AgentId) -> Result<Vec<ActiveContact>, Error>;
    /// One contact of the agent's work, if it holds it.
    async fn active_contact(&self, agent: &AgentId, contact: &str) -> Result<Option<ActiveContact>, Error>;
    /// The agent that holds `contact` (offered or handling), if any: the
    /// last to take it, so a removal by an agent that lost it to another
    /// leaves the new holder.
    async fn holder_of(&self, contact: &str) -> Result<Option<AgentId>, Error>;
    /// Makes the agent the contact's holder at once, as its accept is
    /// confirmed, ahead of the routing events that say so: a message that
    /// comes right after the accept then reaches the agent live.
    async fn hold(&self, agent: &AgentId, contact: &str) -> Result<(), Error>;
    /// Agents in WRAP_UP whose wrap-up ended before `now_ms`, as (agent,
    /// wrap-up end), earliest first, at most `limit`.
    async fn expired_wrap_ups(&self, now_ms: i64, limit: usize) -> Result<Vec<(AgentId, i64)>, Error>;
    /// Agents whose state is not OFFLINE (to re-arm session timers after a
    /// restart).
    async fn online_agents(&self) -> Result<Vec<AgentId>, Error>;
    /// How many agents are in each state other than OFFLINE.
    async fn online_states(&self) -> Result<std::collections::BTreeMap<AgentState, i64>, Error>;
    /// Records `session_id` as the agent's current session, leased until
    /// `lease_until_ms`.
    async fn claim_session(&self, agent: &AgentId, session_id: &str, lease_until_ms: i64) -> Result<(), Error>;
    /// Extends the lease of `session_id`; false (nothing changed) when
    /// another session owns the agent now.
    async fn renew_lease(&self, agent: &AgentId, session_id: &str, lease_until_ms: i64) -> Result<bool, Error>;
    /// Sessions whose lease ran out before `now_ms`, as (agent, session),
    /// oldest first, at most `limit`.
    async fn expired_leases(&self, now_ms: i64, limit: usize) -> Result<Vec<(AgentId, String)>, Error>;
    /// The agent's current session id, empty when it never had one.
    async fn session_of(&self, agent: &AgentId) -> Result<String, Error>;
    /// Sets the state only while `expected_session` is still the agent's
    /// current session, atomically; returns the previous state, or `None`
    /// when a newer session took over (nothing changed). Going offline
    /// ends the session's lease.
    async fn set_state_if_session(
        &self,
        agent: &AgentId,
        expected_session: &str,
        state: &LiveState,
    ) -> Result<Option<LiveState>, Error>;
    /// Forgets every contact of `tenant` (a deleted tenant) the agents
    /// hold or were offered: active contacts, holders and seen offers.
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error>;
}

pub(crate) fn state_name(state: AgentState) -> &'static str {
    state.as_str_name()
}

pub(crate) fn parse_state(name: &str) -> Option<AgentState> {
    AgentState::from_str_name(name)
}

pub(crate) fn serves(agent: &Agent, tenant: &TenantId) -> bool {
    let tenant_name = switchboard_core::names::tenant_name(tenant);
    agent.tenants.contains(&tenant_name)
}
