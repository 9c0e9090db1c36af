//! `switchboard.access.v1.AccessService`: tenants and API keys at runtime,
//! in the deployment's credential store. Presence serves it because it
//! knows the agents an agent key is issued for. After a change this
//! replica reads the store again at once; every other one does within
//! [`switchboard_platform::auth::CREDENTIALS_POLL_INTERVAL`].

use std::sync::Arc;

use switchboard_core::identity::normalize_display_name;
use switchboard_core::names::{agent_name, parse_agent, parse_tenant, tenant_name};
use switchboard_core::time::{millis_from_timestamp, now_millis, optional_timestamp, timestamp_from_millis};
use switchboard_core::{Error, Principal, Role, TenantId};
use switchboard_platform::audit::Change;
use switchboard_platform::auth::{AccessControl, LogName, hash_api_key};
use switchboard_platform::credentials::{
    ApiKeyId, CredentialStore, DEFAULT_ROUTING_WEIGHT, DeletionProgress, KeyHolder, KeyRecord, TenantChange,
    TenantPolicy, TenantRecord, api_key_name, new_secret, parse_api_key_name, secret_prefix, tenant_deleted,
};
use switchboard_platform::grpc::{CallContext, answer};
use switchboard_platform::pagination::{page, page_request};
use switchboard_proto::access::v1 as api;
use switchboard_proto::access::v1::access_service_server::AccessService;
use tonic::{Request, Response, Status};

use crate::store::AgentStore;
use crate::tenant_deletion::TenantInventory;
use crate::tenant_policy_api::{limits_from_api, limits_to_api, set_limit, weight_from_api, weight_to_api};

/// How long a rotated-out secret works unless the request says.
const DEFAULT_OVERLAP_MS: i64 = 60 * 60 * 1000;
/// The longest overlap a rotation may ask for.
const MAX_OVERLAP_MS: i64 = 7 * 24 * 60 * 60 * 1000;

pub struct AccessApi {
    pub(crate) access: Arc<AccessControl>,
    pub(crate) credentials: Arc<dyn CredentialStore>,
    pub(crate) agents: Arc<dyn AgentStore>,
    pub(crate) inventory: TenantInventory,
}

impl AccessApi {
    pub fn new(
        access: Arc<AccessControl>,
        credentials: Arc<dyn CredentialStore>,
        agents: Arc<dyn AgentStore>,
        inventory: TenantInventory,
    ) -> Self {
        AccessApi { access, credentials, agents, inventory }
    }

    /// Reads the store again so this replica honours the change at once.
    pub(crate) async fn changed(&self) {
        if let Err(error) = self.access.refresh().await {
            tracing::warn!(error = %error, "credentials not refreshed after a change; the poll will");
        }
    }

    pub(crate) async fn existing_tenant(&self, tenant: &TenantId) -> Result<TenantRecord, Error> {
        self.credentials.get_tenant(tenant).await?.ok_or_else(|| Error::not_found(tenant_name(tenant)))
    }

    /// The key if `principal` may manage it: the operator, or an admin of
    /// the key's tenant; anyone else gets NOT_FOUND, as if absent.
    async fn manageable_key(&self, principal: &Principal, name: &str) -> Result<KeyRecord, Error> {
        let key = parse_api_key_name(name, "name")?;
        let not_found = || Error::not_found(api_key_name(&key));
        let record = self.credentials.get_key(&key).await?.ok_or_else(not_found)?;
        let allowed = match principal.role {
            Role::OperatorAdmin => true,
            Role::TenantAdmin => principal.tenant.is_some() && principal.tenant.as_ref() == record.holder.tenant(),
            _ => false,
        };
        if allowed { Ok(record) } else { Err(not_found()) }
    }

    async fn create_tenant(
        &self,
        principal: Principal,
        request: api::CreateTenantRequest,
    ) -> Result<api::Tenant, Error> {
        principal.authorize_operator()?;
        let tenant = TenantId::parse(&request.tenant_id, "tenant_id")?;
        let display_name = normalize_display_name(
            request.tenant.as_ref().map_or("", |tenant| tenant.display_name.as_str()),
            "tenant.display_name",
        )?;
        let policy = match &request.tenant {
            Some(requested) => TenantPolicy {
                routing_weight: if requested.routing_weight == 0 {
                    DEFAULT_ROUTING_WEIGHT
                } else {
                    weight_from_api(requested.routing_weight)?
                },
                limits: limits_from_api(requested.limits.as_ref())?,
            },
            None => TenantPolicy::default(),
        };
        policy.validate("tenant")?;
        if self.access.is_configured_tenant(&tenant) {
            return Err(Error::already_exists(tenant_name(&tenant)));
        }
        let now = now_millis();
        let record = TenantRecord {
            id: tenant,
            display_name,
            suspended: false,
            policy,
            create_time_ms: now,
            update_time_ms: now,
            deletion: None,
        };
        if let Err(error) = self.credentials.create_tenant(&record).await {
            let deleted = self.credentials.get_tenant(&record.id).await?.is_some_and(|taken| taken.is_deleted());
            return Err(if deleted { error.with_reason("TENANT_DELETED") } else { error });
        }
        self.changed().await;
        tracing::info!(tenant = %record.id, key = %LogName(&principal), "tenant created");
        let created = tenant_to_api(&record);
        let change = Change::new(Some(&record.id), "switchboard.access.v1.AccessService/CreateTenant", &created.name);
        self.access.audit(&principal, change.after("switchboard.access.v1.Tenant", &created)).await;
        Ok(created)
    }

    async fn get_tenant(&self, principal: Principal, request: api::GetTenantRequest) -> Result<api::Tenant, Error> {
        let tenant = parse_tenant(&request.name, "name")?;
        principal.authorize_read(&tenant)?;
        if self.access.is_configured_tenant(&tenant) {
            let policy = self.access.tenant_policy(&tenant);
            return Ok(api::Tenant {
                name: tenant_name(&tenant),
                state: api::TenantState::Active as i32,
                routing_weight: weight_to_api(policy.routing_weight),
                limits: Some(limits_to_api(&policy.limits)),
                ..api::Tenant::default()
            });
        }
        Ok(tenant_to_api(&self.existing_tenant(&tenant).await?))
    }

    async fn list_tenants(
        &self,
        principal: Principal,
        request: api::ListTenantsRequest,
    ) -> Result<api::ListTenantsResponse, Error> {
        principal.authorize_operator()?;
        let page_request = page_request("access.ListTenants", request.page_size, &request.page_token)?;
        let after = page_request.after.as_deref().map(|after| TenantId::parse(after, "page_token")).transpose()?;
        let tenants =
            self.credentials.list_tenants(after.as_ref(), page_request.size + 1, request.show_deleted).await?;
        let (tenants, next_page_token) = page(tenants, &page_request, |tenant| tenant.id.to_string());
        Ok(api::ListTenantsResponse { tenants: tenants.iter().map(tenant_to_api).collect(), next_page_token })
    }

    async fn update_tenant(
        &self,
        principal: Principal,
        request: api::UpdateTenantRequest,
    ) -> Result<api::Tenant, Error> {
        principal.authorize_operator()?;
        let changes = request.tenant.ok_or_else(|| Error::missing_field("tenant"))?;
        let tenant = parse_tenant(&changes.name, "tenant.name")?;
        let paths = request.update_mask.map(|mask| mask.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid_field(
                "update_mask",
                "must name the fields to change: `display_name`, `routing_weight`, `limits` or `limits.<field>`",
            ));
        }
        if self.access.is_configured_tenant(&tenant) {
            return Err(configured_tenant(&tenant));
        }
        let existing = self.existing_tenant(&tenant).await?;
        let mut change = TenantChange::default();
        let mut policy = existing.policy.clone();
        let requested_limits = limits_from_api(changes.limits.as_ref())?;
        for path in &paths {
            match path.as_str() {
                "display_name" => {
                    change.display_name = Some(normalize_display_name(&changes.display_name, "tenant.display_name")?);
                }
                "routing_weight" => policy.routing_weight = weight_from_api(changes.routing_weight)?,
                "limits" => policy.limits = requested_limits.clone(),
                limit => {
                    let Some(field) = limit.strip_prefix("limits.") else {
                        return Err(Error::invalid_field("update_mask", format!("`{limit}` cannot be changed")));
                    };
                    set_limit(&mut policy.limits, &requested_limits, field)?;
                }
            }
        }
        if policy != existing.policy {
            policy.validate("tenant")?;
            change.policy = Some(policy);
        }
        self.tenant_change(&principal, &existing, &change, "switchboard.access.v1.AccessService/UpdateTenant").await
    }

    async fn set_suspended(&self, principal: Principal, name: &str, suspended: bool) -> Result<api::Tenant, Error> {
        principal.authorize_operator()?;
        let tenant = parse_tenant(name, "name")?;
        if self.access.is_configured_tenant(&tenant) {
            return Err(configured_tenant(&tenant));
        }
        let action = if suspended {
            "switchboard.access.v1.AccessService/SuspendTenant"
        } else {
            "switchboard.access.v1.AccessService/ResumeTenant"
        };
        let change = TenantChange { suspended: Some(suspended), ..TenantChange::default() };
        let existing = self.existing_tenant(&tenant).await?;
        self.tenant_change(&principal, &existing, &change, action).await
    }

    /// Applies `change` to `existing` (as just read) and audits it.
    async fn tenant_change(
        &self,
        principal: &Principal,
        existing: &TenantRecord,
        change: &TenantChange,
        action: &'static str,
    ) -> Result<api::Tenant, Error> {
        let tenant = &existing.id;
        if existing.is_deleted() {
            return Err(tenant_deleted(tenant));
        }
        let before = tenant_to_api(existing);
        let record = self.credentials.update_tenant(tenant, change, now_millis()).await?;
        self.changed().await;
        tracing::info!(tenant = %tenant, suspended = record.suspended, key = %LogName(principal), "tenant changed");
        let after = tenant_to_api(&record);
        let audited = Change::new(Some(tenant), action, &after.name)
            .before("switchboard.access.v1.Tenant", &before)
            .after("switchboard.access.v1.Tenant", &after);
        self.access.audit(principal, audited).await;
        Ok(after)
    }

    /// Records a change of the key `after` (secrets are never in a key's view).
    async fn audit_key(
        &self,
        principal: &Principal,
        action: &'static str,
        before: Option<&KeyRecord>,
        after: &KeyRecord,
    ) {
        let view = key_to_api(after);
        let mut change =
            Change::new(after.holder.tenant(), action, &view.name).after("switchboard.access.v1.ApiKey", &view);
        if let Some(before) = before {
            change = change.before("switchboard.access.v1.ApiKey", &key_to_api(before));
        }
        self.access.audit(principal, change).await;
    }

    async fn audit_records(
        &self,
        principal: Principal,
        request: api::ListAuditRecordsRequest,
    ) -> Result<api::ListAuditRecordsResponse, Error> {
        let tenant = admin_scope(&principal, &request.tenant, "read the audit")?;
        let list = format!("access.ListAuditRecords {}", request.tenant);
        let page_request = page_request(&list, request.page_size, &request.page_token)?;
        let before = page_request
            .after
            .as_deref()
            .map(|after| {
                after.parse::<i64>().map_err(|_| Error::invalid_field("page_token", "is not a token this list issued"))
            })
            .transpose()?;
        let entries = self.credentials.list_audit(tenant.as_ref(), before, page_request.size + 1).await?;
        let (entries, next_page_token) = page(entries, &page_request, |entry| entry.sequence.to_string());
        Ok(api::ListAuditRecordsResponse {
            audit_records: entries
                .into_iter()
                .map(|entry| api::AuditRecord {
                    name: format!("auditRecords/{}", entry.sequence),
                    tenant: entry.tenant.as_ref().map(tenant_name).unwrap_or_default(),
                    actor: entry.actor,
                    action: entry.action,
                    resource: entry.resource,
                    before: entry.before,
                    after: entry.after,
                    time: Some(timestamp_from_millis(entry.time_ms)),
                })
                .collect(),
            next_page_token,
        })
    }

    async fn create_key(
        &self,
        principal: Principal,
        request: api::CreateApiKeyRequest,
    ) -> Result<api::CreateApiKeyResponse, Error> {
        let wanted = request.api_key.ok_or_else(|| Error::missing_field("api_key"))?;
        let display_name = normalize_display_name(&wanted.display_name, "api_key.display_name")?;
        if display_name.is_empty() {
            return Err(Error::invalid_field("api_key.display_name", "is required: it names the key in logs"));
        }
        let holder = holder_of(&wanted)?;
        match (&principal.role, &holder) {
            (Role::OperatorAdmin, _) => {}
            (Role::TenantAdmin, holder)
                if holder.tenant().is_some() && principal.tenant.as_ref() == holder.tenant() => {}
            _ => {
                return Err(Error::permission_denied(format!(
                    "key `{}` with role {} may not create this key",
                    principal.key_name,
                    principal.role.as_str()
                )));
            }
        }
        if let Some(tenant) = holder.tenant() {
            self.access.require_tenant(tenant)?;
        }
        if let Some(agent) = holder.agent()
            && self.agents.get_agent(agent).await?.is_none()
        {
            return Err(Error::not_found(agent_name(agent)));
        }
        let now = now_millis();
        let expire_time_ms = wanted.expire_time.as_ref().map(millis_from_timestamp);
        if expire_time_ms.is_some_and(|expire| expire <= now) {
            return Err(Error::invalid_field("api_key.expire_time", "must be in the future"));
        }
        let secret = new_secret();
        let record = KeyRecord {
            id: ApiKeyId::generate(),
            display_name,
            holder,
            expire_time_ms,
            create_time_ms: now,
            revoke_time_ms: None,
            secret_sha256: hash_api_key(&secret),
            secret_prefix: secret_prefix(&secret),
            previous_secret: None,
        };
        self.credentials.create_key(&record).await?;
        self.changed().await;
        self.audit_key(&principal, "switchboard.access.v1.AccessService/CreateApiKey", None, &record).await;
        tracing::info!(api_key = %record.id, role = record.holder.role().as_str(), key = %LogName(&principal), "api key created");
        Ok(api::CreateApiKeyResponse { api_key: Some(key_to_api(&record)), secret })
    }

    async fn list_keys(
        &self,
        principal: Principal,
        request: api::ListApiKeysRequest,
    ) -> Result<api::ListApiKeysResponse, Error> {
        let tenant = admin_scope(&principal, &request.tenant, "list API keys")?;
        let list = format!("access.ListApiKeys {}", request.tenant);
        let page_request = page_request(&list, request.page_size, &request.page_token)?;
        let after = page_request.after.as_deref().map(|after| ApiKeyId::parse(after, "page_token")).transpose()?;
        let keys = self.credentials.list_keys(tenant.as_ref(), after.as_ref(), page_request.size + 1).await?;
        let (keys, next_page_token) = page(keys, &page_request, |key| key.id.to_string());
        Ok(api::ListApiKeysResponse { api_keys: keys.iter().map(key_to_api).collect(), next_page_token })
    }

    async fn revoke_key(&self, principal: Principal, request: api::RevokeApiKeyRequest) -> Result<api::ApiKey, Error> {
        let record = self.manageable_key(&principal, &request.name).await?;
        let revoked = self.credentials.revoke_key(&record.id, now_millis()).await?;
        self.changed().await;
        self.audit_key(&principal, "switchboard.access.v1.AccessService/RevokeApiKey", Some(&record), &revoked).await;
        tracing::info!(api_key = %record.id, key = %LogName(&principal), "api key revoked");
        Ok(key_to_api(&revoked))
    }

    async fn rotate_key(
        &self,
        principal: Principal,
        request: api::RotateApiKeyRequest,
    ) -> Result<api::CreateApiKeyResponse, Error> {
        let overlap_ms = match &request.previous_secret_valid_for {
            None => DEFAULT_OVERLAP_MS,
            Some(duration)
                if (0..=MAX_OVERLAP_MS / 1000).contains(&duration.seconds)
                    && (0..1_000_000_000).contains(&duration.nanos) =>
            {
                (duration.seconds * 1000 + i64::from(duration.nanos) / 1_000_000).min(MAX_OVERLAP_MS)
            }
            Some(_) => return Err(Error::invalid_field("previous_secret_valid_for", "must be 0 to 7 days")),
        };
        let record = self.manageable_key(&principal, &request.name).await?;
        let secret = new_secret();
        let rotated = self
            .credentials
            .rotate_key(&record.id, &hash_api_key(&secret), &secret_prefix(&secret), now_millis() + overlap_ms)
            .await?;
        self.changed().await;
        self.audit_key(&principal, "switchboard.access.v1.AccessService/RotateApiKey", Some(&record), &rotated).await;
        tracing::info!(api_key = %record.id, key = %LogName(&principal), "api key rotated");
        Ok(api::CreateApiKeyResponse { api_key: Some(key_to_api(&rotated)), secret })
    }
}

/// The tenant a listing of `principal` covers: the requested one (or all)
/// for the operator, always its own for a tenant admin (which may not ask
/// for another); nobody else may `what`.
fn admin_scope(principal: &Principal, requested: &str, what: &str) -> Result<Option<TenantId>, Error> {
    let requested = (!requested.is_empty()).then(|| parse_tenant(requested, "tenant")).transpose()?;
    match principal.role {
        Role::OperatorAdmin => Ok(requested),
        Role::TenantAdmin => {
            let own = principal.tenant.clone().ok_or_else(|| Error::permission_denied("key has no tenant"))?;
            if let Some(requested) = &requested {
                principal.authorize_write(requested)?;
            }
            Ok(Some(own))
        }
        _ => Err(Error::permission_denied(format!("only operator and tenant admins {what}"))),
    }
}

/// Who the requested key acts as, every field checked.
fn holder_of(wanted: &api::ApiKey) -> Result<KeyHolder, Error> {
    let tenant = || {
        if wanted.tenant.is_empty() {
            return Err(Error::invalid_field("api_key.tenant", "is required for tenant roles"));
        }
        parse_tenant(&wanted.tenant, "api_key.tenant")
    };
    let holder = match Role::parse(&wanted.role) {
        Some(Role::OperatorAdmin) => KeyHolder::Operator,
        Some(Role::TenantAdmin) => KeyHolder::TenantAdmin(tenant()?),
        Some(Role::TenantReader) => KeyHolder::TenantReader(tenant()?),
        Some(Role::Integration) => KeyHolder::Integration(tenant()?),
        Some(Role::Supervisor) => KeyHolder::Supervisor(tenant()?),
        Some(Role::Agent) => {
            if wanted.agent.is_empty() {
                return Err(Error::invalid_field("api_key.agent", "is required for the agent role"));
            }
            KeyHolder::Agent(parse_agent(&wanted.agent, "api_key.agent")?)
        }
        Some(Role::Service) | None => {
            return Err(Error::invalid_field(
                "api_key.role",
                "must be operator_admin, tenant_admin, tenant_reader, integration, supervisor or agent",
            ));
        }
    };
    let stray = match holder {
        KeyHolder::Operator => (!wanted.tenant.is_empty())
            .then_some("api_key.tenant")
            .or((!wanted.agent.is_empty()).then_some("api_key.agent")),
        KeyHolder::TenantAdmin(_)
        | KeyHolder::TenantReader(_)
        | KeyHolder::Integration(_)
        | KeyHolder::Supervisor(_) => (!wanted.agent.is_empty()).then_some("api_key.agent"),
        KeyHolder::Agent(_) => (!wanted.tenant.is_empty()).then_some("api_key.tenant"),
    };
    if let Some(field) = stray {
        return Err(Error::invalid_field(field, format!("must be empty for role {}", wanted.role)));
    }
    Ok(holder)
}

pub(crate) fn tenant_to_api(record: &TenantRecord) -> api::Tenant {
    let state = match (&record.deletion, record.suspended) {
        (Some(deletion), _) => match deletion.progress {
            DeletionProgress::Erasing { .. } => api::TenantState::Deleting,
            DeletionProgress::Deleted { .. } => api::TenantState::Deleted,
        },
        (None, true) => api::TenantState::Suspended,
        (None, false) => api::TenantState::Active,
    };
    let deletion = record.deletion.as_ref();
    api::Tenant {
        name: tenant_name(&record.id),
        display_name: record.display_name.clone(),
        state: state as i32,
        create_time: Some(timestamp_from_millis(record.create_time_ms)),
        update_time: Some(timestamp_from_millis(record.update_time_ms)),
        routing_weight: weight_to_api(record.policy.routing_weight),
        limits: Some(limits_to_api(&record.policy.limits)),
        delete_request_time: deletion.map(|deletion| timestamp_from_millis(deletion.request_time_ms)),
        delete_time: deletion.and_then(|deletion| match deletion.progress {
            DeletionProgress::Deleted { delete_time_ms } => Some(timestamp_from_millis(delete_time_ms)),
            DeletionProgress::Erasing { .. } => None,
        }),
        erasure_pending: deletion
            .map(|deletion| deletion.pending().into_iter().map(str::to_owned).collect())
            .unwrap_or_default(),
    }
}

/// The refusal to change a tenant of the configuration file through the API.
pub(crate) fn configured_tenant(tenant: &TenantId) -> Error {
    Error::failed_precondition(format!("tenant `{tenant}` is declared in the configuration (its file, or the tenants `switchboard dev` declares): change it there"))
        .with_reason("CONFIGURED_TENANT")
        .with_resource(tenant_name(tenant))
}

fn key_to_api(record: &KeyRecord) -> api::ApiKey {
    api::ApiKey {
        name: api_key_name(&record.id),
        display_name: record.display_name.clone(),
        role: record.holder.role().as_str().to_owned(),
        tenant: record.holder.tenant().map(tenant_name).unwrap_or_default(),
        agent: record.holder.agent().map(agent_name).unwrap_or_default(),
        expire_time: optional_timestamp(record.expire_time_ms.unwrap_or(0)),
        create_time: Some(timestamp_from_millis(record.create_time_ms)),
        revoke_time: optional_timestamp(record.revoke_time_ms.unwrap_or(0)),
        secret_prefix: record.secret_prefix.clone(),
        previous_secret_expire_time: record
            .previous_secret
            .as_ref()
            .filter(|previous| previous.expire_time_ms > now_millis())
            .map(|previous| timestamp_from_millis(previous.expire_time_ms)),
    }
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn create_tenant(&self, request: Request<api::CreateTenantRequest>) -> Result<Response<api::Tenant>, Status> {
        answer(request, |principal, body| self.create_tenant(principal, body)).await
    }

    async fn get_tenant(&self, request: Request<api::GetTenantRequest>) -> Result<Response<api::Tenant>, Status> {
        answer(request, |principal, body| self.get_tenant(principal, body)).await
    }

    async fn list_tenants(
        &self,
        request: Request<api::ListTenantsRequest>,
    ) -> Result<Response<api::ListTenantsResponse>, Status> {
        answer(request, |principal, body| self.list_tenants(principal, body)).await
    }

    async fn update_tenant(&self, request: Request<api::UpdateTenantRequest>) -> Result<Response<api::Tenant>, Status> {
        answer(request, |principal, body| self.update_tenant(principal, body)).await
    }

    async fn suspend_tenant(
        &self,
        request: Request<api::SuspendTenantRequest>,
    ) -> Result<Response<api::Tenant>, Status> {
        answer(request, |principal, body| async move { self.set_suspended(principal, &body.name, true).await }).await
    }

    async fn resume_tenant(&self, request: Request<api::ResumeTenantRequest>) -> Result<Response<api::Tenant>, Status> {
        answer(request, |principal, body| async move { self.set_suspended(principal, &body.name, false).await }).await
    }

    async fn delete_tenant(&self, request: Request<api::DeleteTenantRequest>) -> Result<Response<api::Tenant>, Status> {
        // The inventory is asked as the caller, never as a stronger identity.
        let call = CallContext::from_metadata(request.metadata());
        answer(request, |principal, body| self.delete_tenant(principal, call, body)).await
    }

    async fn create_api_key(
        &self,
        request: Request<api::CreateApiKeyRequest>,
    ) -> Result<Response<api::CreateApiKeyResponse>, Status> {
        answer(request, |principal, body| self.create_key(principal, body)).await
    }

    async fn list_api_keys(
        &self,
        request: Request<api::ListApiKeysRequest>,
    ) -> Result<Response<api::ListApiKeysResponse>, Status> {
        answer(request, |principal, body| self.list_keys(principal, body)).await
    }

    async fn get_api_key(&self, request: Request<api::GetApiKeyRequest>) -> Result<Response<api::ApiKey>, Status> {
        answer(
            request,
            |principal, body| async move { Ok(key_to_api(&self.manageable_key(&principal, &body.name).await?)) },
        )
        .await
    }

    async fn revoke_api_key(
        &self,
        request: Request<api::RevokeApiKeyRequest>,
    ) -> Result<Response<api::ApiKey>, Status> {
        answer(request, |principal, body| self.revoke_key(principal, body)).await
    }

    async fn list_audit_records(
        &self,
        request: Request<api::ListAuditRecordsRequest>,
    ) -> Result<Response<api::ListAuditRecordsResponse>, Status> {
        answer(request, |principal, body| self.audit_records(principal, body)).await
    }

    async fn rotate_api_key(
        &self,
        request: Request<api::RotateApiKeyRequest>,
    ) -> Result<Response<api::CreateApiKeyResponse>, Status> {
        answer(request, |principal, body| self.rotate_key(principal, body)).await
    }
}
