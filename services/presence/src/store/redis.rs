//! Live agent state in Redis: `sb:{pool}:presence:<agent>` hashes (`state`,
//! `reason`, `since`, `wrap_up_until`, `session`), the set
//! `sb:{pool}:presence:online`, and the sorted sets
//! `sb:{pool}:presence:leases` (agent by lease expiry) and
//! `sb:{pool}:presence:wrap_ups` (agent by wrap-up end), and per agent the
//! set `sb:{pool}:presence:<agent>:missed` of missed offers, the hash
//! `sb:{pool}:presence:<agent>:contacts` of the work it holds (contact name
//! to an encoded `ActiveContact`), the hash `sb:{pool}:presence:holders`
//! (contact name to the agent that last took it), and a key
//! `sb:{pool}:presence:<agent>:seen:<contact>` per offer its desktop was
//! sent, until the offer ends.

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use switchboard_core::names::tenant_name;
use switchboard_core::{AgentId, Error, TenantId};
use switchboard_platform::redis::{Scanned, delete_keys, redis_error, remove_members, scan};

use prost::Message;
use switchboard_proto::presence::v1::{ActiveContact, AgentState};

use super::{LiveState, LiveStateStore, parse_state, state_name};

// Every state write goes through `apply`, so the online set and the wrap-up
// timers (`wrap_ups`, agent by wrap-up end) always agree with the hash.
// KEYS: agent hash, online set, wrap-ups; ARGV: state, reason, since,
// agent, wrap-up end.
const APPLY: &str = r"
local function apply()
  redis.call('HSET', KEYS[1], 'state', ARGV[1], 'reason', ARGV[2], 'since', ARGV[3], 'wrap_up_until', ARGV[5])
  if ARGV[1] == 'AGENT_STATE_OFFLINE' then redis.call('SREM', KEYS[2], ARGV[4]) else redis.call('SADD', KEYS[2], ARGV[4]) end
  if ARGV[1] == 'AGENT_STATE_WRAP_UP' then redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4]) else redis.call('ZREM', KEYS[3], ARGV[4]) end
end
local previous = redis.call('HMGET', KEYS[1], 'state', 'reason', 'since', 'wrap_up_until')
";

// Read the previous state and write the new one in one atomic step, so two
// sessions racing cannot both observe the same "previous" state.
const SET_STATE_SCRIPT: &str = r"
apply()
return previous
";

// The same, only while the agent's current session is the expected one;
// KEYS[4] is the leases set, ARGV[6] the session.
const SET_STATE_IF_SESSION_SCRIPT: &str = r"
if (redis.call('HGET', KEYS[1], 'session') or '') ~= ARGV[6] then return false end
apply()
if ARGV[1] == 'AGENT_STATE_OFFLINE' then redis.call('ZREM', KEYS[4], ARGV[4]) end
return previous
";

// The same, only while the agent is in state ARGV[6] since at most ARGV[7].
const SET_STATE_IF_SCRIPT: &str = r"
if (previous[1] or 'AGENT_STATE_OFFLINE') ~= ARGV[6] then return false end
if tonumber(previous[3] or '0') > tonumber(ARGV[7]) then return false end
apply()
return previous
";

// Extends a lease only for the session that owns the agent.
// A hash with no session at all lost its data (Redis was flushed or
// restarted without persistence): the live session claims the agent again
// rather than being ended as if another had taken over.
const RENEW_LEASE_SCRIPT: &str = r"
local session = redis.call('HGET', KEYS[1], 'session')
if session and session ~= ARGV[1] then return 0 end
if not session then redis.call('HSET', KEYS[1], 'session', ARGV[1]) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
";

// Removes a contact from the agent's active contacts, and forgets its
// holder only if that is still `agent`: an agent that lost the contact to
// another must not erase the new holder. Returns 1 when the contact was
// active.
const REMOVE_ACTIVE_CONTACT_SCRIPT: &str = r"
local contacts_key, holders_key, contact, agent = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local removed = redis.call('HDEL', contacts_key, contact)
if redis.call('HGET', holders_key, contact) == agent then redis.call('HDEL', holders_key, contact) end
return removed
";

const MISSED_OFFERS_TTL_SECONDS: i64 = 86_400;
/// Offers end within minutes (answered, withdrawn, expired): a seen mark
/// that nobody took (its contact was abandoned while ringing, or the mark
/// came after its end was handled) expires on its own.
const SEEN_OFFER_TTL_SECONDS: i64 = 3_600;

pub struct RedisLiveStateStore {
    connection: ConnectionManager,
    prefix: String,
    set_state: redis::Script,
    set_state_if_session: redis::Script,
    set_state_if: redis::Script,
    renew_lease: redis::Script,
    remove_active_contact: redis::Script,
}

type StateFields = (Option<String>, Option<String>, Option<String>, Option<String>);

impl RedisLiveStateStore {
    pub fn new(connection: ConnectionManager, pool: &str) -> RedisLiveStateStore {
        RedisLiveStateStore {
            connection,
            prefix: format!("sb:{{{pool}}}:presence"),
            set_state: redis::Script::new(&format!("{APPLY}{SET_STATE_SCRIPT}")),
            set_state_if_session: redis::Script::new(&format!("{APPLY}{SET_STATE_IF_SESSION_SCRIPT}")),
            set_state_if: redis::Script::new(&format!("{APPLY}{SET_STATE_IF_SCRIPT}")),
            renew_lease: redis::Script::new(RENEW_LEASE_SCRIPT),
            remove_active_contact: redis::Script::new(REMOVE_ACTIVE_CONTACT_SCRIPT),
        }
    }

    fn agent_key(&self, agent: &AgentId) -> String {
        format!("{}:{agent}", self.prefix)
    }

    fn leases_key(&self) -> String {
        format!("{}:leases", self.prefix)
    }

    fn online_key(&self) -> String {
        format!("{}:online", self.prefix)
    }

    fn holders_key(&self) -> String {
        format!("{}:holders", self.prefix)
    }

    fn contacts_key(&self, agent: &AgentId) -> String {
        format!("{}:{agent}:contacts", self.prefix)
    }

    fn missed_key(&self, agent: &AgentId) -> String {
        format!("{}:{agent}:missed", self.prefix)
    }

    fn seen_key(&self, agent: &AgentId, contact: &str) -> String {
        format!("{}:{agent}:seen:{contact}", self.prefix)
    }

    fn wrap_ups_key(&self) -> String {
        format!("{}:wrap_ups", self.prefix)
    }

    /// The state-writing script `script` with the keys and arguments every
    /// state write takes.
    fn state_write<'a>(
        &self,
        script: &'a redis::Script,
        agent: &AgentId,
        state: &LiveState,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.agent_key(agent))
            .key(self.online_key())
            .key(self.wrap_ups_key())
            .arg(state_name(state.state))
            .arg(&state.reason)
            .arg(state.since_ms)
            .arg(agent.as_str())
            .arg(if state.state == AgentState::WrapUp { state.wrap_up_until_ms } else { 0 });
        invocation
    }
}

fn decode((state, reason, since, wrap_up_until): StateFields) -> LiveState {
    let Some(state) = state.as_deref().and_then(parse_state) else {
        return LiveState::offline();
    };
    let millis = |field: Option<String>| field.and_then(|value| value.parse().ok()).unwrap_or(0);
    LiveState {
        state,
        reason: reason.unwrap_or_default(),
        since_ms: millis(since),
        wrap_up_until_ms: millis(wrap_up_until),
    }
}

#[async_trait]
impl LiveStateStore for RedisLiveStateStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        let contacts = format!("{}/*", tenant_name(tenant));
        let holders = scan(&self.connection, Scanned::HashFields(&self.holders_key()), &contacts).await?;
        remove_members(&self.connection, "HDEL", Some(&self.holders_key()), &holders).await?;
        for key in scan(&self.connection, Scanned::Keys, &format!("{}:*:contacts", self.prefix)).await? {
            let held = scan(&self.connection, Scanned::HashFields(&key), &contacts).await?;
            remove_members(&self.connection, "HDEL", Some(&key), &held).await?;
        }
        let seen = scan(&self.connection, Scanned::Keys, &format!("{}:*:seen:{contacts}", self.prefix)).await?;
        delete_keys(&self.connection, &seen).await
    }

    async fn get_state(&self, agent: &AgentId) -> Result<LiveState, Error> {
        let mut connection = self.connection.clone();
        let fields: StateFields = redis::cmd("HMGET")
            .arg(self.agent_key(agent))
            .arg("state")
            .arg("reason")
            .arg("since")
            .arg("wrap_up_until")
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(decode(fields))
    }

    async fn set_state(&self, agent: &AgentId, state: &LiveState) -> Result<LiveState, Error> {
        let mut connection = self.connection.clone();
        let previous: StateFields =
            self.state_write(&self.set_state, agent, state).invoke_async(&mut connection).await.map_err(redis_error)?;
        Ok(decode(previous))
    }

    async fn set_state_if(
        &self,
        agent: &AgentId,
        expected: AgentState,
        not_after_ms: i64,
        next: &LiveState,
    ) -> Result<Option<LiveState>, Error> {
        let mut connection = self.connection.clone();
        let previous: Option<StateFields> = self
            .state_write(&self.set_state_if, agent, next)
            .arg(state_name(expected))
            .arg(not_after_ms)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(previous.map(decode))
    }

    async fn record_missed_offer(&self, agent: &AgentId, offer_id: &str) -> Result<usize, Error> {
        let mut connection = self.connection.clone();
        let key = self.missed_key(agent);
        let (missed,): (usize,) = redis::pipe()
            .atomic()
            .cmd("SADD")
            .arg(&key)
            .arg(offer_id)
            .ignore()
            .cmd("SCARD")
            .arg(&key)
            // An agent that never answers again must not leave its count
            // behind forever.
            .cmd("EXPIRE")
            .arg(&key)
            .arg(MISSED_OFFERS_TTL_SECONDS)
            .ignore()
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(missed)
    }

    async fn mark_offer_seen(&self, agent: &AgentId, contact: &str) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let _: () = redis::cmd("SET")
            .arg(self.seen_key(agent, contact))
            .arg(1)
            .arg("EX")
            .arg(SEEN_OFFER_TTL_SECONDS)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn take_offer_seen(&self, agent: &AgentId, contact: &str) -> Result<bool, Error> {
        let mut connection = self.connection.clone();
        let removed: i64 = redis::cmd("DEL")
            .arg(self.seen_key(agent, contact))
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(removed == 1)
    }

    async fn clear_missed_offers(&self, agent: &AgentId) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let _: () =
            redis::cmd("DEL").arg(self.missed_key(agent)).query_async(&mut connection).await.map_err(redis_error)?;
        Ok(())
    }

    async fn put_active_contact(&self, agent: &AgentId, contact: &ActiveContact) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let _: () = redis::pipe()
            .cmd("HSET")
            .arg(self.contacts_key(agent))
            .arg(&contact.contact)
            .arg(contact.encode_to_vec())
            .ignore()
            .cmd("HSET")
            .arg(self.holders_key())
            .arg(&contact.contact)
            .arg(agent.as_str())
            .ignore()
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn offer_answered(&self, agent: &AgentId, contact: &ActiveContact) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let _: () = redis::pipe()
            .cmd("HSET")
            .arg(self.contacts_key(agent))
            .arg(&contact.contact)
            .arg(contact.encode_to_vec())
            .ignore()
            .cmd("HSET")
            .arg(self.holders_key())
            .arg(&contact.contact)
            .arg(agent.as_str())
            .ignore()
            .cmd("DEL")
            .arg(self.seen_key(agent, &contact.contact))
            .arg(self.missed_key(agent))
            .ignore()
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn remove_active_contact(&self, agent: &AgentId, contact: &str) -> Result<bool, Error> {
        let mut connection = self.connection.clone();
        let removed: i64 = self
            .remove_active_contact
            .key(self.contacts_key(agent))
            .key(self.holders_key())
            .arg(contact)
            .arg(agent.as_str())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(removed == 1)
    }

    async fn hold(&self, agent: &AgentId, contact: &str) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("HSET")
            .arg(self.holders_key())
            .arg(contact)
            .arg(agent.as_str())
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn holder_of(&self, contact: &str) -> Result<Option<AgentId>, Error> {
        let mut connection = self.connection.clone();
        let holder: Option<String> = redis::cmd("HGET")
            .arg(self.holders_key())
            .arg(contact)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        holder
            .map(|agent| {
                AgentId::parse(&agent, "holder").map_err(|error| Error::internal(format!("stored holder: {error}")))
            })
            .transpose()
    }

    async fn active_contacts(&self, agent: &AgentId) -> Result<Vec<ActiveContact>, Error> {
        let mut connection = self.connection.clone();
        let mut contacts: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.contacts_key(agent))
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        contacts.sort();
        contacts.iter().map(|(_, body)| decode_active_contact(body)).collect()
    }

    async fn active_contact(&self, agent: &AgentId, contact: &str) -> Result<Option<ActiveContact>, Error> {
        let mut connection = self.connection.clone();
        let body: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(self.contacts_key(agent))
            .arg(contact)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        body.as_deref().map(decode_active_contact).transpose()
    }

    async fn expired_wrap_ups(&self, now_ms: i64, limit: usize) -> Result<Vec<(AgentId, i64)>, Error> {
        let mut connection = self.connection.clone();
        let expired: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.wrap_ups_key())
            .arg("-inf")
            .arg(format!("({now_ms}"))
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        // Scores are whole milliseconds, exact in a double.
        #[allow(clippy::cast_possible_truncation)]
        let expired = expired
            .into_iter()
            .filter_map(|(agent, until)| AgentId::parse(&agent, "agent").ok().map(|agent| (agent, until as i64)))
            .collect();
        Ok(expired)
    }

    async fn claim_session(&self, agent: &AgentId, session_id: &str, lease_until_ms: i64) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let _: () = redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(self.agent_key(agent))
            .arg("session")
            .arg(session_id)
            .ignore()
            .cmd("ZADD")
            .arg(self.leases_key())
            .arg(lease_until_ms)
            .arg(agent.as_str())
            .ignore()
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn renew_lease(&self, agent: &AgentId, session_id: &str, lease_until_ms: i64) -> Result<bool, Error> {
        let mut connection = self.connection.clone();
        let renewed: i32 = self
            .renew_lease
            .key(self.agent_key(agent))
            .key(self.leases_key())
            .arg(session_id)
            .arg(lease_until_ms)
            .arg(agent.as_str())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(renewed == 1)
    }

    async fn expired_leases(&self, now_ms: i64, limit: usize) -> Result<Vec<(AgentId, String)>, Error> {
        let mut connection = self.connection.clone();
        let agents: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.leases_key())
            .arg("-inf")
            .arg(format!("({now_ms}"))
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let agents: Vec<AgentId> = agents.iter().filter_map(|agent| AgentId::parse(agent, "agent").ok()).collect();
        if agents.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for agent in &agents {
            pipeline.cmd("HGET").arg(self.agent_key(agent)).arg("session");
        }
        let sessions: Vec<Option<String>> = pipeline.query_async(&mut connection).await.map_err(redis_error)?;
        Ok(agents.into_iter().zip(sessions).map(|(agent, session)| (agent, session.unwrap_or_default())).collect())
    }

    async fn session_of(&self, agent: &AgentId) -> Result<String, Error> {
        let mut connection = self.connection.clone();
        let session: Option<String> = redis::cmd("HGET")
            .arg(self.agent_key(agent))
            .arg("session")
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(session.unwrap_or_default())
    }

    async fn set_state_if_session(
        &self,
        agent: &AgentId,
        expected_session: &str,
        state: &LiveState,
    ) -> Result<Option<LiveState>, Error> {
        let mut connection = self.connection.clone();
        let previous: Option<StateFields> = self
            .state_write(&self.set_state_if_session, agent, state)
            .key(self.leases_key())
            .arg(expected_session)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(previous.map(decode))
    }

    async fn online_agents(&self) -> Result<Vec<AgentId>, Error> {
        let mut connection = self.connection.clone();
        let mut members: Vec<String> =
            redis::cmd("SMEMBERS").arg(self.online_key()).query_async(&mut connection).await.map_err(redis_error)?;
        members.sort();
        Ok(members.iter().filter_map(|member| AgentId::parse(member, "agent").ok()).collect())
    }

    async fn online_states(&self) -> Result<std::collections::BTreeMap<AgentState, i64>, Error> {
        let agents = self.online_agents().await?;
        let mut counts = std::collections::BTreeMap::new();
        if agents.is_empty() {
            return Ok(counts);
        }
        let mut pipeline = redis::pipe();
        for agent in &agents {
            pipeline.cmd("HGET").arg(self.agent_key(agent)).arg("state");
        }
        let mut connection = self.connection.clone();
        let states: Vec<Option<String>> = pipeline.query_async(&mut connection).await.map_err(redis_error)?;
        for state in states.iter().flatten().filter_map(|name| parse_state(name)) {
            if state != AgentState::Offline {
                *counts.entry(state).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}

/// A stored active contact; one that does not decode is corruption.
fn decode_active_contact(body: &[u8]) -> Result<ActiveContact, Error> {
    ActiveContact::decode(body)
        .map_err(|error| Error::internal(format!("stored active contact does not decode: {error}")))
}
