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

pub async fn connect(url: &str) -> Result<ConnectionManager, Error> {
    connect_trusting(url, None).await
}

/// [`connect`], a `rediss://` server's certificate checked against
/// `ca_file` (PEM) when given, else the system's roots.
pub async fn connect_trusting(url: &str, ca_file: Option<&std::path::Path>) -> Result<ConnectionManager, Error> {
    if url.starts_with("rediss://") {
        crate::tls::install_default_provider();
    }
    let client = match ca_file {
        Some(ca_file) => {
            let root_cert = std::fs::read(ca_file)
                .map_err(|error| Error::internal(format!("redis.ca_file {}: {error}", ca_file.display())))?;
            let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
            redis::Client::build_with_tls(url, certificates).map_err(redis_error)?
        }
        None => redis::Client::open(url).map_err(redis_error)?,
    };
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(3)))
        .set_response_timeout(Some(std::time::Duration::from_secs(5)));
    ConnectionManager::new_with_config(client, config).await.map_err(redis_error)
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
