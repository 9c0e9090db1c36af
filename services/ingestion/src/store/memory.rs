//! The in-memory contact store of `dev` mode: one map per tenant behind a
//! mutex, so every operation is atomic like a PostgreSQL statement.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use switchboard_core::{ContactId, Error, TenantId, names};

use super::{AbandonOutcome, Abandonment, ContactRecord, ContactStore, InsertOutcome, Publication, PublishedEvent};

#[derive(Default)]
struct TenantContacts {
    /// Keyed by contact id, so id order is creation order.
    records_by_contact_id: BTreeMap<String, ContactRecord>,
    contact_id_by_request_id: HashMap<String, String>,
    contact_id_by_provider_message_id: HashMap<(i32, String), String>,
}

impl TenantContacts {
    fn existing(&self, record: &ContactRecord) -> Option<&ContactRecord> {
        let by_request_id = self.contact_id_by_request_id.get(&record.request_id);
        let by_provider_message_id = if record.provider_message_id().is_empty() {
            None
        } else {
            self.contact_id_by_provider_message_id.get(&(record.channel(), record.provider_message_id().to_owned()))
        };
        by_request_id.or(by_provider_message_id).and_then(|contact_id| self.records_by_contact_id.get(contact_id))
    }
}

#[derive(Default)]
pub struct MemoryContactStore {
    tenants: Mutex<HashMap<TenantId, TenantContacts>>,
}

impl MemoryContactStore {
    pub fn new() -> MemoryContactStore {
        MemoryContactStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TenantId, TenantContacts>> {
        // Every mutation below completes its map updates before anything can
        // panic, so a poisoned lock still guards consistent data.
        switchboard_core::sync::lock_unpoisoned(&self.tenants)
    }
}

#[async_trait]
impl ContactStore for MemoryContactStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        self.lock().remove(tenant);
        Ok(())
    }

    async fn insert(&self, record: &ContactRecord) -> Result<InsertOutcome, Error> {
        let mut tenants = self.lock();
        let contacts = tenants.entry(record.tenant.clone()).or_default();
        if let Some(existing) = contacts.existing(record) {
            return Ok(InsertOutcome::Existing(Box::new(existing.clone())));
        }
        let contact_id = record.contact_id.as_str().to_owned();
        if contacts.records_by_contact_id.contains_key(&contact_id) {
            return Err(Error::already_exists(names::contact_name(&record.tenant, &record.contact_id)));
        }
        contacts.contact_id_by_request_id.insert(record.request_id.clone(), contact_id.clone());
        if !record.provider_message_id().is_empty() {
            contacts
                .contact_id_by_provider_message_id
                .insert((record.channel(), record.provider_message_id().to_owned()), contact_id.clone());
        }
        contacts.records_by_contact_id.insert(contact_id, record.clone());
        Ok(InsertOutcome::Inserted)
    }

    async fn mark_all_published(&self, published: &[PublishedEvent]) -> Result<(), Error> {
        let mut tenants = self.lock();
        let mut missing = None;
        for PublishedEvent { tenant, contact_id, publication } in published {
            let Some(record) = tenants
                .get_mut(tenant)
                .and_then(|contacts| contacts.records_by_contact_id.get_mut(contact_id.as_str()))
            else {
                missing = Some(names::contact_name(tenant, contact_id));
                continue;
            };
            match publication {
                Publication::Created => record.created_published = true,
                Publication::Abandoned => {
                    if let Some(abandonment) = record.abandonment.as_mut() {
                        abandonment.published = true;
                    }
                }
            }
        }
        missing.map_or(Ok(()), |contact| Err(Error::not_found(contact)))
    }

    async fn get(&self, tenant: &TenantId, contact_id: &ContactId) -> Result<Option<ContactRecord>, Error> {
        let tenants = self.lock();
        Ok(tenants.get(tenant).and_then(|contacts| contacts.records_by_contact_id.get(contact_id.as_str())).cloned())
    }

    async fn list(
        &self,
        tenant: &TenantId,
        before_contact_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ContactRecord>, Error> {
        let tenants = self.lock();
        let Some(contacts) = tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        let records = contacts.records_by_contact_id.iter().rev();
        let records: Vec<ContactRecord> = match before_contact_id {
            Some(before) => records
                .filter(|(contact_id, _)| contact_id.as_str() < before)
                .take(limit)
                .map(|(_, record)| record.clone())
                .collect(),
            None => records.take(limit).map(|(_, record)| record.clone()).collect(),
        };
        Ok(records)
    }

    async fn unpublished(&self, changed_before_ms: i64, limit: usize) -> Result<Vec<ContactRecord>, Error> {
        let tenants = self.lock();
        let mut pending: Vec<(i64, &ContactRecord)> = tenants
            .values()
            .flat_map(|contacts| contacts.records_by_contact_id.values())
            .filter_map(|record| record.unpublished_since_millis().map(|since| (since, record)))
            .filter(|(since, _)| *since < changed_before_ms)
            .collect();
        pending.sort_by(|left, right| left.0.cmp(&right.0).then_with(|| left.1.contact_id.cmp(&right.1.contact_id)));
        Ok(pending.into_iter().take(limit).map(|(_, record)| record.clone()).collect())
    }

    async fn find_by_request_id(&self, tenant: &TenantId, request_id: &str) -> Result<Option<ContactRecord>, Error> {
        let tenants = self.lock();
        Ok(tenants
            .get(tenant)
            .and_then(|contacts| {
                let contact_id = contacts.contact_id_by_request_id.get(request_id)?;
                contacts.records_by_contact_id.get(contact_id)
            })
            .cloned())
    }

    async fn find_by_provider_message_id(
        &self,
        tenant: &TenantId,
        channel: i32,
        provider_message_id: &str,
    ) -> Result<Option<ContactRecord>, Error> {
        if provider_message_id.is_empty() {
            return Ok(None);
        }
        let tenants = self.lock();
        Ok(tenants
            .get(tenant)
            .and_then(|contacts| {
                let key = (channel, provider_message_id.to_owned());
                let contact_id = contacts.contact_id_by_provider_message_id.get(&key)?;
                contacts.records_by_contact_id.get(contact_id)
            })
            .cloned())
    }

    async fn set_abandoned(
        &self,
        tenant: &TenantId,
        contact_id: &ContactId,
        abandonment: &Abandonment,
    ) -> Result<Option<AbandonOutcome>, Error> {
        let mut tenants = self.lock();
        let Some(record) =
            tenants.get_mut(tenant).and_then(|contacts| contacts.records_by_contact_id.get_mut(contact_id.as_str()))
        else {
            return Ok(None);
        };
        if record.abandonment.is_some() {
            return Ok(Some(AbandonOutcome { record: record.clone(), changed: false }));
        }
        let abandonment = Abandonment { published: false, ..abandonment.clone() };
        *record = record.clone().with_abandonment(Some(abandonment));
        Ok(Some(AbandonOutcome { record: record.clone(), changed: true }))
    }

    async fn attach_customer(&self, tenant: &TenantId, contact_id: &ContactId, customer: &str) -> Result<bool, Error> {
        let mut tenants = self.lock();
        let Some(record) =
            tenants.get_mut(tenant).and_then(|contacts| contacts.records_by_contact_id.get_mut(contact_id.as_str()))
        else {
            return Ok(false);
        };
        if !record.contact.customer.is_empty() {
            return Ok(false);
        }
        customer.clone_into(&mut record.contact.customer);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn memory_store_passes_the_contract() {
        let store: Arc<dyn ContactStore> = Arc::new(MemoryContactStore::new());
        super::super::contract::run_contract_suite(store).await.expect("contract");
    }
}
