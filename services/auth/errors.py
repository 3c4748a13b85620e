"""Domain exceptions of the auth service, mapped once to gRPC codes in `service.ERRORS`.

    AuthError
     +-- InvalidArgument      a malformed name, selector, id or limit
     +-- AccountNameTaken     CreateAccount with a name already in use
     +-- AccountNotFound      no account has this id or name
     +-- ApiKeyNotFound       no key has this id
     +-- StoreUnavailable     the database cannot be reached
"""

from __future__ import annotations


class AuthError(Exception):
    """Base of every auth-service error; the message is safe to show the caller."""


class InvalidArgument(AuthError):
    """The request is malformed."""


class AccountNameTaken(AuthError):
    """An account with this name already exists."""


class AccountNotFound(AuthError):
    """No account matches the id or name."""


class ApiKeyNotFound(AuthError):
    """No API key has this id."""


class StoreUnavailable(AuthError):
    """The auth database cannot be reached; the call may be retried."""
