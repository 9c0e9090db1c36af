//! First-contact resolution in PostgreSQL: linking the contacts of a batch
//! whose customer, creation or entered queue just became known to their
//! customers' other contacts, in two statements for the whole batch (see
//! [`crate::domain::facts::link_customer_contacts`] for the rule).

use std::collections::BTreeMap;

use switchboard_core::{ContactId, Error, TenantId};
use switchboard_platform::postgres::{CachedStatements, pg_error};

use super::postgres::{LOCK_BATCH_SQL, facts_from_row, upsert_all};
use super::postgres_buckets::fold_contact_change;
use crate::domain::buckets::BucketKey;
use crate::domain::{ContactFacts, FactsUpdate, KpiCounts, merge};

/// Each linked contact's next contact: the earliest later creation of its
/// customer's contacts, and of those that entered its queue.
const NEXT_SQL: &str = "
    SELECT linked.contact,
        (SELECT min(facts.created_ms) FROM kpi.contact_facts facts
         WHERE facts.tenant = linked.tenant AND facts.customer = linked.customer
           AND facts.created_ms > linked.created_ms),
        (SELECT min(facts.created_ms) FROM kpi.contact_facts facts
         WHERE facts.tenant = linked.tenant AND facts.customer = linked.customer
           AND facts.created_ms > linked.created_ms AND facts.queue_entered AND facts.queue = linked.queue)
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[])
        AS linked(tenant, contact, customer, created_ms, queue)";

/// Each linked contact's predecessors: its customer's contact created last
/// before it (ties: the larger id), and the same among those that entered
/// its queue, whose next contacts it becomes.
const PREVIOUS_SQL: &str = "
    SELECT linked.contact, linked.created_ms, previous.contact, previous_same_queue.contact
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[])
        AS linked(tenant, contact, customer, created_ms, queue)
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
        LIMIT 1) AS previous_same_queue ON true";

/// The next contacts proposed for one contact: the earliest of each kind.
#[derive(Debug, Default)]
struct ProposedLinks {
    next_contact_ms: Option<i64>,
    next_same_queue_contact_ms: Option<i64>,
}

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
    let keys: Vec<_> = newly_linked.iter().filter_map(|facts| Some((*facts, facts.link_key()?))).collect();
    let tenants: Vec<&str> = keys.iter().map(|(facts, _)| facts.tenant.as_str()).collect();
    let contacts: Vec<&str> = keys.iter().map(|(facts, _)| facts.contact.as_str()).collect();
    let customers: Vec<&str> = keys.iter().map(|(_, (customer, _, _))| customer.as_str()).collect();
    let created: Vec<i64> = keys.iter().map(|(_, (_, created_ms, _))| *created_ms).collect();
    let queues: Vec<Option<&str>> = keys.iter().map(|(_, (_, _, queue))| queue.map(|queue| queue.as_str())).collect();
    let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&tenants, &contacts, &customers, &created, &queues];
    let mut proposed: BTreeMap<(TenantId, ContactId), ProposedLinks> = BTreeMap::new();
    let mut propose = |key: (TenantId, ContactId), next_ms: Option<i64>, within_queue: bool| {
        let Some(next_ms) = next_ms else { return };
        let links = proposed.entry(key).or_default();
        let known = if within_queue { &mut links.next_same_queue_contact_ms } else { &mut links.next_contact_ms };
        *known = Some(known.map_or(next_ms, |known| known.min(next_ms)));
    };
    let tenant_of = |contact: &str| {
        newly_linked
            .iter()
            .find(|facts| facts.contact.as_str() == contact)
            .map(|facts| facts.tenant.clone())
            .ok_or_else(|| Error::internal("a link of no linked contact"))
    };
    for row in transaction.query_cached(NEXT_SQL, &parameters).await.map_err(pg_error)? {
        let contact: String = row.get(0);
        let key = (tenant_of(&contact)?, ContactId::parse(&contact, "contact")?);
        propose(key.clone(), row.get(1), false);
        propose(key, row.get(2), true);
    }
    for row in transaction.query_cached(PREVIOUS_SQL, &parameters).await.map_err(pg_error)? {
        let (contact, created_ms): (String, i64) = (row.get(0), row.get(1));
        let tenant = tenant_of(&contact)?;
        let (previous, previous_same_queue): (Option<String>, Option<String>) = (row.get(2), row.get(3));
        if let Some(previous) = previous {
            propose((tenant.clone(), ContactId::parse(&previous, "contact")?), Some(created_ms), false);
        }
        if let Some(previous) = previous_same_queue {
            propose((tenant, ContactId::parse(&previous, "contact")?), Some(created_ms), true);
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
    for (key, links) in proposed {
        let Some(before) = current.get(&key) else { continue };
        let mut linked = before.clone();
        let update = FactsUpdate {
            next_contact_ms: links.next_contact_ms,
            next_same_queue_contact_ms: links.next_same_queue_contact_ms,
            ..FactsUpdate::default()
        };
        merge(&mut linked, &update);
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
