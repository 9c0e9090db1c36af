//! What a replica knows of the tenants and keys made through the API: the
//! last [`Snapshot`] it read, indexed for authentication.

use std::collections::HashMap;

use switchboard_core::names::tenant_name;
use switchboard_core::{Error, Principal, TenantId};

use super::{DeletionProgress, Snapshot, TenantPolicy, TenantRecord, api_key_name, tenant_deleted};

/// A tenant deleted or being deleted.
#[derive(Debug)]
struct Deletion {
    tenant: TenantId,
    request_time_ms: i64,
    /// The services that erased their part; `None` once all did.
    erased_by: Option<std::collections::BTreeSet<String>>,
}

/// A deletion as one service stands with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingErasure {
    pub tenant: TenantId,
    pub request_time_ms: i64,
    /// This service has erased its part and recorded it.
    pub erased_here: bool,
}

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
    /// Tenants deleted or being deleted.
    deletions: Vec<Deletion>,
    policy_by_tenant: HashMap<TenantId, TenantPolicy>,
    keys_by_sha256: HashMap<String, RuntimeKey>,
    /// `apiKeys/{key}` of every key not revoked, until when it works.
    expiry_by_key_name: HashMap<String, Option<i64>>,
}

impl Default for RuntimeAccess {
    /// Nothing known yet; any revision is news.
    fn default() -> RuntimeAccess {
        RuntimeAccess {
            revision: -1,
            standing_by_tenant: HashMap::new(),
            deletions: Vec::new(),
            policy_by_tenant: HashMap::new(),
            keys_by_sha256: HashMap::new(),
            expiry_by_key_name: HashMap::new(),
        }
    }
}

impl RuntimeAccess {
    pub fn from_snapshot(snapshot: &Snapshot) -> RuntimeAccess {
        let standing_by_tenant =
            snapshot.tenants.iter().map(|tenant| (tenant.id.clone(), Standing::of(tenant))).collect();
        let deletions = snapshot
            .tenants
            .iter()
            .filter_map(|tenant| {
                let deletion = tenant.deletion.as_ref()?;
                let erased_by = match &deletion.progress {
                    DeletionProgress::Erasing { erased_by } => Some(erased_by.clone()),
                    DeletionProgress::Deleted { .. } => None,
                };
                Some(Deletion { tenant: tenant.id.clone(), request_time_ms: deletion.request_time_ms, erased_by })
            })
            .collect();
        let policy_by_tenant =
            snapshot.tenants.iter().map(|tenant| (tenant.id.clone(), tenant.policy.clone())).collect();
        let mut keys_by_sha256 = HashMap::new();
        let mut expiry_by_key_name = HashMap::new();
        for key in snapshot.keys.iter().filter(|key| key.revoke_time_ms.is_none()) {
            expiry_by_key_name.insert(api_key_name(&key.id), key.expire_time_ms);
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
        RuntimeAccess {
            revision: snapshot.revision,
            standing_by_tenant,
            deletions,
            policy_by_tenant,
            keys_by_sha256,
            expiry_by_key_name,
        }
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

    /// Whether a credential `principal` signed in with still stands at
    /// `now_ms`: a key made through the API is not revoked or expired, and
    /// a tenant made through the API is active.
    pub fn still_stands(&self, principal: &Principal, now_ms: i64) -> bool {
        let key_stands = !principal.key_name.starts_with("apiKeys/")
            || self
                .expiry_by_key_name
                .get(&principal.key_name)
                .is_some_and(|expiry| expiry.is_none_or(|at_ms| now_ms < at_ms));
        let tenant_stands = principal
            .tenant
            .as_ref()
            .is_none_or(|tenant| !self.standing_by_tenant.contains_key(tenant) || self.require_active(tenant).is_ok());
        key_stands && tenant_stands
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

    /// The active tenants made through the API.
    pub fn active_tenants(&self) -> impl Iterator<Item = TenantId> + '_ {
        self.standing_by_tenant
            .iter()
            .filter(|(_, standing)| **standing == Standing::Active)
            .map(|(tenant, _)| tenant.clone())
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

    /// The tenants deleted or being deleted, as `service` stands with them.
    pub fn deletions_for(&self, service: &str) -> Vec<PendingErasure> {
        self.deletions
            .iter()
            .map(|deletion| PendingErasure {
                tenant: deletion.tenant.clone(),
                request_time_ms: deletion.request_time_ms,
                erased_here: deletion.erased_by.as_ref().is_none_or(|erased_by| erased_by.contains(service)),
            })
            .collect()
    }
}

/// The refusal to act for or on a suspended tenant.
pub fn tenant_suspended(tenant: &TenantId) -> Error {
    Error::failed_precondition(format!("tenant `{tenant}` is suspended"))
        .with_reason("TENANT_SUSPENDED")
        .with_resource(tenant_name(tenant))
}
