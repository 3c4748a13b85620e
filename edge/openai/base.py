"""The base of every OpenAI request model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# No model writes more tokens than this; a larger cap would overflow the int64 hold.
MAX_TOKEN_CAP = 2**31 - 1


class OpenAIBaseModel(BaseModel):
    """Strictly typed known fields; unknown fields are accepted and kept (extra="allow").

    Unknown fields are not an error because the router receives the client's original
    body bytes, so a field this schema does not know yet still reaches the upstream
    untouched. Types are strict (no "5" for 5) so that what we validated is what the
    upstream will read.
    """

    model_config = ConfigDict(extra="allow", strict=True)
