//! Redis connections (redis-rs, multiplexed, reconnecting).

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use switchboard_core::Error;

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
    let client = redis::Client::open(url).map_err(redis_error)?;
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
