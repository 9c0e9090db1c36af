-- Reads a matching pass's view in one round trip, writing nothing: the head
-- contacts of every waiting line (ranks 0 to `last_head_index`), and, only when any
-- of them is found, the agents and the tenants' fair-share tags. Every key
-- is under the pool's prefix, so all of them share the pool's hash slot.
--
-- Agents come whole or as a change: the caller keeps a copy of the
-- available agents, as of change number `known_change` of the state of
-- generation `known_generation`. When the state is still that generation
-- and its change counter has not gone backwards, only the agents changed
-- since then are read (the sorted set `changed_agents` holds each agent's last change);
-- otherwise every available agent is. Either way an agent that is not
-- available comes back with an empty hash, so the caller drops it.
--
-- Returns {records, agents, fair, whole, generation, change}: records a
-- list of contact hashes (flat field/value lists, missing ones left out),
-- agents a list of {agent_id, agent hash}, fair the fair-share hash, whole
-- 1 when agents holds every available agent (0: changes only), and the
-- generation and change counter the agents are as of; all empty (whole 0,
-- the caller's own generation and change) when no contact waits.
local lines_key = KEYS[1]
local available_key = KEYS[2]
local fair_key = KEYS[3]
local marker_key = KEYS[4]
local changed_agents_key = KEYS[5]
local change_counter_key = KEYS[6]

local prefix = ARGV[1]
local last_head_index = tonumber(ARGV[2])
local known_generation = ARGV[3]
local known_change = tonumber(ARGV[4])

local records = {}
for _, line in ipairs(redis.call('SMEMBERS', lines_key)) do
  -- A line is `tenant:queue:channel`; its contacts are `c:tenant:contact`.
  local tenant = string.match(line, '^([^:]+):')
  if tenant then
    for _, contact in ipairs(redis.call('ZRANGE', prefix .. ':w:' .. line, 0, last_head_index)) do
      local record = redis.call('HGETALL', prefix .. ':c:' .. tenant .. ':' .. contact)
      if #record > 0 then
        records[#records + 1] = record
      end
    end
  end
end
if #records == 0 then return {{}, {}, {}, 0, known_generation, ARGV[4]} end

local generation = redis.call('GET', marker_key) or ''
local change = redis.call('GET', change_counter_key) or '0'
local whole = generation ~= known_generation or known_change < 0 or tonumber(change) < known_change
local agent_ids
if whole then
  agent_ids = redis.call('SMEMBERS', available_key)
else
  agent_ids = redis.call('ZRANGEBYSCORE', changed_agents_key, '(' .. ARGV[4], '+inf')
end
local agents = {}
for _, agent_id in ipairs(agent_ids) do
  local agent = {}
  if whole or redis.call('SISMEMBER', available_key, agent_id) == 1 then
    agent = redis.call('HGETALL', prefix .. ':a:' .. agent_id)
  end
  if #agent > 0 or not whole then
    agents[#agents + 1] = {agent_id, agent}
  end
end
return {records, agents, redis.call('HGETALL', fair_key), whole and 1 or 0, generation, change}
