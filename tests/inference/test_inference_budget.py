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
        (float("inf"), "infinite"),
        ("1e400", "too large"),
        ("0%", "greater than 0%"),
        ("x%", "could not be parsed"),
        (True, "not allowed"),
        ([1], "not allowed"),
    ],
)
def test_parse_budget_errors(text, match):
    with pytest.raises(BudgetError, match=match) as info:
        parse_budget(text)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_fraction_budget_is_a_share_of_the_full_path():
    b = parse_budget("25%")
    assert (b.unit, b.value) == ("fraction", 0.25)
    assert b.to_macs([100.0, 400.0, 1000.0]) == 250.0
    assert parse_budget("150k").to_macs([1.0, 2.0]) == 150_000.0


def test_latency_budget_converts_piecewise_linearly():
    b = parse_budget("3ms")
    # cumulative ms 1, 2, 4 at cumulative MACs 10, 30, 70: 3 ms lies halfway between exits 2 and 3
    assert b.to_macs([10.0, 30.0, 70.0], stage_ms=[1.0, 1.0, 2.0]) == pytest.approx(50.0)
    assert parse_budget("0.5ms").to_macs([10.0, 30.0], stage_ms=[1.0, 1.0]) == pytest.approx(5.0)
    with pytest.raises(BudgetError, match="latency"):
        b.to_macs([10.0, 30.0])


def test_budget_validates():
    with pytest.raises(BudgetError, match="unit"):
        Budget(1.0, "flops")  # type: ignore[arg-type]
    with pytest.raises(BudgetError, match="value"):
        Budget(-1.0)
