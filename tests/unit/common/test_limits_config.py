"""services.common.limits_config: parsing `limits:` and the precedence of its levels."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.gateway_config import parse_gateway_config
from services.common.limits_config import (
    BUILT_IN_KEY,
    LimitsConfig,
    LimitsConfigError,
    LimitValues,
    parse_limits,
)


def test_no_section_means_the_built_in_key_defaults_and_nothing_else() -> None:
    config = parse_limits(None)
    assert config == LimitsConfig()
    assert config.key_limits("default", LimitValues()) == LimitValues(3000, 1_000_000, 100, 0)
    assert config.account_limits("default") == LimitValues()
    assert config.model_limits("gpt-4o") == LimitValues()


def test_key_then_group_then_defaults_then_built_in() -> None:
    config = parse_limits({
        "defaults": {"rpm": 100, "tpm": 5000, "account": {"rpm": 1000, "rpd": 9}},
        "groups": {"vip": {"rpm": 500, "account": {"rpm": 0}}},
        "models": {"gpt-4o": {"tpm": 77}},
    })
    own = LimitValues(tpm=0, rpd=4)  # 0: this key has no TPM limit
    assert config.key_limits("vip", own) == LimitValues(500, 0, 100, 4)
    assert config.key_limits("default", LimitValues()) == LimitValues(100, 5000, 100, 0)
    assert config.account_limits("vip") == LimitValues(rpm=0, rpd=9)
    assert config.account_limits("nobody") == LimitValues(rpm=1000, rpd=9)
    assert config.model_limits("gpt-4o") == LimitValues(tpm=77)
    assert list(config.key_limits("vip", own).finite()) == [("rpm", 500), ("concurrency", 100),
                                                              ("rpd", 4)]


def test_built_in_defaults_are_the_issue_s() -> None:
    assert BUILT_IN_KEY == LimitValues(rpm=3000, tpm=1_000_000, concurrency=100, rpd=0)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"default": {}}, "limits: unknown entry 'default'"),
        ({"defaults": {"rpn": 5}}, "limits.defaults: unknown entry 'rpn'"),
        ({"defaults": {"rpm": -1}}, "limits.defaults.rpm"),
        ({"defaults": {"rpm": True}}, "limits.defaults.rpm"),
        ({"groups": {"vip": {"account": {"tpm": "lots"}}}}, "limits.groups.vip.account.tpm"),
        ({"models": {"m": {"account": {}}}}, "limits.models.m: unknown entry 'account'"),
        ({"models": ["m"]}, "limits.models: expected a mapping"),
    ],
)
def test_mistakes_name_the_entry(raw: Any, where: str) -> None:
    with pytest.raises(LimitsConfigError) as caught:
        parse_limits(raw)
    assert where in str(caught.value)


def test_the_gateway_config_carries_the_section() -> None:
    config = parse_gateway_config({"limits": {"models": {"gpt-4o": {"rpm": 3}}}})
    assert config.limits.model_limits("gpt-4o") == LimitValues(rpm=3)
    assert parse_gateway_config({}).limits == LimitsConfig()
