//! In-memory presence stores for `dev` mode and as differential oracles.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use switchboard_core::names::tenant_name;
use switchboard_core::sync::lock_unpoisoned as lock;
use switchboard_core::{AgentId, Error, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::presence::v1::{ActiveContact, Agent, AgentState};

use super::{AgentStore, LiveState, LiveStateStore, serves};

#[derive(Default)]
pub struct MemoryAgentStore {
    agents: Mutex<BTreeMap<AgentId, Agent>>,
}

#[async_trait]
impl AgentStore for MemoryAgentStore {
    async fn create_agent(&self, agent_id: &AgentId, agent: &Agent) -> Result<(), Error> {
        let mut agents = lock(&self.agents);
        if agents.contains_key(agent_id) {
            return Err(Error::already_exists(agent.name.clone()));
        }
        agents.insert(agent_id.clone(), agent.clone());
        Ok(())
    }

    async fn get_agent(&self, agent_id: &AgentId) -> Result<Option<Agent>, Error> {
        Ok(lock(&self.agents).get(agent_id).cloned())
    }

    async fn list_agents(&self, tenant: Option<&TenantId>, page: &PageRequest) -> Result<Vec<Agent>, Error> {
        Ok(lock(&self.agents)
            .iter()
            .filter(|(agent_id, agent)| {
                page.after.as_deref().is_none_or(|after| agent_id.as_str() > after)
                    && tenant.is_none_or(|tenant| serves(agent, tenant))
            })
            .take(page.size + 1)
            .map(|(_, agent)| agent.clone())
            .collect())
    }

    async fn update_agent(&self, agent_id: &AgentId, agent: &Agent) -> Result<bool, Error> {
        let mut agents = lock(&self.agents);
        let Some(stored) = agents.get_mut(agent_id) else { return Ok(false) };
        stored.clone_from(agent);
        Ok(true)
    }

    async fn delete_agent(&self, agent_id: &AgentId) -> Result<bool, Error> {
        Ok(lock(&self.agents).remove(agent_id).is_some())
    }
}

#[derive(Default)]
struct LiveStates {
    /// Every state write goes through [`LiveStates::put`], which keeps the
    /// wrap-up timers in step with the states.
    states: BTreeMap<AgentId, LiveState>,
    sessions: BTreeMap<AgentId, String>,
    leases: BTreeMap<AgentId, i64>,
    wrap_ups: BTreeMap<AgentId, i64>,
    missed: BTreeMap<AgentId, BTreeSet<String>>,
    seen_offers: BTreeMap<AgentId, BTreeSet<String>>,
    contacts: BTreeMap<AgentId, BTreeMap<String, ActiveContact>>,
    /// Contact name to the agent that last took it.
    holders: BTreeMap<String, AgentId>,
}

impl LiveStates {
    fn put(&mut self, agent: &AgentId, state: &LiveState) -> LiveState {
        if state.state == AgentState::WrapUp {
            self.wrap_ups.insert(agent.clone(), state.wrap_up_until_ms);
        } else {
            self.wrap_ups.remove(agent);
        }
        self.states.insert(agent.clone(), state.clone()).unwrap_or_else(LiveState::offline)
    }
}

#[derive(Default)]
pub struct MemoryLiveStateStore {
    live: Mutex<LiveStates>,
}

#[async_trait]
impl LiveStateStore for MemoryLiveStateStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        let prefix = format!("{}/", tenant_name(tenant));
        let mut live = lock(&self.live);
        for contacts in live.contacts.values_mut() {
            contacts.retain(|contact, _| !contact.starts_with(&prefix));
        }
        for seen in live.seen_offers.values_mut() {
            seen.retain(|contact| !contact.starts_with(&prefix));
        }
        live.holders.retain(|contact, _| !contact.starts_with(&prefix));
        Ok(())
    }

    async fn get_state(&self, agent: &AgentId) -> Result<LiveState, Error> {
        Ok(lock(&self.live).states.get(agent).cloned().unwrap_or_else(LiveState::offline))
    }

    async fn set_state(&self, agent: &AgentId, state: &LiveState) -> Result<LiveState, Error> {
        Ok(lock(&self.live).put(agent, state))
    }

    async fn set_state_if(
        &self,
        agent: &AgentId,
        expected: AgentState,
        not_after_ms: i64,
        next: &LiveState,
    ) -> Result<Option<LiveState>, Error> {
        let mut live = lock(&self.live);
        let current = live.states.get(agent).cloned().unwrap_or_else(LiveState::offline);
        if current.state != expected || current.since_ms > not_after_ms {
            return Ok(None);
        }
        Ok(Some(live.put(agent, next)))
    }

    async fn record_missed_offer(&self, agent: &AgentId, offer_id: &str) -> Result<usize, Error> {
        let mut live = lock(&self.live);
        let missed = live.missed.entry(agent.clone()).or_default();
        missed.insert(offer_id.to_owned());
        Ok(missed.len())
    }

    async fn clear_missed_offers(&self, agent: &AgentId) -> Result<(), Error> {
        lock(&self.live).missed.remove(agent);
        Ok(())
    }

    async fn mark_offer_seen(&self, agent: &AgentId, contact: &str) -> Result<(), Error> {
        lock(&self.live).seen_offers.entry(agent.clone()).or_default().insert(contact.to_owned());
        Ok(())
    }

    async fn take_offer_seen(&self, agent: &AgentId, contact: &str) -> Result<bool, Error> {
        Ok(lock(&self.live).seen_offers.get_mut(agent).is_some_and(|seen| seen.remove(contact)))
    }

    async fn put_active_contact(&self, agent: &AgentId, contact: &ActiveContact) -> Result<(), Error> {
        let mut live = lock(&self.live);
        live.contacts.entry(agent.clone()).or_default().insert(contact.contact.clone(), contact.clone());
        live.holders.insert(contact.contact.clone(), agent.clone());
        Ok(())
    }

    async fn remove_active_contact(&self, agent: &AgentId, contact: &str) -> Result<bool, Error> {
        let mut live = lock(&self.live);
        let Some(contacts) = live.contacts.get_mut(agent) else {
            return Ok(false);
        };
        let removed = contacts.remove(contact).is_some();
        if contacts.is_empty() {
            live.contacts.remove(agent);
        }
        if live.holders.get(contact) == Some(agent) {
            live.holders.remove(contact);
        }
        Ok(removed)
    }

    async fn holder_of(&self, contact: &str) -> Result<Option<AgentId>, Error> {
        Ok(lock(&self.live).holders.get(contact).cloned())
    }

    async fn hold(&self, agent: &AgentId, contact: &str) -> Result<(), Error> {
        lock(&self.live).holders.insert(contact.to_owned(), agent.clone());
        Ok(())
    }

    async fn active_contacts(&self, agent: &AgentId) -> Result<Vec<ActiveContact>, Error> {
        Ok(lock(&self.live)
            .contacts
            .get(agent)
            .map(|contacts| contacts.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn active_contact(&self, agent: &AgentId, contact: &str) -> Result<Option<ActiveContact>, Error> {
        Ok(lock(&self.live).contacts.get(agent).and_then(|contacts| contacts.get(contact)).cloned())
    }

    async fn expired_wrap_ups(&self, now_ms: i64, limit: usize) -> Result<Vec<(AgentId, i64)>, Error> {
        let live = lock(&self.live);
        let mut expired: Vec<(i64, AgentId)> = live
            .wrap_ups
            .iter()
            .filter(|(_, until)| **until < now_ms)
            .map(|(agent, until)| (*until, agent.clone()))
            .collect();
        expired.sort();
        Ok(expired.into_iter().take(limit).map(|(until, agent)| (agent, until)).collect())
    }

    async fn claim_session(&self, agent: &AgentId, session_id: &str, lease_until_ms: i64) -> Result<(), Error> {
        let mut live = lock(&self.live);
        live.sessions.insert(agent.clone(), session_id.to_owned());
        live.leases.insert(agent.clone(), lease_until_ms);
        Ok(())
    }

    async fn renew_lease(&self, agent: &AgentId, session_id: &str, lease_until_ms: i64) -> Result<bool, Error> {
        let mut live = lock(&self.live);
        match live.sessions.get(agent) {
            Some(current) if current != session_id => return Ok(false),
            Some(_) => {}
            // As in Redis: an agent with no session recorded lost its data;
            // the live session claims it again.
            None => {
                live.sessions.insert(agent.clone(), session_id.to_owned());
            }
        }
        live.leases.insert(agent.clone(), lease_until_ms);
        Ok(true)
    }

    async fn expired_leases(&self, now_ms: i64, limit: usize) -> Result<Vec<(AgentId, String)>, Error> {
        let live = lock(&self.live);
        let mut expired: Vec<(i64, AgentId, String)> = live
            .leases
            .iter()
            .filter(|(_, until)| **until < now_ms)
            .map(|(agent, until)| (*until, agent.clone(), live.sessions.get(agent).cloned().unwrap_or_default()))
            .collect();
        expired.sort();
        Ok(expired.into_iter().take(limit).map(|(_, agent, session)| (agent, session)).collect())
    }

    async fn session_of(&self, agent: &AgentId) -> Result<String, Error> {
        Ok(lock(&self.live).sessions.get(agent).cloned().unwrap_or_default())
    }

    async fn set_state_if_session(
        &self,
        agent: &AgentId,
        expected_session: &str,
        state: &LiveState,
    ) -> Result<Option<LiveState>, Error> {
        let mut live = lock(&self.live);
        if live.sessions.get(agent).map_or("", String::as_str) != expected_session {
            return Ok(None);
        }
        if state.state == AgentState::Offline {
            live.leases.remove(agent);
        }
        Ok(Some(live.put(agent, state)))
    }

    async fn online_agents(&self) -> Result<Vec<AgentId>, Error> {
        Ok(lock(&self.live)
            .states
            .iter()
            .filter(|(_, state)| state.state != AgentState::Offline)
            .map(|(agent, _)| agent.clone())
            .collect())
    }

    async fn online_states(&self) -> Result<std::collections::BTreeMap<AgentState, i64>, Error> {
        let mut counts = std::collections::BTreeMap::new();
        for state in lock(&self.live).states.values().filter(|state| state.state != AgentState::Offline) {
            *counts.entry(state.state).or_insert(0) += 1;
        }
        Ok(counts)
    }
}
