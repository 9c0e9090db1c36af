//! The PostgreSQL contact store, in schema `ingestion`. The contact itself
//! is kept as its encoded protobuf; the columns beside it are the keys the
//! store looks up and enforces uniqueness on, each starting with the tenant.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use prost::Message;
use switchboard_core::{ContactId, Error, ErrorCode, TenantId, names};
use switchboard_platform::postgres::{CachedStatements, Migration, erase_tenant_rows, pg_error};
use switchboard_proto::ingestion::v1::Contact;
use tokio_postgres::Row;

use super::{AbandonOutcome, Abandonment, ContactRecord, ContactStore, InsertOutcome, Publication, PublishedEvent};

/// Migrations of service `ingestion`, applied in order by
/// `switchboard_platform::postgres::migrate`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: "0001_contacts",
        sql: "
        CREATE SCHEMA IF NOT EXISTS ingestion;
        CREATE TABLE ingestion.contacts (
            tenant text NOT NULL,
            contact_id text NOT NULL,
            request_id text NOT NULL,
            channel integer NOT NULL,
            provider_message_id text NOT NULL,
            -- The encoded switchboard.ingestion.v1.Contact, without abandon_time.
            contact bytea NOT NULL,
            create_time_ms bigint NOT NULL,
            created_event_id text NOT NULL,
            created_published boolean NOT NULL DEFAULT false,
            abandon_time_ms bigint,
            abandon_reason text NOT NULL DEFAULT '',
            abandon_event_id text NOT NULL DEFAULT '',
            abandon_published boolean NOT NULL DEFAULT false,
            PRIMARY KEY (tenant, contact_id),
            UNIQUE (tenant, request_id)
        );
        CREATE UNIQUE INDEX contacts_provider_message_id
            ON ingestion.contacts (tenant, channel, provider_message_id)
            WHERE provider_message_id <> '';
    ",
    },
    Migration {
        version: "0002_unpublished",
        sql: "
        CREATE INDEX contacts_unpublished ON ingestion.contacts (create_time_ms)
            WHERE NOT created_published OR (abandon_time_ms IS NOT NULL AND NOT abandon_published);
    ",
    },
    super::channels::CHANNELS_MIGRATION,
    crate::conversations::postgres::CONVERSATIONS_MIGRATION,
    crate::conversations::postgres::OUTBOUND_MIGRATION,
    super::channels::MAILBOXES_MIGRATION,
    crate::calls::postgres::CALLS_MIGRATION,
    super::channels::MAILBOX_LEASES_MIGRATION,
];

const COLUMNS: &str = "tenant, contact_id, request_id, contact, created_event_id, created_published, \
     abandon_time_ms, abandon_reason, abandon_event_id, abandon_published";

pub struct PostgresContactStore {
    pool: Pool,
}

impl PostgresContactStore {
    /// A store on `pool`; the caller has applied [`MIGRATIONS`].
    pub fn new(pool: Pool) -> PostgresContactStore {
        PostgresContactStore { pool }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(pg_error)
    }

    async fn query_record(
        &self,
        condition: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<ContactRecord>, Error> {
        let client = self.client().await?;
        let query = format!("SELECT {COLUMNS} FROM ingestion.contacts WHERE {condition}");
        let row = client.query_opt_cached(&query, parameters).await.map_err(pg_error)?;
        row.as_ref().map(record_from_row).transpose()
    }
}

/// A row that does not decode is corruption, not a client mistake.
fn corrupt(what: &str, error: impl std::fmt::Display) -> Error {
    Error::internal(format!("stored contact has a bad {what}: {error}"))
}

fn record_from_row(row: &Row) -> Result<ContactRecord, Error> {
    let tenant: String = row.try_get("tenant").map_err(pg_error)?;
    let contact_id: String = row.try_get("contact_id").map_err(pg_error)?;
    let encoded: Vec<u8> = row.try_get("contact").map_err(pg_error)?;
    let abandon_time_ms: Option<i64> = row.try_get("abandon_time_ms").map_err(pg_error)?;
    let abandonment = match abandon_time_ms {
        Some(abandon_time_millis) => Some(Abandonment {
            abandon_time_millis,
            reason: row.try_get("abandon_reason").map_err(pg_error)?,
            event_id: row.try_get("abandon_event_id").map_err(pg_error)?,
            published: row.try_get("abandon_published").map_err(pg_error)?,
        }),
        None => None,
    };
    let record = ContactRecord {
        tenant: TenantId::parse(&tenant, "tenant").map_err(|error| corrupt("tenant", error))?,
        contact_id: ContactId::parse(&contact_id, "contact_id").map_err(|error| corrupt("contact id", error))?,
        request_id: row.try_get("request_id").map_err(pg_error)?,
        contact: Contact::decode(encoded.as_slice()).map_err(|error| corrupt("contact", error))?,
        created_event_id: row.try_get("created_event_id").map_err(pg_error)?,
        created_published: row.try_get("created_published").map_err(pg_error)?,
        abandonment: None,
    };
    Ok(record.with_abandonment(abandonment))
}

fn limit_parameter(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl ContactStore for PostgresContactStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        erase_tenant_rows(&self.pool, &["ingestion.contacts"], tenant).await.map(drop)
    }

    async fn insert(&self, record: &ContactRecord) -> Result<InsertOutcome, Error> {
        // The abandon time lives in its column only, so it has one truth.
        let mut stored_contact = record.contact.clone();
        stored_contact.abandon_time = None;
        let encoded = stored_contact.encode_to_vec();
        let client = self.client().await?;
        // ON CONFLICT DO NOTHING waits for a concurrent insert of the same
        // key to commit and then skips, so the lookups below see the winner.
        let inserted = client
            .execute_cached(
                "INSERT INTO ingestion.contacts
                    (tenant, contact_id, request_id, channel, provider_message_id, contact, create_time_ms,
                     created_event_id, created_published)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT DO NOTHING",
                &[
                    &record.tenant.as_str(),
                    &record.contact_id.as_str(),
                    &record.request_id,
                    &record.channel(),
                    &record.provider_message_id(),
                    &encoded,
                    &record.create_time_millis(),
                    &record.created_event_id,
                    &record.created_published,
                ],
            )
            .await
            .map_err(pg_error)?;
        drop(client);
        if inserted == 1 {
            return Ok(InsertOutcome::Inserted);
        }
        if let Some(existing) = self.find_by_request_id(&record.tenant, &record.request_id).await? {
            return Ok(InsertOutcome::Existing(Box::new(existing)));
        }
        let by_provider_message_id =
            self.find_by_provider_message_id(&record.tenant, record.channel(), record.provider_message_id()).await?;
        if let Some(existing) = by_provider_message_id {
            return Ok(InsertOutcome::Existing(Box::new(existing)));
        }
        // Only the freshly minted contact id is left to collide on.
        Err(Error::already_exists(names::contact_name(&record.tenant, &record.contact_id)))
    }

    /// One statement for the batch, its events folded per contact first
    /// (an `UPDATE … FROM` changes a row once however many marks match it).
    async fn mark_all_published(&self, published: &[PublishedEvent]) -> Result<(), Error> {
        let mut per_contact: BTreeMap<(&str, &str), (bool, bool)> = BTreeMap::new();
        for PublishedEvent { tenant, contact_id, publication } in published {
            let (created, abandoned) = per_contact.entry((tenant.as_str(), contact_id.as_str())).or_default();
            match publication {
                Publication::Created => *created = true,
                Publication::Abandoned => *abandoned = true,
            }
        }
        let tenants: Vec<&str> = per_contact.keys().map(|(tenant, _)| *tenant).collect();
        let contact_ids: Vec<&str> = per_contact.keys().map(|(_, contact_id)| *contact_id).collect();
        let created: Vec<bool> = per_contact.values().map(|(created, _)| *created).collect();
        let abandoned: Vec<bool> = per_contact.values().map(|(_, abandoned)| *abandoned).collect();
        let client = self.client().await?;
        let updated = client
            .execute_cached(
                "UPDATE ingestion.contacts AS contacts
                 SET created_published = contacts.created_published OR marks.created,
                     abandon_published = contacts.abandon_published
                         OR (marks.abandoned AND contacts.abandon_time_ms IS NOT NULL)
                 FROM UNNEST($1::text[], $2::text[], $3::bool[], $4::bool[])
                     AS marks (tenant, contact_id, created, abandoned)
                 WHERE contacts.tenant = marks.tenant AND contacts.contact_id = marks.contact_id",
                &[&tenants, &contact_ids, &created, &abandoned],
            )
            .await
            .map_err(pg_error)?;
        let marked = per_contact.len() as u64;
        if updated < marked {
            return Err(Error::new(
                ErrorCode::NotFound,
                format!("{} of the {marked} contacts marked published do not exist", marked - updated),
            ));
        }
        Ok(())
    }

    async fn get(&self, tenant: &TenantId, contact_id: &ContactId) -> Result<Option<ContactRecord>, Error> {
        self.query_record("tenant = $1 AND contact_id = $2", &[&tenant.as_str(), &contact_id.as_str()]).await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        before_contact_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ContactRecord>, Error> {
        let client = self.client().await?;
        let limit = limit_parameter(limit);
        // Keyset pagination on the primary key, walked backwards.
        let rows = match before_contact_id {
            Some(before) => {
                let query = format!(
                    "SELECT {COLUMNS} FROM ingestion.contacts WHERE tenant = $1 AND contact_id < $2
                     ORDER BY contact_id DESC LIMIT $3"
                );
                client.query_cached(&query, &[&tenant.as_str(), &before, &limit]).await
            }
            None => {
                let query = format!(
                    "SELECT {COLUMNS} FROM ingestion.contacts WHERE tenant = $1 ORDER BY contact_id DESC LIMIT $2"
                );
                client.query_cached(&query, &[&tenant.as_str(), &limit]).await
            }
        }
        .map_err(pg_error)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn unpublished(&self, changed_before_ms: i64, limit: usize) -> Result<Vec<ContactRecord>, Error> {
        let client = self.client().await?;
        let query = format!(
            "SELECT {COLUMNS} FROM ingestion.contacts
             WHERE (NOT created_published AND create_time_ms < $1)
                OR (abandon_time_ms IS NOT NULL AND NOT abandon_published AND abandon_time_ms < $1)
             ORDER BY CASE WHEN created_published THEN abandon_time_ms ELSE create_time_ms END, contact_id
             LIMIT $2"
        );
        let rows =
            client.query_cached(&query, &[&changed_before_ms, &limit_parameter(limit)]).await.map_err(pg_error)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn find_by_request_id(&self, tenant: &TenantId, request_id: &str) -> Result<Option<ContactRecord>, Error> {
        self.query_record("tenant = $1 AND request_id = $2", &[&tenant.as_str(), &request_id]).await
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
        self.query_record(
            "tenant = $1 AND channel = $2 AND provider_message_id = $3",
            &[&tenant.as_str(), &channel, &provider_message_id],
        )
        .await
    }

    async fn set_abandoned(
        &self,
        tenant: &TenantId,
        contact_id: &ContactId,
        abandonment: &Abandonment,
    ) -> Result<Option<AbandonOutcome>, Error> {
        let client = self.client().await?;
        // One statement decides the race: only the first abandon matches
        // `abandon_time_ms IS NULL`.
        let query = format!(
            "UPDATE ingestion.contacts
             SET abandon_time_ms = $3, abandon_reason = $4, abandon_event_id = $5, abandon_published = false
             WHERE tenant = $1 AND contact_id = $2 AND abandon_time_ms IS NULL
             RETURNING {COLUMNS}"
        );
        let updated = client
            .query_opt_cached(
                &query,
                &[
                    &tenant.as_str(),
                    &contact_id.as_str(),
                    &abandonment.abandon_time_millis,
                    &abandonment.reason,
                    &abandonment.event_id,
                ],
            )
            .await
            .map_err(pg_error)?;
        drop(client);
        if let Some(row) = updated {
            return Ok(Some(AbandonOutcome { record: record_from_row(&row)?, changed: true }));
        }
        let current = self.get(tenant, contact_id).await?;
        Ok(current.map(|record| AbandonOutcome { record, changed: false }))
    }

    async fn attach_customer(&self, tenant: &TenantId, contact_id: &ContactId, customer: &str) -> Result<bool, Error> {
        let client = self.client().await?;
        // The contact is one encoded column: read, change, and write it
        // back only if it is still what was read (a compare-and-set), so a
        // concurrent writer is never overwritten.
        loop {
            let row = client
                .query_opt_cached(
                    "SELECT contact FROM ingestion.contacts WHERE tenant = $1 AND contact_id = $2",
                    &[&tenant.as_str(), &contact_id.as_str()],
                )
                .await
                .map_err(pg_error)?;
            let Some(row) = row else {
                return Ok(false);
            };
            let stored: Vec<u8> = row.try_get("contact").map_err(pg_error)?;
            let mut contact = Contact::decode(stored.as_slice()).map_err(|error| corrupt("contact", error))?;
            if !contact.customer.is_empty() {
                return Ok(false);
            }
            customer.clone_into(&mut contact.customer);
            let changed = client
                .execute_cached(
                    "UPDATE ingestion.contacts SET contact = $3 WHERE tenant = $1 AND contact_id = $2 AND contact = $4",
                    &[&tenant.as_str(), &contact_id.as_str(), &contact.encode_to_vec(), &stored],
                )
                .await
                .map_err(pg_error)?;
            if changed == 1 {
                return Ok(true);
            }
        }
    }
}
