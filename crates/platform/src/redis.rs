//! Redis connections (redis-rs, multiplexed, reconnecting).

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use switchboard_core::Error;
use switchboard_core::clock::{Clock, Sample};

use crate::readiness::DependencyCheck;

/// A Redis failure as a Switchboard error: what redis-rs would retry (a
/// dropped connection, a timeout, a server still loading) is transient;
/// what it would not (a script error, a wrong type) is deterministic and
/// INTERNAL. The server's text goes to `detail`, for logs only.
pub fn redis_error(error: redis::RedisError) -> Error {
    let detail = format!("redis: {error}");
    let classified = match error.retry_method() {
        redis::RetryMethod::NoRetry => {
            Error::internal("the state store refused the command").with_reason("STATE_STORE_ERROR")
        }
        _ => Error::unavailable("the state store is unavailable").with_reason("STATE_STORE_UNAVAILABLE"),
    };
    classified.with_detail(detail)
}

/// Where [`scan`] looks.
#[derive(Debug, Clone, Copy)]
pub enum Scanned<'key> {
    /// Key names (`SCAN`): never blocks the server, unlike `KEYS`.
    Keys,
    /// Fields of a hash (`HSCAN`).
    HashFields(&'key str),
    /// Members of a set (`SSCAN`).
    SetMembers(&'key str),
    /// Members of a sorted set (`ZSCAN`).
    SortedSetMembers(&'key str),
}

/// Every key name, field or member (see [`Scanned`]) matching the glob
/// `pattern`, read in pages of about a thousand.
pub async fn scan(connection: &ConnectionManager, scanned: Scanned<'_>, pattern: &str) -> Result<Vec<String>, Error> {
    let mut connection = connection.clone();
    let (mut cursor, mut found) = (0_u64, Vec::new());
    loop {
        let mut command = match scanned {
            Scanned::Keys => redis::cmd("SCAN"),
            Scanned::HashFields(key) => redis::cmd("HSCAN").arg(key).to_owned(),
            Scanned::SetMembers(key) => redis::cmd("SSCAN").arg(key).to_owned(),
            Scanned::SortedSetMembers(key) => redis::cmd("ZSCAN").arg(key).to_owned(),
        };
        let (next, page): (u64, Vec<String>) = command
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        // HSCAN and ZSCAN answer pairs: field and value, member and score.
        let step = if matches!(scanned, Scanned::HashFields(_) | Scanned::SortedSetMembers(_)) { 2 } else { 1 };
        found.extend(page.into_iter().step_by(step));
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

/// Deletes `keys`, in chunks (one command each, pipelined).
pub async fn delete_keys(connection: &ConnectionManager, keys: &[String]) -> Result<(), Error> {
    remove_members(connection, "DEL", None, keys).await
}

/// Removes `members` from the hash, set or sorted set `key` with
/// `command` (`HDEL`, `SREM`, `ZREM`), or deletes them as keys with `DEL`
/// and no `key`; in pipelined chunks, nothing sent when there is nothing.
pub async fn remove_members(
    connection: &ConnectionManager,
    command: &str,
    key: Option<&str>,
    members: &[String],
) -> Result<(), Error> {
    if members.is_empty() {
        return Ok(());
    }
    let mut pipeline = redis::pipe();
    for chunk in members.chunks(500) {
        let step = pipeline.cmd(command);
        if let Some(key) = key {
            step.arg(key);
        }
        step.arg(chunk).ignore();
    }
    let mut connection = connection.clone();
    let _: () = pipeline.query_async(&mut connection).await.map_err(redis_error)?;
    Ok(())
}

pub async fn connect(url: &str) -> Result<ConnectionManager, Error> {
    connect_trusting(url, None).await
}

/// [`connect`], a `rediss://` server's certificate checked against
/// `ca_file` (PEM) when given, else the system's roots.
pub async fn connect_trusting(url: &str, ca_file: Option<&std::path::Path>) -> Result<ConnectionManager, Error> {
    let client = client_trusting(url, ca_file)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(3)))
        .set_response_timeout(Some(std::time::Duration::from_secs(5)));
    ConnectionManager::new_with_config(client, config).await.map_err(redis_error)
}

/// A client of the server at `url` (nothing connects yet), a `rediss://`
/// server's certificate checked against `ca_file` (PEM) when given, else
/// the system's roots.
pub fn client_trusting(url: &str, ca_file: Option<&std::path::Path>) -> Result<redis::Client, Error> {
    if url.starts_with("rediss://") {
        crate::tls::install_default_provider();
    }
    match ca_file {
        Some(ca_file) => {
            let root_cert = std::fs::read(ca_file)
                .map_err(|error| Error::internal(format!("redis.ca_file {}: {error}", ca_file.display())))?;
            let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
            redis::Client::build_with_tls(url, certificates).map_err(redis_error)
        }
        None => redis::Client::open(url).map_err(redis_error),
    }
}

pub struct RedisCheck(pub ConnectionManager);

#[async_trait]
impl DependencyCheck for RedisCheck {
    fn name(&self) -> String {
        "redis".to_owned()
    }

    async fn check(&self) -> anyhow::Result<()> {
        let mut connection = self.0.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }
}

/// Measures `clock` against Redis `TIME` once: the offset every replica
/// using the same Redis agrees on (see [`switchboard_core::clock`]).
pub async fn sync_clock(connection: &ConnectionManager, clock: &Clock) -> Result<Sample, Error> {
    let mut connection = connection.clone();
    let sent_ms = clock.local_millis();
    let (seconds, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut connection).await.map_err(redis_error)?;
    let received_ms = clock.local_millis();
    let sample = clock.sample(sent_ms, seconds * 1_000 + micros / 1_000, received_ms);
    match sample {
        Sample::Adjusted { offset_ms } => {
            crate::metrics::metrics().clock_offset.get_or_create(&Vec::new()).set(offset_ms);
            if offset_ms.abs() > 1_000 {
                tracing::warn!(offset_ms, "this host's clock is off from redis's; leases and expiries follow redis");
            }
        }
        Sample::Dropped { round_trip_ms } => {
            tracing::debug!(round_trip_ms, "clock sample dropped: the round trip to redis was too slow");
        }
    }
    Ok(sample)
}
