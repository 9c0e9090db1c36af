-- The relay lease, and the relay's next batch in the same round trip: first
-- removes the entries the caller relayed since its last call (ARGV[4] on,
-- published and journaled, so removable whoever leads now); then the lease
-- is taken when free and extended by its holder. While `relay` holds
-- it, returns {generation, entries}: the marker's value (false, so nil,
-- while the state is lost) and up to `batch_limit` of the outbox's oldest
-- entries (as XRANGE returns them); false (nil) when another relay holds it.
local lease_key = KEYS[1]
local outbox_key = KEYS[2]
local marker_key = KEYS[3]
local relay = ARGV[1]
local lease_ms = ARGV[2]
local batch_limit = ARGV[3]
local first_relayed = 4

if #ARGV >= first_relayed then redis.call('XDEL', outbox_key, unpack(ARGV, first_relayed)) end

local holder = redis.call('GET', lease_key)
if holder and holder ~= relay then return false end
redis.call('SET', lease_key, relay, 'PX', lease_ms)
return {redis.call('GET', marker_key), redis.call('XRANGE', outbox_key, '-', '+', 'COUNT', batch_limit)}
