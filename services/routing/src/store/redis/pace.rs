//! The answer pace of each waiting line, for estimated waits.

use switchboard_core::{Error, QueueId, TenantId};
use switchboard_platform::redis::redis_error;

use super::RedisRoutingState;
use crate::domain::AnswerPace;

impl RedisRoutingState {
    pub(super) async fn write_answer(
        &self,
        tenant: &TenantId,
        queue: &QueueId,
        channel: i32,
        answer_ms: i64,
    ) -> Result<(), Error> {
        let next = self.read_pace(tenant, queue, channel).await?.after_answer(answer_ms);
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("HSET")
            .arg(self.pace_key(tenant, queue, channel))
            .arg("last")
            .arg(next.last_answer_ms)
            .arg("interval")
            .arg(next.interval_ms)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    pub(super) async fn read_pace(
        &self,
        tenant: &TenantId,
        queue: &QueueId,
        channel: i32,
    ) -> Result<AnswerPace, Error> {
        let mut connection = self.connection.clone();
        let (last, interval): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(self.pace_key(tenant, queue, channel))
            .arg("last")
            .arg("interval")
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(AnswerPace { last_answer_ms: last.unwrap_or(0), interval_ms: interval.unwrap_or(0) })
    }
}
