//! Supervisor APIs of `PresenceService`: forcing an agent's state and
//! watching state changes, with the same visibility rules as reading agents.

use std::sync::Arc;

use switchboard_core::names::{agent_name, parse_agent, tenant_name};
use switchboard_core::{Error, ErrorCode, Principal, Role, TenantId};
use switchboard_platform::audit::Change;
use switchboard_platform::auth::LogName;
use switchboard_platform::auth::{credential_expired, credential_expired_error, credential_withdrawn_error};
use switchboard_platform::status::to_status;
use switchboard_proto::presence::v1::{
    Agent, AgentStateChanged, SetAgentStateRequest, StateChangeSource, WatchAgentStatesRequest,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::domain::forced_state;
use crate::grpc::PresenceApi;

const WATCH_BUFFER: usize = 256;

impl PresenceApi {
    /// `SetAgentState`: the operator admin for any agent, a tenant admin or
    /// supervisor for an agent dedicated to its tenant (a shared agent's state is the
    /// operator's call: it affects every tenant it serves). An agent the
    /// caller may not see is NOT_FOUND.
    pub(crate) async fn force_state(
        &self,
        principal: Principal,
        request: SetAgentStateRequest,
    ) -> Result<Agent, Error> {
        let agent_id = parse_agent(&request.name, "name")?;
        let state = forced_state(request.state, &request.reason)?;
        let seen = self.visible_agent(&principal, &agent_id).await?;
        let agent =
            self.presence.agents.get_agent(&agent_id).await?.ok_or_else(|| Error::not_found(agent_name(&agent_id)))?;
        let allowed = match principal.role {
            Role::OperatorAdmin => true,
            Role::TenantAdmin | Role::Supervisor => {
                principal.tenant.as_ref().is_some_and(|tenant| agent.tenants == [tenant_name(tenant)])
            }
            Role::TenantReader | Role::Agent | Role::Integration | Role::Service => false,
        };
        if !allowed {
            return Err(Error::permission_denied(format!(
                "key `{}` may not set the state of {}: operator admins may, and tenant admins and supervisors for agents dedicated to their tenant",
                principal.key_name, seen.name
            )));
        }
        self.presence.change_state(&agent, &agent_id, state, &request.reason, StateChangeSource::Supervisor).await?;
        tracing::info!(agent = %agent_id, state = state.as_str_name(), key = %LogName(&principal), "agent state forced");
        let tenant = principal.tenant.clone().or_else(|| crate::grpc::only_tenant(&agent));
        let after = self.as_seen_by(&principal, agent, &agent_id).await?;
        let change = Change::new(tenant.as_ref(), "switchboard.presence.v1.PresenceService/SetAgentState", &after.name)
            .before("switchboard.presence.v1.Agent", &seen)
            .after("switchboard.presence.v1.Agent", &after);
        self.access.audit(&principal, change).await;
        Ok(after)
    }

    /// `WatchAgentStates`: this replica's stream of state changes, limited
    /// to the tenant the caller may see (its own, for a tenant principal),
    /// shared agents redacted as in reads.
    pub(crate) async fn watch(
        &self,
        principal: Principal,
        request: WatchAgentStatesRequest,
    ) -> Result<ReceiverStream<Result<AgentStateChanged, Status>>, Error> {
        let tenant = self.tenant_filter(&principal, &request.tenant)?;
        let slot = self.access.open_stream(&principal)?;
        let mut changes = self.presence.watch_states();
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        let shutdown = self.shutdown.clone();
        let access = Arc::clone(&self.access);
        tracing::info!(key = %LogName(&principal), tenant = ?tenant.as_ref().map(TenantId::as_str), "agent state watch started");
        tokio::spawn(async move {
            // The key's slot is held while the stream lasts.
            let _slot = slot;
            loop {
                let change = tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = sender.closed() => break,
                    () = credential_expired(&principal) => {
                        let _ = sender.send(Err(to_status(&credential_expired_error()))).await;
                        break;
                    }
                    () = access.credential_withdrawn(&principal) => {
                        let _ = sender.send(Err(to_status(&credential_withdrawn_error()))).await;
                        break;
                    }
                    change = changes.recv() => change,
                };
                let outcome = match change {
                    Ok(change) => match visible_change(&principal, tenant.as_ref(), change) {
                        Some(change) => sender.send(Ok(change)).await,
                        None => continue,
                    },
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        // The watcher cannot know what it missed: it must
                        // list the agents again and watch anew.
                        let error = Error::new(
                            ErrorCode::ResourceExhausted,
                            format!("the watcher fell {missed} changes behind; list agents and watch again"),
                        );
                        let _ = sender.send(Err(to_status(&error))).await;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if outcome.is_err() {
                    break;
                }
            }
        });
        Ok(ReceiverStream::new(receiver))
    }
}

/// The change as `principal` may see it, if at all: only agents serving
/// `tenant` (when given), and a tenant principal never learns which other
/// tenants a shared agent serves.
fn visible_change(
    principal: &Principal,
    tenant: Option<&TenantId>,
    mut change: AgentStateChanged,
) -> Option<AgentStateChanged> {
    if let Some(tenant) = tenant
        && !change.tenants.contains(&tenant_name(tenant))
    {
        return None;
    }
    if let Some(own) = &principal.tenant {
        let own = tenant_name(own);
        change.tenants.retain(|served| *served == own);
        change.skills.retain(|skill| skill.tenant.is_empty() || skill.tenant == own);
    }
    Some(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, tenant: Option<&str>) -> Principal {
        Principal {
            key_name: "k".to_owned(),
            role,
            tenant: tenant.map(|tenant| TenantId::parse(tenant, "t").expect("tenant")),
            agent: None,
            expires_at_ms: None,
        }
    }

    #[test]
    fn watchers_see_only_their_tenants_agents_and_never_the_other_tenants_served() {
        let shared = AgentStateChanged {
            agent: "agents/bob".to_owned(),
            tenants: vec!["tenants/acme".to_owned(), "tenants/globex".to_owned()],
            skills: vec![
                switchboard_proto::common::v1::Skill { name: "billing".to_owned(), level: 2, tenant: String::new() },
                switchboard_proto::common::v1::Skill {
                    name: "billing".to_owned(),
                    level: 5,
                    tenant: "tenants/globex".to_owned(),
                },
            ],
            ..AgentStateChanged::default()
        };
        let dedicated = AgentStateChanged { tenants: vec!["tenants/globex".to_owned()], ..shared.clone() };
        let acme_admin = principal(Role::TenantAdmin, Some("acme"));
        let acme = TenantId::parse("acme", "t").expect("tenant");
        let seen = visible_change(&acme_admin, Some(&acme), shared.clone()).expect("serves acme");
        assert_eq!(seen.tenants, vec!["tenants/acme".to_owned()]);
        assert_eq!(seen.skills.len(), 1, "globex's own level is not shown to acme");
        assert!(visible_change(&acme_admin, Some(&acme), dedicated.clone()).is_none());
        let operator = principal(Role::OperatorAdmin, None);
        assert_eq!(visible_change(&operator, None, shared.clone()).expect("all").tenants.len(), 2);
        assert!(visible_change(&operator, Some(&acme), dedicated).is_none(), "the operator's filter applies");
    }
}
