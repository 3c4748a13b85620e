"""The Redis scripts: one atomic acquire and one release, the algorithms of `windows.py`.

Time comes from Redis `TIME` inside the script, never from a replica's clock, so every
replica sees the same windows (tests of the script may pass a time instead). Window times
are integer milliseconds below 1e14, which Lua's number-to-string conversion (14
significant digits) renders exactly; the decision time goes back as seconds and
microseconds.

Keys: a window is a ZSET (member `<at>:<token>` scored by time) plus a HASH (member to
weight, and the field `sum`); a set of held leases is a ZSET (token scored by expiry); a
lease record is a HASH (exp, m = its window member, c = its slot sets, t = its TPM
weights, newline-separated). Every key an acquire touches is passed in KEYS; a release
reads the keys to touch from the lease record, which needs a standalone Redis (or one
primary), not Redis Cluster: one request's descriptors cannot share a hash slot anyway.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from services.ratelimit.windows import RELEASE_TOMBSTONE_MS


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A script's source and the SHA1 that EVALSHA names it by."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


_CLOCK = """
local now, sec, usec
if ARGV[1] == '' then
  local t = redis.call('TIME')
  sec, usec = tonumber(t[1]), tonumber(t[2])
  now = sec * 1000 + math.floor(usec / 1000)
else
  now = tonumber(ARGV[1])
  sec, usec = math.floor(now / 1000), (now % 1000) * 1000
end
"""

# KEYS: record, then per check i: KEYS[2i], KEYS[2i+1] (window: ZSET, HASH; slots: ZSET twice)
# ARGV: now_ms ('' = Redis TIME), token, ttl_ms, n, then per check: type (w window,
#       t reconciled window, c slots), limit, window_ms, amount, and last the retry hint
# Returns: sec, usec, allowed, denied (1-based check, 0 none), replayed, then per check
#          used, reset_ms
ACQUIRE = LuaScript(_CLOCK + """
local record, token = KEYS[1], ARGV[2]
local ttl, n = tonumber(ARGV[3]), tonumber(ARGV[4])
local hint = tonumber(ARGV[5 + 4 * n])
local checks = {}
for i = 1, n do
  local a = 4 + 4 * (i - 1)
  checks[i] = {type = ARGV[a + 1], limit = tonumber(ARGV[a + 2]), window = tonumber(ARGV[a + 3]),
               amount = tonumber(ARGV[a + 4]), z = KEYS[2 * i], w = KEYS[2 * i + 1]}
end

local function weights(c, members)
  local total, values = 0, {}
  for s = 1, #members, 1000 do
    local part = redis.call('HMGET', c.w, unpack(members, s, math.min(s + 999, #members)))
    for _, v in ipairs(part) do
      local x = tonumber(v) or 0
      total = total + x
      values[#values + 1] = x
    end
  end
  return total, values
end

for _, c in ipairs(checks) do
  if c.type == 'c' then
    redis.call('ZREMRANGEBYSCORE', c.z, '-inf', now)
    c.used = redis.call('ZCARD', c.z)
  else
    local horizon = now - c.window
    local aged = redis.call('ZRANGEBYSCORE', c.z, '-inf', horizon)
    if #aged > 0 then
      local freed = weights(c, aged)
      for s = 1, #aged, 1000 do
        redis.call('HDEL', c.w, unpack(aged, s, math.min(s + 999, #aged)))
      end
      redis.call('ZREMRANGEBYSCORE', c.z, '-inf', horizon)
      -- 0 - freed, not -freed: Lua prints -0 as "-0", which HINCRBY refuses.
      redis.call('HINCRBY', c.w, 'sum', 0 - freed)
    end
    c.used = tonumber(redis.call('HGET', c.w, 'sum') or 0)
  end
end

local function oldest_reset(c)
  if c.type == 'c' then return 0 end
  local first = redis.call('ZRANGE', c.z, 0, 0, 'WITHSCORES')
  if #first == 0 then return 0 end
  return tonumber(first[2]) + c.window - now
end

local function admitted(replayed)
  local out = {sec, usec, 1, 0, replayed}
  for _, c in ipairs(checks) do
    out[#out + 1] = c.used
    out[#out + 1] = oldest_reset(c)
  end
  return out
end

local gone = ttl > 0 and tonumber(redis.call('HGET', record, 'gone') or 0) or 0
if gone > now then
  -- Released before it was acquired (the caller gave up and released while this acquire
  -- was still on its way): admitting it now would hold a slot nobody will free.
  local out = {sec, usec, 0, math.min(1, n), 0}
  for _, c in ipairs(checks) do
    out[#out + 1] = c.used
    out[#out + 1] = 0
  end
  return out
end

if ttl > 0 then
  local exp = redis.call('HGET', record, 'exp')
  if exp then
    if tonumber(exp) > now then return admitted(1) end
    redis.call('DEL', record)
  end
end

local function window_wait(c)
  if c.used + c.amount <= c.limit then return 0 end
  if c.amount > c.limit then return c.window end
  local freed, start = 0, 0
  while true do
    local batch = redis.call('ZRANGE', c.z, start, start + 255, 'WITHSCORES')
    if #batch == 0 then return c.window end
    local members = {}
    for j = 1, #batch, 2 do members[#members + 1] = batch[j] end
    local _, values = weights(c, members)
    for j, x in ipairs(values) do
      freed = freed + x
      if c.used - freed + c.amount <= c.limit then
        return tonumber(batch[2 * j]) + c.window - now
      end
    end
    start = start + 256
  end
end

local denied, waits = 0, {}
for i, c in ipairs(checks) do
  local wait = 0
  if c.type == 'c' then
    if c.used >= c.limit then
      local first = redis.call('ZRANGE', c.z, 0, 0, 'WITHSCORES')
      wait = math.max(1, math.min(tonumber(first[2]) - now, hint))
    end
  else
    wait = window_wait(c)
  end
  waits[i] = wait
  if wait > 0 and denied == 0 then denied = i end
end
if denied > 0 then
  local out = {sec, usec, 0, denied, 0}
  for i, c in ipairs(checks) do
    out[#out + 1] = c.used
    out[#out + 1] = waits[i]
  end
  return out
end

local base = now .. ':' .. token
local member, k = base, 0
while true do
  local taken = false
  for _, c in ipairs(checks) do
    if c.type ~= 'c' and redis.call('HEXISTS', c.w, member) == 1 then taken = true end
  end
  if not taken then break end
  k = k + 1
  member = base .. ':' .. k
end

local expires, slot_keys, token_keys = now + ttl, {}, {}
for _, c in ipairs(checks) do
  if c.type == 'c' then
    redis.call('ZADD', c.z, expires, token)
    if redis.call('PTTL', c.z) < ttl then redis.call('PEXPIRE', c.z, ttl) end
    slot_keys[#slot_keys + 1] = c.z
    c.used = c.used + 1
  else
    redis.call('ZADD', c.z, now, member)
    redis.call('HSET', c.w, member, c.amount)
    c.used = redis.call('HINCRBY', c.w, 'sum', c.amount)
    redis.call('PEXPIRE', c.z, c.window)
    redis.call('PEXPIRE', c.w, c.window)
    if c.type == 't' then token_keys[#token_keys + 1] = c.w end
  end
end
if ttl > 0 then
  redis.call('HSET', record, 'exp', expires, 'm', member,
             'c', table.concat(slot_keys, '\\n'), 't', table.concat(token_keys, '\\n'))
  redis.call('PEXPIRE', record, ttl)
end
return admitted(0)
""")


# KEYS: record
# ARGV: now_ms ('' = Redis TIME), token, actual_tokens (negative keeps the estimates)
# Returns: sec, usec, released (1) or unknown, already released or expired (0)
RELEASE = LuaScript(_CLOCK + f"local TOMBSTONE_MS = {RELEASE_TOMBSTONE_MS}\n" + """
local record, token, actual = KEYS[1], ARGV[2], tonumber(ARGV[3])
local rec = redis.call('HMGET', record, 'exp', 'm', 'c', 't')
if not rec[1] then
  -- Unknown: its acquire may still be on its way from another replica. A tombstone makes
  -- that acquire refuse, so the order of the two cannot leak a slot.
  redis.call('HSET', record, 'gone', now + TOMBSTONE_MS)
  redis.call('PEXPIRE', record, TOMBSTONE_MS)
  return {sec, usec, 0}
end
redis.call('DEL', record)
if tonumber(rec[1]) <= now then return {sec, usec, 0} end
for key in string.gmatch(rec[3], '[^\\n]+') do redis.call('ZREM', key, token) end
if actual >= 0 then
  for key in string.gmatch(rec[4], '[^\\n]+') do
    local estimate = redis.call('HGET', key, rec[2])
    -- A weight that already left its window (and the hash) is not reconciled.
    if estimate then
      redis.call('HSET', key, rec[2], actual)
      redis.call('HINCRBY', key, 'sum', actual - tonumber(estimate))
    end
  end
end
return {sec, usec, 1}
""")
