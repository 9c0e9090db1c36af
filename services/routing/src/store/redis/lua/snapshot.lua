-- Reads a matching pass's view in one round trip, writing nothing: the head
-- contacts of the waiting lines (ranks 0 to `last_head_index`) and, when any
-- contact waits, the agents and the tenants' fair-share tags. Every key is
-- under the pool's prefix, so all of them share the pool's hash slot.
--
-- Lines and agents come whole or as a change: the caller keeps a copy of
-- the waiting lines' heads and of the available agents, as of change number
-- `known_change` of the state of generation `known_generation`. When the
-- state is still that generation and its change counter has not gone
-- backwards, only the lines and agents changed since then are read (the
-- sorted sets `changed_lines` and `changed_agents` hold each one's last
-- change); otherwise every waiting line and available agent is. Either way
-- a line that no longer waits, or an agent that is not available, comes
-- back empty, so the caller drops it.
--
-- Returns {lines, agents, fair, whole, generation, change}: lines a list of
-- {line, heads} (heads a list of contact hashes, each a flat field/value
-- list, missing ones left out), agents a list of {agent_id, agent hash},
-- fair the fair-share hash, whole 1 when lines and agents hold every
-- waiting line and available agent (0: changes only), and the generation
-- and change number they are as of. When no contact waits nothing is read:
-- all empty, whole -1, the caller's own generation and change.
local lines_key = KEYS[1]
local available_key = KEYS[2]
local fair_key = KEYS[3]
local marker_key = KEYS[4]
local changed_agents_key = KEYS[5]
local change_counter_key = KEYS[6]
local changed_lines_key = KEYS[7]

local prefix = ARGV[1]
local last_head_index = tonumber(ARGV[2])
local known_generation = ARGV[3]
local known_change = tonumber(ARGV[4])

if redis.call('SCARD', lines_key) == 0 then return {{}, {}, {}, -1, known_generation, ARGV[4]} end

local generation = redis.call('GET', marker_key) or ''
local change = redis.call('GET', change_counter_key) or '0'
local whole = generation ~= known_generation or known_change < 0 or tonumber(change) < known_change

-- Every member of `set_key` on a whole read; otherwise those numbered in
-- `changed_key` since the caller's change.
local function to_read(set_key, changed_key)
  if whole then return redis.call('SMEMBERS', set_key) end
  return redis.call('ZRANGEBYSCORE', changed_key, '(' .. ARGV[4], '+inf')
end

local lines = {}
for _, line in ipairs(to_read(lines_key, changed_lines_key)) do
  -- A line is `tenant:queue:channel`; its contacts are `c:tenant:contact`.
  local tenant = string.match(line, '^([^:]+):')
  local heads = {}
  -- A line that no longer waits has no sorted set left: no heads.
  if tenant then
    for _, contact in ipairs(redis.call('ZRANGE', prefix .. ':w:' .. line, 0, last_head_index)) do
      local record = redis.call('HGETALL', prefix .. ':c:' .. tenant .. ':' .. contact)
      if #record > 0 then
        heads[#heads + 1] = record
      end
    end
  end
  if #heads > 0 or not whole then
    lines[#lines + 1] = {line, heads}
  end
end

local agents = {}
for _, agent_id in ipairs(to_read(available_key, changed_agents_key)) do
  local agent = {}
  if whole or redis.call('SISMEMBER', available_key, agent_id) == 1 then
    agent = redis.call('HGETALL', prefix .. ':a:' .. agent_id)
  end
  if #agent > 0 or not whole then
    agents[#agents + 1] = {agent_id, agent}
  end
end
return {lines, agents, redis.call('HGETALL', fair_key), whole and 1 or 0, generation, change}
