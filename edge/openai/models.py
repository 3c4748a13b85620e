"""The model objects of `GET /v1/models` and `GET /v1/models/{model}`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from edge.domain import ModelInfo


class ModelObject(BaseModel):
    """One model as OpenAI describes it."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str

    @classmethod
    def of(cls, model: ModelInfo) -> ModelObject:
        """The OpenAI view of a catalog entry."""
        return cls(id=model.id, created=model.created, owned_by=model.owned_by)


class ModelList(BaseModel):
    """The list of models."""

    object: Literal["list"] = "list"
    data: list[ModelObject]
