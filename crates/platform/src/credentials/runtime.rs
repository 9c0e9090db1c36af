//! What a replica knows of the tenants and keys made through the API: the
//! last [`Snapshot`] it read, indexed for authentication.

use std::collections::HashMap;

use switchboard_core::names::tenant_name;
use switchboard_core::{Error, Principal, TenantId};

use super::{DeletionProgress, Snapshot, TenantPolicy, TenantRecord, api_key_name, tenant_deleted};

/// Whether work is done for a runtime tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Active,
    Suspended,
    /// Being erased or erased: treated as absent everywhere.
    Deleted,
}

impl Standing {
    fn of(tenant: &TenantRecord) -> Standing {
        match (&tenant.deletion, tenant.suspended) {
            (Some(_), _) => Standing::Deleted,
            (None, true) => Standing::Suspended,
            (None, false) => Standing::Active,
        }
    }
}

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
    standing_by_tenant: HashMap<TenantId, Standing>,
    /// Tenants being deleted, when it was asked for, and the services that
    /// erased their part.
    erasing: Vec<(TenantId, i64, std::collections::BTreeSet<String>)>,
    policy_by_tenant: HashMap<TenantId, TenantPolicy>,
    keys_by_sha256: HashMap<String, RuntimeKey>,
}

impl Default for RuntimeAccess {
    /// Nothing known yet; any revision is news.
    fn default() -> RuntimeAccess {
        RuntimeAccess {
            revision: -1,
            standing_by_tenant: HashMap::new(),
            erasing: Vec::new(),
            policy_by_tenant: HashMap::new(),
            keys_by_sha256: HashMap::new(),
        }
    }
}

impl RuntimeAccess {
    pub fn from_snapshot(snapshot: &Snapshot) -> RuntimeAccess {
        let standing_by_tenant =
            snapshot.tenants.iter().map(|tenant| (tenant.id.clone(), Standing::of(tenant))).collect();
        let erasing = snapshot
            .tenants
            .iter()
            .filter_map(|tenant| {
                let deletion = tenant.deletion.as_ref()?;
                match &deletion.progress {
                    DeletionProgress::Erasing { erased_by } => {
                        Some((tenant.id.clone(), deletion.request_time_ms, erased_by.clone()))
                    }
                    DeletionProgress::Deleted { .. } => None,
                }
            })
            .collect();
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
        RuntimeAccess { revision: snapshot.revision, standing_by_tenant, erasing, policy_by_tenant, keys_by_sha256 }
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

    /// Whether `tenant` was made through the API (deleted ones too).
    pub fn knows(&self, tenant: &TenantId) -> bool {
        self.standing_by_tenant.contains_key(tenant)
    }

    /// Ok for an active runtime tenant; FAILED_PRECONDITION
    /// `TENANT_SUSPENDED` for a suspended one, NOT_FOUND for an unknown or
    /// deleted one (reason `TENANT_DELETED`).
    pub fn require_active(&self, tenant: &TenantId) -> Result<(), Error> {
        match self.standing_by_tenant.get(tenant) {
            Some(Standing::Active) => Ok(()),
            Some(Standing::Suspended) => Err(tenant_suspended(tenant)),
            Some(Standing::Deleted) => Err(tenant_deleted(tenant)),
            None => Err(Error::not_found(tenant_name(tenant))),
        }
    }

    /// Ok for a runtime tenant that is not deleted, suspended or not:
    /// what reading a tenant's data needs (a suspended tenant's own keys
    /// already fail, so only the operator reads it).
    pub fn require_present(&self, tenant: &TenantId) -> Result<(), Error> {
        match self.standing_by_tenant.get(tenant) {
            Some(Standing::Active | Standing::Suspended) => Ok(()),
            Some(Standing::Deleted) => Err(tenant_deleted(tenant)),
            None => Err(Error::not_found(tenant_name(tenant))),
        }
    }

    /// Whether `tenant`'s contacts are routed: any tenant but a suspended
    /// or deleted one (a tenant unknown here may be the configuration
    /// file's).
    pub fn routes(&self, tenant: &TenantId) -> bool {
        !matches!(self.standing_by_tenant.get(tenant), Some(Standing::Suspended | Standing::Deleted))
    }

    /// Whether `tenant` is deleted or being deleted: consumers drop its
    /// records, so a late or replayed one does not bring its data back.
    pub fn is_deleted(&self, tenant: &TenantId) -> bool {
        self.standing_by_tenant.get(tenant) == Some(&Standing::Deleted)
    }

    /// The tenants being deleted that `service` has not erased yet, each
    /// with when its deletion was asked for.
    pub fn awaiting_erasure_by(&self, service: &str) -> Vec<(TenantId, i64)> {
        self.erasing
            .iter()
            .filter(|(_, _, erased_by)| !erased_by.contains(service))
            .map(|(tenant, request_time_ms, _)| (tenant.clone(), *request_time_ms))
            .collect()
    }
}

/// The refusal to act for or on a suspended tenant.
pub fn tenant_suspended(tenant: &TenantId) -> Error {
    Error::failed_precondition(format!("tenant `{tenant}` is suspended"))
        .with_reason("TENANT_SUSPENDED")
        .with_resource(tenant_name(tenant))
}
