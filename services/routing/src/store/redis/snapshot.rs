//! The matching snapshot read from Redis.

use std::collections::HashMap;

use switchboard_core::{Error, QueueId, TenantId};
use switchboard_platform::redis::redis_error;

use super::RedisRoutingState;
use super::fair::decode_fair_shares;
use crate::domain::RoutingStatus;
use crate::store::codec;
use crate::store::{Snapshot, StateGauges};

/// The snapshot script's reply: contacts' hashes, available agents' ids
/// and hashes, and the fair-share hash, each hash a flat field/value list.
type SnapshotReply = (Vec<Vec<String>>, Vec<(String, Vec<String>)>, Vec<String>);

/// A flat field/value list as a map.
fn pairs(flat: Vec<String>) -> HashMap<String, String> {
    let mut fields = HashMap::with_capacity(flat.len() / 2);
    let mut values = flat.into_iter();
    while let (Some(field), Some(value)) = (values.next(), values.next()) {
        fields.insert(field, value);
    }
    fields
}

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
    /// waits, every available agent and the fair-share tags, in one round
    /// trip (`lua/snapshot.lua`).
    pub(super) async fn read_snapshot(&self, per_queue: usize) -> Result<Snapshot, Error> {
        let last_head_index = i64::try_from(per_queue).unwrap_or(i64::MAX).saturating_sub(1);
        let mut connection = self.connection.clone();
        let (records, agents, fair): SnapshotReply = self
            .snapshot
            .key(self.queues_key())
            .key(self.available_key())
            .key(self.fair_shares_key())
            .arg(&self.prefix)
            .arg(last_head_index)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let mut waiting = Vec::new();
        for fields in records {
            let record = codec::decode_record(&pairs(fields))?;
            if record.status == RoutingStatus::Queued {
                waiting.push(record);
            }
        }
        if waiting.is_empty() {
            return Ok(Snapshot::default());
        }
        let mut available = Vec::new();
        for (agent, fields) in agents {
            let live = codec::decode_agent(&agent, &pairs(fields))?;
            if live.available {
                available.push(live);
            }
        }
        available.sort_by(|left, right| left.profile.agent.cmp(&right.profile.agent));
        let shares = decode_fair_shares(pairs(fair))?;
        Ok(Snapshot { waiting, agents: available, shares })
    }
}
