//! The operator's changes to agent definitions: create, update (with an
//! update mask) and delete. Each is audited, and each keeps routing's view
//! of an online agent current through a state event carrying its profile.

use std::collections::BTreeSet;

use switchboard_core::names::{agent_name, parse_agent, parse_tenant};
use switchboard_core::time::timestamp_from_millis;
use switchboard_core::{AgentId, Error, Principal, TenantId};
use switchboard_platform::audit::Change;
use switchboard_platform::pagination::PageRequest;
use switchboard_platform::quota::{admit_one_more, count_needed};
use switchboard_proto::presence::v1::{
    Agent, AgentState, CreateAgentRequest, DeleteAgentRequest, StateChangeSource, UpdateAgentRequest,
};

use crate::domain::validate_agent;
use crate::grpc::{PresenceApi, only_tenant};

/// The fields `UpdateAgent` may change.
const UPDATABLE_FIELDS: &[&str] = &["display_name", "tenants", "skills", "capacities", "voice_endpoint"];

impl PresenceApi {
    pub(crate) async fn create(&self, principal: Principal, request: CreateAgentRequest) -> Result<Agent, Error> {
        principal.authorize_operator()?;
        let agent_id = AgentId::parse(&request.agent_id, "agent_id")?;
        let agent = request.agent.ok_or_else(|| Error::missing_field("agent"))?;
        validate_agent(&agent)?;
        self.admit_to_tenants(&agent.tenants).await?;
        let agent = Agent {
            name: agent_name(&agent_id),
            state: 0,
            state_time: None,
            create_time: Some(timestamp_from_millis(self.presence.clock.now_millis())),
            state_reason: String::new(),
            active_contacts: Vec::new(),
            wrap_up_end_time: None,
            ..agent
        };
        self.presence.agents.create_agent(&agent_id, &agent).await?;
        tracing::info!(agent = %agent_id, tenants = ?agent.tenants, "agent created");
        let change = Change::new(
            only_tenant(&agent).as_ref(),
            "switchboard.presence.v1.PresenceService/CreateAgent",
            &agent.name,
        );
        self.access.audit(&principal, change.after("switchboard.presence.v1.Agent", &agent)).await;
        self.as_seen_by(&principal, agent, &agent_id).await
    }

    pub(crate) async fn update(&self, principal: Principal, request: UpdateAgentRequest) -> Result<Agent, Error> {
        principal.authorize_operator()?;
        let changes = request.agent.ok_or_else(|| Error::missing_field("agent"))?;
        let agent_id = parse_agent(&changes.name, "agent.name")?;
        let paths = request.update_mask.map(|mask| mask.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid_field(
                "update_mask",
                format!("must name the fields to change: {}", UPDATABLE_FIELDS.join(", ")),
            ));
        }
        if let Some(unknown) = paths.iter().find(|path| !UPDATABLE_FIELDS.contains(&path.as_str())) {
            return Err(Error::invalid_field("update_mask", format!("`{unknown}` cannot be changed")));
        }
        let before = self.presence.agents.get_agent(&agent_id).await?;
        let before = before.ok_or_else(|| Error::not_found(agent_name(&agent_id)))?;
        let mut agent = before.clone();
        for path in &paths {
            match path.as_str() {
                "display_name" => agent.display_name.clone_from(&changes.display_name),
                "tenants" => agent.tenants.clone_from(&changes.tenants),
                "skills" => agent.skills.clone_from(&changes.skills),
                "capacities" => agent.capacities.clone_from(&changes.capacities),
                _ => agent.voice_endpoint.clone_from(&changes.voice_endpoint),
            }
        }
        // The fields together must still make a valid agent (a tenant's
        // skill level needs the tenant among the agent's).
        validate_agent(&agent)?;
        let served_before: BTreeSet<&String> = before.tenants.iter().collect();
        let added: Vec<String> =
            agent.tenants.iter().filter(|tenant| !served_before.contains(tenant)).cloned().collect();
        self.admit_to_tenants(&added).await?;
        if !self.presence.agents.update_agent(&agent_id, &agent).await? {
            return Err(Error::not_found(agent_name(&agent_id)));
        }
        tracing::info!(agent = %agent_id, fields = ?paths, "agent updated");
        // Routing knows an online agent by the profile its last state event
        // carried: the same state again carries the new one.
        let live = self.presence.live.get_state(&agent_id).await?;
        if live.state != AgentState::Offline {
            self.presence.publish_state(&agent, &agent_id, &live, live.state, StateChangeSource::Supervisor).await?;
        }
        let audited_tenant = only_tenant(&agent).filter(|tenant| only_tenant(&before).as_ref() == Some(tenant));
        let change =
            Change::new(audited_tenant.as_ref(), "switchboard.presence.v1.PresenceService/UpdateAgent", &agent.name);
        let change =
            change.before("switchboard.presence.v1.Agent", &before).after("switchboard.presence.v1.Agent", &agent);
        self.access.audit(&principal, change).await;
        self.as_seen_by(&principal, agent, &agent_id).await
    }

    pub(crate) async fn delete(&self, principal: Principal, request: DeleteAgentRequest) -> Result<(), Error> {
        principal.authorize_operator()?;
        let agent_id = parse_agent(&request.name, "name")?;
        let agent = self.presence.agents.get_agent(&agent_id).await?;
        let Some(agent) = agent else {
            return Err(Error::not_found(agent_name(&agent_id)));
        };
        // Offline first, so routing stops offering work to a deleted agent.
        self.presence.change_state(&agent, &agent_id, AgentState::Offline, "", StateChangeSource::Supervisor).await?;
        self.presence.agents.delete_agent(&agent_id).await?;
        tracing::info!(agent = %agent_id, "agent deleted");
        let change = Change::new(
            only_tenant(&agent).as_ref(),
            "switchboard.presence.v1.PresenceService/DeleteAgent",
            &agent.name,
        );
        self.access.audit(&principal, change.before("switchboard.presence.v1.Agent", &agent)).await;
        Ok(())
    }

    /// Each of `tenants` (names) exists and may have one more agent under
    /// its `max_agents`.
    async fn admit_to_tenants(&self, tenants: &[String]) -> Result<(), Error> {
        for tenant in tenants {
            let tenant: TenantId = parse_tenant(tenant, "agent.tenants")?;
            self.access.require_tenant(&tenant)?;
            let max_agents = self.access.tenant_policy(&tenant).limits.max_agents;
            if let Some(needed) = count_needed(max_agents) {
                let serving = self.presence.agents.list_agents(Some(&tenant), &PageRequest::first(needed)).await?;
                admit_one_more(&tenant, "agents", serving.len(), max_agents)?;
            }
        }
        Ok(())
    }
}
