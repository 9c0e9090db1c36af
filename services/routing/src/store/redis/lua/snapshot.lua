-- Reads a matching pass's view in one round trip, writing nothing: the head
-- contacts of every waiting line (ranks 0 to `last_head_index`), and, only when any
-- of them is found, every available agent and the tenants' fair-share
-- tags. Every key is under the pool's prefix, so all of them share the
-- pool's hash slot. Returns {records, agents, fair}: records a list of
-- contact hashes (flat field/value lists, missing ones left out), agents a
-- list of {agent_id, agent hash} (missing ones left out), fair the
-- fair-share hash; all three empty when no contact waits.
local lines_key = KEYS[1]
local available_key = KEYS[2]
local fair_key = KEYS[3]

local prefix = ARGV[1]
local last_head_index = tonumber(ARGV[2])

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
if #records == 0 then return {{}, {}, {}} end

local agents = {}
for _, agent_id in ipairs(redis.call('SMEMBERS', available_key)) do
  local agent = redis.call('HGETALL', prefix .. ':a:' .. agent_id)
  if #agent > 0 then
    agents[#agents + 1] = {agent_id, agent}
  end
end
return {records, agents, redis.call('HGETALL', fair_key)}
