//! The in-memory store of `dev` mode: a map guarded by a mutex.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use switchboard_core::{ContactId, Error, TenantId};

use super::KpiStore;
use crate::domain::{ContactFacts, FactsFilter, FactsUpdate, merge};

/// Facts per tenant, per contact (sorted, so loads come out in id order).
#[derive(Debug, Default)]
pub struct MemoryKpiStore {
    facts_by_tenant: Mutex<HashMap<TenantId, BTreeMap<ContactId, ContactFacts>>>,
}

impl MemoryKpiStore {
    pub fn new() -> MemoryKpiStore {
        MemoryKpiStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TenantId, BTreeMap<ContactId, ContactFacts>>> {
        // Every mutation is one merge into one entry, which cannot panic
        // halfway, so a poisoned lock still guards consistent data.
        switchboard_core::sync::lock_unpoisoned(&self.facts_by_tenant)
    }
}

#[async_trait]
impl KpiStore for MemoryKpiStore {
    async fn apply(&self, tenant: &TenantId, contact: &ContactId, update: FactsUpdate) -> Result<(), Error> {
        let mut facts_by_tenant = self.lock();
        let facts = facts_by_tenant
            .entry(tenant.clone())
            .or_default()
            .entry(contact.clone())
            .or_insert_with(|| ContactFacts::empty(tenant.clone(), contact.clone()));
        merge(facts, &update);
        Ok(())
    }

    async fn load_at_most(
        &self,
        tenant: &TenantId,
        filter: &FactsFilter,
        limit: usize,
    ) -> Result<Vec<ContactFacts>, Error> {
        let facts_by_tenant = self.lock();
        let Some(facts_by_contact) = facts_by_tenant.get(tenant) else {
            return Ok(Vec::new());
        };
        Ok(facts_by_contact
            .values()
            .filter(|facts| filter.matches(facts))
            .take(limit.saturating_add(1))
            .cloned()
            .collect())
    }

    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        self.lock().remove(tenant);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[tokio::test]
    async fn memory_store_passes_the_contract() {
        let store = MemoryKpiStore::new();
        contract::run_all(&store).await.expect("contract");
    }

    #[tokio::test]
    async fn memory_store_agrees_with_itself_differentially() {
        let reference = MemoryKpiStore::new();
        let candidate = MemoryKpiStore::new();
        for seed in 0..8 {
            contract::differential(&reference, &candidate, seed).await.expect("differential");
        }
    }
}
