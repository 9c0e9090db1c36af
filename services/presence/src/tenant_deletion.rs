//! Deleting a tenant: `AccessService.DeleteTenant`, which checks what the
//! tenant still holds across the services and marks it deleted, and what
//! presence erases of it afterwards ([`PresenceEraser`]). The other
//! services erase their own parts (see the platform's `service::erasure`).

use std::sync::Arc;

use async_trait::async_trait;
use switchboard_core::names::{agent_name, parse_tenant, tenant_name};
use switchboard_core::time::now_millis;
use switchboard_core::{AgentId, Error, Principal, TenantId};
use switchboard_platform::audit::Change;
use switchboard_platform::auth::LogName;
use switchboard_platform::credentials::{CredentialStore, KeyHolder, KeyRecord};
use switchboard_platform::grpc::CallContext;
use switchboard_platform::pagination::PageRequest;
use switchboard_platform::service::{Erased, TenantEraser};
use switchboard_proto::access::v1 as api;
use switchboard_proto::crm::v1::ListCustomersRequest;
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::ingestion::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{ListChannelsRequest, ListContactsRequest};
use switchboard_proto::presence::v1::{Agent, AgentState, StateChangeSource};
use switchboard_proto::routing::v1::ListQueuesRequest;
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use tonic::transport::Channel;

use crate::access_api::{AccessApi, configured_tenant, tenant_to_api};
use crate::sessions::PresenceCore;

/// The audit action of a deletion.
const DELETE_TENANT_ACTION: &str = "switchboard.access.v1.AccessService/DeleteTenant";

/// The services that hold the rest of a tenant's data, asked (as the
/// caller) whether any is left before an unforced deletion.
#[derive(Clone)]
pub struct TenantInventory {
    pub routing: RoutingServiceClient<Channel>,
    pub contacts: IngestionServiceClient<Channel>,
    pub channels: ChannelServiceClient<Channel>,
    pub crm: CrmServiceClient<Channel>,
}

impl TenantInventory {
    /// The kinds of data the other services hold of `tenant` (`queues`,
    /// `channels`, `contacts`, `customers`), each asked for one item.
    async fn kinds_held(&self, call: &CallContext, tenant: &TenantId) -> Result<Vec<&'static str>, Error> {
        let parent = tenant_name(tenant);
        let (mut routing, mut channels, mut contacts, mut crm) =
            (self.routing.clone(), self.channels.clone(), self.contacts.clone(), self.crm.clone());
        let (queues, channels, contacts, customers) = tokio::try_join!(
            routing.list_queues(call.request(ListQueuesRequest {
                parent: parent.clone(),
                page_size: 1,
                ..Default::default()
            })),
            channels.list_channels(call.request(ListChannelsRequest {
                parent: parent.clone(),
                page_size: 1,
                ..Default::default()
            })),
            contacts.list_contacts(call.request(ListContactsRequest {
                parent: parent.clone(),
                page_size: 1,
                ..Default::default()
            })),
            crm.list_customers(call.request(ListCustomersRequest {
                parent: parent.clone(),
                page_size: 1,
                ..Default::default()
            })),
        )
        .map_err(|status| {
            Error::unavailable("could not tell whether the tenant still has data; retry, or delete with `force`")
                .with_reason("TENANT_INVENTORY_UNAVAILABLE")
                .with_detail(status.to_string())
        })?;
        let held = [
            ("queues", !queues.into_inner().queues.is_empty()),
            ("channels", !channels.into_inner().channels.is_empty()),
            ("contacts", !contacts.into_inner().contacts.is_empty()),
            ("customers", !customers.into_inner().customers.is_empty()),
        ];
        Ok(held.into_iter().filter(|(_, held)| *held).map(|(kind, _)| kind).collect())
    }
}

impl AccessApi {
    pub(crate) async fn delete_tenant(
        &self,
        principal: Principal,
        call: CallContext,
        request: api::DeleteTenantRequest,
    ) -> Result<api::Tenant, Error> {
        principal.authorize_operator()?;
        let tenant = parse_tenant(&request.name, "name")?;
        if self.access.is_configured_tenant(&tenant) {
            return Err(configured_tenant(&tenant));
        }
        let existing = self.existing_tenant(&tenant).await?;
        if existing.is_deleted() {
            return Ok(tenant_to_api(&existing));
        }
        if !request.force {
            let mut held = self.kinds_held_here(&tenant).await?;
            held.extend(self.inventory.kinds_held(&call, &tenant).await?);
            if !held.is_empty() {
                return Err(Error::failed_precondition(format!(
                    "tenant `{tenant}` still has {}: delete them first, or delete with `force` to erase them",
                    held.join(", ")
                ))
                .with_reason("TENANT_HAS_DATA")
                .with_resource(tenant_name(&tenant)));
            }
        }
        let deleting = self.credentials.begin_deletion(&tenant, now_millis()).await?;
        self.changed().await;
        tracing::warn!(tenant = %tenant, forced = request.force, key = %LogName(&principal), "tenant deletion begun");
        let after = tenant_to_api(&deleting);
        let change = Change::new(Some(&tenant), DELETE_TENANT_ACTION, &after.name)
            .before("switchboard.access.v1.Tenant", &tenant_to_api(&existing))
            .after("switchboard.access.v1.Tenant", &after);
        self.access.audit(&principal, change).await;
        Ok(after)
    }

    /// What the access store and presence hold of `tenant`: agents serving
    /// it and API keys that still work.
    async fn kinds_held_here(&self, tenant: &TenantId) -> Result<Vec<&'static str>, Error> {
        let mut held = Vec::new();
        if !self.agents.list_agents(Some(tenant), &PageRequest::first(1)).await?.is_empty() {
            held.push("agents");
        }
        let keys = self.credentials.list_keys(Some(tenant), None, usize::MAX).await?;
        let now = now_millis();
        let working = |key: &KeyRecord| key.revoke_time_ms.is_none() && key.expire_time_ms.is_none_or(|at| at > now);
        if keys.iter().any(working) {
            held.push("api keys");
        }
        Ok(held)
    }
}

/// What presence erases of a deleted tenant: agents serving only it are
/// taken offline and deleted (their keys revoked), agents shared with other
/// tenants stop serving it; the contacts of it agents hold or were offered;
/// and its audit records but those of the operator's changes to the tenant
/// itself (its creation, updates, suspension and deletion).
pub struct PresenceEraser {
    pub presence: Arc<PresenceCore>,
    pub credentials: Arc<dyn CredentialStore>,
}

/// Agents handled per page while erasing.
const ERASE_PAGE: usize = 200;

#[async_trait]
impl TenantEraser for PresenceEraser {
    async fn erase(&self, tenant: &TenantId) -> Result<Erased, Error> {
        let served = tenant_name(tenant);
        let keys = self.credentials.snapshot().await?.keys;
        loop {
            // Each agent handled stops serving the tenant, so the first
            // page is always the next one.
            let agents = self.presence.agents.list_agents(Some(tenant), &PageRequest::first(ERASE_PAGE)).await?;
            if agents.is_empty() {
                break;
            }
            for mut agent in agents {
                let agent_id = switchboard_core::names::parse_agent(&agent.name, "agent.name")?;
                let before = agent.clone();
                agent.tenants.retain(|serving| *serving != served);
                agent.skills.retain(|skill| skill.tenant != served);
                if agent.tenants.is_empty() {
                    self.remove_agent(&before, &agent_id, &keys).await?;
                    continue;
                }
                self.presence.agents.update_agent(&agent_id, &agent).await?;
                // Routing keeps the profile an agent's last state event
                // carried, offline agents' too: the same state again
                // carries the one without the tenant.
                let live = self.presence.live.get_state(&agent_id).await?;
                self.presence
                    .publish_state(&agent, &agent_id, &live, live.state, StateChangeSource::Supervisor)
                    .await?;
                tracing::info!(tenant = %tenant, agent = %agent_id, "shared agent no longer serves the deleted tenant");
            }
        }
        self.presence.live.erase_tenant(tenant).await?;
        self.credentials.erase_audit(tenant).await?;
        Ok(Erased::Done)
    }
}

impl PresenceEraser {
    /// Takes an agent of only the deleted tenant offline (routing stops
    /// offering it work), revokes its keys and deletes it.
    async fn remove_agent(&self, agent: &Agent, agent_id: &AgentId, keys: &[KeyRecord]) -> Result<(), Error> {
        if self.presence.live.get_state(agent_id).await?.state != AgentState::Offline {
            self.presence.change_state(agent, agent_id, AgentState::Offline, "", StateChangeSource::Supervisor).await?;
        }
        let now = now_millis();
        let agent_keys = keys.iter().filter(|key| key.holder == KeyHolder::Agent(agent_id.clone()));
        for key in agent_keys.filter(|key| key.revoke_time_ms.is_none()) {
            self.credentials.revoke_key(&key.id, now).await?;
        }
        self.presence.agents.delete_agent(agent_id).await?;
        tracing::info!(agent = %agent_name(agent_id), "agent of a deleted tenant deleted");
        Ok(())
    }
}
