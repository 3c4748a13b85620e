"""Price keys beyond prompt/completion: cache writes, reasoning, per request, price history,
group multipliers, and the shipped Anthropic cache-write prices."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import yaml

from services.common.gateway_config import ConfigError, ModelPrice, parse_gateway_config
from services.common.gateway_models import builtin_models

DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)
JAN_1 = datetime(2027, 1, 1, tzinfo=UTC)


def model_of(raw: dict[str, object]) -> tuple[ModelPrice | None, tuple[ModelPrice, ...]]:
    model = parse_gateway_config({"models": [{"id": "m", **raw}]}).model("m")
    assert model is not None
    return model.price, model.price_history


def test_new_price_keys_parse_and_default_to_none_or_zero() -> None:
    price, history = model_of({"price": {"prompt": 3_000, "completion": 15_000,
                                         "cached_prompt": 300, "cache_write": 3_750,
                                         "reasoning": 20_000, "request": 1_000_000}})
    assert price == ModelPrice(3_000, 15_000, 300, cache_write_prompt=3_750, reasoning=20_000,
                               request=1_000_000)
    assert history == (price,)
    plain, _ = model_of({"price": {"prompt": 1, "completion": 2}})
    assert plain is not None
    assert (plain.cache_write_prompt, plain.reasoning, plain.request) == (None, None, 0)
    assert plain.effective_from is None
    zero, _ = model_of({"price": {"prompt": 1, "completion": 2, "cache_write": 0,
                                  "reasoning": 0}})
    assert zero is not None and (zero.cache_write_prompt, zero.reasoning) == (0, 0)


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        (DEC_1, DEC_1),
        ("2026-12-01T00:00:00Z", DEC_1),
        ("2026-12-01T01:00:00+01:00", DEC_1),
        (datetime(2026, 12, 1, 1, tzinfo=timezone(timedelta(hours=1))), DEC_1),
        (date(2026, 12, 1), DEC_1),
        ("2026-12-01", DEC_1),
    ],
)
def test_since_takes_a_zoned_timestamp_or_a_utc_date(since: object, expected: datetime) -> None:
    price, _ = model_of({"price": {"prompt": 1, "completion": 1, "since": since}})
    assert price is not None and price.effective_from == expected
    assert price.effective_from.tzinfo == UTC


def test_a_yaml_timestamp_with_z_parses_as_a_since() -> None:
    config = parse_gateway_config(yaml.safe_load(
        "models:\n  - id: m\n    price: {prompt: 1, completion: 1, since: 2026-12-01T00:00:00Z}\n"))
    model = config.model("m")
    assert model is not None and model.price is not None
    assert model.price.effective_from == DEC_1


def test_a_price_history_is_sorted_with_the_base_first() -> None:
    price, history = model_of({"prices": [
        {"prompt": 3, "completion": 30, "since": "2027-01-01T00:00:00Z"},
        {"prompt": 1, "completion": 10},
        {"prompt": 2, "completion": 20, "since": "2026-12-01T00:00:00Z"},
    ]})
    assert [p.prompt for p in history] == [1, 2, 3]
    assert [p.effective_from for p in history] == [None, DEC_1, JAN_1]
    assert price == history[-1]


def test_a_history_without_a_base_starts_at_its_first_since() -> None:
    _, history = model_of({"prices": [{"prompt": 2, "completion": 2, "since": "2026-12-01"},
                                      {"prompt": 1, "completion": 1, "since": "2026-11-01"}]})
    assert [p.prompt for p in history] == [1, 2]


def test_an_alias_shares_its_models_history() -> None:
    config = parse_gateway_config({"models": [{"id": "m", "aliases": ["m-latest"], "prices": [
        {"prompt": 1, "completion": 1}, {"prompt": 2, "completion": 2, "since": DEC_1}]}]})
    alias = config.model("m-latest")
    assert alias is not None and [p.prompt for p in alias.prices] == [1, 2]


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"price": {"prompt": 1, "completion": 1}, "prices": [{"prompt": 1, "completion": 1}]},
         r"models\[0\]: give either 'price' or 'prices'"),
        ({"prices": []}, r"models\[0\]\.prices: expected a non-empty list"),
        ({"prices": {"prompt": 1}}, r"models\[0\]\.prices: expected a non-empty list"),
        ({"prices": [{"prompt": 1, "completion": 1}, {"prompt": 2, "completion": 2}]},
         r"models\[0\]\.prices: only one price may lack 'since'.*entries 0 and 1"),
        ({"prices": [{"prompt": 1, "completion": 1, "since": "2026-12-01"},
                     {"prompt": 2, "completion": 2, "since": DEC_1}]},
         r"models\[0\]\.prices: entries 0 and 1 both take effect at 2026-12-01T00:00:00\+00:00"),
        ({"prices": [{"prompt": 1, "completion": 1}, {"prompt": 2}]},
         r"models\[0\]\.prices\[1\]: token prices need both"),
        ({"price": {"prompt": 1, "completion": 1, "since": "soon"}},
         (r"models\[0\]\.price\.since: expected a timestamp such as 2026-12-01T00:00:00Z, "
          r"got 'soon'")),
        ({"price": {"prompt": 1, "completion": 1, "since": None}},
         r"models\[0\]\.price\.since: expected a timestamp"),
        ({"price": {"prompt": 1, "completion": 1, "since": "2026-12-01T00:00:00"}},
         r"models\[0\]\.price\.since: 2026-12-01T00:00:00 has no time zone"),
        ({"price": {"prompt": 1, "completion": 1, "since": datetime(2026, 12, 1)}},
         r"price\.since: 2026-12-01T00:00:00 has no time zone"),
        ({"price": {"prompt": 1, "completion": 1, "since": 1_764_547_200}},
         r"price\.since: expected a timestamp"),
        ({"price": {"cache_write": 1, "character": 1}}, r"price: token prices need both"),
        ({"price": {"reasoning": 1, "character": 1}}, r"price: token prices need both"),
        ({"price": {"prompt": 1, "completion": 1, "cache_write": -1}},
         r"price\.cache_write: expected an integer price in nano-USD >= 0"),
        ({"price": {"prompt": 1, "completion": 1, "reasoning": 0.5}},
         r"price\.reasoning: expected an integer"),
        ({"price": {"prompt": 1, "completion": 1, "request": "1"}},
         r"price\.request: expected an integer"),
        ({"price": {"request": 5}}, r"price: expected token prices or unit prices"),
        ({"price": {"prompt": 1, "completion": 1, "cache_read": 1}},
         r"unknown price 'cache_read' \(known: .*cache_write, reasoning, .*request, since\)"),
    ],
)
def test_price_mistakes_name_their_place(raw: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        model_of(raw)


def test_group_multipliers_are_basis_points_with_a_full_price_default() -> None:
    config = parse_gateway_config({"groups": {"reseller": 8_500, "free": 0}})
    assert dict(config.group_multipliers_bps) == {"reseller": 8_500, "free": 0,
                                                  "default": 10_000}
    cheaper = parse_gateway_config({"groups": {"default": 9_000}})
    assert dict(cheaper.group_multipliers_bps) == {"default": 9_000}


@pytest.mark.parametrize(
    ("groups", "where"),
    [
        ({"vip": 0.85}, r"groups\.vip: expected an integer >= 0, got 0\.85"),
        ({"vip": -1}, r"groups\.vip: expected an integer >= 0"),
        ({"vip": 2**31}, r"groups\.vip: at most 2147483647 basis points"),
        ([8_500], r"groups: expected a mapping of group name to basis points"),
    ],
)
def test_group_mistakes_name_their_place(groups: object, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        parse_gateway_config({"groups": groups})


def test_shipped_anthropic_models_price_cache_writes_at_1_25x_input() -> None:
    anthropic = [m for m in builtin_models() if m.owned_by == "anthropic"]
    assert anthropic
    for model in anthropic:
        price = model.price
        assert price is not None and price.prompt is not None, model.id
        assert price.cache_write_prompt is not None, model.id
        assert price.cache_write_prompt * 4 == price.prompt * 5, model.id
    others = [m for m in builtin_models() if m.owned_by != "anthropic" and m.price is not None]
    # Only Anthropic bills cache writes separately; other vendors' writes cost the prompt price.
    assert all(m.price is not None and m.price.cache_write_prompt is None for m in others)
