//! Where contact facts live. One trait, two real implementations (in
//! memory for `dev` mode and tests, PostgreSQL for production) that pass
//! the same contract suite (`contract`, behind the `contract` feature).

#[cfg(any(test, feature = "contract"))]
pub mod contract;
#[cfg(any(test, feature = "contract"))]
mod contract_agents;
#[cfg(any(test, feature = "contract"))]
mod contract_messages;
#[cfg(any(test, feature = "contract"))]
mod contract_settings;
pub mod memory;
pub mod postgres;
mod postgres_agents;
mod postgres_buckets;
mod postgres_links;
mod postgres_live;
mod postgres_messages;
#[cfg(any(test, feature = "contract"))]
pub mod stories;

use std::collections::BTreeMap;

use async_trait::async_trait;
use switchboard_core::{ContactId, Error, TenantId};

use switchboard_proto::common::v1::Channel;
use switchboard_proto::events::v1::EventEnvelope;

use crate::domain::agents::{AgentEvent, AgentFigures, AgentPage, StoredAgentFigures, agent_event};
use crate::domain::buckets::{RangeSplit, split_range};
use crate::domain::events::stamp_fcr_rule;
use crate::domain::live::{AgentStateUpdate, LiveFigures, agent_state_update};
use crate::domain::messages::{OutboundMessage, outbound_message};
use crate::domain::settings::{FcrRule, KpiSettings};
use crate::domain::summary::fcr_provisional;
use crate::domain::{
    ContactFacts, FactsEvent, FactsFilter, FactsUpdate, INTERVAL_MS, KpiCounts, facts_event, interval_start_ms,
};

pub use memory::MemoryKpiStore;
pub use postgres::PostgresKpiStore;

#[async_trait]
pub trait KpiStore: Send + Sync + 'static {
    /// Merges `update` into the facts of `contact` of `tenant` (creating
    /// them if none exist) exactly as [`crate::domain::merge`] does, in one
    /// atomic step. Applying an update again changes nothing, so a consumer
    /// may apply a redelivered event without deduplicating it.
    async fn apply(&self, tenant: &TenantId, contact: &ContactId, update: FactsUpdate) -> Result<(), Error>;

    /// Applies every event of `events` (in order) as [`KpiStore::apply`]
    /// does. PostgreSQL applies them all or none; this default one by one,
    /// so a failure half-way leaves the first applied, which the retry
    /// applies again harmlessly (applying is idempotent).
    async fn apply_all(&self, events: Vec<FactsEvent>) -> Result<(), Error> {
        for FactsEvent { tenant, contact, update } in events {
            self.apply(&tenant, &contact, update).await?;
        }
        Ok(())
    }

    /// The facts of `tenant`'s contacts that match `filter` (see
    /// [`FactsFilter::matches`]), sorted by contact id. Never returns
    /// another tenant's facts.
    async fn load(&self, tenant: &TenantId, filter: &FactsFilter) -> Result<Vec<ContactFacts>, Error> {
        self.load_at_most(tenant, filter, usize::MAX - 1).await
    }

    /// As [`KpiStore::load`], but at most `limit + 1` facts, in no
    /// particular order: one more than `limit` says the selection holds
    /// more, so a query can refuse a range too large to hold in memory.
    async fn load_at_most(
        &self,
        tenant: &TenantId,
        filter: &FactsFilter,
        limit: usize,
    ) -> Result<Vec<ContactFacts>, Error>;

    /// The counts of `tenant`'s buckets that `filter` counts whole (see
    /// [`crate::domain::buckets::bucket_selected`]), summed per interval start (`None`: contacts of
    /// unknown arrival). Reads buckets only, never facts.
    async fn bucket_counts(
        &self,
        tenant: &TenantId,
        filter: &FactsFilter,
        split: &RangeSplit,
    ) -> Result<BTreeMap<Option<i64>, KpiCounts>, Error>;

    /// The counts of the buckets `filter` counts whole, by period: each
    /// with its start (`None`: unknown arrival) and length. A store may sum
    /// whole days ahead (PostgreSQL does), so a long range reads few rows;
    /// by default every period is one interval.
    async fn bucket_periods(
        &self,
        tenant: &TenantId,
        filter: &FactsFilter,
        split: &RangeSplit,
    ) -> Result<Vec<(Option<i64>, i64, KpiCounts)>, Error> {
        let by_interval = self.bucket_counts(tenant, filter, split).await?;
        Ok(by_interval.into_iter().map(|(start, counts)| (start, INTERVAL_MS, counts)).collect())
    }

    /// One contact's facts; `None` when no event of it has arrived.
    async fn get(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<ContactFacts>, Error>;

    /// Records each agent update that supersedes its agent's stored state
    /// ([`AgentStateUpdate::supersedes`]): order-insensitive, idempotent.
    async fn apply_agent_states(&self, updates: &[AgentStateUpdate]) -> Result<(), Error>;

    /// Online agents serving `tenant`, by state number.
    async fn agents_by_state(&self, tenant: &TenantId) -> Result<BTreeMap<i32, i64>, Error>;

    /// How many of `tenant`'s contacts wait now (see
    /// [`KpiCounts::waiting`]), and when the longest-waiting one entered
    /// its queue.
    async fn waiting_now(&self, tenant: &TenantId) -> Result<(i64, Option<i64>), Error>;

    /// Inserts each agent state change not stored yet into its agent's
    /// timeline, moving time between states as
    /// [`crate::domain::agents::insertion_deltas`] says: order-insensitive,
    /// idempotent.
    async fn apply_state_changes(&self, changes: &[AgentStateUpdate]) -> Result<(), Error>;

    /// Adds each event's counts to its agent's interval, once per event id.
    async fn apply_agent_events(&self, events: &[AgentEvent]) -> Result<(), Error>;

    /// `tenant`'s agents' stored figures (closed spans and counts) in the
    /// intervals starting in `[start_ms, end_ms)`, and each agent's last
    /// change when it serves `tenant`, is counted and began before
    /// `end_ms`: every agent with any of these, in id order, per `page`.
    async fn agent_figures(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
        page: &AgentPage,
    ) -> Result<Vec<StoredAgentFigures>, Error>;

    /// `tenant`'s KPI settings (the defaults if never set).
    async fn settings(&self, tenant: &TenantId) -> Result<KpiSettings, Error>;

    /// Stores `tenant`'s KPI settings.
    async fn set_settings(&self, tenant: &TenantId, settings: &KpiSettings) -> Result<(), Error>;

    /// The first-contact rule of every tenant that has settings stored
    /// (the others' is the default).
    async fn fcr_rules(&self) -> Result<BTreeMap<TenantId, FcrRule>, Error>;

    /// Records messages sent to customers; each message once (a replay, or
    /// an edit's republication, changes nothing).
    async fn record_outbound_messages(&self, messages: &[OutboundMessage]) -> Result<(), Error>;

    /// `tenant`'s outbound messages created in `[start_ms, end_ms)`, by
    /// channel (`None`: not said).
    async fn outbound_messages(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<BTreeMap<Option<Channel>, i64>, Error>;

    /// Removes every fact and bucket of `tenant` (a deleted tenant), and
    /// the tenant from agents' states; idempotent.
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error>;
}

/// The counts of the contacts `filter` selects, summed (a summary), and
/// whether their first-contact resolution is still provisional at
/// `now_ms`: as [`counts_by_interval`], with whole days read from the
/// store's day sums where it has them.
pub async fn summary_counts(
    store: &dyn KpiStore,
    tenant: &TenantId,
    filter: &FactsFilter,
    max_edge_contacts: usize,
    now_ms: i64,
) -> Result<(KpiCounts, bool), Error> {
    let split = split_range(filter);
    let window_ms = store.settings(tenant).await?.longest_fcr_window_ms;
    let mut total = KpiCounts::default();
    let mut provisional = false;
    for (start, length_ms, counts) in store.bucket_periods(tenant, filter, &split).await? {
        total.add(&counts);
        let last_interval = start.map(|start_ms| start_ms + length_ms - INTERVAL_MS);
        provisional |= fcr_provisional(&counts, last_interval, now_ms, window_ms);
    }
    let edges = RangeSplit { whole: None, ..split };
    for (start, counts) in edge_counts(store, tenant, filter, &edges, max_edge_contacts).await? {
        total.add(&counts);
        provisional |= fcr_provisional(&counts, start, now_ms, window_ms);
    }
    Ok((total, provisional))
}

/// A day, the longest "today".
const DAY_MS: i64 = 86_400_000;

/// A tenant's live figures now (`WatchLiveKpis`): whole intervals of today
/// from the buckets, the waiting contacts from the facts of those waiting,
/// agents from their states.
pub async fn live_figures(store: &dyn KpiStore, tenant: &TenantId, day_start_ms: i64) -> Result<LiveFigures, Error> {
    let today = FactsFilter { arrival_start_ms: Some(day_start_ms), ..FactsFilter::default() };
    let split = split_range(&today);
    let by_interval = store.bucket_counts(tenant, &today, &split).await?;
    let (waiting, oldest_queued_ms) = store.waiting_now(tenant).await?;
    Ok(LiveFigures {
        waiting,
        oldest_queued_ms,
        agents_by_state: store.agents_by_state(tenant).await?,
        agents_today: store.agent_figures(tenant, day_start_ms, day_start_ms + DAY_MS, &AgentPage::all()).await?,
        fcr_window_ms: store.settings(tenant).await?.longest_fcr_window_ms,
        day_start_ms,
        today: by_interval
            .into_iter()
            .filter(|(_, counts)| counts.contacts != 0)
            .filter_map(|(start, counts)| start.map(|start_ms| (start_ms, counts)))
            .collect(),
    })
}

/// The counts of the contacts `filter` selects, per arrival interval
/// (`None`: unknown arrival): whole intervals from the buckets, the partial
/// ends of the range from at most `max_edge_contacts` facts each
/// (RESOURCE_EXHAUSTED `KPI_RANGE_TOO_LARGE` past it). Exactly what
/// summarising the selected facts gives (`domain::buckets`).
pub async fn counts_by_interval(
    store: &dyn KpiStore,
    tenant: &TenantId,
    filter: &FactsFilter,
    max_edge_contacts: usize,
) -> Result<BTreeMap<Option<i64>, KpiCounts>, Error> {
    let split = split_range(filter);
    let mut counts = store.bucket_counts(tenant, filter, &split).await?;
    for (start, edge) in edge_counts(store, tenant, filter, &split, max_edge_contacts).await? {
        counts.entry(start).or_default().add(&edge);
    }
    counts.retain(|_, interval| interval.contacts != 0);
    Ok(counts)
}

/// The counts of the partial ends of `split`, per interval, from at most
/// `max_edge_contacts` facts each (RESOURCE_EXHAUSTED `KPI_RANGE_TOO_LARGE`
/// past it).
async fn edge_counts(
    store: &dyn KpiStore,
    tenant: &TenantId,
    filter: &FactsFilter,
    split: &RangeSplit,
    max_edge_contacts: usize,
) -> Result<BTreeMap<Option<i64>, KpiCounts>, Error> {
    let mut counts: BTreeMap<Option<i64>, KpiCounts> = BTreeMap::new();
    for (start_ms, end_ms) in &split.partial {
        let edge = FactsFilter { arrival_start_ms: Some(*start_ms), arrival_end_ms: Some(*end_ms), ..filter.clone() };
        let facts = store.load_at_most(tenant, &edge, max_edge_contacts).await?;
        if facts.len() > max_edge_contacts {
            return Err(Error::resource_exhausted(format!(
                "the range's partial first or last 15 minutes hold more than {max_edge_contacts} contacts: align \
                 `filter.start_time` and `filter.end_time` to 15 minutes"
            ))
            .with_reason("KPI_RANGE_TOO_LARGE")
            .with_field_violation("filter.start_time", "align to a 15-minute boundary"));
        }
        for contact_facts in &facts {
            counts.entry(contact_facts.arrival_ms().map(interval_start_ms)).or_default().add_contact(contact_facts);
        }
    }
    Ok(counts)
}

/// Applies what `envelope` says about its contact to `store`: the live
/// counterpart of [`crate::domain::recompute`]. Events no KPI reads are
/// ignored; invalid ones are INVALID_ARGUMENT.
pub async fn apply_event(store: &dyn KpiStore, envelope: &EventEnvelope) -> Result<(), Error> {
    apply_events(store, &[envelope]).await
}

/// [`apply_event`] for a batch of envelopes, applied together. One invalid
/// envelope fails the batch (INVALID_ARGUMENT): the consumer then applies
/// them one by one and dead-letters that one.
pub async fn apply_events(store: &dyn KpiStore, envelopes: &[&EventEnvelope]) -> Result<(), Error> {
    apply_events_except(store, envelopes, &|_| false).await
}

/// [`apply_events`], agents' states included, leaving out of them the
/// tenants `deleted` says are deleted (a deleted tenant's agent going
/// offline must not bring its name back after its erasure).
pub async fn apply_events_except(
    store: &dyn KpiStore,
    envelopes: &[&EventEnvelope],
    deleted: &(dyn Fn(&TenantId) -> bool + Sync),
) -> Result<(), Error> {
    let mut events: Vec<FactsEvent> = Vec::with_capacity(envelopes.len());
    let mut agents = Vec::new();
    let mut agent_events = Vec::new();
    let mut messages = Vec::new();
    for envelope in envelopes {
        events.extend(facts_event(envelope)?);
        messages.extend(outbound_message(envelope)?.filter(|message| !deleted(&message.tenant)));
        agent_events.extend(agent_event(envelope)?);
        if let Some(mut update) = agent_state_update(envelope)? {
            update.tenants.retain(|tenant| !deleted(tenant));
            agents.push(update);
        }
    }
    if !events.is_empty() {
        // Each contact takes its tenant's first-contact rule in force when
        // it is created: stamped on its creation only, so a later event (a
        // survey answered days after) never brings a newer rule to it.
        // Most batches hold no creation: they read no settings.
        if events.iter().any(|event| event.update.created_ms.is_some()) {
            let rules = store.fcr_rules().await?;
            for event in &mut events {
                stamp_fcr_rule(&mut event.update, &event.tenant, &rules);
            }
        }
        store.apply_all(events).await?;
    }
    if !messages.is_empty() {
        store.record_outbound_messages(&messages).await?;
    }
    if !agent_events.is_empty() {
        store.apply_agent_events(&agent_events).await?;
    }
    if !agents.is_empty() {
        store.apply_agent_states(&agents).await?;
        store.apply_state_changes(&agents).await?;
    }
    Ok(())
}

/// `tenant`'s agents' figures over the intervals starting in
/// `[start_ms, end_ms)` as of `now_ms`: the stored ones, and the span of
/// each agent's current state so far.
pub async fn agent_kpis(
    store: &dyn KpiStore,
    tenant: &TenantId,
    start_ms: i64,
    end_ms: i64,
    now_ms: i64,
    page: &AgentPage,
) -> Result<Vec<(switchboard_core::AgentId, AgentFigures)>, Error> {
    let stored = store.agent_figures(tenant, start_ms, end_ms, page).await?;
    Ok(stored
        .into_iter()
        .map(|StoredAgentFigures { agent, mut figures, last }| {
            if let Some(last) = &last {
                figures.add_open_span(last, start_ms, end_ms, now_ms);
            }
            (agent, figures)
        })
        .collect())
}
