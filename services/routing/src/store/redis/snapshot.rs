//! The matching snapshot read from Redis.

use std::collections::HashMap;

use switchboard_core::{Error, QueueId, TenantId};
use switchboard_platform::redis::redis_error;

use super::RedisRoutingState;
use crate::domain::RoutingStatus;
use crate::store::codec;
use crate::store::{Snapshot, StateGauges};

impl RedisRoutingState {
    /// Every waiting line (queue and channel) that may hold contacts.
    async fn waiting_lines(&self) -> Result<Vec<(TenantId, QueueId, i32)>, Error> {
        let mut connection = self.connection.clone();
        let queues: Vec<String> =
            redis::cmd("SMEMBERS").arg(self.queues_key()).query_async(&mut connection).await.map_err(redis_error)?;
        let mut lines = Vec::new();
        for queue_member in queues {
            let mut parts = queue_member.splitn(3, ':');
            let (Some(tenant), Some(queue), Some(channel)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(tenant), Ok(queue), Ok(channel)) =
                (TenantId::parse(tenant, "tenant"), QueueId::parse(queue, "queue"), channel.parse::<i32>())
            else {
                continue;
            };
            lines.push((tenant, queue, channel));
        }
        Ok(lines)
    }

    /// The outbox's length and every line's, summed by tenant, in one
    /// pipelined round trip after the lines are read.
    pub(super) async fn read_gauges(&self) -> Result<StateGauges, Error> {
        let lines = self.waiting_lines().await?;
        let mut pipeline = redis::pipe();
        pipeline.cmd("XLEN").arg(self.outbox_key());
        for (tenant, queue, channel) in &lines {
            pipeline.cmd("ZCARD").arg(self.waiting_key(tenant, queue, *channel));
        }
        let mut connection = self.connection.clone();
        let lengths: Vec<i64> = pipeline.query_async(&mut connection).await.map_err(redis_error)?;
        let mut gauges = StateGauges { outbox_depth: lengths.first().copied().unwrap_or(0), ..StateGauges::default() };
        for ((tenant, _, _), waiting) in lines.iter().zip(lengths.iter().skip(1)) {
            if *waiting > 0 {
                *gauges.waiting_by_tenant.entry(tenant.clone()).or_insert(0) += waiting;
            }
        }
        Ok(gauges)
    }

    /// Up to `per_queue` head contacts of every waiting line and, when any
    /// waits, every available agent, in a few pipelined round trips.
    pub(super) async fn read_snapshot(&self, per_queue: usize) -> Result<Snapshot, Error> {
        let mut connection = self.connection.clone();
        let stop = i64::try_from(per_queue).unwrap_or(i64::MAX).saturating_sub(1);
        // Two round trips for every line: all heads in one pipeline, all
        // their records in another.
        let lines = self.waiting_lines().await?;
        let mut waiting = Vec::new();
        if !lines.is_empty() {
            let mut heads_pipeline = redis::pipe();
            for (tenant, queue, channel) in &lines {
                heads_pipeline.cmd("ZRANGE").arg(self.waiting_key(tenant, queue, *channel)).arg(0).arg(stop);
            }
            let heads: Vec<Vec<String>> = heads_pipeline.query_async(&mut connection).await.map_err(redis_error)?;
            let mut records_pipeline = redis::pipe();
            let mut requested = 0;
            for ((tenant, _, _), contact_ids) in lines.iter().zip(&heads) {
                for contact in contact_ids {
                    records_pipeline.cmd("HGETALL").arg(format!("{}:c:{tenant}:{contact}", self.prefix));
                    requested += 1;
                }
            }
            if requested > 0 {
                let records: Vec<HashMap<String, String>> =
                    records_pipeline.query_async(&mut connection).await.map_err(redis_error)?;
                for fields in records.iter().filter(|fields| !fields.is_empty()) {
                    let record = codec::decode_record(fields)?;
                    if record.status == RoutingStatus::Queued {
                        waiting.push(record);
                    }
                }
            }
        }
        if waiting.is_empty() {
            return Ok(Snapshot::default());
        }
        let agent_ids: Vec<String> =
            redis::cmd("SMEMBERS").arg(self.available_key()).query_async(&mut connection).await.map_err(redis_error)?;
        let mut pipeline = redis::pipe();
        for agent in &agent_ids {
            pipeline.cmd("HGETALL").arg(self.agent_key(agent));
        }
        // Redis rejects an empty pipeline.
        let agent_fields: Vec<HashMap<String, String>> = if agent_ids.is_empty() {
            Vec::new()
        } else {
            pipeline.query_async(&mut connection).await.map_err(redis_error)?
        };
        let mut agents = Vec::new();
        for (agent, fields) in agent_ids.iter().zip(agent_fields) {
            if fields.is_empty() {
                continue;
            }
            let live = codec::decode_agent(agent, &fields)?;
            if live.available {
                agents.push(live);
            }
        }
        agents.sort_by(|left, right| left.profile.agent.cmp(&right.profile.agent));
        Ok(Snapshot { waiting, agents })
    }
}
