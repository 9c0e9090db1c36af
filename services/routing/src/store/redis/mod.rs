//! Hot routing state in Redis. Every key of a routing pool shares the hash
//! tag `{pool}` so a Redis Cluster keeps them in one slot and each Lua
//! script is one atomic step; tenant data keys carry the tenant.
//!
//! Keys (`P` = pool):
//! - `sb:{P}:c:<tenant>:<contact>` hash: `record` (JSON: queue settings and
//!   rules), `status`, `agent`, `last_agent` (the agent last offered it),
//!   `expire_ms`, `answer_ms`, `end_ms`,
//!   `line` (the waiting line it belongs to, which a reservation re-checks)
//!   and `rev`, the revision every compare-and-set checks and bumps
//! - `sb:{P}:w:<tenant>:<queue>:<channel>` sorted set of waiting contacts
//!   by rank: one line per queue and channel, so a long line of one
//!   channel never hides another channel's contacts from matching
//! - `sb:{P}:queues` set of `<tenant>:<queue>:<channel>` lines with
//!   waiting contacts
//! - `sb:{P}:offers` sorted set of `<tenant>:<contact>` by offer deadline
//! - `sb:{P}:deadlines` sorted set of waiting `<tenant>:<contact>` by the
//!   end of their allowed wait (max wait)
//! - `sb:{P}:last:<tenant>:<customer>` the customer's last agent (30 days)
//! - `sb:{P}:a:<agent>` hash: `profile` (JSON), `available`, `idle_since`,
//!   `last_offer`, `hold_until` (wrap-up), `load:<channel>`;
//!   `sb:{P}:available` set; `sb:{P}:ao:<agent>` the contacts offered to
//!   or handled by the agent
//! - `sb:{P}:changes` the number of the last change to any agent or waiting
//!   line, `sb:{P}:agents:changed` and `sb:{P}:lines:changed` each agent and
//!   line by the number of its last change: every script that writes an
//!   agent or changes a line numbers it, so a matching pass reads only what
//!   changed since its last (see `snapshot.rs`)
//! - `sb:{P}:outbox` stream of entries appended by the same script as the
//!   change they announce: `e` an encoded event, `s` the contact's
//!   snapshot for the journal; `sb:{P}:outbox:relay` the relay lease
//! - `sb:{P}:whole` the marker (its value the state's generation),
//!   `sb:{P}:rebuild` the rebuild lease, `sb:{P}:rebuild_pending` set
//!   while a restored state's rebuild is unfinished (see `recovery.rs`)

mod erase;
mod fair;
mod outbox;
mod pace;
mod reserve;
mod restore;
mod scripts;
mod snapshot;
mod transition;

use std::collections::HashMap;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use switchboard_core::event::encode;
use switchboard_core::{AgentId, ContactId, Error, QueueId, TenantId};
use switchboard_platform::redis::redis_error;
use switchboard_proto::events::v1::EventEnvelope;

use self::scripts::{
    ENQUEUE_SCRIPT, RECORD_ANSWER_SCRIPT, RELAY_LEASE_SCRIPT, RESERVE_SCRIPT, RESTORE_AGENT_SCRIPT,
    RESTORE_CONTACT_SCRIPT, SNAPSHOT_SCRIPT, TRANSITION_SCRIPT, UPSERT_AGENT_SCRIPT,
};
use super::{
    Change, EventsFor, LineStatus, OfferRef, OutboxBatch, Reservation, RoutingState, Snapshot, StateGauges,
    contact_not_found,
};
use crate::domain::fair_share::FairShares;
use crate::domain::{
    self, AbandonedFrom, AgentLive, AgentProfile, AnswerPace, Applied, Completion, ContactRecord, RoutingStatus,
};
use crate::store::codec::{self, corrupt};
use crate::store::journal::JournaledAgent;

/// How long a completed or abandoned contact's routing record stays in
/// Redis: a week, for lookups and retried requests; routing's own history
/// lives in the events, CRM and KPI.
pub const TERMINAL_RETENTION_MS: i64 = 7 * 24 * 3_600_000;

/// How often a compare-and-set is retried when another replica changed
/// the contact in between.
const MAX_TRANSITION_ATTEMPTS: usize = 16;

pub struct RedisRoutingState {
    connection: ConnectionManager,
    prefix: String,
    enqueue: redis::Script,
    reserve: redis::Script,
    transition: redis::Script,
    upsert_agent: redis::Script,
    relay_lease: redis::Script,
    snapshot: redis::Script,
    restore_contact: redis::Script,
    restore_agent: redis::Script,
    record_answer: redis::Script,
    /// This replica's copy of the waiting lines and available agents (see `snapshot.rs`).
    matching_copy: tokio::sync::Mutex<snapshot::MatchingCopy>,
    /// Set when the next snapshot should read everything again.
    copy_stale: std::sync::atomic::AtomicBool,
}

/// A Redis failure of the routing store: a script that found the pool's
/// marker gone reports `STATE_LOST`, which is transient (the state is being
/// rebuilt), not the deterministic script error redis-rs would make of it.
pub(crate) fn state_error(error: redis::RedisError) -> Error {
    if error.code() == Some("STATE_LOST") {
        return state_lost().with_detail(format!("redis: {error}"));
    }
    redis_error(error)
}

/// What every read and write answers while the pool's state is lost: the
/// caller retries (an absent contact is not "not found" then).
pub(super) fn state_lost() -> Error {
    Error::unavailable("routing state is being rebuilt after Redis lost its data; retry")
        .with_reason("ROUTING_STATE_REBUILDING")
}

impl RedisRoutingState {
    pub fn new(connection: ConnectionManager, pool: &str) -> RedisRoutingState {
        RedisRoutingState {
            connection,
            prefix: format!("sb:{{{pool}}}"),
            enqueue: redis::Script::new(ENQUEUE_SCRIPT),
            reserve: redis::Script::new(RESERVE_SCRIPT),
            transition: redis::Script::new(TRANSITION_SCRIPT),
            upsert_agent: redis::Script::new(UPSERT_AGENT_SCRIPT),
            relay_lease: redis::Script::new(RELAY_LEASE_SCRIPT),
            snapshot: redis::Script::new(SNAPSHOT_SCRIPT),
            restore_contact: redis::Script::new(RESTORE_CONTACT_SCRIPT),
            restore_agent: redis::Script::new(RESTORE_AGENT_SCRIPT),
            record_answer: redis::Script::new(RECORD_ANSWER_SCRIPT),
            matching_copy: tokio::sync::Mutex::new(snapshot::MatchingCopy::default()),
            copy_stale: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Present while the pool's state is whole; gone when Redis lost it.
    fn marker_key(&self) -> String {
        format!("{}:whole", self.prefix)
    }

    fn rebuild_lease_key(&self) -> String {
        format!("{}:rebuild", self.prefix)
    }

    /// Set by a restore, deleted when the rest of its rebuild is done.
    fn rebuild_pending_key(&self) -> String {
        format!("{}:rebuild_pending", self.prefix)
    }

    fn contact_key(&self, tenant: &TenantId, contact: &ContactId) -> String {
        format!("{}:c:{tenant}:{contact}", self.prefix)
    }

    fn waiting_key(&self, tenant: &TenantId, queue: &QueueId, channel: i32) -> String {
        format!("{}:w:{tenant}:{queue}:{channel}", self.prefix)
    }

    fn queues_key(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    fn offers_key(&self) -> String {
        format!("{}:offers", self.prefix)
    }

    fn agent_key(&self, agent: &str) -> String {
        format!("{}:a:{agent}", self.prefix)
    }

    fn agent_offers_key(&self, agent: &str) -> String {
        format!("{}:ao:{agent}", self.prefix)
    }

    fn pace_key(&self, tenant: &TenantId, queue: &QueueId, channel: i32) -> String {
        format!("{}:pace:{tenant}:{queue}:{channel}", self.prefix)
    }

    fn outbox_key(&self) -> String {
        format!("{}:outbox", self.prefix)
    }

    fn deadlines_key(&self) -> String {
        format!("{}:deadlines", self.prefix)
    }

    fn last_agent_key(&self, tenant: &TenantId, customer: &str) -> String {
        format!("{}:last:{tenant}:{customer}", self.prefix)
    }

    fn fair_shares_key(&self) -> String {
        format!("{}:fair", self.prefix)
    }

    fn available_key(&self) -> String {
        format!("{}:available", self.prefix)
    }

    /// Each agent by the number of its last change.
    fn changed_agents_key(&self) -> String {
        format!("{}:agents:changed", self.prefix)
    }

    /// Each waiting line by the number of its last change.
    fn changed_lines_key(&self) -> String {
        format!("{}:lines:changed", self.prefix)
    }

    /// The number of the last change to any agent or waiting line.
    fn change_counter_key(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    /// A hash, read together with the marker: a key that is absent because
    /// Redis lost the pool's data is an error, not an absence.
    async fn read_whole_hash(&self, key: String) -> Result<HashMap<String, String>, Error> {
        let mut connection = self.connection.clone();
        let (whole, fields): (i64, HashMap<String, String>) = redis::pipe()
            .atomic()
            .cmd("EXISTS")
            .arg(self.marker_key())
            .cmd("HGETALL")
            .arg(key)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        if whole == 0 {
            return Err(state_lost());
        }
        Ok(fields)
    }

    async fn read_contact(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<ContactRecord>, Error> {
        let fields = self.read_whole_hash(self.contact_key(tenant, contact)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        codec::decode_record(&fields).map(Some)
    }

    fn parse_member(member: &str) -> Option<(TenantId, ContactId)> {
        let (tenant, contact) = member.split_once(':')?;
        Some((TenantId::parse(tenant, "tenant").ok()?, ContactId::parse(contact, "contact").ok()?))
    }

    async fn held_from_members(&self, members: Vec<String>, status: RoutingStatus) -> Result<Vec<OfferRef>, Error> {
        let mut held = Vec::new();
        for member in members {
            let Some((tenant, contact)) = Self::parse_member(&member) else {
                continue;
            };
            let Some(record) = self.read_contact(&tenant, &contact).await? else {
                continue;
            };
            if record.status == status
                && let Some(agent) = record.agent
            {
                held.push(OfferRef { tenant, contact, agent });
            }
        }
        Ok(held)
    }

    async fn held_by_agent(&self, agent: &AgentId, status: RoutingStatus) -> Result<Vec<OfferRef>, Error> {
        let mut connection = self.connection.clone();
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.agent_offers_key(agent.as_str()))
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        members.sort();
        let held = self.held_from_members(members, status).await?;
        Ok(held.into_iter().filter(|offer| &offer.agent == agent).collect())
    }
}

#[async_trait]
impl RoutingState for RedisRoutingState {
    async fn live_contacts(&self, tenant: &TenantId) -> Result<Vec<ContactId>, Error> {
        self.read_live_contacts(tenant).await
    }

    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        self.erase_tenant_keys(tenant).await
    }

    async fn enqueue(&self, record: &ContactRecord, events: &[EventEnvelope]) -> Result<bool, Error> {
        let json = codec::record_json(record)?;
        let mut connection = self.connection.clone();
        let added: i32 = self
            .enqueue
            .key(self.contact_key(&record.tenant, &record.contact))
            .key(self.waiting_key(&record.tenant, &record.queue, record.channel))
            .key(self.queues_key())
            .key(self.outbox_key())
            .key(self.deadlines_key())
            .key(self.marker_key())
            .key(self.changed_lines_key())
            .key(self.change_counter_key())
            .arg(json)
            .arg(record.rank())
            .arg(record.contact.as_str())
            .arg(format!("{}:{}:{}", record.tenant, record.queue, record.channel))
            .arg(if record.status == RoutingStatus::Queued { record.rules.deadline_ms } else { 0 })
            .arg(format!("{}:{}", record.tenant, record.contact))
            .arg(codec::snapshot_json(&ContactRecord { revision: 0, ..record.clone() }, 0)?)
            .arg(events.iter().map(encode).collect::<Vec<_>>())
            .invoke_async(&mut connection)
            .await
            .map_err(state_error)?;
        Ok(added == 1)
    }

    async fn get_contact(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<ContactRecord>, Error> {
        self.read_contact(tenant, contact).await
    }

    async fn position(&self, record: &ContactRecord) -> Result<i32, Error> {
        let mut connection = self.connection.clone();
        let rank: Option<i64> = redis::cmd("ZRANK")
            .arg(self.waiting_key(&record.tenant, &record.queue, record.channel))
            .arg(record.contact.as_str())
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(rank.map_or(0, |rank| i32::try_from(rank + 1).unwrap_or(i32::MAX)))
    }

    async fn upsert_agent(&self, profile: &AgentProfile, available: bool, now_ms: i64) -> Result<(), Error> {
        let json = codec::profile_json(profile)?;
        let mut connection = self.connection.clone();
        let _: i32 = self
            .upsert_agent
            .key(self.agent_key(profile.agent.as_str()))
            .key(self.available_key())
            .key(self.marker_key())
            .key(self.changed_agents_key())
            .key(self.change_counter_key())
            .arg(json)
            .arg(if available { "1" } else { "0" })
            .arg(now_ms)
            .arg(profile.agent.as_str())
            .invoke_async(&mut connection)
            .await
            .map_err(state_error)?;
        Ok(())
    }

    async fn snapshot(&self, per_queue: usize) -> Result<Snapshot, Error> {
        self.read_snapshot(per_queue).await
    }

    async fn gauges(&self) -> Result<StateGauges, Error> {
        self.read_gauges().await
    }

    async fn reserve(
        &self,
        record: &ContactRecord,
        agent: &AgentId,
        expire_ms: i64,
        events: &[EventEnvelope],
    ) -> Result<bool, Error> {
        self.reserve_one(record, agent, expire_ms, events).await
    }

    async fn reserve_batch(&self, batch: &[Reservation<'_>]) -> Result<Vec<bool>, Error> {
        self.reserve_planned(batch).await
    }

    async fn accept(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: &AgentId,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(Applied, ContactRecord), Error> {
        self.apply(tenant, contact, now_ms, |record| domain::accept(record, agent, now_ms), events_for).await
    }

    async fn accept_seen(
        &self,
        seen: &ContactRecord,
        agent: &AgentId,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(Applied, ContactRecord), Error> {
        let change = |record: &mut ContactRecord| domain::accept(record, agent, now_ms);
        self.apply_from(&seen.tenant, &seen.contact, Some(seen), now_ms, change, events_for).await
    }

    async fn complete_seen(
        &self,
        seen: &ContactRecord,
        agent: &AgentId,
        completion: &Completion,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(Applied, ContactRecord), Error> {
        let change = |record: &mut ContactRecord| domain::complete(record, agent, completion, now_ms);
        self.apply_from(&seen.tenant, &seen.contact, Some(seen), now_ms, change, events_for).await
    }

    async fn withdraw(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: Option<&AgentId>,
        expired_by: Option<i64>,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(AgentId, ContactRecord), Error> {
        self.apply(tenant, contact, now_ms, |record| domain::withdraw(record, agent, expired_by), events_for).await
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: &AgentId,
        completion: &Completion,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(Applied, ContactRecord), Error> {
        let change = |record: &mut ContactRecord| domain::complete(record, agent, completion, now_ms);
        self.apply(tenant, contact, now_ms, change, events_for).await
    }

    async fn abandon(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        now_ms: i64,
        events_for: EventsFor<'_>,
    ) -> Result<(Applied, Option<AbandonedFrom>, ContactRecord), Error> {
        let ((applied, from), record) =
            self.apply(tenant, contact, now_ms, |record| domain::abandon(record, now_ms), events_for).await?;
        Ok((applied, from, record))
    }

    async fn expired_offers(&self, now_ms: i64, limit: usize) -> Result<Vec<OfferRef>, Error> {
        let mut connection = self.connection.clone();
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.offers_key())
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        self.held_from_members(members, RoutingStatus::Offered).await
    }

    async fn pending_outbox(
        &self,
        relay: &str,
        lease_ms: i64,
        limit: usize,
        relayed: &[String],
    ) -> Result<Option<OutboxBatch>, Error> {
        self.read_outbox(relay, lease_ms, limit, relayed).await
    }

    async fn acknowledge_outbox(&self, ids: &[String]) -> Result<(), Error> {
        self.delete_outbox_entries(ids).await
    }

    async fn generation(&self) -> Result<String, Error> {
        self.marker_value().await?.ok_or_else(state_lost)
    }

    async fn outbox_tail(&self, generation: &str) -> Result<Option<String>, Error> {
        self.last_outbox_id(generation).await
    }

    async fn relayed_through(&self, id: &str, generation: &str) -> Result<bool, Error> {
        self.outbox_empty_through(id, generation).await
    }

    async fn is_whole(&self) -> Result<bool, Error> {
        self.has_marker().await
    }

    async fn lead_rebuild(&self, holder: &str, lease_ms: i64) -> Result<bool, Error> {
        self.take_rebuild_lease(holder, lease_ms).await
    }

    async fn restore(&self, contacts: &[ContactRecord], agents: &[JournaledAgent], now_ms: i64) -> Result<(), Error> {
        self.restore_state(contacts, agents, now_ms).await
    }

    async fn rebuild_pending(&self) -> Result<bool, Error> {
        self.has_pending_rebuild().await
    }

    async fn finish_rebuild(&self) -> Result<(), Error> {
        self.end_rebuild().await
    }

    async fn record_answer(
        &self,
        tenant: &TenantId,
        queue: &QueueId,
        channel: i32,
        answer_ms: i64,
    ) -> Result<(), Error> {
        self.write_answer(tenant, queue, channel, answer_ms).await
    }

    async fn answer_pace(&self, tenant: &TenantId, queue: &QueueId, channel: i32) -> Result<AnswerPace, Error> {
        self.read_pace(tenant, queue, channel).await
    }

    async fn fair_shares(&self) -> Result<FairShares, Error> {
        self.read_fair_shares().await
    }

    async fn advance_fair_shares(&self, charges: &std::collections::BTreeMap<TenantId, f64>) -> Result<(), Error> {
        self.add_fair_share_charges(charges).await
    }

    async fn offers_of_agent(&self, agent: &AgentId) -> Result<Vec<OfferRef>, Error> {
        self.held_by_agent(agent, RoutingStatus::Offered).await
    }

    async fn handled_by_agent(&self, agent: &AgentId) -> Result<Vec<OfferRef>, Error> {
        self.held_by_agent(agent, RoutingStatus::Answered).await
    }

    async fn change(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        now_ms: i64,
        change: Change<'_>,
        events_for: EventsFor<'_>,
    ) -> Result<ContactRecord, Error> {
        let ((), record) = self.apply(tenant, contact, now_ms, change, events_for).await?;
        Ok(record)
    }

    async fn agent(&self, agent: &AgentId) -> Result<Option<AgentLive>, Error> {
        let fields = self.read_whole_hash(self.agent_key(agent.as_str())).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        codec::decode_agent(agent.as_str(), &fields).map(Some)
    }

    async fn expired_waits(&self, now_ms: i64, limit: usize) -> Result<Vec<(TenantId, ContactId)>, Error> {
        let mut connection = self.connection.clone();
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.deadlines_key())
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(members.iter().filter_map(|member| Self::parse_member(member)).collect())
    }

    async fn line_status(&self, tenant: &TenantId, queue: &QueueId, channel: i32) -> Result<LineStatus, Error> {
        let mut connection = self.connection.clone();
        let line = self.waiting_key(tenant, queue, channel);
        let (waiting, head): (i32, Vec<String>) = redis::pipe()
            .cmd("ZCARD")
            .arg(&line)
            .cmd("ZRANGE")
            .arg(&line)
            .arg(0)
            .arg(0)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let head = match head.first().map(|contact| ContactId::parse(contact, "contact")) {
            Some(Ok(contact)) => self.read_contact(tenant, &contact).await?,
            Some(Err(_)) => return Err(corrupt("waiting contact id")),
            None => None,
        };
        Ok(LineStatus { waiting, head })
    }

    async fn remember_agent(&self, tenant: &TenantId, customer: &str, agent: &AgentId) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let _: () = redis::cmd("SET")
            .arg(self.last_agent_key(tenant, customer))
            .arg(agent.as_str())
            .arg("PX")
            .arg(super::LAST_AGENT_RETENTION_MS)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn last_agent(&self, tenant: &TenantId, customer: &str) -> Result<Option<AgentId>, Error> {
        let mut connection = self.connection.clone();
        let agent: Option<String> = redis::cmd("GET")
            .arg(self.last_agent_key(tenant, customer))
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        agent.map(|agent| AgentId::parse(&agent, "agent").map_err(|_| corrupt("last agent"))).transpose()
    }
}
