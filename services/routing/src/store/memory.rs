//! In-memory stores for `dev` mode and as the differential oracle of the
//! Redis and PostgreSQL stores. They apply the domain transitions directly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use switchboard_core::sync::lock_unpoisoned as lock;
use switchboard_core::{AgentId, ContactId, Error, QueueId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::presence::v1::AgentState;
use switchboard_proto::routing::v1::Queue;

use super::{
    Change, EventsFor, LineStatus, OfferRef, OutboxBatch, OutboxItem, PendingEntry, QueueStore, Reservation,
    RoutingState, Snapshot, StateGauges, contact_not_found,
};
use crate::domain::fair_share::FairShares;
use crate::domain::{
    self, AbandonedFrom, AgentLive, AgentProfile, AnswerPace, Applied, Completion, ContactRecord, RoutingStatus,
};
use crate::store::journal::JournaledAgent;

const MEMORY_GENERATION: &str = "memory";

#[derive(Default)]
pub struct MemoryQueueStore {
    queues: Mutex<BTreeMap<(TenantId, QueueId), Queue>>,
}

#[async_trait]
impl QueueStore for MemoryQueueStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        lock(&self.queues).retain(|(owner, _), _| owner != tenant);
        Ok(())
    }

    async fn create_queue(&self, tenant: &TenantId, queue_id: &QueueId, queue: &Queue) -> Result<(), Error> {
        let mut queues = lock(&self.queues);
        let key = (tenant.clone(), queue_id.clone());
        if queues.contains_key(&key) {
            return Err(Error::already_exists(queue.name.clone()));
        }
        queues.insert(key, queue.clone());
        Ok(())
    }

    async fn get_queue(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<Option<Queue>, Error> {
        Ok(lock(&self.queues).get(&(tenant.clone(), queue_id.clone())).cloned())
    }

    async fn list_queues(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<Queue>, Error> {
        Ok(lock(&self.queues)
            .iter()
            .filter(|((queue_tenant, queue_id), _)| {
                queue_tenant == tenant && page.after.as_deref().is_none_or(|after| queue_id.as_str() > after)
            })
            .take(page.size + 1)
            .map(|(_, queue)| queue.clone())
            .collect())
    }

    async fn update_queue(&self, tenant: &TenantId, queue_id: &QueueId, queue: &Queue) -> Result<bool, Error> {
        let mut queues = lock(&self.queues);
        let Some(existing) = queues.get_mut(&(tenant.clone(), queue_id.clone())) else {
            return Ok(false);
        };
        *existing = queue.clone();
        Ok(true)
    }

    async fn delete_queue(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<bool, Error> {
        Ok(lock(&self.queues).remove(&(tenant.clone(), queue_id.clone())).is_some())
    }
}

#[derive(Default)]
struct State {
    contacts: HashMap<(TenantId, ContactId), ContactRecord>,
    agents: BTreeMap<AgentId, AgentLive>,
    /// Appended with each change, removed once relayed.
    outbox: std::collections::VecDeque<(u64, OutboxItem)>,
    next_event_id: u64,
    paces: HashMap<(TenantId, QueueId, i32), AnswerPace>,
    last_agents: HashMap<(TenantId, String), AgentId>,
    fair_shares: FairShares,
}

impl State {
    /// Appends a change's events, then the changed contact's snapshot.
    fn append(&mut self, events: impl IntoIterator<Item = EventEnvelope>, changed: &ContactRecord) {
        let items = events
            .into_iter()
            .map(|event| OutboxItem::Event(Box::new(event)))
            .chain([OutboxItem::Snapshot(Box::new(changed.clone()))]);
        for item in items {
            self.next_event_id += 1;
            self.outbox.push_back((self.next_event_id, item));
        }
    }

    /// Removes the outbox entries `ids` names.
    fn remove_outbox_entries(&mut self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
        self.outbox.retain(|(id, _)| !ids.contains(id.to_string().as_str()));
    }

    fn contact_mut(&mut self, tenant: &TenantId, contact: &ContactId) -> Result<&mut ContactRecord, Error> {
        self.contacts.get_mut(&(tenant.clone(), contact.clone())).ok_or_else(|| contact_not_found(tenant, contact))
    }

    fn release(&mut self, agent: &AgentId, channel: i32, now_ms: i64) {
        let Some(live) = self.agents.get_mut(agent) else {
            return;
        };
        let load = live.load.entry(channel).or_insert(0);
        *load = (*load - 1).max(0);
        if live.total_load() == 0 {
            live.idle_since_ms = now_ms;
        }
    }
}

#[derive(Default)]
pub struct MemoryRoutingState {
    state: Mutex<State>,
}

impl MemoryRoutingState {
    fn held_by_agent(&self, agent: &AgentId, status: RoutingStatus) -> Vec<OfferRef> {
        let state = lock(&self.state);
        let mut held: Vec<OfferRef> = state
            .contacts
            .values()
            .filter(|record| record.status == status && record.agent.as_ref() == Some(agent))
            .map(|record| OfferRef {
                tenant: record.tenant.clone(),
                contact: record.contact.clone(),
                agent: agent.clone(),
            })
            .collect();
        held.sort_by(|left, right| left.contact.cmp(&right.contact));
        held
    }

    /// Applies a pure domain transition and, when it changed the contact,
    /// the load release and the events it implies, under one lock: the
    /// same rule the Redis store applies in its compare-and-set script.
    fn apply<T>(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        now_ms: i64,
        change: impl FnOnce(&mut ContactRecord) -> Result<T, Error>,
        events_for: EventsFor<'_>,
    ) -> Result<(T, ContactRecord), Error> {
        let mut state = lock(&self.state);
        let record = state.contact_mut(tenant, contact)?;
        let before = record.clone();
        let outcome = change(record)?;
        if *record == before {
            return Ok((outcome, before));
        }
        record.revision += 1;
        let after = record.clone();
        let holds_load = |status: RoutingStatus| matches!(status, RoutingStatus::Offered | RoutingStatus::Answered);
        if holds_load(before.status)
            && !holds_load(after.status)
            && let Some(holder) = &before.agent
        {
            state.release(holder, before.channel, now_ms);
            let hold_until = domain::rules::wrap_up_hold_until(&after, now_ms);
            if hold_until > 0
                && let Some(live) = state.agents.get_mut(holder)
            {
                live.hold_until_ms = hold_until;
            }
        }
        state.append(events_for(&before, &after), &after);
        Ok((outcome, after))
    }
}

#[async_trait]
impl RoutingState for MemoryRoutingState {
    async fn live_contacts(&self, tenant: &TenantId) -> Result<Vec<ContactId>, Error> {
        let state = lock(&self.state);
        let live = state.contacts.iter().filter(|((owner, _), record)| owner == tenant && !record.status.is_terminal());
        Ok(live.map(|((_, contact), _)| contact.clone()).collect())
    }

    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        let mut state = lock(&self.state);
        state.contacts.retain(|(owner, _), _| owner != tenant);
        state.paces.retain(|(owner, _, _), _| owner != tenant);
        state.last_agents.retain(|(owner, _), _| owner != tenant);
        state.fair_shares.tag_by_tenant.remove(tenant);
        Ok(())
    }

    async fn enqueue(&self, record: &ContactRecord, events: &[EventEnvelope]) -> Result<bool, Error> {
        let mut state = lock(&self.state);
        let key = (record.tenant.clone(), record.contact.clone());
        if state.contacts.contains_key(&key) {
            return Ok(false);
        }
        let record = ContactRecord { revision: 0, ..record.clone() };
        state.contacts.insert(key, record.clone());
        state.append(events.iter().cloned(), &record);
        Ok(true)
    }

    async fn get_contact(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<ContactRecord>, Error> {
        Ok(lock(&self.state).contacts.get(&(tenant.clone(), contact.clone())).cloned())
    }

    async fn position(&self, record: &ContactRecord) -> Result<i32, Error> {
        let state = lock(&self.state);
        let Some(current) = state.contacts.get(&(record.tenant.clone(), record.contact.clone())) else {
            return Ok(0);
        };
        // As in Redis: the place in the line `record` names; a contact that
        // moved to another line is not in this one.
        if current.status != RoutingStatus::Queued || current.queue != record.queue || current.channel != record.channel
        {
            return Ok(0);
        }
        let ahead = state
            .contacts
            .values()
            .filter(|other| {
                other.status == RoutingStatus::Queued
                    && other.tenant == current.tenant
                    && other.queue == current.queue
                    && other.channel == current.channel
                    && (other.rank(), &other.contact) < (current.rank(), &current.contact)
            })
            .count();
        Ok(i32::try_from(ahead + 1).unwrap_or(i32::MAX))
    }

    async fn upsert_agent(&self, profile: &AgentProfile, available: bool, now_ms: i64) -> Result<(), Error> {
        let mut state = lock(&self.state);
        let live = state.agents.entry(profile.agent.clone()).or_insert_with(|| AgentLive {
            profile: profile.clone(),
            available: false,
            idle_since_ms: now_ms,
            last_offer_ms: 0,
            load: BTreeMap::new(),
            hold_until_ms: 0,
        });
        if available && !live.available {
            live.idle_since_ms = now_ms;
        }
        if available {
            live.hold_until_ms = 0;
        }
        live.profile = profile.clone();
        live.available = available;
        Ok(())
    }

    async fn snapshot(&self, per_queue: usize) -> Result<Snapshot, Error> {
        let state = lock(&self.state);
        let mut by_line: BTreeMap<(TenantId, QueueId, i32), Vec<ContactRecord>> = BTreeMap::new();
        for record in state.contacts.values().filter(|record| record.status == RoutingStatus::Queued) {
            by_line
                .entry((record.tenant.clone(), record.queue.clone(), record.channel))
                .or_default()
                .push(record.clone());
        }
        let mut waiting = Vec::new();
        for mut queue in by_line.into_values() {
            queue.sort_by(|left, right| {
                left.rank().total_cmp(&right.rank()).then_with(|| left.contact.cmp(&right.contact))
            });
            waiting.extend(queue.into_iter().take(per_queue));
        }
        if waiting.is_empty() {
            return Ok(Snapshot::default());
        }
        let agents = state.agents.values().filter(|agent| agent.available).cloned().collect();
        Ok(Snapshot { waiting, agents, shares: state.fair_shares.clone() })
    }

    async fn gauges(&self) -> Result<StateGauges, Error> {
        let state = lock(&self.state);
        let mut gauges = StateGauges { outbox_depth: state.outbox.len() as i64, ..StateGauges::default() };
        for record in state.contacts.values().filter(|record| record.status == RoutingStatus::Queued) {
            *gauges.waiting_by_tenant.entry(record.tenant.clone()).or_insert(0) += 1;
        }
        Ok(gauges)
    }

    async fn reserve(
        &self,
        record: &ContactRecord,
        agent: &AgentId,
        expire_ms: i64,
        events: &[EventEnvelope],
    ) -> Result<bool, Error> {
        let mut state = lock(&self.state);
        let Some(current) = state.contacts.get(&(record.tenant.clone(), record.contact.clone())).cloned() else {
            return Ok(false);
        };
        let offer_ms = expire_ms - current.offer_timeout_ms;
        let can_take = state.agents.get(agent).is_some_and(|live| {
            live.has_room_for(&current) && (live.hold_until_ms == 0 || offer_ms >= live.hold_until_ms)
        });
        let same_line = current.queue == record.queue && current.channel == record.channel;
        // A plan made on an older revision (a pin, a callback, a transfer
        // since) is not carried out.
        let same_revision = current.revision == record.revision;
        if current.status != RoutingStatus::Queued || !same_line || !same_revision || !can_take {
            return Ok(false);
        }
        let contact = state.contact_mut(&record.tenant, &record.contact)?;
        domain::reserve(contact, agent, expire_ms)?;
        contact.revision += 1;
        let changed = contact.clone();
        let (channel, offer_ms) = (changed.channel, expire_ms - changed.offer_timeout_ms);
        if let Some(live) = state.agents.get_mut(agent) {
            *live.load.entry(channel).or_insert(0) += 1;
            live.last_offer_ms = offer_ms;
        }
        state.append(events.iter().cloned(), &changed);
        Ok(true)
    }

    async fn reserve_batch(&self, batch: &[Reservation<'_>]) -> Result<Vec<bool>, Error> {
        let mut reserved = Vec::with_capacity(batch.len());
        for reservation in batch {
            let agent = &reservation.agent.profile.agent;
            reserved.push(self.reserve(reservation.record, agent, reservation.expire_ms, &reservation.events).await?);
        }
        Ok(reserved)
    }

    async fn accept(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: &AgentId,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(Applied, ContactRecord), Error> {
        self.apply(tenant, contact, now_ms, |record| domain::accept(record, agent, now_ms), events_for)
    }

    async fn withdraw(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: Option<&AgentId>,
        expired_by: Option<i64>,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(AgentId, ContactRecord), Error> {
        self.apply(tenant, contact, now_ms, |record| domain::withdraw(record, agent, expired_by), events_for)
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: &AgentId,
        completion: &Completion,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(Applied, ContactRecord), Error> {
        self.apply(tenant, contact, now_ms, |record| domain::complete(record, agent, completion, now_ms), events_for)
    }

    async fn abandon(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(Applied, Option<AbandonedFrom>, ContactRecord), Error> {
        let ((applied, from), record) =
            self.apply(tenant, contact, now_ms, |record| domain::abandon(record, now_ms), events_for)?;
        Ok((applied, from, record))
    }

    async fn expired_offers(&self, now_ms: i64, limit: usize) -> Result<Vec<OfferRef>, Error> {
        let state = lock(&self.state);
        let mut expired: Vec<(i64, OfferRef)> = state
            .contacts
            .values()
            .filter(|record| record.status == RoutingStatus::Offered && record.offer_expire_ms <= now_ms)
            .filter_map(|record| {
                let agent = record.agent.clone()?;
                Some((
                    record.offer_expire_ms,
                    OfferRef { tenant: record.tenant.clone(), contact: record.contact.clone(), agent },
                ))
            })
            .collect();
        expired.sort_by(|left, right| left.0.cmp(&right.0).then_with(|| left.1.contact.cmp(&right.1.contact)));
        Ok(expired.into_iter().take(limit).map(|(_, offer)| offer).collect())
    }

    async fn pending_outbox(
        &self,
        _relay: &str,
        _lease_ms: i64,
        limit: usize,
        relayed: &[String],
    ) -> Result<Option<OutboxBatch>, Error> {
        // One process holds the in-memory state: its relay is always the leader.
        let mut state = lock(&self.state);
        state.remove_outbox_entries(relayed);
        let entries = state
            .outbox
            .iter()
            .take(limit)
            .map(|(id, item)| PendingEntry { id: id.to_string(), item: item.clone() })
            .collect();
        Ok(Some(OutboxBatch { generation: Some(MEMORY_GENERATION.to_owned()), entries }))
    }

    async fn acknowledge_outbox(&self, ids: &[String]) -> Result<(), Error> {
        let mut state = lock(&self.state);
        state.remove_outbox_entries(ids);
        Ok(())
    }

    /// The in-memory state has one incarnation: its process's.
    async fn generation(&self) -> Result<String, Error> {
        Ok(MEMORY_GENERATION.to_owned())
    }

    async fn outbox_tail(&self, _generation: &str) -> Result<Option<String>, Error> {
        Ok(lock(&self.state).outbox.back().map(|(id, _)| id.to_string()))
    }

    async fn relayed_through(&self, id: &str, _generation: &str) -> Result<bool, Error> {
        let through: u64 = id.parse().map_err(|_| Error::invalid_field("id", "is not an outbox id"))?;
        Ok(lock(&self.state).outbox.front().is_none_or(|(first, _)| *first > through))
    }

    /// The in-memory state lives and dies with its process: always whole.
    async fn is_whole(&self) -> Result<bool, Error> {
        Ok(true)
    }

    async fn lead_rebuild(&self, _holder: &str, _lease_ms: i64) -> Result<bool, Error> {
        Ok(true)
    }

    async fn rebuild_pending(&self) -> Result<bool, Error> {
        Ok(false)
    }

    async fn finish_rebuild(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn restore(&self, contacts: &[ContactRecord], agents: &[JournaledAgent], now_ms: i64) -> Result<(), Error> {
        let mut state = lock(&self.state);
        for record in contacts {
            state.contacts.insert((record.tenant.clone(), record.contact.clone()), record.clone());
        }
        for journaled in agents {
            let mut load = BTreeMap::new();
            for record in contacts.iter().filter(|record| {
                matches!(record.status, RoutingStatus::Offered | RoutingStatus::Answered)
                    && record.agent.as_ref() == Some(&journaled.profile.agent)
            }) {
                *load.entry(record.channel).or_insert(0) += 1;
            }
            let previous = state.agents.get(&journaled.profile.agent);
            let live = AgentLive {
                profile: journaled.profile.clone(),
                available: journaled.state == AgentState::Available,
                idle_since_ms: previous.map_or(now_ms, |live| live.idle_since_ms),
                last_offer_ms: previous.map_or(0, |live| live.last_offer_ms),
                load,
                hold_until_ms: 0,
            };
            state.agents.insert(journaled.profile.agent.clone(), live);
        }
        Ok(())
    }

    async fn record_answer(
        &self,
        tenant: &TenantId,
        queue: &QueueId,
        channel: i32,
        answer_ms: i64,
    ) -> Result<(), Error> {
        let mut state = lock(&self.state);
        let pace = state.paces.entry((tenant.clone(), queue.clone(), channel)).or_default();
        *pace = pace.after_answer(answer_ms);
        Ok(())
    }

    async fn answer_pace(&self, tenant: &TenantId, queue: &QueueId, channel: i32) -> Result<AnswerPace, Error> {
        Ok(lock(&self.state).paces.get(&(tenant.clone(), queue.clone(), channel)).copied().unwrap_or_default())
    }

    async fn fair_shares(&self) -> Result<FairShares, Error> {
        Ok(lock(&self.state).fair_shares.clone())
    }

    async fn advance_fair_shares(&self, charges: &BTreeMap<TenantId, f64>) -> Result<(), Error> {
        lock(&self.state).fair_shares.add(charges);
        Ok(())
    }

    async fn offers_of_agent(&self, agent: &AgentId) -> Result<Vec<OfferRef>, Error> {
        Ok(self.held_by_agent(agent, RoutingStatus::Offered))
    }

    async fn handled_by_agent(&self, agent: &AgentId) -> Result<Vec<OfferRef>, Error> {
        Ok(self.held_by_agent(agent, RoutingStatus::Answered))
    }

    async fn change(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        now_ms: i64,
        change: Change<'_>,
        events_for: EventsFor<'_>,
    ) -> Result<ContactRecord, Error> {
        let ((), record) = self.apply(tenant, contact, now_ms, change, events_for)?;
        Ok(record)
    }

    async fn agent(&self, agent: &AgentId) -> Result<Option<AgentLive>, Error> {
        Ok(lock(&self.state).agents.get(agent).cloned())
    }

    async fn expired_waits(&self, now_ms: i64, limit: usize) -> Result<Vec<(TenantId, ContactId)>, Error> {
        let state = lock(&self.state);
        let mut expired: Vec<(i64, TenantId, ContactId)> = state
            .contacts
            .values()
            .filter(|record| {
                record.status == RoutingStatus::Queued
                    && record.rules.deadline_ms > 0
                    && record.rules.deadline_ms <= now_ms
            })
            .map(|record| (record.rules.deadline_ms, record.tenant.clone(), record.contact.clone()))
            .collect();
        expired.sort();
        Ok(expired.into_iter().take(limit).map(|(_, tenant, contact)| (tenant, contact)).collect())
    }

    async fn line_status(&self, tenant: &TenantId, queue: &QueueId, channel: i32) -> Result<LineStatus, Error> {
        let state = lock(&self.state);
        let mut line: Vec<&ContactRecord> = state
            .contacts
            .values()
            .filter(|record| {
                record.status == RoutingStatus::Queued
                    && record.tenant == *tenant
                    && record.queue == *queue
                    && record.channel == channel
            })
            .collect();
        line.sort_by(|left, right| left.rank().total_cmp(&right.rank()).then_with(|| left.contact.cmp(&right.contact)));
        Ok(LineStatus {
            waiting: i32::try_from(line.len()).unwrap_or(i32::MAX),
            head: line.first().map(|record| (*record).clone()),
        })
    }

    async fn remember_agent(&self, tenant: &TenantId, customer: &str, agent: &AgentId) -> Result<(), Error> {
        lock(&self.state).last_agents.insert((tenant.clone(), customer.to_owned()), agent.clone());
        Ok(())
    }

    async fn last_agent(&self, tenant: &TenantId, customer: &str) -> Result<Option<AgentId>, Error> {
        Ok(lock(&self.state).last_agents.get(&(tenant.clone(), customer.to_owned())).cloned())
    }
}
