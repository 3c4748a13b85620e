"""The Redis scripts: one atomic acquire and one release, the algorithms of `windows.py`.

Time comes from Redis `TIME` inside the script, never from a replica's clock, so every
replica sees the same windows. Times are integer milliseconds: they stay below 1e14,
which Lua's number-to-string conversion (14 significant digits) renders exactly.

Keys of one subject (all share the `{subject}` hash tag): the RPM log (ZSET member
`<at>:<lease>` scored by time), the TPM log (same members), the TPM weights (HASH member
to tokens, plus the field `sum`), the held leases (ZSET lease to expiry) and the lease
start times (HASH lease to `at`, which names the lease's TPM member for reconciling).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A script's source and the SHA1 that EVALSHA names it by."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

# KEYS: rpm, tpm, weights, leases, starts
# ARGV: lease_id, rpm_limit, tpm_limit, concurrency_limit, tokens, ttl_ms, window_ms, hint_ms
# Returns: allowed, denied_by (0 none, 1 rpm, 2 tpm, 3 concurrency), replayed,
#          rpm_used, rpm_reset_ms, tpm_used, tpm_reset_ms, concurrency_used, concurrency_reset_ms
ACQUIRE = LuaScript("""
local rpm_key, tpm_key, weights_key = KEYS[1], KEYS[2], KEYS[3]
local leases_key, starts_key = KEYS[4], KEYS[5]
local lease_id = ARGV[1]
local rpm_limit, tpm_limit, conc_limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local window, hint = tonumber(ARGV[7]), tonumber(ARGV[8])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local horizon = now - window

redis.call('ZREMRANGEBYSCORE', rpm_key, '-inf', horizon)
local aged = redis.call('ZRANGEBYSCORE', tpm_key, '-inf', horizon)
if #aged > 0 then
  local freed = 0
  for _, member in ipairs(aged) do
    freed = freed + tonumber(redis.call('HGET', weights_key, member) or 0)
    redis.call('HDEL', weights_key, member)
  end
  redis.call('ZREMRANGEBYSCORE', tpm_key, '-inf', horizon)
  redis.call('HINCRBY', weights_key, 'sum', -freed)
end
local expired = redis.call('ZRANGEBYSCORE', leases_key, '-inf', now)
if #expired > 0 then
  for _, lid in ipairs(expired) do redis.call('HDEL', starts_key, lid) end
  redis.call('ZREMRANGEBYSCORE', leases_key, '-inf', now)
end

local rpm_used = redis.call('ZCARD', rpm_key)
local tpm_used = tonumber(redis.call('HGET', weights_key, 'sum') or 0)
local conc_used = redis.call('ZCARD', leases_key)

local function oldest_reset(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first == 0 then return 0 end
  return tonumber(first[2]) + window - now
end

local function admitted(replayed)
  return {1, 0, replayed, rpm_used, oldest_reset(rpm_key),
          tpm_used, oldest_reset(tpm_key), conc_used, 0}
end

if redis.call('ZSCORE', leases_key, lease_id) then
  return admitted(1)
end

local rpm_wait = 0
if rpm_limit > 0 and rpm_used >= rpm_limit then
  local idx = rpm_used - rpm_limit
  local entry = redis.call('ZRANGE', rpm_key, idx, idx, 'WITHSCORES')
  rpm_wait = tonumber(entry[2]) + window - now
end

local tpm_wait = 0
if tpm_limit > 0 and tpm_used + tokens > tpm_limit then
  tpm_wait = window
  if tokens <= tpm_limit then
    local freed, start, found = 0, 0, false
    while not found do
      local batch = redis.call('ZRANGE', tpm_key, start, start + 255, 'WITHSCORES')
      if #batch == 0 then break end
      for i = 1, #batch, 2 do
        freed = freed + tonumber(redis.call('HGET', weights_key, batch[i]) or 0)
        if tpm_used - freed + tokens <= tpm_limit then
          tpm_wait = tonumber(batch[i + 1]) + window - now
          found = true
          break
        end
      end
      start = start + 256
    end
  end
end

local conc_wait = 0
if conc_limit > 0 and conc_used >= conc_limit then
  local first = redis.call('ZRANGE', leases_key, 0, 0, 'WITHSCORES')
  conc_wait = math.max(1, math.min(tonumber(first[2]) - now, hint))
end

if rpm_wait > 0 or tpm_wait > 0 or conc_wait > 0 then
  local denied_by = 3
  if rpm_wait > 0 then denied_by = 1 elseif tpm_wait > 0 then denied_by = 2 end
  return {0, denied_by, 0, rpm_used, rpm_wait, tpm_used, tpm_wait, conc_used, conc_wait}
end

local member = now .. ':' .. lease_id
redis.call('ZADD', rpm_key, now, member)
redis.call('ZADD', tpm_key, now, member)
redis.call('HSET', weights_key, member, tokens)
tpm_used = redis.call('HINCRBY', weights_key, 'sum', tokens)
redis.call('ZADD', leases_key, now + ttl, lease_id)
redis.call('HSET', starts_key, lease_id, now)
rpm_used = rpm_used + 1
conc_used = conc_used + 1
redis.call('PEXPIRE', rpm_key, window)
redis.call('PEXPIRE', tpm_key, window)
redis.call('PEXPIRE', weights_key, window)
if redis.call('PTTL', leases_key) < ttl then
  redis.call('PEXPIRE', leases_key, ttl)
  redis.call('PEXPIRE', starts_key, ttl)
end
return admitted(0)
""")

# KEYS: weights, leases, starts
# ARGV: lease_id, actual_tokens (negative keeps the estimate)
# Returns: 1 released, 0 unknown, already released or expired
RELEASE = LuaScript("""
local weights_key, leases_key, starts_key = KEYS[1], KEYS[2], KEYS[3]
local lease_id, actual = ARGV[1], tonumber(ARGV[2])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local expires = redis.call('ZSCORE', leases_key, lease_id)
if not expires then return 0 end
local started = redis.call('HGET', starts_key, lease_id)
redis.call('ZREM', leases_key, lease_id)
redis.call('HDEL', starts_key, lease_id)
if tonumber(expires) <= now then return 0 end

if actual >= 0 and started then
  local member = started .. ':' .. lease_id
  local estimate = redis.call('HGET', weights_key, member)
  -- A weight that already left the window (and the hash) is not reconciled.
  if estimate then
    redis.call('HSET', weights_key, member, actual)
    redis.call('HINCRBY', weights_key, 'sum', actual - tonumber(estimate))
  end
end
return 1
""")
