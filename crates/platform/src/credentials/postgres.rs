//! The PostgreSQL [`CredentialStore`]: schema `access`, shared by every
//! service of a deployment (any of them may apply its migrations; they are
//! serialised by the migration lock). Each change bumps the one-row
//! `access.revision` in its own transaction, which is what replicas poll.

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use switchboard_core::names::tenant_name;
use switchboard_core::{AgentId, Error, TenantId};
use tokio_postgres::Row;

use super::{
    ApiKeyId, AuditEntry, CredentialStore, DeletionProgress, ERASING_SERVICES, KeyHolder, KeyRecord, PreviousSecret,
    Snapshot, TenantChange, TenantDeletion, TenantLimits, TenantPolicy, TenantRecord, api_key_name, key_revoked,
    not_being_deleted,
};
use crate::postgres::{CachedStatements, Migration, migrate, pg_error};

/// The name its migrations are recorded under.
pub const MIGRATION_SERVICE: &str = "access";

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: "0001_tenants_api_keys",
        sql: r#"
        CREATE SCHEMA IF NOT EXISTS access;
        CREATE TABLE access.revision (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), revision bigint NOT NULL);
        INSERT INTO access.revision (revision) VALUES (0);
        CREATE TABLE access.tenants (
            tenant text COLLATE "C" PRIMARY KEY,
            display_name text NOT NULL,
            suspended boolean NOT NULL,
            create_time_ms bigint NOT NULL,
            update_time_ms bigint NOT NULL
        );
        CREATE TABLE access.api_keys (
            key_id text COLLATE "C" PRIMARY KEY,
            display_name text NOT NULL,
            role text NOT NULL,
            tenant text,
            agent text,
            expire_time_ms bigint,
            create_time_ms bigint NOT NULL,
            revoke_time_ms bigint,
            secret_sha256 text NOT NULL UNIQUE,
            secret_prefix text NOT NULL,
            previous_sha256 text,
            previous_expire_time_ms bigint
        );
        CREATE INDEX api_keys_by_tenant ON access.api_keys (tenant, key_id);
    "#,
    },
    Migration {
        version: "0002_audit_records",
        sql: r#"
        CREATE TABLE access.audit_records (
            sequence bigserial PRIMARY KEY,
            tenant text,
            actor text NOT NULL,
            action text NOT NULL,
            resource text NOT NULL,
            before_any bytea,
            after_any bytea,
            time_ms bigint NOT NULL
        );
        CREATE INDEX audit_records_by_tenant ON access.audit_records (tenant, sequence DESC);
    "#,
    },
    Migration {
        version: "0003_tenant_policy",
        sql: r#"
        ALTER TABLE access.tenants
            ADD COLUMN routing_weight integer NOT NULL DEFAULT 1,
            ADD COLUMN max_queues integer,
            ADD COLUMN max_agents integer,
            ADD COLUMN max_channels integer,
            ADD COLUMN max_waiting_contacts integer,
            ADD COLUMN max_offer_timeout_ms bigint,
            ADD COLUMN max_wrap_up_ms bigint;
    "#,
    },
    // A deleted tenant keeps its row (a tombstone: the id is never given
    // out again); `erased_by` names the services done erasing its data.
    Migration {
        version: "0004_tenant_deletion",
        sql: r#"
        ALTER TABLE access.tenants
            ADD COLUMN delete_request_time_ms bigint,
            ADD COLUMN erased_by text[] NOT NULL DEFAULT '{}',
            ADD COLUMN delete_time_ms bigint;
    "#,
    },
];

/// The columns a new tenant is inserted with.
const NEW_TENANT_COLUMNS: &str = "tenant, display_name, suspended, create_time_ms, update_time_ms, routing_weight, \
                                  max_queues, max_agents, max_channels, max_waiting_contacts, \
                                  max_offer_timeout_ms, max_wrap_up_ms";
const TENANT_COLUMNS: &str = "tenant, display_name, suspended, create_time_ms, update_time_ms, routing_weight, \
                              max_queues, max_agents, max_channels, max_waiting_contacts, max_offer_timeout_ms, \
                              max_wrap_up_ms, delete_request_time_ms, erased_by, delete_time_ms";
const KEY_COLUMNS: &str = "key_id, display_name, role, tenant, agent, expire_time_ms, create_time_ms, \
                           revoke_time_ms, secret_sha256, secret_prefix, previous_sha256, previous_expire_time_ms";

pub struct PostgresCredentialStore {
    pool: Pool,
}

impl PostgresCredentialStore {
    /// The store on `pool`, its schema migrated.
    pub async fn connect(pool: Pool) -> Result<PostgresCredentialStore, Error> {
        migrate(&pool, MIGRATION_SERVICE, MIGRATIONS).await?;
        Ok(PostgresCredentialStore { pool })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(pg_error)
    }

    /// Runs `change` (statements with `params`) and bumps the revision, in
    /// one transaction; the number of rows `change` touched.
    async fn changing(
        &self,
        change: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, Error> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(pg_error)?;
        let touched = transaction.execute_cached(change, params).await.map_err(pg_error)?;
        if touched > 0 {
            transaction
                .execute_cached("UPDATE access.revision SET revision = revision + 1", &[])
                .await
                .map_err(pg_error)?;
        }
        transaction.commit().await.map_err(pg_error)?;
        Ok(touched)
    }
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::internal(format!("access store holds a malformed row: {what}"))
}

fn tenant_from_row(row: &Row) -> Result<TenantRecord, Error> {
    let count = |index: usize| -> Result<Option<u32>, Error> {
        let value: Option<i32> = row.try_get(index).map_err(corrupt)?;
        value.map(|value| u32::try_from(value).map_err(corrupt)).transpose()
    };
    let routing_weight: i32 = row.try_get(5).map_err(corrupt)?;
    let delete_request_time_ms: Option<i64> = row.try_get(12).map_err(corrupt)?;
    let erased_by: Vec<String> = row.try_get(13).map_err(corrupt)?;
    let delete_time_ms: Option<i64> = row.try_get(14).map_err(corrupt)?;
    let deletion = delete_request_time_ms.map(|request_time_ms| TenantDeletion {
        request_time_ms,
        progress: match delete_time_ms {
            Some(delete_time_ms) => DeletionProgress::Deleted { delete_time_ms },
            None => DeletionProgress::Erasing { erased_by: erased_by.into_iter().collect() },
        },
    });
    Ok(TenantRecord {
        deletion,
        id: TenantId::parse(row.try_get(0).map_err(corrupt)?, "tenant").map_err(corrupt)?,
        display_name: row.try_get(1).map_err(corrupt)?,
        suspended: row.try_get(2).map_err(corrupt)?,
        create_time_ms: row.try_get(3).map_err(corrupt)?,
        update_time_ms: row.try_get(4).map_err(corrupt)?,
        policy: TenantPolicy {
            routing_weight: u32::try_from(routing_weight).map_err(corrupt)?,
            limits: TenantLimits {
                max_queues: count(6)?,
                max_agents: count(7)?,
                max_channels: count(8)?,
                max_waiting_contacts: count(9)?,
                max_offer_timeout_ms: row.try_get(10).map_err(corrupt)?,
                max_wrap_up_ms: row.try_get(11).map_err(corrupt)?,
            },
        },
    })
}

/// A count limit as its column holds it (limits are checked to fit an
/// `integer` on the way in).
fn count_param(limit: Option<u32>) -> Option<i32> {
    limit.map(|limit| i32::try_from(limit).unwrap_or(i32::MAX))
}

fn key_from_row(row: &Row) -> Result<KeyRecord, Error> {
    let role: &str = row.try_get(2).map_err(corrupt)?;
    let tenant: Option<&str> = row.try_get(3).map_err(corrupt)?;
    let agent: Option<&str> = row.try_get(4).map_err(corrupt)?;
    let tenant = || {
        tenant
            .ok_or_else(|| corrupt("a tenant key without tenant"))
            .and_then(|tenant| TenantId::parse(tenant, "tenant").map_err(corrupt))
    };
    let holder = match role {
        "operator_admin" => KeyHolder::Operator,
        "tenant_admin" => KeyHolder::TenantAdmin(tenant()?),
        "tenant_reader" => KeyHolder::TenantReader(tenant()?),
        "integration" => KeyHolder::Integration(tenant()?),
        "supervisor" => KeyHolder::Supervisor(tenant()?),
        "agent" => KeyHolder::Agent(
            AgentId::parse(agent.ok_or_else(|| corrupt("an agent key without agent"))?, "agent").map_err(corrupt)?,
        ),
        other => return Err(corrupt(format!("role `{other}`"))),
    };
    let previous_sha256: Option<String> = row.try_get(10).map_err(corrupt)?;
    let previous_expire: Option<i64> = row.try_get(11).map_err(corrupt)?;
    Ok(KeyRecord {
        id: ApiKeyId::parse(row.try_get(0).map_err(corrupt)?, "key_id").map_err(corrupt)?,
        display_name: row.try_get(1).map_err(corrupt)?,
        holder,
        expire_time_ms: row.try_get(5).map_err(corrupt)?,
        create_time_ms: row.try_get(6).map_err(corrupt)?,
        revoke_time_ms: row.try_get(7).map_err(corrupt)?,
        secret_sha256: row.try_get(8).map_err(corrupt)?,
        secret_prefix: row.try_get(9).map_err(corrupt)?,
        previous_secret: previous_sha256
            .zip(previous_expire)
            .map(|(sha256, expire_time_ms)| PreviousSecret { sha256, expire_time_ms }),
    })
}

fn audit_from_row(row: &Row) -> Result<AuditEntry, Error> {
    let decode = |raw: Option<Vec<u8>>| {
        raw.map(|raw| <prost_types::Any as prost::Message>::decode(raw.as_slice()).map_err(corrupt)).transpose()
    };
    let tenant: Option<&str> = row.try_get(1).map_err(corrupt)?;
    Ok(AuditEntry {
        sequence: row.try_get(0).map_err(corrupt)?,
        tenant: tenant.map(|tenant| TenantId::parse(tenant, "tenant").map_err(corrupt)).transpose()?,
        actor: row.try_get(2).map_err(corrupt)?,
        action: row.try_get(3).map_err(corrupt)?,
        resource: row.try_get(4).map_err(corrupt)?,
        before: decode(row.try_get(5).map_err(corrupt)?)?,
        after: decode(row.try_get(6).map_err(corrupt)?)?,
        time_ms: row.try_get(7).map_err(corrupt)?,
    })
}

async fn read_key(client: &impl GenericClient, key: &ApiKeyId) -> Result<Option<KeyRecord>, Error> {
    let row = client
        .query_opt_cached(&format!("SELECT {KEY_COLUMNS} FROM access.api_keys WHERE key_id = $1"), &[&key.as_str()])
        .await
        .map_err(pg_error)?;
    row.as_ref().map(key_from_row).transpose()
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl CredentialStore for PostgresCredentialStore {
    async fn revision(&self) -> Result<i64, Error> {
        let client = self.client().await?;
        let row = client.query_one_cached("SELECT revision FROM access.revision", &[]).await.map_err(pg_error)?;
        row.try_get(0).map_err(corrupt)
    }

    async fn snapshot(&self) -> Result<Snapshot, Error> {
        let mut client = self.client().await?;
        // One snapshot of the database: the revision matches the rows.
        let transaction = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_error)?;
        let revision: i64 = transaction
            .query_one_cached("SELECT revision FROM access.revision", &[])
            .await
            .map_err(pg_error)?
            .try_get(0)
            .map_err(corrupt)?;
        let tenants = transaction
            .query_cached(&format!("SELECT {TENANT_COLUMNS} FROM access.tenants ORDER BY tenant"), &[])
            .await
            .map_err(pg_error)?;
        let keys = transaction
            .query_cached(&format!("SELECT {KEY_COLUMNS} FROM access.api_keys ORDER BY key_id"), &[])
            .await
            .map_err(pg_error)?;
        transaction.commit().await.map_err(pg_error)?;
        Ok(Snapshot {
            revision,
            tenants: tenants.iter().map(tenant_from_row).collect::<Result<_, _>>()?,
            keys: keys.iter().map(key_from_row).collect::<Result<_, _>>()?,
        })
    }

    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), Error> {
        let inserted = self
            .changing(
                &format!(
                    "INSERT INTO access.tenants ({NEW_TENANT_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (tenant) DO NOTHING"
                ),
                &[
                    &tenant.id.as_str(),
                    &tenant.display_name,
                    &tenant.suspended,
                    &tenant.create_time_ms,
                    &tenant.update_time_ms,
                    &count_param(Some(tenant.policy.routing_weight)),
                    &count_param(tenant.policy.limits.max_queues),
                    &count_param(tenant.policy.limits.max_agents),
                    &count_param(tenant.policy.limits.max_channels),
                    &count_param(tenant.policy.limits.max_waiting_contacts),
                    &tenant.policy.limits.max_offer_timeout_ms,
                    &tenant.policy.limits.max_wrap_up_ms,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(Error::already_exists(tenant_name(&tenant.id)));
        }
        Ok(())
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, Error> {
        let client = self.client().await?;
        let row = client
            .query_opt_cached(
                &format!("SELECT {TENANT_COLUMNS} FROM access.tenants WHERE tenant = $1"),
                &[&tenant.as_str()],
            )
            .await
            .map_err(pg_error)?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
        with_deleted: bool,
    ) -> Result<Vec<TenantRecord>, Error> {
        let client = self.client().await?;
        let rows = client
            .query_cached(
                &format!(
                    "SELECT {TENANT_COLUMNS} FROM access.tenants
                     WHERE tenant > $1 AND ($3 OR delete_request_time_ms IS NULL) ORDER BY tenant LIMIT $2"
                ),
                &[&after.map_or("", TenantId::as_str), &limit_param(limit), &with_deleted],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn update_tenant(
        &self,
        tenant: &TenantId,
        change: &TenantChange,
        now_ms: i64,
    ) -> Result<TenantRecord, Error> {
        let policy = change.policy.as_ref();
        let limits = policy.map(|policy| &policy.limits);
        // With a policy, every limit column takes its value (unset ones
        // NULL); without one, none changes.
        let touched = self
            .changing(
                "UPDATE access.tenants SET display_name = COALESCE($2, display_name),
                     suspended = COALESCE($3, suspended), update_time_ms = $4,
                     routing_weight = CASE WHEN $5 THEN $6 ELSE routing_weight END,
                     max_queues = CASE WHEN $5 THEN $7 ELSE max_queues END,
                     max_agents = CASE WHEN $5 THEN $8 ELSE max_agents END,
                     max_channels = CASE WHEN $5 THEN $9 ELSE max_channels END,
                     max_waiting_contacts = CASE WHEN $5 THEN $10 ELSE max_waiting_contacts END,
                     max_offer_timeout_ms = CASE WHEN $5 THEN $11 ELSE max_offer_timeout_ms END,
                     max_wrap_up_ms = CASE WHEN $5 THEN $12 ELSE max_wrap_up_ms END
                 WHERE tenant = $1",
                &[
                    &tenant.as_str(),
                    &change.display_name,
                    &change.suspended,
                    &now_ms,
                    &policy.is_some(),
                    &count_param(Some(policy.map_or(super::DEFAULT_ROUTING_WEIGHT, |policy| policy.routing_weight))),
                    &count_param(limits.and_then(|limits| limits.max_queues)),
                    &count_param(limits.and_then(|limits| limits.max_agents)),
                    &count_param(limits.and_then(|limits| limits.max_channels)),
                    &count_param(limits.and_then(|limits| limits.max_waiting_contacts)),
                    &limits.and_then(|limits| limits.max_offer_timeout_ms),
                    &limits.and_then(|limits| limits.max_wrap_up_ms),
                ],
            )
            .await?;
        if touched == 0 {
            return Err(Error::not_found(tenant_name(tenant)));
        }
        self.get_tenant(tenant).await?.ok_or_else(|| Error::not_found(tenant_name(tenant)))
    }

    async fn create_key(&self, key: &KeyRecord) -> Result<(), Error> {
        let (previous_sha256, previous_expire) = key
            .previous_secret
            .as_ref()
            .map(|previous| (Some(previous.sha256.as_str()), Some(previous.expire_time_ms)))
            .unwrap_or_default();
        let inserted = self
            .changing(
                &format!(
                    "INSERT INTO access.api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (key_id) DO NOTHING"
                ),
                &[
                    &key.id.as_str(),
                    &key.display_name,
                    &key.holder.role().as_str(),
                    &key.holder.tenant().map(TenantId::as_str),
                    &key.holder.agent().map(AgentId::as_str),
                    &key.expire_time_ms,
                    &key.create_time_ms,
                    &key.revoke_time_ms,
                    &key.secret_sha256,
                    &key.secret_prefix,
                    &previous_sha256,
                    &previous_expire,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(Error::already_exists(api_key_name(&key.id)));
        }
        Ok(())
    }

    async fn get_key(&self, key: &ApiKeyId) -> Result<Option<KeyRecord>, Error> {
        read_key(&self.client().await?, key).await
    }

    async fn list_keys(
        &self,
        tenant: Option<&TenantId>,
        after: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, Error> {
        let client = self.client().await?;
        let rows = client
            .query_cached(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM access.api_keys
                     WHERE ($1::text IS NULL OR tenant = $1) AND key_id > $2 ORDER BY key_id LIMIT $3"
                ),
                &[&tenant.map(TenantId::as_str), &after.map_or("", ApiKeyId::as_str), &limit_param(limit)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, key: &ApiKeyId, now_ms: i64) -> Result<KeyRecord, Error> {
        self.changing(
            "UPDATE access.api_keys SET revoke_time_ms = $2 WHERE key_id = $1 AND revoke_time_ms IS NULL",
            &[&key.as_str(), &now_ms],
        )
        .await?;
        self.get_key(key).await?.ok_or_else(|| Error::not_found(api_key_name(key)))
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, Error> {
        let encode = |any: &Option<prost_types::Any>| any.as_ref().map(prost::Message::encode_to_vec);
        let row = self
            .client()
            .await?
            .query_one_cached(
                "INSERT INTO access.audit_records (tenant, actor, action, resource, before_any, after_any, time_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING sequence",
                &[
                    &entry.tenant.as_ref().map(TenantId::as_str),
                    &entry.actor,
                    &entry.action,
                    &entry.resource,
                    &encode(&entry.before),
                    &encode(&entry.after),
                    &entry.time_ms,
                ],
            )
            .await
            .map_err(pg_error)?;
        row.try_get(0).map_err(corrupt)
    }

    async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        before_sequence: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        let rows = self
            .client()
            .await?
            .query_cached(
                "SELECT sequence, tenant, actor, action, resource, before_any, after_any, time_ms
                 FROM access.audit_records
                 WHERE ($1::text IS NULL OR tenant = $1) AND sequence < $2
                 ORDER BY sequence DESC LIMIT $3",
                &[&tenant.map(TenantId::as_str), &before_sequence.unwrap_or(i64::MAX), &limit_param(limit)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn rotate_key(
        &self,
        key: &ApiKeyId,
        secret_sha256: &str,
        secret_prefix: &str,
        previous_expire_time_ms: i64,
    ) -> Result<KeyRecord, Error> {
        let touched = self
            .changing(
                "UPDATE access.api_keys SET previous_sha256 = secret_sha256, previous_expire_time_ms = $4,
                     secret_sha256 = $2, secret_prefix = $3
                 WHERE key_id = $1 AND revoke_time_ms IS NULL",
                &[&key.as_str(), &secret_sha256, &secret_prefix, &previous_expire_time_ms],
            )
            .await?;
        let record = self.get_key(key).await?.ok_or_else(|| Error::not_found(api_key_name(key)))?;
        if touched == 0 {
            return Err(key_revoked(key));
        }
        Ok(record)
    }

    async fn begin_deletion(&self, tenant: &TenantId, now_ms: i64) -> Result<TenantRecord, Error> {
        // Both statements see the same snapshot: the keys are revoked only
        // by the call that starts the deletion.
        self.changing(
            "WITH revoked AS (
                 UPDATE access.api_keys SET revoke_time_ms = $2
                 WHERE tenant = $1 AND revoke_time_ms IS NULL
                   AND EXISTS (SELECT 1 FROM access.tenants WHERE tenant = $1 AND delete_request_time_ms IS NULL))
             UPDATE access.tenants SET delete_request_time_ms = $2
             WHERE tenant = $1 AND delete_request_time_ms IS NULL",
            &[&tenant.as_str(), &now_ms],
        )
        .await?;
        self.get_tenant(tenant).await?.ok_or_else(|| Error::not_found(tenant_name(tenant)))
    }

    async fn record_erasure(&self, tenant: &TenantId, service: &str, now_ms: i64) -> Result<TenantRecord, Error> {
        let every_service: Vec<&str> = ERASING_SERVICES.to_vec();
        // Concurrent recordings queue on the row lock, and each sees the
        // one before it, so exactly one completes the set.
        self.changing(
            "UPDATE access.tenants SET erased_by = array_append(erased_by, $2),
                 delete_time_ms = CASE WHEN array_append(erased_by, $2::text) @> $4::text[] THEN $3::bigint END
             WHERE tenant = $1 AND delete_request_time_ms IS NOT NULL AND delete_time_ms IS NULL
               AND NOT ($2 = ANY(erased_by))",
            &[&tenant.as_str(), &service, &now_ms, &every_service],
        )
        .await?;
        let record = self.get_tenant(tenant).await?.ok_or_else(|| Error::not_found(tenant_name(tenant)))?;
        if record.deletion.is_none() {
            return Err(not_being_deleted(tenant));
        }
        Ok(record)
    }

    async fn erase_audit(&self, tenant: &TenantId) -> Result<(), Error> {
        self.client()
            .await?
            .execute_cached(
                "DELETE FROM access.audit_records WHERE tenant = $1 AND resource <> $2",
                &[&tenant.as_str(), &tenant_name(tenant)],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}
