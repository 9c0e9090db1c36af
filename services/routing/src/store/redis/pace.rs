//! The answer pace of each waiting line, for estimated waits.

use switchboard_core::{Error, QueueId, TenantId};
use switchboard_platform::redis::redis_error;

use super::{RedisRoutingState, state_error};
use crate::domain::{AnswerPace, MAX_ANSWER_INTERVAL_MS};

impl RedisRoutingState {
    /// One atomic step (`record_answer.lua`), so answers recorded at once
    /// by several replicas all count.
    pub(super) async fn write_answer(
        &self,
        tenant: &TenantId,
        queue: &QueueId,
        channel: i32,
        answer_ms: i64,
    ) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let _: i64 = self
            .record_answer
            .key(self.pace_key(tenant, queue, channel))
            .key(self.marker_key())
            .arg(answer_ms)
            .arg(MAX_ANSWER_INTERVAL_MS)
            .invoke_async(&mut connection)
            .await
            .map_err(state_error)?;
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
