//! What a replica knows of the tenants and keys made through the API: the
//! last [`Snapshot`] it read, indexed for authentication.

use std::collections::HashMap;

use switchboard_core::names::tenant_name;
use switchboard_core::{Error, Principal, TenantId};

use super::{Snapshot, TenantPolicy, api_key_name};

/// A principal a secret's digest stands for, until `not_after_ms` if set.
#[derive(Debug, Clone)]
struct RuntimeKey {
    principal: Principal,
    not_after_ms: Option<i64>,
}

/// The runtime tenants and the working secrets, as of `revision`.
#[derive(Debug)]
pub struct RuntimeAccess {
    pub revision: i64,
    suspended_by_tenant: HashMap<TenantId, bool>,
    policy_by_tenant: HashMap<TenantId, TenantPolicy>,
    keys_by_sha256: HashMap<String, RuntimeKey>,
}

impl Default for RuntimeAccess {
    /// Nothing known yet; any revision is news.
    fn default() -> RuntimeAccess {
        RuntimeAccess {
            revision: -1,
            suspended_by_tenant: HashMap::new(),
            policy_by_tenant: HashMap::new(),
            keys_by_sha256: HashMap::new(),
        }
    }
}

impl RuntimeAccess {
    pub fn from_snapshot(snapshot: &Snapshot) -> RuntimeAccess {
        let suspended_by_tenant = snapshot.tenants.iter().map(|tenant| (tenant.id.clone(), tenant.suspended)).collect();
        let policy_by_tenant =
            snapshot.tenants.iter().map(|tenant| (tenant.id.clone(), tenant.policy.clone())).collect();
        let mut keys_by_sha256 = HashMap::new();
        for key in snapshot.keys.iter().filter(|key| key.revoke_time_ms.is_none()) {
            let principal = Principal {
                key_name: api_key_name(&key.id),
                role: key.holder.role(),
                tenant: key.holder.tenant().cloned(),
                agent: key.holder.agent().cloned(),
                expires_at_ms: None,
            };
            keys_by_sha256.insert(
                key.secret_sha256.clone(),
                RuntimeKey { principal: principal.clone(), not_after_ms: key.expire_time_ms },
            );
            if let Some(previous) = &key.previous_secret {
                let not_after_ms =
                    key.expire_time_ms.map_or(previous.expire_time_ms, |expire| expire.min(previous.expire_time_ms));
                keys_by_sha256
                    .insert(previous.sha256.clone(), RuntimeKey { principal, not_after_ms: Some(not_after_ms) });
            }
        }
        RuntimeAccess { revision: snapshot.revision, suspended_by_tenant, policy_by_tenant, keys_by_sha256 }
    }

    /// The principal of the secret with digest `sha256` at `now_ms`:
    /// `None` when no working key has it; FAILED_PRECONDITION
    /// `TENANT_SUSPENDED` for a key of a suspended tenant.
    pub fn principal(&self, sha256: &str, now_ms: i64) -> Result<Option<Principal>, Error> {
        let Some(key) = self.keys_by_sha256.get(sha256) else { return Ok(None) };
        if key.not_after_ms.is_some_and(|not_after| now_ms >= not_after) {
            return Ok(None);
        }
        if let Some(tenant) = &key.principal.tenant {
            self.require_active(tenant)?;
        }
        Ok(Some(key.principal.clone()))
    }

    /// The operator's policy for a tenant made through the API.
    pub fn policy(&self, tenant: &TenantId) -> Option<&TenantPolicy> {
        self.policy_by_tenant.get(tenant)
    }

    /// Whether `tenant` was made through the API.
    pub fn knows(&self, tenant: &TenantId) -> bool {
        self.suspended_by_tenant.contains_key(tenant)
    }

    /// Ok for an active runtime tenant; FAILED_PRECONDITION
    /// `TENANT_SUSPENDED` for a suspended one, NOT_FOUND for an unknown one.
    pub fn require_active(&self, tenant: &TenantId) -> Result<(), Error> {
        match self.suspended_by_tenant.get(tenant) {
            Some(false) => Ok(()),
            Some(true) => Err(tenant_suspended(tenant)),
            None => Err(Error::not_found(tenant_name(tenant))),
        }
    }
}

/// The refusal to act for or on a suspended tenant.
pub fn tenant_suspended(tenant: &TenantId) -> Error {
    Error::failed_precondition(format!("tenant `{tenant}` is suspended"))
        .with_reason("TENANT_SUSPENDED")
        .with_resource(tenant_name(tenant))
}
