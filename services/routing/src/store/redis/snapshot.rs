//! The matching snapshot read from Redis. Each replica keeps a copy of the
//! waiting lines' heads and of the available agents, and reads only the
//! lines and agents changed since its last read (every script that changes
//! a line or writes an agent numbers the change), so a pass costs the
//! changes since the last one, not a read of every line and agent.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchboard_core::{Error, QueueId, TenantId};
use switchboard_platform::redis::redis_error;

use super::RedisRoutingState;
use super::fair::decode_fair_shares;
use crate::domain::{AgentLive, ContactRecord, RoutingStatus};
use crate::store::codec;
use crate::store::{Snapshot, StateGauges};

/// The snapshot script's reply: lines with their heads' hashes (none: the
/// line no longer waits), agents' ids and hashes (empty: not available),
/// the fair-share hash, each hash a flat field/value list; whether the
/// lines and agents are all there are (1), the changed ones (0) or nothing
/// was read because no contact waits (-1); and the generation and change
/// number they are as of.
type SnapshotReply = (Vec<(String, Vec<Vec<String>>)>, Vec<(String, Vec<String>)>, Vec<String>, i64, String, i64);

/// How long a replica's copy may go without a whole read. A copy follows
/// the numbered changes exactly; this bounds what a change never numbered
/// (a Redis restored from an older dump, a hand edit, a deleted tenant's
/// keys) can keep from matching.
const WHOLE_READ_EVERY: Duration = Duration::from_secs(1);

/// A replica's copy of what matching reads: the waiting lines' head
/// contacts, by line, and the available agents, by agent id.
#[derive(Debug, Default)]
pub(super) struct MatchingCopy {
    /// The generation of the state and the number of its last change the
    /// copy follows, and how many heads per line it holds; `None` before
    /// the first read.
    as_of: Option<(String, i64, usize)>,
    /// When everything was last read.
    read_whole_at: Option<Instant>,
    lines: BTreeMap<String, Vec<ContactRecord>>,
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
    /// trip (`lua/snapshot.lua`). Lines and agents are this replica's copy
    /// brought up to date with the changes since its last read; everything
    /// is read when the copy may not follow (first read, a new generation of
    /// the state, another depth of heads, a reservation that lost a race, a
    /// failed read, or [`WHOLE_READ_EVERY`]).
    pub(super) async fn read_snapshot(&self, per_queue: usize) -> Result<Snapshot, Error> {
        let last_head_index = i64::try_from(per_queue).unwrap_or(i64::MAX).saturating_sub(1);
        // One read at a time per replica, so replies apply in order.
        let mut copy = self.matching_copy.lock().await;
        let stale = self.copy_stale.swap(false, Ordering::AcqRel)
            || copy.read_whole_at.is_none_or(|read_at| read_at.elapsed() >= WHOLE_READ_EVERY);
        let (known_generation, known_change) = match &copy.as_of {
            Some((generation, change, depth)) if !stale && *depth == per_queue => (generation.clone(), *change),
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
            .key(self.change_counter_key())
            .key(self.changed_lines_key())
            .arg(&self.prefix)
            .arg(last_head_index)
            .arg(&known_generation)
            .arg(known_change)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error);
        let applied = match outcome {
            Ok(reply) => apply_reply(&mut copy, reply, per_queue),
            Err(error) => Err(error),
        };
        let shares = match applied {
            Ok(shares) => shares,
            Err(error) => {
                // The copy may be half updated: read everything next time.
                self.copy_stale.store(true, Ordering::Release);
                return Err(error);
            }
        };
        let Some(shares) = shares else {
            if known_change < 0 {
                // A whole read was due and nothing was read: still due.
                self.copy_stale.store(true, Ordering::Release);
            }
            return Ok(Snapshot::default());
        };
        let waiting: Vec<ContactRecord> = copy.lines.values().flatten().cloned().collect();
        if waiting.is_empty() {
            return Ok(Snapshot::default());
        }
        // Ordered by agent id, as the map keeps them.
        let agents = copy.agents.values().cloned().collect();
        Ok(Snapshot { waiting, agents, shares })
    }
}

/// Brings `copy` up to date with `reply`, read `per_queue` heads deep;
/// returns the fair-share tags, or `None` when no contact waits (nothing
/// was read: the copy keeps its agents, whose changes come with the next
/// read, and drops its lines).
fn apply_reply(
    copy: &mut MatchingCopy,
    reply: SnapshotReply,
    per_queue: usize,
) -> Result<Option<crate::domain::fair_share::FairShares>, Error> {
    let (lines, agents, fair, whole, generation, change) = reply;
    match whole {
        -1 => {
            // No line waits: nothing the copy holds of them is current, and
            // a line that fills again is numbered then.
            copy.lines.clear();
            return Ok(None);
        }
        1 => {
            copy.lines.clear();
            copy.agents.clear();
            copy.read_whole_at = Some(Instant::now());
        }
        _ => {}
    }
    for (line, heads) in lines {
        let mut waiting = Vec::with_capacity(heads.len());
        for fields in heads {
            let record = codec::decode_record(&pairs(fields))?;
            if record.status == RoutingStatus::Queued {
                waiting.push(record);
            }
        }
        if waiting.is_empty() {
            copy.lines.remove(&line);
        } else {
            copy.lines.insert(line, waiting);
        }
    }
    for (agent, fields) in agents {
        let live = if fields.is_empty() { None } else { Some(codec::decode_agent(&agent, &pairs(fields))?) };
        match live {
            Some(live) if live.available => {
                copy.agents.insert(agent, live);
            }
            _ => {
                copy.agents.remove(&agent);
            }
        }
    }
    copy.as_of = Some((generation, change, per_queue));
    Ok(Some(decode_fair_shares(pairs(fair))?))
}
