-- Puts an agent back from the journal: its profile, its availability, and
-- its load per channel as the restored contacts hold it (set, not added,
-- so a restore run twice counts once); idempotent.
local agent_key = KEYS[1]
local available_key = KEYS[2]
local changed_agents_key = KEYS[3]
local change_counter_key = KEYS[4]

local profile_json = ARGV[1]
local available = ARGV[2]
local now_ms = ARGV[3]
local agent_id = ARGV[4]
local first_load = 5

local fields = redis.call('HGETALL', agent_key)
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 5) == 'load:' then redis.call('HDEL', agent_key, fields[i]) end
end
redis.call('HSET', agent_key, 'profile', profile_json, 'available', available)
if redis.call('HEXISTS', agent_key, 'idle_since') == 0 then redis.call('HSET', agent_key, 'idle_since', now_ms) end
for i = first_load, #ARGV, 2 do redis.call('HSET', agent_key, 'load:' .. ARGV[i], ARGV[i + 1]) end
if available == '1' then redis.call('SADD', available_key, agent_id) else redis.call('SREM', available_key, agent_id) end
redis.call('ZADD', changed_agents_key, redis.call('INCR', change_counter_key), agent_id)
return 1
