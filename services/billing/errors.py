"""Domain exceptions of the billing service.

    BillingError
    ├── InvalidBillingRequest   malformed input (empty ids, negative tokens, bad amounts)
    │   └── UnpricedUsage       a settled usage holds a unit its hold's tariff does not price
    ├── AmountOutOfRange        a cost or balance would not fit in int64 nano-USD
    ├── ModelNotPriced          the model has no price (GetPrice only; reserve answers
    │                           with a decision instead)
    ├── HoldNotFound            no hold for this request id
    ├── HoldNotOpen             the hold was released (or settled) and cannot be used so
    ├── IdempotencyConflict     a request id or reference reused with another payload
    │   └── BatchAlreadyExists  a redemption batch reference was used before
    ├── CodeNotFound            no redemption code with this text
    ├── CodeNotRedeemable       the code was redeemed by another account, or has expired
    └── StoreUnavailable        the database cannot be reached or is busy

Messages are safe to show to the caller: they name ids, never internals (never a code).
"""

from __future__ import annotations


class BillingError(Exception):
    """Base of every billing domain error."""


class InvalidBillingRequest(BillingError):
    """The request is malformed."""


class UnpricedUsage(InvalidBillingRequest):
    """The usage holds a unit that the hold's tariff has no price for."""

    def __init__(self, unit: str) -> None:
        super().__init__(f"unit {unit!r} is not priced by the tariff of this request")
        self.unit = unit


class AmountOutOfRange(BillingError):
    """An amount does not fit in a signed 64-bit integer."""


class ModelNotPriced(BillingError):
    """The model has no price in the gateway configuration."""

    def __init__(self, model: str) -> None:
        super().__init__(f"model {model!r} has no price")
        self.model = model


class HoldNotFound(BillingError):
    """There is no hold for the request id."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"no hold for request {request_id!r}")
        self.request_id = request_id


class HoldNotOpen(BillingError):
    """The hold exists but is no longer open for this operation."""

    def __init__(self, request_id: str, status: str) -> None:
        super().__init__(f"the hold of request {request_id!r} is already {status}")
        self.request_id = request_id
        self.status = status


class IdempotencyConflict(BillingError):
    """An idempotency key was reused with a different payload."""


class BatchAlreadyExists(IdempotencyConflict):
    """A redemption batch with this reference was created before (its codes are not shown)."""

    def __init__(self, reference: str) -> None:
        super().__init__(f"a redemption batch with reference {reference!r} already exists")
        self.reference = reference


class CodeNotFound(BillingError):
    """No redemption code has this text."""

    def __init__(self) -> None:
        super().__init__("unknown redemption code")


class CodeNotRedeemable(BillingError):
    """The redemption code was redeemed already (by another account) or has expired."""


class StoreUnavailable(BillingError):
    """The billing database cannot serve the call right now."""
