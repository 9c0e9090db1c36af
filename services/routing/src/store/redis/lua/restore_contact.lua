-- Puts a contact back from the journal, with the indexes its status
-- implies; idempotent. A terminal contact is kept for the retention period
-- (so a replayed event does not bring it back) and then expires.
local contact_key = KEYS[1]
local line_key = KEYS[2]
local lines_key = KEYS[3]
local offers_key = KEYS[4]
local agent_offers_key = KEYS[5]
local deadlines_key = KEYS[6]
local changed_lines_key = KEYS[7]
local change_counter_key = KEYS[8]

local status = ARGV[1]
local contact_id = ARGV[2]
local member = ARGV[3]
local line = ARGV[4]
local rank = ARGV[5]
local expire_ms = ARGV[6]
local deadline_ms = ARGV[7]
local terminal_retention_ms = ARGV[8]
local first_field = 9

for i = first_field, #ARGV, 2 do redis.call('HSET', contact_key, ARGV[i], ARGV[i + 1]) end
if status == 'queued' then
  redis.call('ZADD', line_key, rank, contact_id)
  redis.call('SADD', lines_key, line)
  redis.call('ZADD', changed_lines_key, redis.call('INCR', change_counter_key), line)
  if deadline_ms ~= '0' then redis.call('ZADD', deadlines_key, deadline_ms, member) end
elseif status == 'offered' then
  redis.call('ZADD', offers_key, expire_ms, member)
  redis.call('SADD', agent_offers_key, member)
elseif status == 'answered' then
  redis.call('SADD', agent_offers_key, member)
else
  redis.call('PEXPIRE', contact_key, terminal_retention_ms)
end
return 1
