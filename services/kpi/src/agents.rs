//! `KpiService.ListAgentKpis`: per agent serving a tenant, time in each
//! state and reason, occupancy and what routing did with it, over whole
//! 15-minute intervals (see [`crate::domain::agents`]).

use switchboard_core::names::{agent_name, parse_agent, parse_tenant};
use switchboard_core::time::{checked_timestamp_millis, duration_from_millis, timestamp_from_millis};
use switchboard_core::{AgentId, Error, Principal, TenantId};
use switchboard_platform::auth::AccessControl;
use switchboard_platform::pagination::{PageRequest, page, page_request};
use switchboard_proto::kpi::v1 as proto;

use crate::domain::INTERVAL_MS;
use crate::domain::agents::{AgentFigures, AgentPage};
use crate::store::{KpiStore, agent_kpis};

/// The longest range one request may count: 31 days.
pub const MAX_AGENT_RANGE_MS: i64 = 31 * 86_400_000;

/// A validated `ListAgentKpisRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentKpisQuery {
    pub tenant: TenantId,
    /// Widened to whole intervals.
    pub start_ms: i64,
    pub end_ms: i64,
    pub agent: Option<AgentId>,
    pub page: PageRequest,
}

impl AgentKpisQuery {
    /// Validates `request`, the caller authorized on its tenant first.
    pub fn parse(
        access: &AccessControl,
        principal: &Principal,
        request: &proto::ListAgentKpisRequest,
    ) -> Result<AgentKpisQuery, Error> {
        let tenant = parse_tenant(&request.parent, "parent")?;
        access.authorize_read(principal, &tenant)?;
        let instant = |timestamp: Option<&prost_types::Timestamp>, field: &str| {
            let timestamp = timestamp.ok_or_else(|| Error::missing_field(field))?;
            checked_timestamp_millis(timestamp).map_err(|problem| Error::invalid_field(field, problem))
        };
        let start_ms = instant(request.start_time.as_ref(), "start_time")?.div_euclid(INTERVAL_MS) * INTERVAL_MS;
        let end_ms = instant(request.end_time.as_ref(), "end_time")?;
        let end_ms =
            end_ms.div_euclid(INTERVAL_MS) * INTERVAL_MS + if end_ms % INTERVAL_MS == 0 { 0 } else { INTERVAL_MS };
        if end_ms <= start_ms {
            return Err(Error::invalid_field("end_time", "must be after `start_time`"));
        }
        if end_ms - start_ms > MAX_AGENT_RANGE_MS {
            return Err(Error::invalid_field("end_time", "must be at most 31 days after `start_time`"));
        }
        let agent = if request.agent.is_empty() { None } else { Some(parse_agent(&request.agent, "agent")?) };
        let list = format!("kpi.ListAgentKpis {} {start_ms} {end_ms} {}", request.parent, request.agent);
        let page = page_request(&list, request.page_size, &request.page_token)?;
        if let Some(after) = &page.after {
            AgentId::parse(after, "page_token")?;
        }
        Ok(AgentKpisQuery { tenant, start_ms, end_ms, agent, page })
    }
}

/// One page of agent figures as of `now_ms`.
pub async fn list_agent_kpis(
    store: &dyn KpiStore,
    query: &AgentKpisQuery,
    now_ms: i64,
) -> Result<proto::ListAgentKpisResponse, Error> {
    let after = query.page.after.as_deref().map(|after| AgentId::parse(after, "page_token")).transpose()?;
    let agent_page = AgentPage { only: query.agent.clone(), after, limit: query.page.size.saturating_add(1) };
    let figures = agent_kpis(store, &query.tenant, query.start_ms, query.end_ms, now_ms, &agent_page).await?;
    let (figures, next_page_token) = page(figures, &query.page, |(agent, _)| agent.as_str().to_owned());
    Ok(proto::ListAgentKpisResponse {
        agents: figures.iter().map(|(agent, figures)| agent_kpis_proto(agent, figures)).collect(),
        next_page_token,
        start_time: Some(timestamp_from_millis(query.start_ms)),
        end_time: Some(timestamp_from_millis(query.end_ms)),
    })
}

fn agent_kpis_proto(agent: &AgentId, figures: &AgentFigures) -> proto::AgentKpis {
    let counts = &figures.counts;
    proto::AgentKpis {
        agent: agent_name(agent),
        time_in_state: figures
            .time_in_state
            .iter()
            .map(|((state, reason), ms)| proto::AgentStateTime {
                state: *state,
                reason: reason.clone(),
                duration: Some(duration_from_millis(*ms)),
            })
            .collect(),
        staffed_time: Some(duration_from_millis(figures.staffed_ms())),
        occupancy: figures.occupancy(),
        offered: counts.offered,
        answered: counts.answered,
        rejected: counts.rejected,
        timed_out: counts.timed_out,
        missed: counts.missed(),
        handled: counts.handled,
        handle_time: Some(duration_from_millis(counts.handle_ms)),
        average_handle_time: (counts.handled > 0).then(|| duration_from_millis(counts.handle_ms / counts.handled)),
        transfers: counts.transfers,
        callbacks: counts.callbacks,
    }
}
