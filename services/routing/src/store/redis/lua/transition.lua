-- Compare-and-set of a contact (status, agent and revision), with the
-- index and load bookkeeping the transition implies, its events and its
-- snapshot appended to the outbox. The transition itself is computed by
-- the pure domain in Rust, so Redis and memory cannot disagree on rules.
-- Returns 1 when applied, 0 when the contact changed meanwhile.
local contact_key = KEYS[1]
local source_line_key = KEYS[2]
local holder_key = KEYS[3]
local offers_key = KEYS[4]
local holder_offers_key = KEYS[5]
local lines_key = KEYS[6]
local outbox_key = KEYS[7]
local destination_line_key = KEYS[8]
local deadlines_key = KEYS[9]
local marker_key = KEYS[10]
local changed_agents_key = KEYS[11]
local change_counter_key = KEYS[12]
local changed_lines_key = KEYS[13]

local expected_status = ARGV[1]
local expected_agent = ARGV[2]
local expected_rev = ARGV[3]
local status = ARGV[4]
local agent = ARGV[5]
local expire_ms = ARGV[6]
local answer_ms = ARGV[7]
local end_ms = ARGV[8]
local record_json = ARGV[9]
local contact_id = ARGV[10]
local rank = ARGV[11]
local member = ARGV[12]
local source_line = ARGV[13]
local destination_line = ARGV[14]
local leaves_line = ARGV[15] == '1'
local joins_line = ARGV[16] == '1'
local offer_ended = ARGV[17] == '1'
local releases_agent = ARGV[18] == '1'
local released_channel = ARGV[19]
local now_ms = ARGV[20]
local deadline_ms = ARGV[21]
local terminal_retention_ms = ARGV[22]
local hold_until_ms = ARGV[23]
local snapshot = ARGV[24]
local first_event = 25

if redis.call('EXISTS', marker_key) == 0 then return redis.error_reply('STATE_LOST routing state is being rebuilt') end
if redis.call('HGET', contact_key, 'status') ~= expected_status or redis.call('HGET', contact_key, 'agent') ~= expected_agent then
  return 0
end
if (redis.call('HGET', contact_key, 'rev') or '0') ~= expected_rev then return 0 end
redis.call('HSET', contact_key, 'status', status, 'agent', agent, 'expire_ms', expire_ms, 'answer_ms', answer_ms,
  'end_ms', end_ms, 'record', record_json, 'line', destination_line)
redis.call('HINCRBY', contact_key, 'rev', 1)
if leaves_line then
  redis.call('ZREM', source_line_key, contact_id)
  if redis.call('ZCARD', source_line_key) == 0 then redis.call('SREM', lines_key, source_line) end
end
if joins_line then
  redis.call('ZADD', destination_line_key, rank, contact_id)
  redis.call('SADD', lines_key, destination_line)
end
if offer_ended then redis.call('ZREM', offers_key, member) end
-- The holder's set keeps the contacts it is offered or handling.
if releases_agent then
  redis.call('SREM', holder_offers_key, member)
  local load_field = 'load:' .. released_channel
  if redis.call('HINCRBY', holder_key, load_field, -1) < 0 then redis.call('HSET', holder_key, load_field, 0) end
  local fields = redis.call('HGETALL', holder_key)
  local total = 0
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 5) == 'load:' then total = total + tonumber(fields[i + 1]) end
  end
  if total == 0 then redis.call('HSET', holder_key, 'idle_since', now_ms) end
end
if deadline_ms == '0' then redis.call('ZREM', deadlines_key, member) else redis.call('ZADD', deadlines_key, deadline_ms, member) end
-- A terminal record is kept for the retention period (late lookups,
-- idempotent retries), then expires with its hash.
if status == 'completed' or status == 'abandoned' then redis.call('PEXPIRE', contact_key, terminal_retention_ms) end
if hold_until_ms ~= '0' then redis.call('HSET', holder_key, 'hold_until', hold_until_ms) end
-- Matching passes read only the agents and waiting lines changed since
-- their last read: a line changes when a contact joins or leaves it, and
-- when a contact waiting in it changes. One transition is one change.
local change
local function number(changed_key, changed)
  change = change or redis.call('INCR', change_counter_key)
  redis.call('ZADD', changed_key, change, changed)
end
if releases_agent or hold_until_ms ~= '0' then number(changed_agents_key, expected_agent) end
if expected_status == 'queued' then number(changed_lines_key, source_line) end
if status == 'queued' then number(changed_lines_key, destination_line) end
for i = first_event, #ARGV do redis.call('XADD', outbox_key, '*', 'e', ARGV[i]) end
redis.call('XADD', outbox_key, '*', 's', snapshot)
return 1
