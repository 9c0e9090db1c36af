//! Agent KPIs: the time each agent spent in each state and reason, and
//! what routing did with it (offers, answers, missed offers, handled
//! contacts and their handle time, transfers, callbacks), per tenant it
//! serves and 15-minute interval.
//!
//! **Time in state.** An agent's state changes are points on its timeline;
//! the span from one change to the next belongs to the first change's
//! state, reason and tenants, split at interval boundaries. Only closed
//! spans are stored, so a change that arrives late (between two known
//! changes) moves the span it cuts from its predecessor to itself
//! ([`insertion_deltas`]): whatever the delivery order and however many
//! duplicates, the stored time equals that of the sorted timeline
//! ([`closed_spans`], proved by a property test). The last change's span is
//! open; a query adds it up to now. Time offline is not counted.
//!
//! **Routing counts** are added once per event id (the store remembers the
//! ids it counted), in the interval of the event's own time: an offer at
//! its offer time, an answer at its answer time, a completion (handled,
//! answer-to-end handle time) at its end time.
//!
//! **Occupancy** is the time spent on contacts over the time staffed:
//! (handle time + time in wrap-up) ÷ (time available + time in wrap-up).
//! An agent handling several chats at once can exceed 1; it is reported
//! as is.

use std::collections::BTreeMap;

use switchboard_core::event::envelope_tenant;
use switchboard_core::names::parse_agent;
use switchboard_core::time::millis_from_timestamp;
use switchboard_core::{AgentId, Error, TenantId};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::presence::v1::AgentState;
use switchboard_proto::routing::v1::{TransferReason, WithdrawReason, routing_event};

use super::live::AgentStateUpdate;
use super::summary::{INTERVAL_MS, interval_start_ms};

/// Where an agent's time is counted: one tenant it serves, one interval,
/// one state and reason.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateTimeKey {
    pub tenant: TenantId,
    pub agent: AgentId,
    pub interval_start_ms: i64,
    pub state: i32,
    pub reason: String,
}

/// Milliseconds per key; a change of the stored time when used as deltas.
pub type StateTime = BTreeMap<StateTimeKey, i64>;

/// The order of one agent's changes: time, then state number, then reason
/// (bytewise). Two changes with the same key are the same change.
pub type ChangeOrder = (i64, i32, String);

impl AgentStateUpdate {
    pub fn order(&self) -> ChangeOrder {
        (self.at_ms, self.state as i32, self.reason.clone())
    }
}

/// Whether time in `state` counts: every state but offline.
fn counted(state: AgentState) -> bool {
    !matches!(state, AgentState::Offline | AgentState::Unspecified)
}

/// Adds `sign` × the part of `[from_ms, to_ms)` in each interval to the
/// time of `change`'s state, for each tenant it served.
pub fn add_span(into: &mut StateTime, change: &AgentStateUpdate, from_ms: i64, to_ms: i64, sign: i64) {
    if !counted(change.state) || to_ms <= from_ms {
        return;
    }
    let mut start_ms = from_ms;
    while start_ms < to_ms {
        let interval_start = interval_start_ms(start_ms);
        let end_ms = (interval_start + INTERVAL_MS).min(to_ms);
        for tenant in &change.tenants {
            let key = StateTimeKey {
                tenant: tenant.clone(),
                agent: change.agent.clone(),
                interval_start_ms: interval_start,
                state: change.state as i32,
                reason: change.reason.clone(),
            };
            let total = into.entry(key).or_default();
            *total += sign * (end_ms - start_ms);
        }
        start_ms = end_ms;
    }
}

/// What inserting `inserted` into its agent's timeline, between the
/// change before it (`previous`) and the time of the change after it
/// (`next_at_ms`), does to the closed spans:
/// - between two changes, `[inserted, next)` passes from `previous` to it;
/// - after the last change, `[previous, inserted)` closes;
/// - before the first change, `[inserted, next)` is new.
pub fn insertion_deltas(
    previous: Option<&AgentStateUpdate>,
    inserted: &AgentStateUpdate,
    next_at_ms: Option<i64>,
) -> StateTime {
    let mut deltas = StateTime::new();
    match (previous, next_at_ms) {
        (Some(previous), Some(next_at_ms)) => {
            add_span(&mut deltas, previous, inserted.at_ms, next_at_ms, -1);
            add_span(&mut deltas, inserted, inserted.at_ms, next_at_ms, 1);
        }
        (Some(previous), None) => add_span(&mut deltas, previous, previous.at_ms, inserted.at_ms, 1),
        (None, Some(next_at_ms)) => add_span(&mut deltas, inserted, inserted.at_ms, next_at_ms, 1),
        (None, None) => {}
    }
    deltas
}

/// The closed spans of a set of changes (any order, duplicates allowed):
/// the reference the incremental [`insertion_deltas`] must equal.
pub fn closed_spans<'a>(changes: impl IntoIterator<Item = &'a AgentStateUpdate>) -> StateTime {
    let mut timelines: BTreeMap<&AgentId, BTreeMap<ChangeOrder, &AgentStateUpdate>> = BTreeMap::new();
    for change in changes {
        timelines.entry(&change.agent).or_default().entry(change.order()).or_insert(change);
    }
    let mut spans = StateTime::new();
    for timeline in timelines.values() {
        let ordered: Vec<&AgentStateUpdate> = timeline.values().copied().collect();
        for pair in ordered.windows(2) {
            add_span(&mut spans, pair[0], pair[0].at_ms, pair[1].at_ms, 1);
        }
    }
    spans.retain(|_, ms| *ms != 0);
    spans
}

/// What routing did with an agent, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentCounts {
    pub offered: i64,
    pub answered: i64,
    /// Offers the agent rejected.
    pub rejected: i64,
    /// Offers that rang out.
    pub timed_out: i64,
    /// Contacts the agent handed over (`TransferContact`).
    pub transfers: i64,
    /// Offers of callbacks (the agent calls the customer).
    pub callbacks: i64,
    /// Contacts completed.
    pub handled: i64,
    /// Answer to completion, summed over the contacts completed.
    pub handle_ms: i64,
}

impl AgentCounts {
    pub fn add(&mut self, other: &AgentCounts) {
        self.offered += other.offered;
        self.answered += other.answered;
        self.rejected += other.rejected;
        self.timed_out += other.timed_out;
        self.transfers += other.transfers;
        self.callbacks += other.callbacks;
        self.handled += other.handled;
        self.handle_ms += other.handle_ms;
    }

    /// Offers that ended without an answer by the agent's doing.
    pub fn missed(&self) -> i64 {
        self.rejected + self.timed_out
    }
}

/// What one routing event adds to one agent's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEvent {
    /// The envelope's id: counted once.
    pub event_id: String,
    pub tenant: TenantId,
    pub agent: AgentId,
    pub interval_start_ms: i64,
    pub counts: AgentCounts,
}

/// The agent counts of a routing event; `Ok(None)` for an event that
/// names no agent or counts nothing.
pub fn agent_event(envelope: &EventEnvelope) -> Result<Option<AgentEvent>, Error> {
    let Some(Payload::Routing(event)) = &envelope.payload else { return Ok(None) };
    let occurred_ms = envelope.occurred_at.as_ref().map(millis_from_timestamp);
    let instant = |time: Option<&prost_types::Timestamp>| time.map(millis_from_timestamp).or(occurred_ms);
    let (agent, at_ms, counts) = match &event.kind {
        Some(routing_event::Kind::Offered(offered)) => {
            let callbacks = i64::from(!offered.callback_number.is_empty());
            (
                &offered.agent,
                instant(offered.offer_time.as_ref()),
                AgentCounts { offered: 1, callbacks, ..AgentCounts::default() },
            )
        }
        Some(routing_event::Kind::OfferWithdrawn(withdrawn)) => {
            let counts = match WithdrawReason::try_from(withdrawn.reason) {
                Ok(WithdrawReason::Rejected) => AgentCounts { rejected: 1, ..AgentCounts::default() },
                Ok(WithdrawReason::TimedOut) => AgentCounts { timed_out: 1, ..AgentCounts::default() },
                _ => return Ok(None),
            };
            (&withdrawn.agent, occurred_ms, counts)
        }
        Some(routing_event::Kind::Answered(answered)) => (
            &answered.agent,
            instant(answered.answer_time.as_ref()),
            AgentCounts { answered: 1, ..AgentCounts::default() },
        ),
        Some(routing_event::Kind::Completed(completed)) => {
            let answer_ms = completed.answer_time.as_ref().map(millis_from_timestamp);
            let end_ms = instant(completed.end_time.as_ref());
            let handle_ms = match (answer_ms, end_ms) {
                (Some(answer_ms), Some(end_ms)) => (end_ms - answer_ms).max(0),
                _ => 0,
            };
            (&completed.agent, end_ms, AgentCounts { handled: 1, handle_ms, ..AgentCounts::default() })
        }
        Some(routing_event::Kind::Transferred(transferred)) => {
            if TransferReason::try_from(transferred.reason) != Ok(TransferReason::Requested) {
                return Ok(None);
            }
            (&transferred.from_agent, occurred_ms, AgentCounts { transfers: 1, ..AgentCounts::default() })
        }
        _ => return Ok(None),
    };
    if agent.is_empty() {
        return Ok(None);
    }
    let agent = parse_agent(agent, "routing_event.agent")?;
    let Some(tenant) = envelope_tenant(envelope)? else {
        return Err(Error::missing_field("envelope.tenant"));
    };
    let at_ms = at_ms.ok_or_else(|| Error::missing_field("envelope.occurred_at"))?;
    Ok(Some(AgentEvent {
        event_id: envelope.event_id.clone(),
        tenant,
        agent,
        interval_start_ms: interval_start_ms(at_ms),
        counts,
    }))
}

/// `busy_ms` ÷ `staffed_ms`; `None` when nobody was staffed.
pub fn occupancy(busy_ms: i64, staffed_ms: i64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    (staffed_ms > 0).then(|| busy_ms as f64 / staffed_ms as f64)
}

/// One agent's figures over a range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFigures {
    /// Milliseconds by (state number, reason).
    pub time_in_state: BTreeMap<(i32, String), i64>,
    pub counts: AgentCounts,
}

impl AgentFigures {
    fn time_in(&self, state: AgentState) -> i64 {
        self.time_in_state.iter().filter(|((number, _), _)| *number == state as i32).map(|(_, ms)| ms).sum()
    }

    /// Time available or in wrap-up.
    pub fn staffed_ms(&self) -> i64 {
        self.time_in(AgentState::Available) + self.time_in(AgentState::WrapUp)
    }

    /// Handle time and time in wrap-up.
    pub fn busy_ms(&self) -> i64 {
        self.counts.handle_ms + self.time_in(AgentState::WrapUp)
    }

    /// [`AgentFigures::busy_ms`] ÷ [`AgentFigures::staffed_ms`]; `None`
    /// when never staffed.
    pub fn occupancy(&self) -> Option<f64> {
        occupancy(self.busy_ms(), self.staffed_ms())
    }

    /// Adds the open span of an agent's last change, `[change, now)`,
    /// clipped to `[start_ms, end_ms)`.
    pub fn add_open_span(&mut self, last: &AgentStateUpdate, start_ms: i64, end_ms: i64, now_ms: i64) {
        let (from_ms, to_ms) = (last.at_ms.max(start_ms), now_ms.min(end_ms));
        if counted(last.state) && to_ms > from_ms {
            *self.time_in_state.entry((last.state as i32, last.reason.clone())).or_default() += to_ms - from_ms;
        }
    }
}

/// Agents' timelines, spans and counts in memory (the `dev` store and the
/// reference of the others): changes inserted as [`insertion_deltas`]
/// says, routing counts added once per event id.
#[derive(Debug, Default)]
pub struct AgentTimelines {
    timelines: BTreeMap<AgentId, BTreeMap<ChangeOrder, AgentStateUpdate>>,
    spans: StateTime,
    counts: BTreeMap<(TenantId, AgentId, i64), AgentCounts>,
    counted_events: BTreeMap<String, TenantId>,
}

impl AgentTimelines {
    pub fn insert_all(&mut self, changes: &[AgentStateUpdate]) {
        for change in changes {
            let timeline = self.timelines.entry(change.agent.clone()).or_default();
            let order = change.order();
            if timeline.contains_key(&order) {
                continue;
            }
            let previous = timeline.range(..order.clone()).next_back().map(|(_, change)| change);
            let next_at_ms = timeline
                .range((std::ops::Bound::Excluded(order.clone()), std::ops::Bound::Unbounded))
                .next()
                .map(|(_, change)| change.at_ms);
            for (key, delta) in insertion_deltas(previous, change, next_at_ms) {
                *self.spans.entry(key).or_default() += delta;
            }
            timeline.insert(order, change.clone());
        }
    }

    pub fn count_all(&mut self, events: &[AgentEvent]) {
        for event in events {
            if self.counted_events.contains_key(&event.event_id) {
                continue;
            }
            self.counted_events.insert(event.event_id.clone(), event.tenant.clone());
            let key = (event.tenant.clone(), event.agent.clone(), event.interval_start_ms);
            self.counts.entry(key).or_default().add(&event.counts);
        }
    }

    /// The stored closed spans, zeros left out.
    pub fn closed_spans(&self) -> StateTime {
        self.spans.iter().filter(|(_, ms)| **ms != 0).map(|(key, ms)| (key.clone(), *ms)).collect()
    }

    /// The figures of `tenant`'s agents in the intervals starting in
    /// `[start_ms, end_ms)`, as [`crate::store::KpiStore::agent_figures`].
    pub fn figures(&self, tenant: &TenantId, start_ms: i64, end_ms: i64, page: &AgentPage) -> Vec<StoredAgentFigures> {
        let in_range = |interval_start_ms: i64| interval_start_ms >= start_ms && interval_start_ms < end_ms;
        let mut by_agent: BTreeMap<AgentId, StoredAgentFigures> = BTreeMap::new();
        fn entry<'a>(
            by_agent: &'a mut BTreeMap<AgentId, StoredAgentFigures>,
            agent: &AgentId,
        ) -> &'a mut StoredAgentFigures {
            by_agent.entry(agent.clone()).or_insert_with(|| StoredAgentFigures {
                agent: agent.clone(),
                figures: AgentFigures::default(),
                last: None,
            })
        }
        for (key, ms) in &self.spans {
            if key.tenant == *tenant && in_range(key.interval_start_ms) && *ms != 0 {
                *entry(&mut by_agent, &key.agent)
                    .figures
                    .time_in_state
                    .entry((key.state, key.reason.clone()))
                    .or_default() += ms;
            }
        }
        for ((counted_tenant, agent, interval_start_ms), counts) in &self.counts {
            if counted_tenant == tenant && in_range(*interval_start_ms) {
                entry(&mut by_agent, agent).figures.counts.add(counts);
            }
        }
        for (agent, timeline) in &self.timelines {
            let Some(last) = timeline.values().next_back() else { continue };
            if last.tenants.contains(tenant) && counted(last.state) && last.at_ms < end_ms {
                entry(&mut by_agent, agent).last = Some(last.clone());
            }
        }
        by_agent.into_values().filter(|figures| page.admits(&figures.agent)).take(page.limit).collect()
    }

    /// Forgets `tenant`: its spans, counts and place in every change.
    pub fn erase(&mut self, tenant: &TenantId) {
        self.spans.retain(|key, _| key.tenant != *tenant);
        self.counts.retain(|(counted_tenant, _, _), _| counted_tenant != tenant);
        self.counted_events.retain(|_, counted_tenant| counted_tenant != tenant);
        for change in self.timelines.values_mut().flat_map(BTreeMap::values_mut) {
            change.tenants.retain(|served| served != tenant);
        }
    }
}

/// Which agents a query of agent figures returns: those in id order after
/// `after` (or only `only`), at most `limit`.
#[derive(Debug, Clone)]
pub struct AgentPage {
    pub only: Option<AgentId>,
    pub after: Option<AgentId>,
    pub limit: usize,
}

impl AgentPage {
    /// Every agent.
    pub fn all() -> AgentPage {
        AgentPage { only: None, after: None, limit: usize::MAX }
    }

    pub fn admits(&self, agent: &AgentId) -> bool {
        self.only.as_ref().is_none_or(|only| only == agent) && self.after.as_ref().is_none_or(|after| agent > after)
    }
}

/// An agent's stored figures over whole intervals, and its last change
/// (when it serves the tenant and is counted), whose open span a query adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAgentFigures {
    pub agent: AgentId,
    pub figures: AgentFigures,
    pub last: Option<AgentStateUpdate>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn change(agent: &str, tenants: &[&str], state: AgentState, reason: &str, at_ms: i64) -> AgentStateUpdate {
        AgentStateUpdate {
            agent: AgentId::parse(agent, "agent").expect("agent"),
            tenants: tenants.iter().map(|tenant| TenantId::parse(tenant, "tenant").expect("tenant")).collect(),
            state,
            reason: reason.to_owned(),
            at_ms,
        }
    }

    #[test]
    fn a_span_is_split_at_interval_boundaries_and_counted_per_tenant() {
        let available = change("ann", &["acme", "globex"], AgentState::Available, "", INTERVAL_MS - 1_000);
        let mut spans = StateTime::new();
        add_span(&mut spans, &available, available.at_ms, INTERVAL_MS + 2_000, 1);
        let acme: Vec<i64> = spans.iter().filter(|(key, _)| key.tenant.as_str() == "acme").map(|(_, ms)| *ms).collect();
        assert_eq!(acme, vec![1_000, 2_000]);
        assert_eq!(spans.len(), 4, "two intervals for each of two tenants");
    }

    #[test]
    fn a_late_change_takes_its_span_from_the_one_before_it() {
        let available = change("ann", &["acme"], AgentState::Available, "", 0);
        let away = change("ann", &["acme"], AgentState::Away, "lunch", 60_000);
        let offline = change("ann", &["acme"], AgentState::Offline, "", 100_000);
        let mut timelines = AgentTimelines::default();
        timelines.insert_all(&[available.clone(), offline.clone(), away.clone()]);
        let stored = timelines.closed_spans();
        let by_state: Vec<(i32, i64)> = stored.iter().map(|(key, ms)| (key.state, *ms)).collect();
        assert_eq!(by_state, vec![(AgentState::Available as i32, 60_000), (AgentState::Away as i32, 40_000)]);
        assert_eq!(stored, closed_spans(&[available, away, offline]));
    }

    #[test]
    fn occupancy_is_contact_time_over_staffed_time() {
        let mut figures = AgentFigures::default();
        figures.time_in_state.insert((AgentState::Available as i32, String::new()), 90_000);
        figures.time_in_state.insert((AgentState::WrapUp as i32, String::new()), 10_000);
        figures.time_in_state.insert((AgentState::Away as i32, "lunch".to_owned()), 500_000);
        figures.counts.handle_ms = 40_000;
        assert_eq!(figures.staffed_ms(), 100_000);
        assert_eq!(figures.occupancy(), Some(0.5));
        assert_eq!(AgentFigures::default().occupancy(), None);
    }

    fn arbitrary_change() -> impl Strategy<Value = AgentStateUpdate> {
        let states = prop::sample::select(vec![
            AgentState::Available,
            AgentState::Away,
            AgentState::WrapUp,
            AgentState::NotResponding,
            AgentState::Offline,
        ]);
        (0..3_usize, states, prop::sample::select(vec!["", "lunch", "training"]), 0..4 * INTERVAL_MS).prop_map(
            |(agent, state, reason, at_ms)| {
                let at_ms = at_ms / 7_000 * 7_000;
                // The same change always has the same tenants, as in the log.
                let tenants: &[&str] = if (at_ms / 7_000) % 2 == 0 { &["acme", "globex"] } else { &["acme"] };
                change(&format!("agent-{agent}"), tenants, state, reason, at_ms)
            },
        )
    }

    /// Changes, and a delivery of them shuffled with duplicates.
    fn changes_and_delivery() -> impl Strategy<Value = (Vec<AgentStateUpdate>, Vec<AgentStateUpdate>)> {
        prop::collection::vec(arbitrary_change(), 1..40).prop_flat_map(|changes| {
            let duplicates = prop::collection::vec(prop::sample::select(changes.clone()), 0..10);
            let delivery = (Just(changes.clone()), duplicates)
                .prop_map(|(changes, duplicates)| changes.into_iter().chain(duplicates).collect::<Vec<_>>())
                .prop_shuffle();
            (Just(changes), delivery)
        })
    }

    proptest! {
        #[test]
        fn stored_time_is_the_sorted_timelines_whatever_the_delivery((changes, delivery) in changes_and_delivery()) {
            let mut timelines = AgentTimelines::default();
            timelines.insert_all(&delivery);
            prop_assert_eq!(timelines.closed_spans(), closed_spans(&changes));
        }
    }
}
