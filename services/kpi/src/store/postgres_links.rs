//! First-contact resolution in PostgreSQL: linking the contacts of a batch
//! whose customer and creation just became known to their customers'
//! other contacts, in two statements for the whole batch (see
//! [`crate::domain::facts::link_customer_contacts`] for the rule).

use std::collections::BTreeMap;

use switchboard_core::{ContactId, Error, TenantId};
use switchboard_platform::postgres::{CachedStatements, pg_error};

use super::postgres::{facts_from_row, upsert_all};
use super::postgres_buckets::fold_contact_change;
use crate::domain::buckets::BucketKey;
use crate::domain::{ContactFacts, FactsUpdate, KpiCounts, merge};

/// Each new contact's next contact: the earliest later creation of its
/// customer's contacts.
const NEXT_SQL: &str = "
    SELECT linked.contact, (SELECT min(facts.created_ms) FROM kpi.contact_facts facts
        WHERE facts.tenant = linked.tenant AND facts.customer = linked.customer
          AND facts.created_ms > linked.created_ms)
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[]) AS linked(tenant, contact, customer, created_ms)";

/// Each new contact's predecessor: its customer's contact created last
/// before it (ties: the larger id), whose next contact it becomes.
const PREVIOUS_SQL: &str = "
    SELECT linked.contact, linked.created_ms, previous.contact
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[]) AS linked(tenant, contact, customer, created_ms)
    CROSS JOIN LATERAL (
        SELECT facts.contact FROM kpi.contact_facts facts
        WHERE facts.tenant = linked.tenant AND facts.customer = linked.customer
          AND facts.created_ms < linked.created_ms AND facts.contact <> linked.contact
        ORDER BY facts.created_ms DESC, facts.contact DESC
        LIMIT 1) AS previous";

/// The facts of the predecessors outside the batch, locked in key order.
const LOCK_SQL: &str = "
    SELECT tenant, contact, queue, channel, customer, inbound, created_ms, queued_ms, answered_ms,
        abandoned_ms, abandon_stage, completed_ms, resolved, service_level_threshold_ms,
        short_abandon_threshold_ms, queue_entered, routing_ended_ms, wrap_up_ms, next_contact_ms, survey_ms, survey_score, fcr_window_ms, callback_offered_ms
    FROM kpi.contact_facts
    WHERE (tenant, contact) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))
    ORDER BY tenant, contact
    FOR UPDATE";

/// Links `newly_linked` (of the batch `written`, already written in this
/// transaction) to their customers' contacts: their next contacts, and they
/// as the next contacts of their predecessors; every change written with
/// its bucket change.
pub(super) async fn link_to_customers(
    transaction: &deadpool_postgres::Transaction<'_>,
    written: &[ContactFacts],
    newly_linked: &[&ContactFacts],
    bucket_changes: &mut BTreeMap<(TenantId, BucketKey), KpiCounts>,
) -> Result<(), Error> {
    if newly_linked.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = newly_linked.iter().map(|facts| facts.tenant.as_str()).collect();
    let contacts: Vec<&str> = newly_linked.iter().map(|facts| facts.contact.as_str()).collect();
    let customers: Vec<&str> = newly_linked
        .iter()
        .filter_map(|facts| facts.customer_arrival())
        .map(|(customer, _)| customer.as_str())
        .collect();
    let created: Vec<i64> =
        newly_linked.iter().filter_map(|facts| facts.customer_arrival()).map(|(_, at)| at).collect();
    let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&tenants, &contacts, &customers, &created];
    // The next contact each contact gets: the earliest proposed.
    let mut next_by_contact: BTreeMap<(TenantId, ContactId), i64> = BTreeMap::new();
    let mut propose = |key: (TenantId, ContactId), next_ms: i64| {
        next_by_contact.entry(key).and_modify(|known| *known = (*known).min(next_ms)).or_insert(next_ms);
    };
    let tenant_of = |contact: &str| {
        newly_linked.iter().find(|facts| facts.contact.as_str() == contact).map(|facts| facts.tenant.clone())
    };
    for row in transaction.query_cached(NEXT_SQL, &parameters).await.map_err(pg_error)? {
        let (contact, next_ms): (String, Option<i64>) = (row.get(0), row.get(1));
        if let (Some(next_ms), Some(tenant)) = (next_ms, tenant_of(&contact)) {
            propose((tenant, ContactId::parse(&contact, "contact")?), next_ms);
        }
    }
    for row in transaction.query_cached(PREVIOUS_SQL, &parameters).await.map_err(pg_error)? {
        let (contact, created_ms, previous): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
        let tenant = tenant_of(&contact).ok_or_else(|| Error::internal("a predecessor of no linked contact"))?;
        propose((tenant, ContactId::parse(&previous, "contact")?), created_ms);
    }
    // The current facts of every contact to change: the batch's as
    // written, the others as stored, locked.
    let mut current: BTreeMap<(TenantId, ContactId), ContactFacts> = written
        .iter()
        .filter(|facts| next_by_contact.contains_key(&(facts.tenant.clone(), facts.contact.clone())))
        .map(|facts| ((facts.tenant.clone(), facts.contact.clone()), facts.clone()))
        .collect();
    let outside: Vec<&(TenantId, ContactId)> =
        next_by_contact.keys().filter(|key| !current.contains_key(*key)).collect();
    if !outside.is_empty() {
        let tenants: Vec<&str> = outside.iter().map(|(tenant, _)| tenant.as_str()).collect();
        let contacts: Vec<&str> = outside.iter().map(|(_, contact)| contact.as_str()).collect();
        for row in transaction.query_cached(LOCK_SQL, &[&tenants, &contacts]).await.map_err(pg_error)? {
            let facts = facts_from_row(&row)?;
            current.insert((facts.tenant.clone(), facts.contact.clone()), facts);
        }
    }
    let mut linked_facts = Vec::new();
    for (key, next_ms) in next_by_contact {
        let Some(before) = current.get(&key) else { continue };
        let mut linked = before.clone();
        merge(&mut linked, &FactsUpdate { next_contact_ms: Some(next_ms), ..FactsUpdate::default() });
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
