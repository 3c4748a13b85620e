"""The rate-limit service: requests, tokens and concurrent requests per subject.

One AcquireLease consumes RPM, TPM and one concurrency slot all-or-nothing; ReleaseLease
frees the slot and reconciles the token estimate. The limits are exact:
- RPM: sliding window log (never more than `rpm` admissions in any window length);
- TPM: sliding window of token weights, reserved at acquire, reconciled at release;
- concurrency: leases with expiry times (a ZSET in Redis), so dead callers cannot leak.
See `windows.py` for the rules and `lua.py` for the atomic Redis scripts.
"""
