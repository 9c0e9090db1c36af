//! Redis connections (redis-rs, multiplexed, reconnecting).

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use switchboard_core::Error;

use crate::readiness::DependencyCheck;

pub fn redis_error(error: redis::RedisError) -> Error {
    Error::unavailable(format!("redis: {error}"))
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
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> anyhow::Result<()> {
        let mut connection = self.0.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }
}
