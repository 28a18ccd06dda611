"""The exit loop's hold on hand-built outputs: which spectra go deeper is known in advance.

Three exits, three classes, stored probabilities (:class:`PrecomputedStages`). The threshold
policy lets a spectrum leave at exits 0 and 1 when its largest probability is >= 0.5. The
unknown-class detector is the real one with the ``msp`` score and a threshold of -0.65 at every
exit (flagged: largest probability < 0.65); the conformal sets are the real LAC sets with a
quantile of 0.7 (a class is in the set when its probability is >= 0.3).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from scai.errors import ConfigError
from scai.inference.exit_loop import HELD, PrecomputedStages, run_exit_loop
from scai.inference.ood import UnknownDetector
from scai.inference.policies import AnytimeRule, EdgeRule, ThresholdRule
from scai.inference.reliability import (
    DEFAULT_ON_AMBIGUOUS,
    DEFAULT_ON_UNKNOWN,
    AmbiguityHook,
    Reliability,
)

L, C = 3, 3
SURE, DOUBT, AMBIG, BOTH, WEAK = [0.9, 0.05, 0.05], [0.6, 0.25, 0.15], [0.66, 0.34, 0.0], [0.6, 0.4, 0.0], [0.4, 0.35, 0.25]
#: per spectrum, its probabilities at exits 0, 1, 2
SPECTRA = {
    "sure": [SURE, SURE, SURE],  # confident and clean at exit 0
    "doubt": [DOUBT, SURE, SURE],  # confident but flagged unknown at exit 0, clean at exit 1
    "ambig": [AMBIG, SURE, SURE],  # confident, not flagged, but a set of 2 classes at exit 0
    "both": [BOTH, BOTH, WEAK],  # flagged and ambiguous at exits 0 and 1
    "weak": [WEAK, WEAK, WEAK],  # never confident: the last exit answers
}
NAMES = list(SPECTRA)


def _stages() -> PrecomputedStages:
    probs = np.array([[SPECTRA[s][k] for s in NAMES] for k in range(L)], dtype=np.float64)
    costs = np.tile(np.array([10.0, 30.0, 60.0]), (len(NAMES), 1))
    return PrecomputedStages(probs, costs)


def _reliability() -> Reliability:
    det = UnknownDetector(score="msp")
    det.thresholds_ = np.full(L, -0.65)
    det.n_exits_ = L
    return Reliability(detector=det)


def _run(rule: Any, on_unknown: str = DEFAULT_ON_UNKNOWN, ambiguous: bool = False) -> dict[str, Any]:
    rel = _reliability()
    hook = AmbiguityHook(np.full(L, 0.7), 0.9) if ambiguous else None
    res = run_exit_loop(_stages(), np.arange(len(NAMES)), rule, temperatures=None, unknown=rel.hook(on_unknown),
                        ambiguous=hook)
    return {name: (int(res.exit[i]), str(res.reason[i]), str(res.held[i]), bool(res.settled[i]))
            for i, name in enumerate(NAMES)}


def _threshold() -> ThresholdRule:
    return ThresholdRule(np.array([0.5, 0.5, 0.0]))


def test_the_defaults_hold_unknowns_and_answer_ambiguous_sets() -> None:
    assert DEFAULT_ON_UNKNOWN == "deeper" and DEFAULT_ON_AMBIGUOUS == "answer"
    assert _reliability().hook().hold
    assert Reliability().ambiguity_hook() is None


def test_an_unknown_spectrum_goes_deeper_under_the_threshold_policy() -> None:
    got = _run(_threshold())
    assert got["sure"] == (0, "confident", "", True)
    assert got["doubt"] == (1, "confident", "unknown", True)  # held at exit 0, clean at exit 1
    assert got["ambig"] == (0, "confident", "", True)  # not flagged; ambiguity is not held by default
    assert got["both"] == (2, "unknown", "unknown", True)  # held to the last exit
    assert got["weak"] == (2, "last", "", True)


def test_on_unknown_answer_lets_it_leave_flagged() -> None:
    got = _run(_threshold(), on_unknown="answer")
    assert {k: v[:3] for k, v in got.items()} == {
        "sure": (0, "confident", ""), "doubt": (0, "confident", ""), "ambig": (0, "confident", ""),
        "both": (0, "confident", ""), "weak": (2, "last", "")}


def test_a_set_of_more_than_one_class_goes_deeper_with_on_ambiguous() -> None:
    got = _run(_threshold(), on_unknown="answer", ambiguous=True)
    assert got["sure"][:3] == (0, "confident", "")
    assert got["doubt"][:3] == (0, "confident", "")  # its set is {0}: one class
    assert got["ambig"][:3] == (1, "confident", "ambiguous")
    assert got["both"][:3] == (2, "ambiguous", "ambiguous")
    both = _run(_threshold(), ambiguous=True)
    assert both["doubt"][:3] == (1, "confident", "unknown")
    assert both["ambig"][:3] == (1, "confident", "ambiguous")
    assert both["both"][:3] == (2, "unknown", "unknown+ambiguous")  # unknown wins the reason
    assert set(v[2] for v in both.values()) <= set(HELD)


def test_budget_exits_are_not_held() -> None:
    """Anytime: a budget of exit 0's cost makes everyone leave there with reason budget, held or not."""
    rule = AnytimeRule(np.full(len(NAMES), 10.0), np.array([20.0, 30.0, np.inf]))
    got = _run(rule, ambiguous=True)
    assert all(v[:3] == (0, "budget", "") for v in got.values())


def test_the_edge_offloads_a_held_spectrum_that_bmax_stops() -> None:
    """Bmax = exit 0's cost: a held spectrum cannot run deeper, so it is unsettled (offloaded)."""
    rule = EdgeRule(np.array([0.5, 0.5, 0.0]), 10.0, np.array([10.0, 20.0, 30.0]))
    got = _run(rule, ambiguous=True)
    assert got["sure"] == (0, "confident", "", True)
    assert got["doubt"] == (0, "unsettled", "unknown", False)
    assert got["ambig"] == (0, "unsettled", "ambiguous", False)
    assert got["both"] == (0, "unsettled", "unknown+ambiguous", False)
    assert got["weak"] == (0, "unsettled", "", False)


def test_on_ambiguous_needs_a_calibrated_level() -> None:
    from scai.inference.conformal import ConformalSets

    with pytest.raises(ConfigError, match="on_ambiguous"):
        Reliability().ambiguity_hook("sometimes", 0.9)
    with pytest.raises(ConfigError, match="confidence level"):
        Reliability().ambiguity_hook("deeper", None)
    with pytest.raises(ConfigError, match="no conformal calibration"):
        Reliability().ambiguity_hook("deeper", 0.9)
    conf = ConformalSets.from_dict({"confidence_levels": [0.9, 0.95], "quantiles": [[0.7, 0.8]] * L,
                                    "n_calibration": 50, "n_classes": C})
    hook = Reliability(conformal=conf).ambiguity_hook("deeper", 0.95)
    assert hook is not None and np.allclose(hook.quantiles, 0.8)
    with pytest.raises(ConfigError, match="not calibrated"):
        Reliability(conformal=conf).ambiguity_hook("deeper", 0.8)
    # the hook's sets are those Reliability.sets gives at the answering exit
    P = np.array([AMBIG, SURE, BOTH])
    np.testing.assert_array_equal(hook.ambiguous(1, P), Reliability(conformal=conf).sets(np.ones(3, int), P, 0.95).sum(1) > 1)
