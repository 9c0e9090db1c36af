-- Offers a queued contact to an agent, re-checking atomically everything
-- that can change between the matching snapshot and the reservation: the
-- contact still queued, at the revision the plan saw (a pin, a callback or
-- a transfer may have changed it) and in the line the plan saw; the agent
-- still available, not held for wrap-up, with room on the channel and no
-- voice mixed with other work. Appends the offer's events and the
-- contact's snapshot. Returns 1 when reserved, 0 otherwise.
local contact_key = KEYS[1]
local line_key = KEYS[2]
local agent_key = KEYS[3]
local offers_key = KEYS[4]
local agent_offers_key = KEYS[5]
local lines_key = KEYS[6]
local outbox_key = KEYS[7]
local deadlines_key = KEYS[8]
local marker_key = KEYS[9]
local changed_agents_key = KEYS[10]
local change_counter_key = KEYS[11]
local changed_lines_key = KEYS[12]

local contact_id = ARGV[1]
local agent_id = ARGV[2]
local channel = ARGV[3]
local capacity = tonumber(ARGV[4])
local expire_ms = ARGV[5]
local member = ARGV[6]
local line = ARGV[7]
local offer_ms = tonumber(ARGV[8])
local expected_rev = ARGV[9]
local snapshot = ARGV[10]
local first_event = 11

if redis.call('EXISTS', marker_key) == 0 then return redis.error_reply('STATE_LOST routing state is being rebuilt') end
if redis.call('HGET', contact_key, 'status') ~= 'queued' then return 0 end
if (redis.call('HGET', contact_key, 'rev') or '0') ~= expected_rev then return 0 end
local stored_line = redis.call('HGET', contact_key, 'line')
if stored_line and stored_line ~= line then return 0 end
if redis.call('HGET', agent_key, 'available') ~= '1' then return 0 end
local fields = redis.call('HGETALL', agent_key)
local total, voice, on_channel = 0, 0, 0
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 5) == 'load:' then
    local load = tonumber(fields[i + 1])
    local load_channel = string.sub(fields[i], 6)
    total = total + load
    if load_channel == '1' then voice = load end
    if load_channel == channel then on_channel = load end
  end
end
if on_channel >= capacity or voice > 0 or (channel == '1' and total > 0) then return 0 end
local hold = tonumber(redis.call('HGET', agent_key, 'hold_until') or '0')
if hold > 0 and hold > offer_ms then return 0 end
redis.call('HSET', contact_key, 'status', 'offered', 'agent', agent_id, 'last_agent', agent_id, 'expire_ms', expire_ms)
redis.call('HINCRBY', contact_key, 'rev', 1)
redis.call('ZREM', deadlines_key, member)
redis.call('ZREM', line_key, contact_id)
if redis.call('ZCARD', line_key) == 0 then redis.call('SREM', lines_key, line) end
redis.call('HINCRBY', agent_key, 'load:' .. channel, 1)
redis.call('HSET', agent_key, 'last_offer', offer_ms)
local change = redis.call('INCR', change_counter_key)
redis.call('ZADD', changed_agents_key, change, agent_id)
redis.call('ZADD', changed_lines_key, change, line)
redis.call('ZADD', offers_key, expire_ms, member)
redis.call('SADD', agent_offers_key, member)
for i = first_event, #ARGV do redis.call('XADD', outbox_key, '*', 'e', ARGV[i]) end
redis.call('XADD', outbox_key, '*', 's', snapshot)
return 1
