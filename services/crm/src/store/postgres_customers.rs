//! Customers and their identities in PostgreSQL: reading them, attaching
//! an identity and merging two customers. A change to a customer's
//! identities locks the customer's row first, so an attach and a merge of
//! the same customer never interleave.

use deadpool_postgres::GenericClient;
use switchboard_core::names::customer_name;
use switchboard_core::{CustomerId, Error, TenantId};
use switchboard_platform::postgres::{CachedStatements, pg_error};
use tokio_postgres::Row;

use super::postgres::corrupt;
use super::{Customer, customer_merged, identity_taken};
use crate::domain::{Identity, IdentityKind};

pub(super) async fn load_customer(
    client: &impl GenericClient,
    tenant: &TenantId,
    customer: &CustomerId,
) -> Result<Option<Customer>, Error> {
    let rows = client
        .query_cached(
            "SELECT c.customer_id, c.display_name, c.create_time_ms, i.kind, i.value, c.merged_into
             FROM crm.customers c
             LEFT JOIN crm.identities i ON i.tenant = c.tenant AND i.customer_id = c.customer_id
             WHERE c.tenant = $1 AND c.customer_id = $2
             ORDER BY i.kind, i.value",
            &[&tenant.as_str(), &customer.as_str()],
        )
        .await
        .map_err(pg_error)?;
    Ok(customers_from_rows(tenant, &rows)?.pop())
}

pub(super) async fn find_customer_id_by_identity(
    client: &impl GenericClient,
    tenant: &TenantId,
    identity: &Identity,
) -> Result<Option<CustomerId>, Error> {
    let row = client
        .query_opt_cached(
            "SELECT customer_id FROM crm.identities WHERE tenant = $1 AND kind = $2 AND value = $3",
            &[&tenant.as_str(), &identity.kind.as_str(), &identity.value],
        )
        .await
        .map_err(pg_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let customer_id: &str = row.try_get(0).map_err(corrupt)?;
    CustomerId::parse(customer_id, "customer_id").map(Some).map_err(corrupt)
}

/// Groups rows of (customer_id, display_name, create_time_ms, kind, value,
/// merged_into), ordered by customer id, into customers.
pub(super) fn customers_from_rows(tenant: &TenantId, rows: &[Row]) -> Result<Vec<Customer>, Error> {
    let mut customers: Vec<Customer> = Vec::new();
    for row in rows {
        let customer_id: &str = row.try_get(0).map_err(corrupt)?;
        let is_same_customer = customers.last().is_some_and(|last| last.id.as_str() == customer_id);
        if !is_same_customer {
            let merged_into: Option<&str> = row.try_get(5).map_err(corrupt)?;
            customers.push(Customer {
                tenant: tenant.clone(),
                id: CustomerId::parse(customer_id, "customer_id").map_err(corrupt)?,
                display_name: row.try_get(1).map_err(corrupt)?,
                identities: Vec::new(),
                create_time_millis: row.try_get(2).map_err(corrupt)?,
                merged_into: merged_into
                    .map(|survivor| CustomerId::parse(survivor, "merged_into").map_err(corrupt))
                    .transpose()?,
            });
        }
        let kind: Option<&str> = row.try_get(3).map_err(corrupt)?;
        let value: Option<String> = row.try_get(4).map_err(corrupt)?;
        if let (Some(kind), Some(value), Some(customer)) = (kind, value, customers.last_mut()) {
            let kind = IdentityKind::parse(kind).ok_or_else(|| corrupt(format!("identity kind `{kind}`")))?;
            customer.identities.push(Identity { kind, value });
        }
    }
    for customer in &mut customers {
        customer.identities.sort();
    }
    Ok(customers)
}

/// The `merged_into` of each of `customers` that exists, its row locked
/// until the transaction ends (in id order, as every writer locks them).
async fn lock_customers(
    transaction: &deadpool_postgres::Transaction<'_>,
    tenant: &TenantId,
    customers: &[&CustomerId],
) -> Result<Vec<(CustomerId, Option<CustomerId>)>, Error> {
    let ids: Vec<&str> = customers.iter().map(|customer| customer.as_str()).collect();
    let rows = transaction
        .query_cached(
            "SELECT customer_id, merged_into FROM crm.customers
             WHERE tenant = $1 AND customer_id = ANY($2) ORDER BY customer_id FOR UPDATE",
            &[&tenant.as_str(), &ids],
        )
        .await
        .map_err(pg_error)?;
    rows.iter()
        .map(|row| {
            let id = CustomerId::parse(row.try_get(0).map_err(corrupt)?, "customer_id").map_err(corrupt)?;
            let merged_into: Option<&str> = row.try_get(1).map_err(corrupt)?;
            let merged_into =
                merged_into.map(|survivor| CustomerId::parse(survivor, "merged_into").map_err(corrupt)).transpose()?;
            Ok((id, merged_into))
        })
        .collect()
}

/// [`super::CrmStore::add_identity`].
pub(super) async fn add_identity(
    client: &mut deadpool_postgres::Object,
    tenant: &TenantId,
    customer: &CustomerId,
    identity: &Identity,
) -> Result<Customer, Error> {
    let transaction = client.transaction().await.map_err(pg_error)?;
    match lock_customers(&transaction, tenant, &[customer]).await?.pop() {
        None => return Err(Error::not_found(customer_name(tenant, customer))),
        Some((_, Some(survivor))) => return Err(customer_merged(tenant, customer, &survivor)),
        Some((_, None)) => {}
    }
    // Waits for a concurrent insert of the same identity to settle;
    // whoever has it then is the answer.
    transaction
        .execute_cached(
            "INSERT INTO crm.identities (tenant, kind, value, customer_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant, kind, value) DO NOTHING",
            &[&tenant.as_str(), &identity.kind.as_str(), &identity.value, &customer.as_str()],
        )
        .await
        .map_err(pg_error)?;
    let owner = find_customer_id_by_identity(&transaction, tenant, identity).await?;
    let attached = match owner {
        Some(owner) if &owner == customer => load_customer(&transaction, tenant, customer)
            .await?
            .ok_or_else(|| Error::not_found(customer_name(tenant, customer)))?,
        Some(owner) => return Err(identity_taken(tenant, &owner)),
        None => return Err(Error::internal("an inserted identity vanished")),
    };
    transaction.commit().await.map_err(pg_error)?;
    Ok(attached)
}

/// [`super::CrmStore::merge_customers`], in one transaction holding both
/// customers' rows.
pub(super) async fn merge(
    client: &mut deadpool_postgres::Object,
    tenant: &TenantId,
    survivor: &CustomerId,
    merged: &CustomerId,
) -> Result<Customer, Error> {
    let transaction = client.transaction().await.map_err(pg_error)?;
    let locked = lock_customers(&transaction, tenant, &[survivor, merged]).await?;
    let state_of = |wanted: &CustomerId| {
        locked
            .iter()
            .find(|(id, _)| id == wanted)
            .map(|(_, merged_into)| merged_into.clone())
            .ok_or_else(|| Error::not_found(customer_name(tenant, wanted)))
    };
    if let Some(further) = state_of(survivor)? {
        return Err(customer_merged(tenant, survivor, &further));
    }
    match state_of(merged)? {
        Some(into) if &into == survivor => {}
        Some(into) => return Err(customer_merged(tenant, merged, &into)),
        None => {
            let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&tenant.as_str(), &merged.as_str(), &survivor.as_str()];
            // Those merged into it before lead to the survivor too (their
            // identities moved to it then).
            transaction
                .execute_cached(
                    "UPDATE crm.customers SET merged_into = $3
                     WHERE tenant = $1 AND (customer_id = $2 OR merged_into = $2)",
                    &parameters,
                )
                .await
                .map_err(pg_error)?;
            transaction
                .execute_cached(
                    "UPDATE crm.identities SET customer_id = $3 WHERE tenant = $1 AND customer_id = $2",
                    &parameters,
                )
                .await
                .map_err(pg_error)?;
        }
    }
    let survivor_record = load_customer(&transaction, tenant, survivor)
        .await?
        .ok_or_else(|| Error::not_found(customer_name(tenant, survivor)))?;
    transaction.commit().await.map_err(pg_error)?;
    Ok(survivor_record)
}
