//! The in-memory [`CrmStore`] of `switchboard dev`: one mutex over plain maps,
//! so every operation is trivially atomic.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use switchboard_core::names::customer_name;
use switchboard_core::time::now_millis;
use switchboard_core::{ContactId, CustomerId, Error, TenantId};

use super::{CrmStore, Customer, ResolvedCustomer, customer_merged, identity_taken};
use crate::domain::{Identity, TimelineCursor, TimelineEntry, TimelineUpdate, apply_update};

#[derive(Default)]
struct MemoryState {
    customer_by_identity: HashMap<(TenantId, Identity), CustomerId>,
    /// Per tenant, ordered by id so listings page by id.
    customers_by_tenant: HashMap<TenantId, BTreeMap<CustomerId, Customer>>,
    timeline_by_contact: HashMap<(TenantId, ContactId), TimelineEntry>,
}

#[derive(Default)]
pub struct MemoryCrmStore {
    state: Mutex<MemoryState>,
}

impl MemoryCrmStore {
    pub fn new() -> MemoryCrmStore {
        MemoryCrmStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        // Every mutation below either completes or does not start (no
        // fallible step between two writes), so a poisoned lock is sound.
        switchboard_core::sync::lock_unpoisoned(&self.state)
    }
}

#[async_trait]
impl CrmStore for MemoryCrmStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        let mut state = self.lock();
        state.customer_by_identity.retain(|(owner, _), _| owner != tenant);
        state.customers_by_tenant.remove(tenant);
        state.timeline_by_contact.retain(|(owner, _), _| owner != tenant);
        Ok(())
    }

    async fn resolve_customer(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        display_name: &str,
    ) -> Result<ResolvedCustomer, Error> {
        let mut state = self.lock();
        let identity_key = (tenant.clone(), identity.clone());
        if let Some(existing_id) = state.customer_by_identity.get(&identity_key) {
            let existing = state.customers_by_tenant.get(tenant).and_then(|customers| customers.get(existing_id));
            let Some(customer) = existing else {
                return Err(Error::internal(format!("identity points at missing customer `{existing_id}`")));
            };
            return Ok(ResolvedCustomer { customer: customer.clone(), created: false });
        }
        let customer = Customer {
            tenant: tenant.clone(),
            id: CustomerId::generate(),
            display_name: display_name.to_owned(),
            identities: vec![identity.clone()],
            create_time_millis: now_millis(),
            merged_into: None,
        };
        state.customer_by_identity.insert(identity_key, customer.id.clone());
        state.customers_by_tenant.entry(tenant.clone()).or_default().insert(customer.id.clone(), customer.clone());
        Ok(ResolvedCustomer { customer, created: true })
    }

    async fn add_identity(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
        identity: &Identity,
    ) -> Result<Customer, Error> {
        let mut state = self.lock();
        let identity_key = (tenant.clone(), identity.clone());
        if let Some(owner) = state.customer_by_identity.get(&identity_key)
            && owner != customer
        {
            return Err(identity_taken(tenant, owner));
        }
        let stored = state.customers_by_tenant.get_mut(tenant).and_then(|customers| customers.get_mut(customer));
        let Some(stored) = stored else { return Err(Error::not_found(customer_name(tenant, customer))) };
        if let Some(survivor) = &stored.merged_into {
            return Err(customer_merged(tenant, customer, survivor));
        }
        if !stored.identities.contains(identity) {
            stored.identities.push(identity.clone());
            stored.identities.sort();
        }
        let attached = stored.clone();
        state.customer_by_identity.insert(identity_key, customer.clone());
        Ok(attached)
    }

    async fn merge_customers(
        &self,
        tenant: &TenantId,
        survivor: &CustomerId,
        merged: &CustomerId,
    ) -> Result<Customer, Error> {
        let mut state = self.lock();
        let Some(customers) = state.customers_by_tenant.get_mut(tenant) else {
            return Err(Error::not_found(customer_name(tenant, survivor)));
        };
        let survivor_record =
            customers.get(survivor).ok_or_else(|| Error::not_found(customer_name(tenant, survivor)))?;
        if let Some(further) = &survivor_record.merged_into {
            return Err(customer_merged(tenant, survivor, further));
        }
        let merged_record = customers.get(merged).ok_or_else(|| Error::not_found(customer_name(tenant, merged)))?;
        match &merged_record.merged_into {
            Some(into) if into == survivor => return Ok(survivor_record.clone()),
            Some(into) => return Err(customer_merged(tenant, merged, into)),
            None => {}
        }
        // The merged one, and any merged into it before, now lead to the survivor.
        let mut moved = Vec::new();
        for (id, customer) in customers.iter_mut() {
            if id == merged || customer.merged_into.as_ref() == Some(merged) {
                customer.merged_into = Some(survivor.clone());
                moved.append(&mut customer.identities);
            }
        }
        let survivor_record = customers.get_mut(survivor).ok_or_else(|| Error::internal("the survivor vanished"))?;
        survivor_record.identities.extend(moved.iter().cloned());
        survivor_record.identities.sort();
        let merged_customer = survivor_record.clone();
        for identity in moved {
            state.customer_by_identity.insert((tenant.clone(), identity), survivor.clone());
        }
        Ok(merged_customer)
    }

    async fn get_customer(&self, tenant: &TenantId, customer: &CustomerId) -> Result<Customer, Error> {
        self.lock()
            .customers_by_tenant
            .get(tenant)
            .and_then(|customers| customers.get(customer))
            .cloned()
            .ok_or_else(|| Error::not_found(customer_name(tenant, customer)))
    }

    async fn list_customers(
        &self,
        tenant: &TenantId,
        after: Option<&CustomerId>,
        limit: usize,
    ) -> Result<Vec<Customer>, Error> {
        let state = self.lock();
        let Some(customers) = state.customers_by_tenant.get(tenant) else {
            return Ok(Vec::new());
        };
        let lower_bound = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(customers
            .range((lower_bound, Bound::Unbounded))
            .filter(|(_, customer)| customer.merged_into.is_none())
            .take(limit)
            .map(|(_, customer)| customer.clone())
            .collect())
    }

    async fn merge_timeline_entry(&self, update: &TimelineUpdate) -> Result<TimelineEntry, Error> {
        let mut state = self.lock();
        let key = (update.tenant.clone(), update.contact.clone());
        let merged = apply_update(state.timeline_by_contact.get(&key), update);
        state.timeline_by_contact.insert(key, merged.clone());
        Ok(merged)
    }

    async fn timeline_entry(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<TimelineEntry>, Error> {
        Ok(self.lock().timeline_by_contact.get(&(tenant.clone(), contact.clone())).cloned())
    }

    async fn list_timeline_entries(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
        after: Option<&TimelineCursor>,
        limit: usize,
    ) -> Result<Vec<TimelineEntry>, Error> {
        let state = self.lock();
        let leads_here = |id: &CustomerId| {
            id == customer
                || state
                    .customers_by_tenant
                    .get(tenant)
                    .and_then(|customers| customers.get(id))
                    .is_some_and(|merged| merged.merged_into.as_ref() == Some(customer))
        };
        let mut entries: Vec<TimelineEntry> = state
            .timeline_by_contact
            .values()
            .filter(|entry| &entry.tenant == tenant && entry.customer.as_ref().is_some_and(leads_here))
            .filter(|entry| after.is_none_or(|cursor| cursor.precedes(entry)))
            .cloned()
            .collect();
        entries.sort_by_key(TimelineCursor::newest_first_key);
        entries.truncate(limit);
        Ok(entries)
    }
}
