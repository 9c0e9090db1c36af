//! The matching snapshot read from Redis. Each replica keeps a copy of the
//! available agents and reads only the agents changed since its last read
//! (every script that writes an agent numbers the change), so a pass costs
//! the changes since the last one, not a read of every agent on the floor.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchboard_core::{Error, QueueId, TenantId};
use switchboard_platform::redis::redis_error;

use super::RedisRoutingState;
use super::fair::decode_fair_shares;
use crate::domain::{AgentLive, RoutingStatus};
use crate::store::codec;
use crate::store::{Snapshot, StateGauges};

/// The snapshot script's reply: contacts' hashes, agents' ids and hashes
/// (empty: not available), the fair-share hash, each hash a flat
/// field/value list; whether the agents are all the available ones (1) or
/// the changed ones (0), and the generation and change number they are as of.
type SnapshotReply = (Vec<Vec<String>>, Vec<(String, Vec<String>)>, Vec<String>, i64, String, i64);

/// How long a replica's copy of the agents may go without a whole read. A
/// copy follows the numbered changes exactly; this bounds what a change
/// never numbered (a Redis restored from an older dump, a hand edit) can
/// keep from matching.
const WHOLE_AGENTS_READ_EVERY: Duration = Duration::from_secs(1);

/// A replica's copy of the pool's available agents, by agent id.
#[derive(Debug, Default)]
pub(super) struct AgentCopy {
    /// The generation of the state and the number of its last agent change
    /// the copy follows; `None` before the first read.
    as_of: Option<(String, i64)>,
    /// When every agent was last read.
    read_whole_at: Option<Instant>,
    agents: BTreeMap<String, AgentLive>,
}

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
    /// trip (`lua/snapshot.lua`). The agents are this replica's copy brought
    /// up to date with the changes since its last read; the whole set is
    /// read when the copy may not follow (first read, a new generation of
    /// the state, a reservation that lost a race, or
    /// [`WHOLE_AGENTS_READ_EVERY`]).
    pub(super) async fn read_snapshot(&self, per_queue: usize) -> Result<Snapshot, Error> {
        let last_head_index = i64::try_from(per_queue).unwrap_or(i64::MAX).saturating_sub(1);
        // One read at a time per replica, so replies apply in order.
        let mut copy = self.agent_copy.lock().await;
        let read_whole = self.agents_stale.swap(false, Ordering::AcqRel)
            || copy.read_whole_at.is_none_or(|read_at| read_at.elapsed() >= WHOLE_AGENTS_READ_EVERY);
        let (known_generation, known_change) = match (&copy.as_of, read_whole) {
            (Some((generation, change)), false) => (generation.clone(), *change),
            _ => (String::new(), -1),
        };
        let mut connection = self.connection.clone();
        let outcome: Result<SnapshotReply, Error> = self
            .snapshot
            .key(self.queues_key())
            .key(self.available_key())
            .key(self.fair_shares_key())
            .key(self.marker_key())
            .key(self.changed_agents_key())
            .key(self.agent_change_counter_key())
            .arg(&self.prefix)
            .arg(last_head_index)
            .arg(&known_generation)
            .arg(known_change)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error);
        let (records, agents, fair, whole, generation, change) = match outcome {
            Ok(reply) => reply,
            Err(error) => {
                // The copy may have missed nothing, but a whole read is cheap
                // next to reasoning about a half-seen reply.
                self.agents_stale.store(true, Ordering::Release);
                return Err(error);
            }
        };
        let records_read = records.len();
        let mut waiting = Vec::new();
        for fields in records {
            let record = codec::decode_record(&pairs(fields))?;
            if record.status == RoutingStatus::Queued {
                waiting.push(record);
            }
        }
        if records_read == 0 {
            // No agents were read: the copy stays as it was.
            if read_whole {
                self.agents_stale.store(true, Ordering::Release);
            }
            return Ok(Snapshot::default());
        }
        if whole == 1 {
            copy.agents.clear();
            copy.read_whole_at = Some(Instant::now());
        }
        for (agent, fields) in agents {
            if fields.is_empty() {
                copy.agents.remove(&agent);
                continue;
            }
            let live = match codec::decode_agent(&agent, &pairs(fields)) {
                Ok(live) => live,
                Err(error) => {
                    self.agents_stale.store(true, Ordering::Release);
                    return Err(error);
                }
            };
            if live.available {
                copy.agents.insert(agent, live);
            } else {
                copy.agents.remove(&agent);
            }
        }
        copy.as_of = Some((generation, change));
        if waiting.is_empty() {
            return Ok(Snapshot::default());
        }
        // Ordered by agent id, as the map keeps them.
        let available = copy.agents.values().cloned().collect();
        let shares = decode_fair_shares(pairs(fair))?;
        Ok(Snapshot { waiting, agents: available, shares })
    }
}
