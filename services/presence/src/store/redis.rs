//! Live agent state in Redis: `sb:{pool}:presence:<agent>` hashes (`state`,
//! `reason`, `since`, `session`), the set `sb:{pool}:presence:online` and
//! the sorted set `sb:{pool}:presence:leases` (agent by lease expiry).

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use switchboard_core::{AgentId, Error};
use switchboard_platform::redis::redis_error;

use super::{LiveState, LiveStateStore, parse_state, state_name};

// Read the previous state and write the new one in one atomic step, so two
// sessions racing cannot both observe the same "previous" state.
const SET_STATE_SCRIPT: &str = r"
local previous = redis.call('HMGET', KEYS[1], 'state', 'reason', 'since')
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'reason', ARGV[2], 'since', ARGV[3])
if ARGV[1] == 'AGENT_STATE_OFFLINE' then redis.call('SREM', KEYS[2], ARGV[4]) else redis.call('SADD', KEYS[2], ARGV[4]) end
return previous
";

// The same, only while the agent's current session is the expected one.
const SET_STATE_IF_SESSION_SCRIPT: &str = r"
if (redis.call('HGET', KEYS[1], 'session') or '') ~= ARGV[5] then return false end
local previous = redis.call('HMGET', KEYS[1], 'state', 'reason', 'since')
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'reason', ARGV[2], 'since', ARGV[3])
if ARGV[1] == 'AGENT_STATE_OFFLINE' then
  redis.call('SREM', KEYS[2], ARGV[4])
  redis.call('ZREM', KEYS[3], ARGV[4])
else
  redis.call('SADD', KEYS[2], ARGV[4])
end
return previous
";

// Extends a lease only for the session that owns the agent.
const RENEW_LEASE_SCRIPT: &str = r"
if (redis.call('HGET', KEYS[1], 'session') or '') ~= ARGV[1] then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
";

pub struct RedisLiveStateStore {
    connection: ConnectionManager,
    prefix: String,
    set_state: redis::Script,
    set_state_if_session: redis::Script,
    renew_lease: redis::Script,
}

impl RedisLiveStateStore {
    pub fn new(connection: ConnectionManager, pool: &str) -> RedisLiveStateStore {
        RedisLiveStateStore {
            connection,
            prefix: format!("sb:{{{pool}}}:presence"),
            set_state: redis::Script::new(SET_STATE_SCRIPT),
            set_state_if_session: redis::Script::new(SET_STATE_IF_SESSION_SCRIPT),
            renew_lease: redis::Script::new(RENEW_LEASE_SCRIPT),
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
}

fn decode(fields: [Option<String>; 3]) -> LiveState {
    let [state, reason, since] = fields;
    let Some(state) = state.as_deref().and_then(parse_state) else {
        return LiveState::offline();
    };
    LiveState {
        state,
        reason: reason.unwrap_or_default(),
        since_ms: since.and_then(|since| since.parse().ok()).unwrap_or(0),
    }
}

#[async_trait]
impl LiveStateStore for RedisLiveStateStore {
    async fn get_state(&self, agent: &AgentId) -> Result<LiveState, Error> {
        let mut connection = self.connection.clone();
        let (state, reason, since): (Option<String>, Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.agent_key(agent))
            .arg("state")
            .arg("reason")
            .arg("since")
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(decode([state, reason, since]))
    }

    async fn set_state(&self, agent: &AgentId, state: &LiveState) -> Result<LiveState, Error> {
        let mut connection = self.connection.clone();
        let (previous_state, previous_reason, previous_since): (Option<String>, Option<String>, Option<String>) = self
            .set_state
            .key(self.agent_key(agent))
            .key(self.online_key())
            .arg(state_name(state.state))
            .arg(&state.reason)
            .arg(state.since_ms)
            .arg(agent.as_str())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(decode([previous_state, previous_reason, previous_since]))
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
        let previous: Option<(Option<String>, Option<String>, Option<String>)> = self
            .set_state_if_session
            .key(self.agent_key(agent))
            .key(self.online_key())
            .key(self.leases_key())
            .arg(state_name(state.state))
            .arg(&state.reason)
            .arg(state.since_ms)
            .arg(agent.as_str())
            .arg(expected_session)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(previous.map(|(state, reason, since)| decode([state, reason, since])))
    }

    async fn online_agents(&self) -> Result<Vec<AgentId>, Error> {
        let mut connection = self.connection.clone();
        let mut members: Vec<String> =
            redis::cmd("SMEMBERS").arg(self.online_key()).query_async(&mut connection).await.map_err(redis_error)?;
        members.sort();
        Ok(members.iter().filter_map(|member| AgentId::parse(member, "agent").ok()).collect())
    }
}
