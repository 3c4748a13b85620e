"""Names of the non-token billing units, and how a request's units are counted.

The edge counts a request's maximum units for its hold and the router counts what the
upstream delivered; both name them with these functions so billing sees one vocabulary
(see `apirelay.common.v1.UnitUsage`).
"""

from __future__ import annotations

import io
import math

import mutagen

AUDIO_SECOND = "audio_second"
CHARACTER = "character"
DEFAULT_IMAGE_SIZE = "1024x1024"
DEFAULT_IMAGE_QUALITY = "standard"
# When an audio file's duration cannot be read, it is estimated from its size at this
# rate (16 kB/s = 128 kbit/s, a common compressed bitrate).
FALLBACK_AUDIO_BYTES_PER_SECOND = 16_000


def image_unit(size: str | None, quality: str | None) -> str:
    """The unit of one image of `size` and `quality` ("image/1024x1024/standard")."""
    return f"image/{size or DEFAULT_IMAGE_SIZE}/{quality or DEFAULT_IMAGE_QUALITY}"


def audio_duration_s(data: bytes) -> float | None:
    """The duration of an audio file in seconds, or None when its format is not readable."""
    try:
        parsed = mutagen.File(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - mutagen raises many unrelated types on foreign bytes
        return None
    length = getattr(getattr(parsed, "info", None), "length", None)
    if not isinstance(length, (int, float)) or length <= 0 or math.isnan(length):
        return None
    return float(length)


def audio_seconds(data: bytes) -> int:
    """Billable seconds of an audio file: its started seconds, or a size estimate."""
    duration = audio_duration_s(data)
    if duration is None:
        return max(1, math.ceil(len(data) / FALLBACK_AUDIO_BYTES_PER_SECOND))
    return max(1, math.ceil(duration))
