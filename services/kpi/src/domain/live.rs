//! The live figures of a tenant (`KpiService.WatchLiveKpis`, the
//! wallboard): contacts waiting now and the longest wait, agents by state,
//! and today's KPIs so far.
//!
//! Agents' states come from presence events, kept per agent: the one with
//! the latest state time wins (at the same instant the higher state
//! number), so the view does not depend on delivery order or duplicates.

use std::collections::BTreeMap;

use switchboard_core::names::{parse_agent, parse_tenant, tenant_name};
use switchboard_core::time::{millis_from_timestamp, timestamp_from_millis};
use switchboard_core::{AgentId, Error, TenantId};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::kpi::v1 as proto;
use switchboard_proto::presence::v1::{AgentState, presence_event};

use super::agents::{StoredAgentFigures, occupancy};
use super::summary::{INTERVAL_MS, KpiCounts, KpiInterval, KpiSummary, ServiceLevelVariant};

/// What a presence event says of an agent: its state since `at_ms`, and
/// the tenants it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStateUpdate {
    pub agent: AgentId,
    pub tenants: Vec<TenantId>,
    pub state: AgentState,
    /// Why, as the agent or supervisor gave it (an away reason); may be empty.
    pub reason: String,
    pub at_ms: i64,
}

impl AgentStateUpdate {
    /// Whether this update replaces a stored state of `stored_at_ms`:
    /// later wins, and at the same instant the higher state.
    pub fn supersedes(&self, stored_at_ms: i64, stored_state: AgentState) -> bool {
        (self.at_ms, self.state as i32) >= (stored_at_ms, stored_state as i32)
    }
}

/// The agent update of a presence event; `Ok(None)` for any other event.
pub fn agent_state_update(envelope: &EventEnvelope) -> Result<Option<AgentStateUpdate>, Error> {
    let Some(Payload::Presence(event)) = &envelope.payload else { return Ok(None) };
    let Some(presence_event::Kind::StateChanged(changed)) = &event.kind else { return Ok(None) };
    let agent = parse_agent(&changed.agent, "state_changed.agent")?;
    let tenants = changed
        .tenants
        .iter()
        .map(|tenant| parse_tenant(tenant, "state_changed.tenants"))
        .collect::<Result<Vec<_>, _>>()?;
    let state = AgentState::try_from(changed.state)
        .map_err(|_| Error::invalid_field("state_changed.state", "is not a known state"))?;
    let at_ms = changed
        .state_time
        .as_ref()
        .or(envelope.occurred_at.as_ref())
        .map(millis_from_timestamp)
        .ok_or_else(|| Error::missing_field("state_changed.state_time"))?;
    Ok(Some(AgentStateUpdate { agent, tenants, state, reason: changed.reason.clone(), at_ms }))
}

/// The most a day may be shifted from UTC midnight: 14 hours.
pub const MAX_UTC_OFFSET_MS: i64 = 14 * 60 * 60 * 1_000;

/// When "today" started at `now_ms` for a center `utc_offset_ms` off UTC
/// (a whole number of 15 minutes, so the day is whole intervals).
pub fn day_start_ms(now_ms: i64, utc_offset_ms: i64) -> i64 {
    const DAY_MS: i64 = 24 * 60 * 60 * 1_000;
    (now_ms + utc_offset_ms).div_euclid(DAY_MS) * DAY_MS - utc_offset_ms
}

/// Whether `utc_offset_ms` is one [`day_start_ms`] takes.
pub fn valid_utc_offset(utc_offset_ms: i64) -> bool {
    utc_offset_ms % INTERVAL_MS == 0 && utc_offset_ms.abs() <= MAX_UTC_OFFSET_MS
}

/// A tenant's live figures, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveFigures {
    pub waiting: i64,
    /// When the longest-waiting contact entered its queue.
    pub oldest_queued_ms: Option<i64>,
    /// Online agents by state.
    pub agents_by_state: BTreeMap<i32, i64>,
    /// Today's stored figures of the tenant's agents, each with its
    /// current state (whose span counts up to the time sent).
    pub agents_today: Vec<StoredAgentFigures>,
    /// The tenant's longest first-contact window (for `fcr_provisional`).
    pub fcr_window_ms: i64,
    pub day_start_ms: i64,
    /// Today's counts by interval.
    pub today: BTreeMap<i64, KpiCounts>,
}

impl LiveFigures {
    /// The figures as the API sends them, at `now_ms`.
    pub fn to_proto(&self, tenant: &TenantId, now_ms: i64, variant: ServiceLevelVariant) -> proto::LiveKpis {
        let mut today = KpiCounts::default();
        self.today.values().for_each(|counts| today.add(counts));
        let longest_wait_ms = self.oldest_queued_ms.map(|queued_ms| (now_ms - queued_ms).max(0));
        let (mut busy_ms, mut staffed_ms) = (0, 0);
        for StoredAgentFigures { figures, last, .. } in &self.agents_today {
            let mut figures = figures.clone();
            if let Some(last) = last {
                figures.add_open_span(last, self.day_start_ms, i64::MAX, now_ms);
            }
            busy_ms += figures.busy_ms();
            staffed_ms += figures.staffed_ms();
        }
        proto::LiveKpis {
            tenant: tenant_name(tenant),
            time: Some(timestamp_from_millis(now_ms)),
            contacts_waiting: self.waiting,
            longest_wait: longest_wait_ms.map(|wait_ms| prost_types::Duration {
                seconds: wait_ms / 1_000,
                nanos: i32::try_from(wait_ms % 1_000 * 1_000_000).unwrap_or(0),
            }),
            agents: self
                .agents_by_state
                .iter()
                .map(|(state, agents)| proto::AgentStateCount { state: *state, agents: *agents })
                .collect(),
            day_start_time: Some(timestamp_from_millis(self.day_start_ms)),
            occupancy: occupancy(busy_ms, staffed_ms),
            today: Some(proto::KpiSummary {
                fcr_provisional: self.today.iter().any(|(start_ms, counts)| {
                    super::summary::fcr_provisional(counts, Some(*start_ms), now_ms, self.fcr_window_ms)
                }),
                ..KpiSummary { counts: today, variant }.to_proto()
            }),
            today_intervals: self
                .today
                .iter()
                .map(|(start_ms, counts)| {
                    KpiInterval { start_ms: *start_ms, summary: KpiSummary { counts: *counts, variant } }.to_proto()
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_starts_at_the_centers_midnight() {
        let noon_utc = 1_764_936_000_000 - 1_764_936_000_000 % 86_400_000 + 12 * 3_600_000;
        assert_eq!(day_start_ms(noon_utc, 0), noon_utc - 12 * 3_600_000);
        // At 12:00 UTC it is 07:00 in UTC-5: the day began at 05:00 UTC.
        assert_eq!(day_start_ms(noon_utc, -5 * 3_600_000), noon_utc - 7 * 3_600_000);
        // At 12:00 UTC it is 01:30 the next day in UTC+13:30.
        let east = 13 * 3_600_000 + 30 * 60_000;
        assert_eq!(day_start_ms(noon_utc, east), noon_utc - 90 * 60_000);
        assert!(valid_utc_offset(east) && !valid_utc_offset(east + 60_000) && !valid_utc_offset(15 * 3_600_000));
    }

    #[test]
    fn the_latest_state_wins_whatever_the_order() {
        let update = |state: AgentState, at_ms| AgentStateUpdate {
            agent: AgentId::parse("ann", "agent").expect("agent"),
            tenants: Vec::new(),
            state,
            reason: String::new(),
            at_ms,
        };
        assert!(update(AgentState::Away, 20).supersedes(10, AgentState::Available));
        assert!(!update(AgentState::Available, 10).supersedes(20, AgentState::Away));
        assert!(update(AgentState::Away, 10).supersedes(10, AgentState::Available), "same instant: higher state");
        assert!(!update(AgentState::Available, 10).supersedes(10, AgentState::Away));
    }
}
