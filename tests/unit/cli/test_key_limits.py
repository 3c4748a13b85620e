"""`apirelay keys create` limit flags: omitted = the defaults, 0 or 'unlimited' = no limit."""

from __future__ import annotations

import pytest

from apirelay.auth.v1 import auth_pb2
from cli import admin
from cli.main import _parser


def _limits(*flags: str) -> auth_pb2.KeyLimits:
    args = _parser().parse_args(["keys", "create", "--account", "a", *flags])
    return admin._limits(args)


def test_omitted_flags_leave_the_limits_to_the_defaults() -> None:
    assert _limits() == auth_pb2.KeyLimits()


def test_flags_set_limits_and_zero_or_unlimited_mean_no_limit() -> None:
    limits = _limits("--rpm", "60", "--tpm", "0", "--concurrency", "unlimited", "--rpd", "500")
    assert limits == auth_pb2.KeyLimits(rpm=60, tpm=-1, concurrency=-1, rpd=500)


@pytest.mark.parametrize("value", ["-1", "lots"])
def test_bad_limits_are_refused(value: str) -> None:
    with pytest.raises(SystemExit):
        _limits("--rpd", value)
