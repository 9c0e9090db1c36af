-- Records an answer in its waiting line's answer pace, atomically (two
-- replicas answering at once both count): the last answer time, and the
-- running average of the intervals between answers (three parts the old
-- average, one part the new interval). Follows `AnswerPace::after_answer`
-- (domain/mod.rs), which the store contract checks it against: an answer
-- older than the last one moves nothing back; a first answer, or one after
-- a gap longer than `max_interval_ms`, starts the average afresh.
local pace_key = KEYS[1]
local marker_key = KEYS[2]

local answer_ms = tonumber(ARGV[1])
local max_interval_ms = tonumber(ARGV[2])

if redis.call('EXISTS', marker_key) == 0 then return redis.error_reply('STATE_LOST routing state is being rebuilt') end

local stored = redis.call('HMGET', pace_key, 'last', 'interval')
local last_answer_ms = tonumber(stored[1]) or 0
local interval_ms = tonumber(stored[2]) or 0

local next_last, next_interval
if last_answer_ms == 0 or answer_ms < last_answer_ms then
  next_last, next_interval = math.max(answer_ms, last_answer_ms), interval_ms
elseif answer_ms - last_answer_ms > max_interval_ms then
  next_last, next_interval = answer_ms, 0
elseif interval_ms == 0 then
  next_last, next_interval = answer_ms, answer_ms - last_answer_ms
else
  next_last, next_interval = answer_ms, math.floor((interval_ms * 3 + answer_ms - last_answer_ms) / 4)
end
redis.call('HSET', pace_key, 'last', string.format('%.0f', next_last), 'interval', string.format('%.0f', next_interval))
return 0
