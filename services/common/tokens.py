"""A cheap, dependency-free token estimate used before the upstream reports usage.

Exact tokenizers need per-model vocabularies (downloaded at run time by tiktoken), so
admission and cut-stream accounting use this estimate instead: about one token per
four UTF-8 bytes, never less than one token per word-like run. It errs on the high
side for prompts, which is the safe side for holds and limits.
"""

from __future__ import annotations

import re

_WORDS = re.compile(r"\w+|[^\w\s]")


def estimate_tokens(text: str) -> int:
    """Estimated token count of `text` (0 for the empty string)."""
    if not text:
        return 0
    by_bytes = (len(text.encode("utf-8")) + 3) // 4
    by_words = len(_WORDS.findall(text))
    return max(by_bytes, by_words)
