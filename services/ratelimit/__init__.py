"""The rate-limit service: requests, tokens and concurrent requests per descriptor.

A request carries limit rules, each a descriptor (domain plus ordered key/value entries:
the key, the account, the key and model, the upstream key ...), a kind (RPM, RPD, TPM,
CONCURRENCY) and a limit; every rule of one request is checked and consumed in one atomic
step, all or nothing (one Lua script in Redis, time from Redis TIME). The limits are exact:
- RPM, RPD, TPM: a sliding window log, so in ANY interval of the window's length at most
  `limit` units are admitted (not only in aligned windows); TPM reserves the estimate at
  admission and reconciles it to the actual tokens at release;
- concurrency: leases with expiry times, so a dead holder's slot returns at its TTL.
See `windows.py` for the rules, `lua.py` for the Redis scripts, `outage.py` for what
happens while Redis is unreachable, and `defaults.py` for a key's default limits.
"""
