//! PostgreSQL pool and per-service migrations.

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use switchboard_core::Error;

use crate::config::PostgresConfig;
use crate::readiness::DependencyCheck;

/// An UNAVAILABLE error with the whole cause chain (tokio-postgres says
/// only "db error" at the top; the server's message is in the source).
pub fn pg_error(error: impl std::error::Error) -> Error {
    let mut message = format!("postgres: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    Error::unavailable(message)
}

/// Serializes migrations of every service (and the creation of their
/// bookkeeping table, which PostgreSQL cannot do concurrently).
const MIGRATION_LOCK: i64 = 0x5357_4254_4348; // "SWBTCH"

/// A migration: a version that sorts in apply order, and its SQL.
pub struct Migration {
    pub version: &'static str,
    pub sql: &'static str,
}

pub fn pool(config: &PostgresConfig) -> Result<Pool, Error> {
    let pg_config: tokio_postgres::Config = config.url.parse().map_err(pg_error)?;
    let manager = Manager::from_config(
        pg_config,
        tokio_postgres::NoTls,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
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
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn check(&self) -> anyhow::Result<()> {
        let client = self.0.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }
}
