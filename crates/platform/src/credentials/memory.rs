//! The in-memory [`CredentialStore`] of `switchboard dev`: one mutex over
//! ordered maps.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use switchboard_core::names::tenant_name;
use switchboard_core::{Error, TenantId};

use super::{
    ApiKeyId, AuditEntry, CredentialStore, DeletionProgress, ERASING_SERVICES, KeyRecord, PreviousSecret, Snapshot,
    TenantChange, TenantDeletion, TenantRecord, api_key_name, key_revoked, not_being_deleted,
};

#[derive(Default)]
struct State {
    revision: i64,
    tenants: BTreeMap<TenantId, TenantRecord>,
    keys: BTreeMap<ApiKeyId, KeyRecord>,
    audit: Vec<AuditEntry>,
    /// Never reused, though erasures remove entries.
    last_audit_sequence: i64,
}

#[derive(Default)]
pub struct MemoryCredentialStore {
    state: Mutex<State>,
}

impl MemoryCredentialStore {
    pub fn new() -> MemoryCredentialStore {
        MemoryCredentialStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No fallible step between two writes below: a poisoned lock is sound.
        switchboard_core::sync::lock_unpoisoned(&self.state)
    }
}

fn page<K: Ord + Clone, V: Clone>(
    map: &BTreeMap<K, V>,
    after: Option<&K>,
    limit: usize,
    keep: impl Fn(&V) -> bool,
) -> Vec<V> {
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    map.range((lower, Bound::Unbounded))
        .map(|(_, value)| value)
        .filter(|value| keep(value))
        .take(limit)
        .cloned()
        .collect()
}

#[async_trait]
impl CredentialStore for MemoryCredentialStore {
    async fn revision(&self) -> Result<i64, Error> {
        Ok(self.lock().revision)
    }

    async fn snapshot(&self) -> Result<Snapshot, Error> {
        let state = self.lock();
        Ok(Snapshot {
            revision: state.revision,
            tenants: state.tenants.values().cloned().collect(),
            keys: state.keys.values().cloned().collect(),
        })
    }

    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), Error> {
        let mut state = self.lock();
        if state.tenants.contains_key(&tenant.id) {
            return Err(Error::already_exists(tenant_name(&tenant.id)));
        }
        state.tenants.insert(tenant.id.clone(), tenant.clone());
        state.revision += 1;
        Ok(())
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, Error> {
        Ok(self.lock().tenants.get(tenant).cloned())
    }

    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
        with_deleted: bool,
    ) -> Result<Vec<TenantRecord>, Error> {
        Ok(page(&self.lock().tenants, after, limit, |tenant| with_deleted || !tenant.is_deleted()))
    }

    async fn update_tenant(
        &self,
        tenant: &TenantId,
        change: &TenantChange,
        now_ms: i64,
    ) -> Result<TenantRecord, Error> {
        let mut state = self.lock();
        let Some(record) = state.tenants.get_mut(tenant) else {
            return Err(Error::not_found(tenant_name(tenant)));
        };
        if let Some(display_name) = &change.display_name {
            record.display_name.clone_from(display_name);
        }
        if let Some(suspended) = change.suspended {
            record.suspended = suspended;
        }
        if let Some(policy) = &change.policy {
            record.policy.clone_from(policy);
        }
        record.update_time_ms = now_ms;
        let updated = record.clone();
        state.revision += 1;
        Ok(updated)
    }

    async fn create_key(&self, key: &KeyRecord) -> Result<(), Error> {
        let mut state = self.lock();
        if state.keys.contains_key(&key.id) {
            return Err(Error::already_exists(api_key_name(&key.id)));
        }
        state.keys.insert(key.id.clone(), key.clone());
        state.revision += 1;
        Ok(())
    }

    async fn get_key(&self, key: &ApiKeyId) -> Result<Option<KeyRecord>, Error> {
        Ok(self.lock().keys.get(key).cloned())
    }

    async fn list_keys(
        &self,
        tenant: Option<&TenantId>,
        after: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, Error> {
        Ok(page(&self.lock().keys, after, limit, |key| tenant.is_none() || key.holder.tenant() == tenant))
    }

    async fn revoke_key(&self, key: &ApiKeyId, now_ms: i64) -> Result<KeyRecord, Error> {
        let mut state = self.lock();
        let Some(record) = state.keys.get_mut(key) else {
            return Err(Error::not_found(api_key_name(key)));
        };
        if record.revoke_time_ms.is_some() {
            return Ok(record.clone());
        }
        record.revoke_time_ms = Some(now_ms);
        let revoked = record.clone();
        state.revision += 1;
        Ok(revoked)
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, Error> {
        let mut state = self.lock();
        state.last_audit_sequence += 1;
        let sequence = state.last_audit_sequence;
        state.audit.push(AuditEntry { sequence, ..entry.clone() });
        Ok(sequence)
    }

    async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        before_sequence: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        Ok(self
            .lock()
            .audit
            .iter()
            .rev()
            .filter(|entry| before_sequence.is_none_or(|before| entry.sequence < before))
            .filter(|entry| tenant.is_none() || entry.tenant.as_ref() == tenant)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn rotate_key(
        &self,
        key: &ApiKeyId,
        secret_sha256: &str,
        secret_prefix: &str,
        previous_expire_time_ms: i64,
    ) -> Result<KeyRecord, Error> {
        let mut state = self.lock();
        let Some(record) = state.keys.get_mut(key) else {
            return Err(Error::not_found(api_key_name(key)));
        };
        if record.revoke_time_ms.is_some() {
            return Err(key_revoked(key));
        }
        let previous = std::mem::replace(&mut record.secret_sha256, secret_sha256.to_owned());
        record.previous_secret = Some(PreviousSecret { sha256: previous, expire_time_ms: previous_expire_time_ms });
        secret_prefix.clone_into(&mut record.secret_prefix);
        let rotated = record.clone();
        state.revision += 1;
        Ok(rotated)
    }

    async fn begin_deletion(&self, tenant: &TenantId, now_ms: i64) -> Result<TenantRecord, Error> {
        let mut state = self.lock();
        let Some(record) = state.tenants.get_mut(tenant) else {
            return Err(Error::not_found(tenant_name(tenant)));
        };
        if record.deletion.is_some() {
            return Ok(record.clone());
        }
        record.deletion = Some(TenantDeletion {
            request_time_ms: now_ms,
            progress: DeletionProgress::Erasing { erased_by: std::collections::BTreeSet::new() },
        });
        let deleting = record.clone();
        for key in state.keys.values_mut().filter(|key| key.holder.tenant() == Some(tenant)) {
            key.revoke_time_ms.get_or_insert(now_ms);
        }
        state.revision += 1;
        Ok(deleting)
    }

    async fn record_erasure(&self, tenant: &TenantId, service: &str, now_ms: i64) -> Result<TenantRecord, Error> {
        let mut state = self.lock();
        let Some(record) = state.tenants.get_mut(tenant) else {
            return Err(Error::not_found(tenant_name(tenant)));
        };
        let Some(deletion) = &mut record.deletion else { return Err(not_being_deleted(tenant)) };
        let DeletionProgress::Erasing { erased_by } = &mut deletion.progress else { return Ok(record.clone()) };
        if !erased_by.insert(service.to_owned()) {
            return Ok(record.clone());
        }
        if ERASING_SERVICES.iter().all(|service| erased_by.contains(*service)) {
            deletion.progress = DeletionProgress::Deleted { delete_time_ms: now_ms };
        }
        let recorded = record.clone();
        state.revision += 1;
        Ok(recorded)
    }

    async fn erase_audit(&self, tenant: &TenantId) -> Result<(), Error> {
        let itself = tenant_name(tenant);
        self.lock().audit.retain(|entry| entry.tenant.as_ref() != Some(tenant) || entry.resource == itself);
        Ok(())
    }
}
