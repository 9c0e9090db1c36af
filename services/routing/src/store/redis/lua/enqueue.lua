-- Adds a queued contact, unless the contact is known in any status
-- (enqueueing is idempotent), and appends its events and its snapshot to
-- the outbox. Returns 1 when added, 0 when it was known. Like every script
-- that changes a waiting line, it numbers the change (see snapshot.lua).
local contact_key = KEYS[1]
local line_key = KEYS[2]
local lines_key = KEYS[3]
local outbox_key = KEYS[4]
local deadlines_key = KEYS[5]
local marker_key = KEYS[6]
local changed_lines_key = KEYS[7]
local change_counter_key = KEYS[8]

local record_json = ARGV[1]
local rank = ARGV[2]
local contact_id = ARGV[3]
local line = ARGV[4]
local deadline_ms = ARGV[5]
local member = ARGV[6]
local snapshot = ARGV[7]
local first_event = 8

if redis.call('EXISTS', marker_key) == 0 then return redis.error_reply('STATE_LOST routing state is being rebuilt') end
if redis.call('EXISTS', contact_key) == 1 then return 0 end
redis.call('HSET', contact_key, 'record', record_json, 'status', 'queued', 'agent', '', 'expire_ms', '0',
  'answer_ms', '0', 'end_ms', '0', 'rev', '0', 'line', line)
redis.call('ZADD', line_key, rank, contact_id)
redis.call('SADD', lines_key, line)
-- Matching passes read only the lines changed since their last read.
redis.call('ZADD', changed_lines_key, redis.call('INCR', change_counter_key), line)
if deadline_ms ~= '0' then redis.call('ZADD', deadlines_key, deadline_ms, member) end
for i = first_event, #ARGV do redis.call('XADD', outbox_key, '*', 'e', ARGV[i]) end
redis.call('XADD', outbox_key, '*', 's', snapshot)
return 1
