//! First-contact resolution in PostgreSQL: linking the contacts of a batch
//! whose customer, creation or a topic just became known to their
//! customers' other contacts, in every scope, in two statements for the
//! whole batch (see
//! [`crate::domain::fcr::link_customer_contacts`] for the rule).

use std::collections::BTreeMap;

use switchboard_core::{ContactId, Error, TenantId};
use switchboard_platform::postgres::{CachedStatements, pg_error};

use super::postgres::{LOCK_BATCH_SQL, facts_from_row, upsert_all};
use super::postgres_buckets::fold_contact_change;
use crate::domain::buckets::BucketKey;
use crate::domain::settings::FcrScope;
use crate::domain::{ContactFacts, FactsUpdate, KpiCounts, merge};

/// Each linked contact's next contact in each scope (see
/// [`FcrScope::ALL`]): the earliest later creation of its customer's
/// contacts, of those that entered its queue, and of those completed with
/// its disposition.
const NEXT_SQL: &str = "
    SELECT linked.contact,
        (SELECT min(facts.created_ms) FROM kpi.contact_facts facts
         WHERE facts.tenant = linked.tenant AND facts.customer = linked.customer
           AND facts.created_ms > linked.created_ms),
        (SELECT min(facts.created_ms) FROM kpi.contact_facts facts
         WHERE facts.tenant = linked.tenant AND facts.customer = linked.customer
           AND facts.created_ms > linked.created_ms AND facts.queue_entered AND facts.queue = linked.queue),
        (SELECT min(facts.created_ms) FROM kpi.contact_facts facts
         WHERE facts.tenant = linked.tenant AND facts.customer = linked.customer
           AND facts.created_ms > linked.created_ms AND facts.disposition = linked.disposition)
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[])
        AS linked(tenant, contact, customer, created_ms, queue, disposition)";

/// Each linked contact's predecessor in each scope: its customer's contact
/// created last before it (ties: the larger id) among those of the same
/// topic, whose next contact in that scope it becomes.
const PREVIOUS_SQL: &str = "
    SELECT linked.contact, linked.created_ms, previous.contact, previous_same_queue.contact,
        previous_same_disposition.contact
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[])
        AS linked(tenant, contact, customer, created_ms, queue, disposition)
    LEFT JOIN LATERAL (
        SELECT facts.contact FROM kpi.contact_facts facts
        WHERE facts.tenant = linked.tenant AND facts.customer = linked.customer
          AND facts.created_ms < linked.created_ms AND facts.contact <> linked.contact
        ORDER BY facts.created_ms DESC, facts.contact DESC
        LIMIT 1) AS previous ON true
    LEFT JOIN LATERAL (
        SELECT facts.contact FROM kpi.contact_facts facts
        WHERE facts.tenant = linked.tenant AND facts.customer = linked.customer
          AND facts.created_ms < linked.created_ms AND facts.contact <> linked.contact
          AND facts.queue_entered AND facts.queue = linked.queue
        ORDER BY facts.created_ms DESC, facts.contact DESC
        LIMIT 1) AS previous_same_queue ON true
    LEFT JOIN LATERAL (
        SELECT facts.contact FROM kpi.contact_facts facts
        WHERE facts.tenant = linked.tenant AND facts.customer = linked.customer
          AND facts.created_ms < linked.created_ms AND facts.contact <> linked.contact
          AND facts.disposition = linked.disposition
        ORDER BY facts.created_ms DESC, facts.contact DESC
        LIMIT 1) AS previous_same_disposition ON true";

/// Links `newly_linked` (of the batch `written`, already written in this
/// transaction) to their customers' contacts: their next contacts, and they
/// as the next contacts of their predecessors, in every scope; every change
/// written with its bucket change.
pub(super) async fn link_to_customers(
    transaction: &deadpool_postgres::Transaction<'_>,
    written: &[ContactFacts],
    newly_linked: &[&ContactFacts],
    bucket_changes: &mut BTreeMap<(TenantId, BucketKey), KpiCounts>,
) -> Result<(), Error> {
    // Each of them has its customer and creation (`needs_linking_since`).
    if newly_linked.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = newly_linked.iter().map(|facts| facts.tenant.as_str()).collect();
    let contacts: Vec<&str> = newly_linked.iter().map(|facts| facts.contact.as_str()).collect();
    let customers: Vec<Option<&str>> =
        newly_linked.iter().map(|facts| facts.customer.as_ref().map(|customer| customer.as_str())).collect();
    let created: Vec<Option<i64>> = newly_linked.iter().map(|facts| facts.created_ms).collect();
    let topics = |scope: FcrScope| newly_linked.iter().map(|facts| facts.topic(scope)).collect::<Vec<_>>();
    let (queues, dispositions) = (topics(FcrScope::SameQueue), topics(FcrScope::SameDisposition));
    let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&tenants, &contacts, &customers, &created, &queues, &dispositions];
    // Every next contact proposed for a contact, by scope.
    let mut proposed: BTreeMap<(TenantId, ContactId), Vec<FactsUpdate>> = BTreeMap::new();
    let tenants_by_contact: BTreeMap<&str, &TenantId> =
        newly_linked.iter().map(|facts| (facts.contact.as_str(), &facts.tenant)).collect();
    let tenant_of = |contact: &str| {
        tenants_by_contact
            .get(contact)
            .map(|tenant| (*tenant).clone())
            .ok_or_else(|| Error::internal("a link of no linked contact"))
    };
    for row in transaction.query_cached(NEXT_SQL, &parameters).await.map_err(pg_error)? {
        let contact: String = row.get(0);
        let key = (tenant_of(&contact)?, ContactId::parse(&contact, "contact")?);
        for (column, scope) in (1..).zip(FcrScope::ALL) {
            if let Some(next_ms) = row.get::<_, Option<i64>>(column) {
                proposed.entry(key.clone()).or_default().push(FactsUpdate::next_contact_in(scope, next_ms));
            }
        }
    }
    for row in transaction.query_cached(PREVIOUS_SQL, &parameters).await.map_err(pg_error)? {
        let (contact, created_ms): (String, i64) = (row.get(0), row.get(1));
        let tenant = tenant_of(&contact)?;
        for (column, scope) in (2..).zip(FcrScope::ALL) {
            if let Some(previous) = row.get::<_, Option<String>>(column) {
                let key = (tenant.clone(), ContactId::parse(&previous, "contact")?);
                proposed.entry(key).or_default().push(FactsUpdate::next_contact_in(scope, created_ms));
            }
        }
    }
    // The current facts of every contact to change: the batch's as
    // written, the others as stored, locked.
    let mut current: BTreeMap<(TenantId, ContactId), ContactFacts> = written
        .iter()
        .filter(|facts| proposed.contains_key(&(facts.tenant.clone(), facts.contact.clone())))
        .map(|facts| ((facts.tenant.clone(), facts.contact.clone()), facts.clone()))
        .collect();
    let outside: Vec<&(TenantId, ContactId)> = proposed.keys().filter(|key| !current.contains_key(*key)).collect();
    if !outside.is_empty() {
        let tenants: Vec<&str> = outside.iter().map(|(tenant, _)| tenant.as_str()).collect();
        let contacts: Vec<&str> = outside.iter().map(|(_, contact)| contact.as_str()).collect();
        for row in transaction.query_cached(LOCK_BATCH_SQL, &[&tenants, &contacts]).await.map_err(pg_error)? {
            let facts = facts_from_row(&row)?;
            current.insert((facts.tenant.clone(), facts.contact.clone()), facts);
        }
    }
    let mut linked_facts = Vec::new();
    for (key, updates) in proposed {
        let Some(before) = current.get(&key) else { continue };
        let mut linked = before.clone();
        for update in &updates {
            merge(&mut linked, update);
        }
        if linked != *before {
            fold_contact_change(bucket_changes, Some(before), &linked);
            linked_facts.push(linked);
        }
    }
    if !linked_facts.is_empty() {
        upsert_all(transaction, &linked_facts).await?;
    }
    Ok(())
}
