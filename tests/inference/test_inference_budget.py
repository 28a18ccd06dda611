"""Budget parsing."""

from __future__ import annotations

import pytest

from scai.errors import BudgetError
from scai.inference import Budget, parse_budget


@pytest.mark.parametrize(
    "text, value, unit",
    [
        ("150k", 150_000, "macs"),
        ("150K", 150_000, "macs"),
        ("1.2M", 1_200_000, "macs"),
        ("2G", 2e9, "macs"),
        ("1500", 1500, "macs"),
        ("1e6", 1e6, "macs"),
        ("2.5 MMACs", 2.5e6, "macs"),
        ("300 macs", 300, "macs"),
        ("3ms", 3, "ms"),
        ("0.5 ms", 0.5, "ms"),
        ("2s", 2000, "ms"),
        ("500us", 0.5, "ms"),
        (" 7 ", 7, "macs"),
        (1500, 1500, "macs"),
        (2.5e5, 2.5e5, "macs"),
    ],
)
def test_parse_budget(text, value, unit):
    b = parse_budget(text)
    assert b.value == pytest.approx(value) and b.unit == unit


def test_budget_passthrough_and_str():
    b = Budget(3.0, "ms")
    assert parse_budget(b) is b
    assert str(b) == "3 ms"
    assert str(parse_budget("150k")) == "150,000 MACs"


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "could not be parsed"),
        ("abc", "could not be parsed"),
        ("1,5k", "could not be parsed"),
        ("5x", "could not be parsed"),
        ("nan", "could not be parsed"),
        ("-5k", "greater than zero"),
        ("0", "greater than zero"),
        ("0 ms", "greater than zero"),
        ("1.2m", "ambiguous"),
        ("3 ms MACs", "mixes"),
        (0, "not allowed"),
        (-3.0, "not allowed"),
        (float("inf"), "not allowed"),
        (True, "not allowed"),
        ([1], "not allowed"),
    ],
)
def test_parse_budget_errors(text, match):
    with pytest.raises(BudgetError, match=match) as info:
        parse_budget(text)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_budget_validates():
    with pytest.raises(BudgetError, match="unit"):
        Budget(1.0, "flops")  # type: ignore[arg-type]
    with pytest.raises(BudgetError, match="value"):
        Budget(-1.0)
