//! The PostgreSQL [`CrmStore`]. Tables live in schema `crm` and are keyed by
//! tenant first. Identities are unique per (tenant, kind, value), which is
//! what makes concurrent resolves agree; timeline merges lock their row.
//! Ids use the "C" collation so the database orders them bytewise, as the
//! in-memory store does.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use switchboard_core::names::customer_name;
use switchboard_core::time::now_millis;
use switchboard_core::{ContactId, CustomerId, Error, ErrorCode, TenantId};
use switchboard_platform::postgres::{CachedStatements, Migration, erase_tenant_rows, migrate, pg_error};
use tokio_postgres::Row;

use super::postgres_customers::{self as customers, customers_from_rows, load_customer};
use super::{CrmStore, Customer, ResolvedCustomer};
use crate::domain::{EntryStatus, Identity, TimelineCursor, TimelineEntry, TimelineUpdate, apply_update};

/// The service name migrations are recorded under.
pub const MIGRATION_SERVICE: &str = "crm";

/// The schema of the CRM store, in apply order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: "0001_customers_identities_timeline",
        sql: r#"
        CREATE SCHEMA IF NOT EXISTS crm;

        CREATE TABLE crm.customers (
            tenant text NOT NULL,
            customer_id text COLLATE "C" NOT NULL,
            display_name text NOT NULL,
            create_time_ms bigint NOT NULL,
            PRIMARY KEY (tenant, customer_id)
        );

        CREATE TABLE crm.identities (
            tenant text NOT NULL,
            kind text NOT NULL,
            value text NOT NULL,
            customer_id text COLLATE "C" NOT NULL,
            PRIMARY KEY (tenant, kind, value),
            FOREIGN KEY (tenant, customer_id) REFERENCES crm.customers (tenant, customer_id)
        );
        CREATE INDEX identities_by_customer ON crm.identities (tenant, customer_id);

        CREATE TABLE crm.timeline_entries (
            tenant text NOT NULL,
            contact_id text COLLATE "C" NOT NULL,
            customer_id text COLLATE "C" NOT NULL,
            status text NOT NULL,
            channel bigint NOT NULL,
            queue text NOT NULL,
            agent text NOT NULL,
            subject text NOT NULL,
            disposition text NOT NULL,
            resolved boolean NOT NULL,
            create_time_ms bigint NOT NULL,
            answer_time_ms bigint NOT NULL,
            end_time_ms bigint NOT NULL,
            PRIMARY KEY (tenant, contact_id)
        );
        CREATE INDEX timeline_entries_newest_first
            ON crm.timeline_entries (tenant, customer_id, create_time_ms DESC, contact_id DESC);
    "#,
    },
    Migration {
        version: "0002_timeline_transfer_and_callback",
        sql: "
        ALTER TABLE crm.timeline_entries
            ADD COLUMN transferred_to text NOT NULL DEFAULT '',
            ADD COLUMN transfer_time_ms bigint NOT NULL DEFAULT 0,
            ADD COLUMN callback_number text NOT NULL DEFAULT '';
    ",
    },
    Migration {
        // Routing's events can arrive before the contact's creation names
        // its customer: the entry is kept, its customer set later.
        version: "0003_timeline_customer_set_later",
        sql: "ALTER TABLE crm.timeline_entries ALTER COLUMN customer_id DROP NOT NULL;",
    },
    Migration {
        version: "0004_timeline_conversation",
        sql: "ALTER TABLE crm.timeline_entries ADD COLUMN conversation text NOT NULL DEFAULT '';",
    },
    Migration {
        version: "0005_customers_merged_into",
        sql: r#"
        ALTER TABLE crm.customers ADD COLUMN merged_into text COLLATE "C";
        CREATE INDEX customers_merged_into ON crm.customers (tenant, merged_into) WHERE merged_into IS NOT NULL;
    "#,
    },
];

/// The customer `$2` of tenant `$1` and those merged into it: whose
/// entries its timeline lists.
const MERGED_HERE: &str =
    "SELECT $2::text UNION ALL SELECT customer_id FROM crm.customers WHERE tenant = $1 AND merged_into = $2";

/// How often a racing insert is retried before giving up with ABORTED.
const MAX_RACE_ATTEMPTS: usize = 3;

/// Finds the customer of identity ($1 tenant, $2 kind, $3 value), or
/// creates it ($4 id, $5 display name, $6 creation) with that identity.
/// Found: the customer's rows as [`customers_from_rows`] reads them (one
/// per identity), each marked `found`, or one row marked `missing` when the
/// identity points at no customer. Created: one row marked `created`.
/// Neither (a concurrent insert of the identity won): no row.
const RESOLVE_CUSTOMER_SQL: &str = "
    WITH existing AS (
        SELECT customer_id FROM crm.identities WHERE tenant = $1 AND kind = $2 AND value = $3),
    identity AS (
        INSERT INTO crm.identities (tenant, kind, value, customer_id)
        SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM existing)
        ON CONFLICT (tenant, kind, value) DO NOTHING
        RETURNING tenant, customer_id),
    created AS (
        INSERT INTO crm.customers (tenant, customer_id, display_name, create_time_ms)
        SELECT tenant, customer_id, $5, $6 FROM identity
        RETURNING customer_id)
    SELECT existing.customer_id, found.display_name, found.create_time_ms, identities.kind,
        identities.value, found.merged_into,
        CASE WHEN found.customer_id IS NULL THEN 'missing' ELSE 'found' END
    FROM existing
    LEFT JOIN crm.customers found ON found.tenant = $1 AND found.customer_id = existing.customer_id
    LEFT JOIN crm.identities identities
        ON identities.tenant = $1 AND identities.customer_id = found.customer_id
    UNION ALL
    SELECT customer_id, NULL, NULL, NULL, NULL, NULL, 'created' FROM created";

/// What [`RESOLVE_CUSTOMER_SQL`] did.
enum Resolution {
    /// The identity's customer, as stored.
    Found(Customer),
    Created,
    /// A concurrent insert of the identity won: try again.
    Raced,
}

fn resolution_of(tenant: &TenantId, rows: &[Row]) -> Result<Resolution, Error> {
    let Some(first) = rows.first() else {
        return Ok(Resolution::Raced);
    };
    let outcome: &str = first.try_get(6).map_err(pg_error)?;
    match outcome {
        "found" => customers_from_rows(tenant, rows)?
            .pop()
            .map(Resolution::Found)
            .ok_or_else(|| Error::internal("a found customer without its row")),
        "created" => Ok(Resolution::Created),
        _ => {
            let customer_id: &str = first.try_get(0).map_err(pg_error)?;
            Err(Error::internal(format!("identity points at missing customer `{customer_id}`")))
        }
    }
}

const ENTRY_COLUMNS: &str = "tenant, contact_id, customer_id, status, channel, queue, agent, subject, disposition, \
                             resolved, create_time_ms, answer_time_ms, end_time_ms, transferred_to, \
                             transfer_time_ms, callback_number, conversation";

pub struct PostgresCrmStore {
    pool: Pool,
}

impl PostgresCrmStore {
    /// A store on `pool`; the schema must be migrated ([`migrate_schema`]).
    pub fn new(pool: Pool) -> PostgresCrmStore {
        PostgresCrmStore { pool }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(pg_error)
    }
}

/// Applies [`MIGRATIONS`] that are not applied yet.
pub async fn migrate_schema(pool: &Pool) -> Result<(), Error> {
    migrate(pool, MIGRATION_SERVICE, MIGRATIONS).await
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::internal(format!("crm store holds a malformed row: {what}"))
}

/// The batch's entries as one array per column, in [`ENTRY_COLUMNS`] order,
/// for `UNNEST`.
struct EntryColumns<'a> {
    tenants: Vec<&'a str>,
    contacts: Vec<&'a str>,
    customers: Vec<Option<&'a str>>,
    statuses: Vec<&'a str>,
    channels: Vec<i64>,
    queues: Vec<&'a str>,
    agents: Vec<&'a str>,
    subjects: Vec<&'a str>,
    dispositions: Vec<&'a str>,
    resolved: Vec<bool>,
    create_times: Vec<i64>,
    answer_times: Vec<i64>,
    end_times: Vec<i64>,
    transferred_to: Vec<&'a str>,
    transfer_times: Vec<i64>,
    callback_numbers: Vec<&'a str>,
    conversations: Vec<&'a str>,
}

impl<'a> EntryColumns<'a> {
    fn of(entries: &[&'a TimelineEntry]) -> EntryColumns<'a> {
        let column = |read: fn(&'a TimelineEntry) -> &'a str| entries.iter().map(|entry| read(entry)).collect();
        let number = |read: fn(&TimelineEntry) -> i64| entries.iter().map(|entry| read(entry)).collect();
        EntryColumns {
            tenants: column(|entry| entry.tenant.as_str()),
            contacts: column(|entry| entry.contact.as_str()),
            customers: entries.iter().map(|entry| entry.customer.as_ref().map(CustomerId::as_str)).collect(),
            statuses: column(|entry| entry.status.as_str()),
            channels: number(|entry| i64::from(entry.channel)),
            queues: column(|entry| &entry.queue),
            agents: column(|entry| &entry.agent),
            subjects: column(|entry| &entry.subject),
            dispositions: column(|entry| &entry.disposition),
            resolved: entries.iter().map(|entry| entry.resolved).collect(),
            create_times: number(|entry| entry.create_time_millis),
            answer_times: number(|entry| entry.answer_time_millis),
            end_times: number(|entry| entry.end_time_millis),
            transferred_to: column(|entry| &entry.transferred_to),
            transfer_times: number(|entry| entry.transfer_time_millis),
            callback_numbers: column(|entry| &entry.callback_number),
            conversations: column(|entry| &entry.conversation),
        }
    }

    fn parameters(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 17] {
        [
            &self.tenants,
            &self.contacts,
            &self.customers,
            &self.statuses,
            &self.channels,
            &self.queues,
            &self.agents,
            &self.subjects,
            &self.dispositions,
            &self.resolved,
            &self.create_times,
            &self.answer_times,
            &self.end_times,
            &self.transferred_to,
            &self.transfer_times,
            &self.callback_numbers,
            &self.conversations,
        ]
    }
}

/// The columns of [`ENTRY_COLUMNS`] from the statement's parameters.
const UNNEST_ENTRIES: &str = "UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], \
                              $7::text[], $8::text[], $9::text[], $10::bool[], $11::int8[], $12::int8[], \
                              $13::int8[], $14::text[], $15::int8[], $16::text[], $17::text[])";

/// Writes back the entries the batch changed, in one statement for those
/// read (and locked) and one for the new ones; false when another writer
/// inserted one of the new entries first (nothing of it is written then).
async fn write_entries(
    transaction: &deadpool_postgres::Transaction<'_>,
    existing: &[&TimelineEntry],
    new: &[&TimelineEntry],
) -> Result<bool, Error> {
    if !existing.is_empty() {
        let columns = EntryColumns::of(existing);
        // The customer is set once (the merge keeps the first named).
        transaction
            .execute_cached(
                &format!(
                    "UPDATE crm.timeline_entries AS entries SET customer_id = changed.customer_id,
                         status = changed.status, channel = changed.channel, queue = changed.queue,
                         agent = changed.agent, subject = changed.subject,
                         disposition = changed.disposition, resolved = changed.resolved,
                         create_time_ms = changed.create_time_ms, answer_time_ms = changed.answer_time_ms,
                         end_time_ms = changed.end_time_ms, transferred_to = changed.transferred_to,
                         transfer_time_ms = changed.transfer_time_ms, callback_number = changed.callback_number,
                         conversation = changed.conversation
                     FROM {UNNEST_ENTRIES} AS changed ({ENTRY_COLUMNS})
                     WHERE entries.tenant = changed.tenant AND entries.contact_id = changed.contact_id"
                ),
                &columns.parameters(),
            )
            .await
            .map_err(pg_error)?;
    }
    if new.is_empty() {
        return Ok(true);
    }
    let columns = EntryColumns::of(new);
    let inserted = transaction
        .execute_cached(
            &format!(
                "INSERT INTO crm.timeline_entries ({ENTRY_COLUMNS}) SELECT * FROM {UNNEST_ENTRIES}
                 ON CONFLICT (tenant, contact_id) DO NOTHING"
            ),
            &columns.parameters(),
        )
        .await
        .map_err(pg_error)?;
    Ok(inserted == new.len() as u64)
}

fn entry_from_row(row: &Row) -> Result<TimelineEntry, Error> {
    let status: &str = row.try_get(3).map_err(corrupt)?;
    let channel: i64 = row.try_get(4).map_err(corrupt)?;
    Ok(TimelineEntry {
        tenant: TenantId::parse(row.try_get(0).map_err(corrupt)?, "tenant").map_err(corrupt)?,
        contact: ContactId::parse(row.try_get(1).map_err(corrupt)?, "contact_id").map_err(corrupt)?,
        customer: row
            .try_get::<_, Option<&str>>(2)
            .map_err(corrupt)?
            .map(|customer| CustomerId::parse(customer, "customer_id").map_err(corrupt))
            .transpose()?,
        status: EntryStatus::parse(status).ok_or_else(|| corrupt(format!("status `{status}`")))?,
        channel: i32::try_from(channel).map_err(corrupt)?,
        queue: row.try_get(5).map_err(corrupt)?,
        agent: row.try_get(6).map_err(corrupt)?,
        subject: row.try_get(7).map_err(corrupt)?,
        disposition: row.try_get(8).map_err(corrupt)?,
        resolved: row.try_get(9).map_err(corrupt)?,
        create_time_millis: row.try_get(10).map_err(corrupt)?,
        answer_time_millis: row.try_get(11).map_err(corrupt)?,
        end_time_millis: row.try_get(12).map_err(corrupt)?,
        transferred_to: row.try_get(13).map_err(corrupt)?,
        transfer_time_millis: row.try_get(14).map_err(corrupt)?,
        callback_number: row.try_get(15).map_err(corrupt)?,
        conversation: row.try_get(16).map_err(corrupt)?,
    })
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl CrmStore for PostgresCrmStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        // Identities first: they refer to customers.
        let tables = ["crm.identities", "crm.timeline_entries", "crm.customers"];
        erase_tenant_rows(&self.pool, &tables, tenant).await.map(drop)
    }

    async fn resolve_customer(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        display_name: &str,
    ) -> Result<ResolvedCustomer, Error> {
        let client = self.client().await?;
        for _ in 0..MAX_RACE_ATTEMPTS {
            let customer = Customer {
                tenant: tenant.clone(),
                id: CustomerId::generate(),
                display_name: display_name.to_owned(),
                identities: vec![identity.clone()],
                create_time_millis: now_millis(),
                merged_into: None,
            };
            // One statement finds the identity's customer, with its
            // identities, or creates both: the customer is inserted only
            // with its identity, and the identity's foreign key is checked
            // at the statement's end. It waits for a concurrent insert of
            // the same identity to settle; if that one commits, ours inserts
            // nothing and finds nothing (its snapshot predates it), and the
            // next attempt finds theirs.
            let rows = client
                .query_cached(
                    RESOLVE_CUSTOMER_SQL,
                    &[
                        &tenant.as_str(),
                        &identity.kind.as_str(),
                        &identity.value,
                        &customer.id.as_str(),
                        &customer.display_name,
                        &customer.create_time_millis,
                    ],
                )
                .await
                .map_err(pg_error)?;
            match resolution_of(tenant, &rows)? {
                Resolution::Found(existing) => return Ok(ResolvedCustomer { customer: existing, created: false }),
                Resolution::Created => return Ok(ResolvedCustomer { customer, created: true }),
                Resolution::Raced => {}
            }
        }
        Err(Error::new(ErrorCode::Aborted, "customer resolution kept racing with concurrent writers, retry"))
    }

    async fn add_identity(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
        identity: &Identity,
    ) -> Result<Customer, Error> {
        let mut client = self.client().await?;
        customers::add_identity(&mut client, tenant, customer, identity).await
    }

    async fn merge_customers(
        &self,
        tenant: &TenantId,
        survivor: &CustomerId,
        merged: &CustomerId,
    ) -> Result<Customer, Error> {
        let mut client = self.client().await?;
        customers::merge(&mut client, tenant, survivor, merged).await
    }

    async fn get_customer(&self, tenant: &TenantId, customer: &CustomerId) -> Result<Customer, Error> {
        let client = self.client().await?;
        load_customer(&client, tenant, customer).await?.ok_or_else(|| Error::not_found(customer_name(tenant, customer)))
    }

    async fn list_customers(
        &self,
        tenant: &TenantId,
        after: Option<&CustomerId>,
        limit: usize,
    ) -> Result<Vec<Customer>, Error> {
        let client = self.client().await?;
        // Every id is greater than the empty string.
        let after = after.map_or("", CustomerId::as_str);
        let rows = client
            .query_cached(
                "SELECT c.customer_id, c.display_name, c.create_time_ms, i.kind, i.value, c.merged_into
                 FROM (SELECT tenant, customer_id, display_name, create_time_ms, merged_into
                       FROM crm.customers
                       WHERE tenant = $1 AND customer_id > $2 AND merged_into IS NULL
                       ORDER BY customer_id
                       LIMIT $3) c
                 LEFT JOIN crm.identities i ON i.tenant = c.tenant AND i.customer_id = c.customer_id
                 ORDER BY c.customer_id, i.kind, i.value",
                &[&tenant.as_str(), &after, &limit_param(limit)],
            )
            .await
            .map_err(pg_error)?;
        customers_from_rows(tenant, &rows)
    }

    async fn merge_timeline_entry(&self, update: &TimelineUpdate) -> Result<TimelineEntry, Error> {
        let mut merged = self.merge_timeline_entries(std::slice::from_ref(update)).await?;
        merged.pop().ok_or_else(|| Error::internal("a merge returns its entry"))
    }

    /// One transaction: the batch's entries read and locked in one query
    /// (in key order, as every writer locks them, so two batches never
    /// deadlock), the updates applied in order in memory, the changed
    /// entries written back in two statements (see `write_entries`).
    async fn merge_timeline_entries(&self, updates: &[TimelineUpdate]) -> Result<Vec<TimelineEntry>, Error> {
        let mut client = self.client().await?;
        let tenants: Vec<&str> = updates.iter().map(|update| update.tenant.as_str()).collect();
        let contacts: Vec<&str> = updates.iter().map(|update| update.contact.as_str()).collect();
        for _ in 0..MAX_RACE_ATTEMPTS {
            let transaction = client.transaction().await.map_err(pg_error)?;
            let rows = transaction
                .query_cached(
                    &format!(
                        "SELECT {ENTRY_COLUMNS} FROM crm.timeline_entries
                         WHERE (tenant, contact_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
                         ORDER BY tenant, contact_id
                         FOR UPDATE"
                    ),
                    &[&tenants, &contacts],
                )
                .await
                .map_err(pg_error)?;
            let mut stored = BTreeMap::new();
            for row in &rows {
                let entry = entry_from_row(row)?;
                stored.insert((entry.tenant.clone(), entry.contact.clone()), entry);
            }
            // In key order, so new entries are inserted in the order every
            // writer inserts them.
            let mut current = stored.clone();
            let mut merged_in_order = Vec::with_capacity(updates.len());
            for update in updates {
                let key = (update.tenant.clone(), update.contact.clone());
                let merged = apply_update(current.get(&key), update);
                merged_in_order.push(merged.clone());
                current.insert(key, merged);
            }
            let mut changed_existing = Vec::new();
            let mut changed_new = Vec::new();
            for (key, entry) in &current {
                match stored.get(key) {
                    Some(before) if before == entry => {}
                    Some(_) => changed_existing.push(entry),
                    None => changed_new.push(entry),
                }
            }
            if !write_entries(&transaction, &changed_existing, &changed_new).await? {
                // Another writer created an entry since we looked: merge into
                // theirs on the next attempt.
                transaction.rollback().await.map_err(pg_error)?;
                continue;
            }
            transaction.commit().await.map_err(pg_error)?;
            return Ok(merged_in_order);
        }
        Err(Error::new(ErrorCode::Aborted, "timeline merge kept racing with concurrent writers, retry"))
    }

    async fn timeline_entry(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<TimelineEntry>, Error> {
        let client = self.client().await?;
        let row = client
            .query_opt_cached(
                &format!("SELECT {ENTRY_COLUMNS} FROM crm.timeline_entries WHERE tenant = $1 AND contact_id = $2"),
                &[&tenant.as_str(), &contact.as_str()],
            )
            .await
            .map_err(pg_error)?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn list_timeline_entries(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
        after: Option<&TimelineCursor>,
        limit: usize,
    ) -> Result<Vec<TimelineEntry>, Error> {
        let client = self.client().await?;
        let rows = match after {
            None => client
                .query_cached(
                    &format!(
                        "SELECT {ENTRY_COLUMNS} FROM crm.timeline_entries
                         WHERE tenant = $1 AND customer_id IN ({MERGED_HERE})
                         ORDER BY create_time_ms DESC, contact_id DESC
                         LIMIT $3"
                    ),
                    &[&tenant.as_str(), &customer.as_str(), &limit_param(limit)],
                )
                .await
                .map_err(pg_error)?,
            Some(cursor) => client
                .query_cached(
                    &format!(
                        "SELECT {ENTRY_COLUMNS} FROM crm.timeline_entries
                         WHERE tenant = $1 AND customer_id IN ({MERGED_HERE})
                           AND (create_time_ms, contact_id) < ($3, $4)
                         ORDER BY create_time_ms DESC, contact_id DESC
                         LIMIT $5"
                    ),
                    &[
                        &tenant.as_str(),
                        &customer.as_str(),
                        &cursor.create_time_millis,
                        &cursor.contact.as_str(),
                        &limit_param(limit),
                    ],
                )
                .await
                .map_err(pg_error)?,
        };
        rows.iter().map(entry_from_row).collect()
    }
}
