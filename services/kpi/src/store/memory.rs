//! The in-memory store of `dev` mode: facts and buckets per tenant, under
//! one mutex, so a contact's facts and its buckets change together.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use switchboard_core::{AgentId, ContactId, Error, MessageId, TenantId};
use switchboard_proto::common::v1::Channel;
use switchboard_proto::presence::v1::AgentState;

use super::KpiStore;
use crate::domain::agents::{AgentEvent, AgentPage, AgentTimelines, StoredAgentFigures};
use crate::domain::buckets::{BucketKey, RangeSplit, bucket_changes, bucket_selected, contribution, fold_changes};
use crate::domain::fcr::{next_after, previous_before};
use crate::domain::live::AgentStateUpdate;
use crate::domain::messages::{OutboundMessage, count_by_channel};
use crate::domain::settings::{FcrRule, FcrScope, KpiSettings};
use crate::domain::{ContactFacts, FactsFilter, FactsUpdate, KpiCounts, merge};

/// One tenant's facts (sorted, so loads come out in id order) and buckets.
#[derive(Debug, Default)]
struct TenantKpis {
    facts: BTreeMap<ContactId, ContactFacts>,
    buckets: BTreeMap<BucketKey, KpiCounts>,
}

impl TenantKpis {
    /// Stores a contact's facts, moving its contribution between buckets.
    fn set(&mut self, after: ContactFacts) {
        let changes = bucket_changes(self.facts.get(&after.contact), &after);
        fold_changes(&mut self.buckets, changes);
        self.facts.insert(after.contact.clone(), after);
    }

    /// Links a contact whose customer, arrival or a topic just became
    /// known to its customer's others, as the PostgreSQL store does: in
    /// each scope, among those of the same topic.
    fn link(&mut self, contact: &ContactId) {
        let Some(linked) = self.facts.get(contact).cloned() else { return };
        let (Some(customer), Some(arrival_ms)) = (linked.customer.clone(), linked.created_ms) else { return };
        let mut links = Vec::new();
        for scope in FcrScope::ALL {
            let Some(topic) = linked.topic(scope) else { continue };
            let mates: Vec<(&ContactId, i64)> = self
                .facts
                .values()
                .filter(|facts| facts.contact != *contact && facts.customer.as_ref() == Some(&customer))
                .filter(|facts| facts.topic(scope) == Some(topic))
                .filter_map(|facts| Some((&facts.contact, facts.created_ms?)))
                .collect();
            if let Some(next_ms) = next_after(arrival_ms, mates.iter().map(|(_, at)| *at)) {
                links.push((contact.clone(), FactsUpdate::next_contact_in(scope, next_ms)));
            }
            if let Some(previous) = previous_before(arrival_ms, mates.iter().copied()) {
                links.push((previous.clone(), FactsUpdate::next_contact_in(scope, arrival_ms)));
            }
        }
        for (contact, update) in links {
            if let Some(mut facts) = self.facts.get(&contact).cloned() {
                merge(&mut facts, &update);
                self.set(facts);
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct MemoryKpiStore {
    tenants: Mutex<HashMap<TenantId, TenantKpis>>,
    agent_states: Mutex<BTreeMap<AgentId, AgentStateUpdate>>,
    agent_timelines: Mutex<AgentTimelines>,
    settings: Mutex<BTreeMap<TenantId, KpiSettings>>,
    /// Outbound messages, the first report of each kept.
    messages: Mutex<BTreeMap<(TenantId, MessageId), OutboundMessage>>,
}

impl MemoryKpiStore {
    pub fn new() -> MemoryKpiStore {
        MemoryKpiStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TenantId, TenantKpis>> {
        // Every mutation is one merge into one entry and its buckets, which
        // cannot panic halfway, so a poisoned lock still guards consistent
        // data.
        switchboard_core::sync::lock_unpoisoned(&self.tenants)
    }
}

#[async_trait]
impl KpiStore for MemoryKpiStore {
    async fn apply(&self, tenant: &TenantId, contact: &ContactId, update: FactsUpdate) -> Result<(), Error> {
        let mut tenants = self.lock();
        let kpis = tenants.entry(tenant.clone()).or_default();
        let before = kpis.facts.get(contact).cloned();
        let mut after = before.clone().unwrap_or_else(|| ContactFacts::empty(tenant.clone(), contact.clone()));
        merge(&mut after, &update);
        let newly_linked = after.needs_linking_since(before.as_ref());
        kpis.set(after);
        if newly_linked {
            kpis.link(contact);
        }
        Ok(())
    }

    async fn load_at_most(
        &self,
        tenant: &TenantId,
        filter: &FactsFilter,
        limit: usize,
    ) -> Result<Vec<ContactFacts>, Error> {
        let tenants = self.lock();
        let Some(kpis) = tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        Ok(kpis.facts.values().filter(|facts| filter.matches(facts)).take(limit.saturating_add(1)).cloned().collect())
    }

    async fn bucket_counts(
        &self,
        tenant: &TenantId,
        filter: &FactsFilter,
        split: &RangeSplit,
    ) -> Result<BTreeMap<Option<i64>, KpiCounts>, Error> {
        let tenants = self.lock();
        let mut counts: BTreeMap<Option<i64>, KpiCounts> = BTreeMap::new();
        let Some(kpis) = tenants.get(tenant) else {
            return Ok(counts);
        };
        for (key, bucket) in kpis.buckets.iter().filter(|(key, _)| bucket_selected(key, filter, split)) {
            counts.entry(key.interval_start_ms).or_default().add(bucket);
        }
        Ok(counts)
    }

    async fn apply_agent_states(&self, updates: &[AgentStateUpdate]) -> Result<(), Error> {
        let mut states = switchboard_core::sync::lock_unpoisoned(&self.agent_states);
        for update in updates {
            let supersedes = states.get(&update.agent).is_none_or(|known| update.supersedes(known.at_ms, known.state));
            if supersedes {
                states.insert(update.agent.clone(), update.clone());
            }
        }
        Ok(())
    }

    async fn agents_by_state(&self, tenant: &TenantId) -> Result<BTreeMap<i32, i64>, Error> {
        let states = switchboard_core::sync::lock_unpoisoned(&self.agent_states);
        let mut by_state = BTreeMap::new();
        let online = states.values().filter(|update| update.state as i32 > AgentState::Offline as i32);
        for update in online.filter(|update| update.tenants.contains(tenant)) {
            *by_state.entry(update.state as i32).or_insert(0) += 1;
        }
        Ok(by_state)
    }

    async fn waiting_now(&self, tenant: &TenantId) -> Result<(i64, Option<i64>), Error> {
        let tenants = self.lock();
        let Some(kpis) = tenants.get(tenant) else { return Ok((0, None)) };
        let waiting: Vec<i64> = kpis
            .facts
            .values()
            .filter(|facts| contribution(facts).waiting == 1)
            .filter_map(|facts| facts.queued_ms)
            .collect();
        Ok((i64::try_from(waiting.len()).unwrap_or(i64::MAX), waiting.into_iter().min()))
    }

    async fn get(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<ContactFacts>, Error> {
        Ok(self.lock().get(tenant).and_then(|kpis| kpis.facts.get(contact)).cloned())
    }

    async fn apply_state_changes(&self, changes: &[AgentStateUpdate]) -> Result<(), Error> {
        switchboard_core::sync::lock_unpoisoned(&self.agent_timelines).insert_all(changes);
        Ok(())
    }

    async fn apply_agent_events(&self, events: &[AgentEvent]) -> Result<(), Error> {
        switchboard_core::sync::lock_unpoisoned(&self.agent_timelines).count_all(events);
        Ok(())
    }

    async fn agent_figures(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
        page: &AgentPage,
    ) -> Result<Vec<StoredAgentFigures>, Error> {
        Ok(switchboard_core::sync::lock_unpoisoned(&self.agent_timelines).figures(tenant, start_ms, end_ms, page))
    }

    async fn settings(&self, tenant: &TenantId) -> Result<KpiSettings, Error> {
        Ok(switchboard_core::sync::lock_unpoisoned(&self.settings).get(tenant).copied().unwrap_or_default())
    }

    async fn set_settings(&self, tenant: &TenantId, settings: &KpiSettings) -> Result<(), Error> {
        switchboard_core::sync::lock_unpoisoned(&self.settings).insert(tenant.clone(), *settings);
        Ok(())
    }

    async fn fcr_rules(&self) -> Result<BTreeMap<TenantId, FcrRule>, Error> {
        let settings = switchboard_core::sync::lock_unpoisoned(&self.settings);
        Ok(settings.iter().map(|(tenant, settings)| (tenant.clone(), settings.fcr_rule())).collect())
    }

    async fn record_outbound_messages(&self, messages: &[OutboundMessage]) -> Result<(), Error> {
        let mut recorded = switchboard_core::sync::lock_unpoisoned(&self.messages);
        for message in messages {
            recorded.entry((message.tenant.clone(), message.message.clone())).or_insert_with(|| message.clone());
        }
        Ok(())
    }

    async fn outbound_messages(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<BTreeMap<Option<Channel>, i64>, Error> {
        let recorded = switchboard_core::sync::lock_unpoisoned(&self.messages);
        Ok(count_by_channel(recorded.values(), tenant, start_ms, end_ms))
    }

    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        self.lock().remove(tenant);
        switchboard_core::sync::lock_unpoisoned(&self.messages).retain(|(owner, _), _| owner != tenant);
        switchboard_core::sync::lock_unpoisoned(&self.settings).remove(tenant);
        switchboard_core::sync::lock_unpoisoned(&self.agent_timelines).erase(tenant);
        for update in switchboard_core::sync::lock_unpoisoned(&self.agent_states).values_mut() {
            update.tenants.retain(|served| served != tenant);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[tokio::test]
    async fn memory_store_passes_the_contract() {
        let store = MemoryKpiStore::new();
        contract::run_all(&store).await.expect("contract");
    }

    #[tokio::test]
    async fn memory_store_agrees_with_itself_differentially() {
        let reference = MemoryKpiStore::new();
        let candidate = MemoryKpiStore::new();
        for seed in 0..8 {
            contract::differential(&reference, &candidate, seed).await.expect("differential");
        }
    }
}
