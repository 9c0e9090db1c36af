//! PostgreSQL pool and per-service migrations.

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use switchboard_core::{Error, ErrorCode};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::config::PostgresConfig;
use crate::readiness::DependencyCheck;
use crate::tls::PostgresTls;

/// Rows deleted per statement while erasing a tenant: short transactions,
/// so an erasure does not hold locks or bloat a snapshot for long.
const ERASE_BATCH: i64 = 5_000;

/// Deletes every row of `tenant` from each of `tables` (each has a `tenant`
/// column, and an index leading with it), in batches of [`ERASE_BATCH`],
/// until none is left: a batch that finds its rows gone (another replica
/// erasing at once) is not taken for the end. Idempotent: run again, it
/// deletes what is left. `tables` are the caller's constants, never input.
pub async fn erase_tenant_rows(
    pool: &Pool,
    tables: &[&str],
    tenant: &switchboard_core::TenantId,
) -> Result<u64, Error> {
    let client = pool.get().await.map_err(pg_error)?;
    let mut erased = 0;
    for table in tables {
        let delete =
            format!("DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE tenant = $1 LIMIT $2))");
        let any_left = format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE tenant = $1)");
        loop {
            let deleted = client.execute_cached(&delete, &[&tenant.as_str(), &ERASE_BATCH]).await.map_err(pg_error)?;
            erased += deleted;
            if deleted > 0 {
                continue;
            }
            let left: bool = client.query_one_cached(&any_left, &[&tenant.as_str()]).await.map_err(pg_error)?.get(0);
            if !left {
                break;
            }
        }
    }
    Ok(erased)
}

/// A PostgreSQL failure as a Switchboard error, classified by the server's
/// SQLSTATE so only what can heal is transient: a lost connection, a server
/// shutting down or out of resources, a serialization conflict. A value the
/// server refuses (class 22: a NUL in `text`, an out-of-range number) is
/// INVALID_ARGUMENT and a constraint violation FAILED_PRECONDITION, which a
/// consumer dead-letters instead of retrying forever. The server's own text
/// (tokio-postgres says only "db error" at the top; the rest is in the
/// source chain) goes to `detail`, for logs, never to clients.
pub fn pg_error(error: impl std::error::Error + 'static) -> Error {
    let root: &(dyn std::error::Error + 'static) = &error;
    let mut detail = format!("postgres: {root}");
    let mut sqlstate = sqlstate_of(root);
    let mut source = root.source();
    while let Some(cause) = source {
        detail.push_str(&format!(": {cause}"));
        sqlstate = sqlstate.or_else(|| sqlstate_of(cause));
        source = cause.source();
    }
    classify_sqlstate(sqlstate.as_deref()).with_detail(detail)
}

fn sqlstate_of(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(database_error) = error.downcast_ref::<tokio_postgres::error::DbError>() {
        return Some(database_error.code().code().to_owned());
    }
    error.downcast_ref::<tokio_postgres::Error>()?.code().map(|code| code.code().to_owned())
}

/// The error class of a SQLSTATE (`None`: no server answer, e.g. a closed
/// connection or a pool timeout).
fn classify_sqlstate(sqlstate: Option<&str>) -> Error {
    let database_unavailable = || Error::unavailable("the database is unavailable").with_reason("DATABASE_UNAVAILABLE");
    let Some(sqlstate) = sqlstate else {
        return database_unavailable();
    };
    match sqlstate.get(..2) {
        Some("22") => Error::new(ErrorCode::InvalidArgument, "a value of the request cannot be stored")
            .with_reason("UNSTORABLE_VALUE"),
        Some("23") => {
            Error::failed_precondition("the change conflicts with stored data").with_reason("CONSTRAINT_VIOLATION")
        }
        Some("40") => Error::new(ErrorCode::Aborted, "a concurrent change got there first; retry")
            .with_reason("CONCURRENT_CHANGE"),
        Some("08" | "53" | "57" | "58" | "XX") => database_unavailable(),
        _ => Error::internal("the database refused the statement").with_reason("DATABASE_ERROR"),
    }
}

/// Statements through the connection's cache of prepared statements. A
/// query given as a string is prepared (parsed and planned, one more round
/// trip) on every call; one prepared once per connection is only bound and
/// run. Every service query goes through these.
#[async_trait]
pub trait CachedStatements: GenericClient {
    async fn execute_cached(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.execute(&statement, params).await
    }

    async fn query_cached(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query(&statement, params).await
    }

    async fn query_opt_cached(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query_opt(&statement, params).await
    }

    async fn query_one_cached(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query_one(&statement, params).await
    }
}

impl<Client: GenericClient + ?Sized> CachedStatements for Client {}

/// Serializes migrations of every service (and the creation of their
/// bookkeeping table, which PostgreSQL cannot do concurrently).
const MIGRATION_LOCK: i64 = 0x5357_4254_4348; // "SWBTCH"

/// A migration: a version that sorts in apply order, and its SQL.
pub struct Migration {
    pub version: &'static str,
    pub sql: &'static str,
}

/// Every statement is planned for its parameters. A connection's prepared
/// statements live as long as it does, and PostgreSQL may settle on one
/// generic plan per statement after a few runs: settled while a table was
/// still small (a new deployment), that plan is a sequential scan, or any
/// index whose first column matches (every index here starts with the
/// tenant), and then reads a whole tenant's rows per lookup for the
/// connection's life (measured: lookups by key reading ~2,000 index entries
/// each after 10,000 contacts, PostgreSQL saturated at 500 contacts/s).
/// Parsing is still done once.
const SESSION_OPTIONS: &str = "-c plan_cache_mode=force_custom_plan";

pub fn pool(config: &PostgresConfig) -> Result<Pool, Error> {
    let mut pg_config: tokio_postgres::Config = config.url.parse().map_err(pg_error)?;
    let options = match pg_config.get_options() {
        Some(configured) if !configured.is_empty() => format!("{configured} {SESSION_OPTIONS}"),
        _ => SESSION_OPTIONS.to_owned(),
    };
    pg_config.options(options);
    let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    // Only `sslmode=require` is TLS, and then always verified; the default
    // `prefer` is plaintext here, never a TLS attempt that falls back.
    let manager = if pg_config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        let tls = PostgresTls::new(config.ca_file.as_deref())
            .map_err(|error| Error::internal(format!("postgres TLS settings: {error:#}")))?;
        Manager::from_config(pg_config, tls, manager_config)
    } else {
        Manager::from_config(pg_config, tokio_postgres::NoTls, manager_config)
    };
    Pool::builder(manager).max_size(config.pool_size).build().map_err(pg_error)
}

/// A pool with `service`'s migrations applied.
pub async fn connect_migrated(config: &PostgresConfig, service: &str, migrations: &[Migration]) -> Result<Pool, Error> {
    let pool = pool(config)?;
    migrate(&pool, service, migrations).await?;
    Ok(pool)
}

/// Applies `migrations` of `service` that are not applied yet, each in its
/// own transaction, under an advisory lock so services and replicas
/// starting together do not race.
pub async fn migrate(pool: &Pool, service: &str, migrations: &[Migration]) -> Result<(), Error> {
    let mut client = pool.get().await.map_err(pg_error)?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_error)?;
    let outcome = create_bookkeeping_and_apply(&mut client, service, migrations).await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_error)?;
    outcome
}

async fn create_bookkeeping_and_apply(
    client: &mut deadpool_postgres::Object,
    service: &str,
    migrations: &[Migration],
) -> Result<(), Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS switchboard_migrations (
                service text NOT NULL,
                version text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (service, version))",
        )
        .await
        .map_err(pg_error)?;
    for migration in migrations {
        let applied = client
            .query_opt(
                "SELECT 1 FROM switchboard_migrations WHERE service = $1 AND version = $2",
                &[&service, &migration.version],
            )
            .await
            .map_err(pg_error)?
            .is_some();
        if applied {
            continue;
        }
        let transaction = client.transaction().await.map_err(pg_error)?;
        transaction.batch_execute(migration.sql).await.map_err(pg_error)?;
        transaction
            .execute(
                "INSERT INTO switchboard_migrations (service, version) VALUES ($1, $2)",
                &[&service, &migration.version],
            )
            .await
            .map_err(pg_error)?;
        transaction.commit().await.map_err(pg_error)?;
        tracing::info!(service, version = migration.version, "migration applied");
    }
    Ok(())
}

pub struct PostgresCheck(pub Pool);

#[async_trait]
impl DependencyCheck for PostgresCheck {
    fn name(&self) -> String {
        "postgres".to_owned()
    }

    async fn check(&self) -> anyhow::Result<()> {
        let client = self.0.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_can_heal_is_transient() {
        for transient in [None, Some("08006"), Some("57P01"), Some("53300"), Some("40001")] {
            assert!(classify_sqlstate(transient).is_transient(), "{transient:?}");
        }
        let nul_in_text = classify_sqlstate(Some("22021"));
        assert_eq!((nul_in_text.code, nul_in_text.reason().as_str()), (ErrorCode::InvalidArgument, "UNSTORABLE_VALUE"));
        assert_eq!(classify_sqlstate(Some("23505")).code, ErrorCode::FailedPrecondition);
        assert_eq!(classify_sqlstate(Some("42P01")).code, ErrorCode::Internal);
    }
}
