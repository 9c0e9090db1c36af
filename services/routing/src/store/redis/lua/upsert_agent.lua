-- Records an agent's profile and availability. Becoming available starts
-- its idle time and ends any wrap-up hold. Like every script that writes an
-- agent, it numbers the change (see snapshot.lua).
local agent_key = KEYS[1]
local available_key = KEYS[2]
local marker_key = KEYS[3]
local changed_agents_key = KEYS[4]
local change_counter_key = KEYS[5]

local profile_json = ARGV[1]
local available = ARGV[2]
local now_ms = ARGV[3]
local agent_id = ARGV[4]

if redis.call('EXISTS', marker_key) == 0 then return redis.error_reply('STATE_LOST routing state is being rebuilt') end
local was_available = redis.call('HGET', agent_key, 'available')
redis.call('HSET', agent_key, 'profile', profile_json, 'available', available)
if available == '1' then
  if was_available ~= '1' then redis.call('HSET', agent_key, 'idle_since', now_ms) end
  redis.call('HDEL', agent_key, 'hold_until')
  redis.call('SADD', available_key, agent_id)
else
  redis.call('SREM', available_key, agent_id)
end
if redis.call('HEXISTS', agent_key, 'idle_since') == 0 then redis.call('HSET', agent_key, 'idle_since', now_ms) end
-- Matching passes read only the agents changed since their last read.
redis.call('ZADD', changed_agents_key, redis.call('INCR', change_counter_key), agent_id)
return 1
