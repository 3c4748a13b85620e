"""Default limits of an API key and the standard windows: the one place to import them from.

The limiter applies whatever limits its caller sends; the caller (auth / the edge) fills
in these defaults for a key without its own. Kept free of imports so that any part of
the gateway can use them without pulling in the service.
"""

from __future__ import annotations

# Per API key, unless the key, its account group or the model says otherwise.
DEFAULT_KEY_RPM = 3_000
DEFAULT_KEY_TPM = 1_000_000
DEFAULT_KEY_CONCURRENCY = 100
# No daily request limit unless configured.
DEFAULT_KEY_RPD = 0

# The domain of the gateway's own descriptors (and of requests that name none).
DEFAULT_DOMAIN = "apirelay"

# Standard windows of the kinds (RPM and TPM: a minute; RPD: a day).
MINUTE_MS = 60_000
DAY_MS = 86_400_000
