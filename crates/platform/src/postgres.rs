//! PostgreSQL pool and per-service migrations.

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use switchboard_core::Error;

use crate::config::PostgresConfig;
use crate::readiness::DependencyCheck;

pub fn pg_error(error: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("postgres: {error}"))
}

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

/// Applies `migrations` of `service` that are not applied yet, each in its
/// own transaction, under an advisory lock so replicas starting together
/// do not race.
pub async fn migrate(pool: &Pool, service: &str, migrations: &[Migration]) -> Result<(), Error> {
    let mut client = pool.get().await.map_err(pg_error)?;
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
    client.execute("SELECT pg_advisory_lock(hashtext($1))", &[&service]).await.map_err(pg_error)?;
    let outcome = apply(&mut client, service, migrations).await;
    client.execute("SELECT pg_advisory_unlock(hashtext($1))", &[&service]).await.map_err(pg_error)?;
    outcome
}

async fn apply(client: &mut deadpool_postgres::Object, service: &str, migrations: &[Migration]) -> Result<(), Error> {
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
