-- The relay lease: taken when free, extended by its holder. Returns 1 while
-- `relay` holds it.
local lease_key = KEYS[1]
local relay = ARGV[1]
local lease_ms = ARGV[2]

local holder = redis.call('GET', lease_key)
if holder and holder ~= relay then return 0 end
redis.call('SET', lease_key, relay, 'PX', lease_ms)
return 1
