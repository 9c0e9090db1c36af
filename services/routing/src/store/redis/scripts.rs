//! The Lua scripts of the Redis routing store: each is one atomic step.

pub(super) const ENQUEUE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'status', 'queued', 'agent', '', 'expire_ms', '0', 'answer_ms', '0', 'end_ms', '0', 'rev', '0', 'line', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
if ARGV[5] ~= '0' then redis.call('ZADD', KEYS[5], ARGV[5], ARGV[6]) end
for i = 7, #ARGV do redis.call('XADD', KEYS[4], '*', 'e', ARGV[i]) end
return 1
";

// Re-checks, atomically, everything that can change between the snapshot
// and the reservation: the contact still queued in the line the plan saw
// (a transfer may have moved it), the agent still available
// with room on the channel, and no voice mixed with other work.
pub(super) const RESERVE_SCRIPT: &str = r"
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
local line = redis.call('HGET', KEYS[1], 'line')
if line and line ~= ARGV[7] then return 0 end
if redis.call('HGET', KEYS[3], 'available') ~= '1' then return 0 end
local channel = ARGV[3]
local fields = redis.call('HGETALL', KEYS[3])
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
if on_channel >= tonumber(ARGV[4]) or voice > 0 or (channel == '1' and total > 0) then return 0 end
local hold = tonumber(redis.call('HGET', KEYS[3], 'hold_until') or '0')
if hold > 0 and hold > tonumber(ARGV[8]) then return 0 end
redis.call('HSET', KEYS[1], 'status', 'offered', 'agent', ARGV[2], 'expire_ms', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('ZREM', KEYS[8], ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[6], ARGV[7]) end
redis.call('HINCRBY', KEYS[3], 'load:' .. channel, 1)
redis.call('HSET', KEYS[3], 'last_offer', ARGV[8])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
redis.call('SADD', KEYS[5], ARGV[6])
for i = 9, #ARGV do redis.call('XADD', KEYS[7], '*', 'e', ARGV[i]) end
return 1
";

// Compare-and-set of a contact (status, agent and revision), with the
// index and load bookkeeping the transition implies. The transition itself
// is computed by the pure domain in Rust, so Redis and memory cannot
// disagree on rules. KEYS: contact, source line, holder's agent hash,
// offers, holder's offers, lines set, outbox, destination line, deadlines.
pub(super) const TRANSITION_SCRIPT: &str = r"
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'agent') ~= ARGV[2] then return 0 end
if (redis.call('HGET', KEYS[1], 'rev') or '0') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'agent', ARGV[5], 'expire_ms', ARGV[6], 'answer_ms', ARGV[7], 'end_ms', ARGV[8], 'record', ARGV[9], 'line', ARGV[14])
redis.call('HINCRBY', KEYS[1], 'rev', 1)
if ARGV[15] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[10])
  if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[6], ARGV[13]) end
end
if ARGV[16] == '1' then
  redis.call('ZADD', KEYS[8], ARGV[11], ARGV[10])
  redis.call('SADD', KEYS[6], ARGV[14])
end
if ARGV[17] == '1' then redis.call('ZREM', KEYS[4], ARGV[12]) end
-- The holder's set keeps the contacts it is offered or handling.
if ARGV[18] == '1' then redis.call('SREM', KEYS[5], ARGV[12]) end
if ARGV[18] == '1' then
  local load_field = 'load:' .. ARGV[19]
  if redis.call('HINCRBY', KEYS[3], load_field, -1) < 0 then redis.call('HSET', KEYS[3], load_field, 0) end
  local fields = redis.call('HGETALL', KEYS[3])
  local total = 0
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 5) == 'load:' then total = total + tonumber(fields[i + 1]) end
  end
  if total == 0 then redis.call('HSET', KEYS[3], 'idle_since', ARGV[20]) end
end
if ARGV[21] == '0' then redis.call('ZREM', KEYS[9], ARGV[12]) else redis.call('ZADD', KEYS[9], ARGV[21], ARGV[12]) end
-- A terminal record is kept for the retention period (late lookups,
-- idempotent retries), then expires with its hash.
if ARGV[4] == 'completed' or ARGV[4] == 'abandoned' then redis.call('PEXPIRE', KEYS[1], ARGV[22]) end
if ARGV[23] ~= '0' then redis.call('HSET', KEYS[3], 'hold_until', ARGV[23]) end
for i = 24, #ARGV do redis.call('XADD', KEYS[7], '*', 'e', ARGV[i]) end
return 1
";

// The relay lease: taken when free, extended by its holder.
pub(super) const RELAY_LEASE_SCRIPT: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

pub(super) const UPSERT_AGENT_SCRIPT: &str = r"
local was_available = redis.call('HGET', KEYS[1], 'available')
redis.call('HSET', KEYS[1], 'profile', ARGV[1], 'available', ARGV[2])
if ARGV[2] == '1' then
  if was_available ~= '1' then redis.call('HSET', KEYS[1], 'idle_since', ARGV[3]) end
  redis.call('HDEL', KEYS[1], 'hold_until')
  redis.call('SADD', KEYS[2], ARGV[4])
else
  redis.call('SREM', KEYS[2], ARGV[4])
end
if redis.call('HEXISTS', KEYS[1], 'idle_since') == 0 then redis.call('HSET', KEYS[1], 'idle_since', ARGV[3]) end
return 1
";
