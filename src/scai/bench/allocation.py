"""Where SCAI+ spends its units along the spectral axis (claim d, quantified).

The per-block mean units executed (results.json ``allocation``) are mapped onto the input axis
and compared with the class discriminability (ANOVA F, :func:`scai.bench.splits.discriminability`)
and with the mean preprocessed spectrum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "RHO_INFORMATIVE",
    "allocation_bands",
    "top_bands",
    "allocation_vs_discriminability",
    "allocation_vs_intensity",
]

#: Claim (d) counts as holding on a dataset when the rank correlation between SCAI+'s units
#: executed and the class discriminability (ANOVA F) along the axis reaches this, and the busiest
#: 10 % of positions overlap the most discriminative 10 % at least twice as often as chance.
RHO_INFORMATIVE = 0.3


def _profile(units: Sequence[Sequence[float]], width: int) -> np.ndarray:
    """Blocks' mean units executed mapped onto the input axis by relative position, then averaged."""
    grid = np.linspace(0.0, 1.0, width)
    rows = [np.interp(grid, np.linspace(0.0, 1.0, len(u)), np.asarray(u, dtype=np.float64)) for u in units]
    return np.mean(rows, axis=0)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two profiles along the axis; 0 when either is flat (undefined)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else 0.0


def allocation_bands(units: Sequence[Sequence[float]], axis: np.ndarray, top_fraction: float = 0.1, k: int = 5) -> list[dict[str, float]]:
    """The ``k`` spectral ranges where SCAI+ runs the most units (claim d); see :func:`top_bands`."""
    axis = np.asarray(axis, dtype=np.float64)
    return top_bands(_profile(units, axis.size), axis, top_fraction, k)


def top_bands(prof: np.ndarray, axis: np.ndarray, top_fraction: float = 0.1, k: int = 5) -> list[dict[str, float]]:
    """The ``k`` ranges of ``axis`` where the profile ``prof`` is highest.

    Positions in the top ``top_fraction`` of the profile are merged into contiguous ranges
    (gaps under 1 % of the axis are bridged) and ranked by their mean value (``mean_units``).
    """
    axis = np.asarray(axis, dtype=np.float64)
    prof = np.asarray(prof, dtype=np.float64)
    hot = prof >= np.quantile(prof, 1.0 - top_fraction)
    gap = max(1, axis.size // 100)
    runs: list[list[int]] = []
    for i in np.flatnonzero(hot):
        if runs and i - runs[-1][1] <= gap:
            runs[-1][1] = int(i)
        else:
            runs.append([int(i), int(i)])
    bands = [{"from": float(axis[a]), "to": float(axis[b]), "mean_units": float(prof[a : b + 1].mean())} for a, b in runs]
    return sorted(bands, key=lambda r: -r["mean_units"])[:k]



def allocation_vs_discriminability(
    units: Sequence[Sequence[float]], f_score: np.ndarray, axis: np.ndarray, top_fraction: float = 0.1
) -> dict[str, Any]:
    """Does SCAI+ spend its units where the classes differ? (claim d, quantified)

    ``spearman``: rank correlation over the axis between mean units executed and the ANOVA F
    profile; ``top_overlap``: share of the ``top_fraction`` busiest positions that are also among
    the ``top_fraction`` most discriminative ones (``chance`` = ``top_fraction``);
    ``f_bands``: the most discriminative ranges, for comparison with the busiest ones;
    ``holds``: the rule of :data:`RHO_INFORMATIVE`.
    """
    axis = np.asarray(axis, dtype=np.float64)
    prof = _profile(units, axis.size)
    f = np.asarray(f_score, dtype=np.float64)
    rho = _spearman(prof, f)
    busy = prof >= np.quantile(prof, 1.0 - top_fraction)  # ties at the threshold all count
    informative = f >= np.quantile(f, 1.0 - top_fraction)
    overlap, chance = float(np.sum(busy & informative) / np.sum(busy)), float(np.mean(informative))
    return {
        "spearman": rho,
        "top_overlap": overlap,
        "chance": chance,
        "holds": bool(rho >= RHO_INFORMATIVE and overlap >= 2 * chance),
        "f_bands": top_bands(f, axis, top_fraction),
        "f_profile": f.round(4).tolist(),
    }


def allocation_vs_intensity(
    units: Sequence[Sequence[float]], mean_spectrum: np.ndarray, axis: np.ndarray, fraction: float = 0.05
) -> dict[str, Any]:
    """Where SCAI+ saves its units, against the strength of the (preprocessed) mean spectrum.

    ``spearman``: rank correlation over the axis between mean units executed and the mean
    training spectrum; ``skip_overlap``: share of the ``fraction`` least busy positions that are
    among the ``fraction`` strongest positions of the mean spectrum (``chance`` = ``fraction``);
    ``quiet_bands``: the ranges with the fewest units executed, quietest first;
    ``skips_peaks``: ``skip_overlap`` is at least twice chance.
    """
    axis = np.asarray(axis, dtype=np.float64)
    prof = _profile(units, axis.size)
    spec = np.asarray(mean_spectrum, dtype=np.float64)
    rho = _spearman(prof, spec)
    quiet = prof <= np.quantile(prof, fraction)  # ties at the threshold all count
    strong = spec >= np.quantile(spec, 1.0 - fraction)
    overlap, chance = float(np.sum(quiet & strong) / np.sum(quiet)), float(np.mean(strong))
    bands = [{**b, "mean_units": -b["mean_units"]} for b in top_bands(-prof, axis, fraction)]
    return {
        "spearman": rho,
        "skip_overlap": overlap,
        "chance": chance,
        "skips_peaks": bool(overlap >= 2 * chance),
        "quiet_bands": bands,
    }

