-- Moves the fair-share tags forward, never back: each field of the hash
-- takes the given value only when it is later than the stored one (another
-- replica may have moved it further meanwhile).
-- ARGV: field, value, field, value, ... (`v` the virtual time, `t:<tenant>`
-- a tenant's finish tag).
local shares_key = KEYS[1]

for index = 1, #ARGV, 2 do
  local field = ARGV[index]
  local value = tonumber(ARGV[index + 1])
  local stored = tonumber(redis.call('HGET', shares_key, field))
  if stored == nil or value > stored then
    redis.call('HSET', shares_key, field, ARGV[index + 1])
  end
end
return 1
