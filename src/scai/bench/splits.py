"""One dataset split and preprocessed once per seed, shared by every method of that seed.

For each dataset and seed the data are split once (stratified 8:1:1, or the file's official
train/test split with 10 % of train held out for validation — the protocol of the shared
datasets README) and the preprocessing pipeline is fitted once on the training part.
:func:`discriminability` is the class separation of the training spectra along the axis
(claim d).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from scai.bench.config import BenchConfig
from scai.data import official_split, train_val_test_split
from scai.preprocessing import default_pipeline

__all__ = ["SplitData", "prepare_split", "discriminability"]

@dataclass
class SplitData:
    """One dataset split and preprocessed once, shared by every method of a seed."""

    name: str
    seed: int
    protocol: str
    axis: np.ndarray  # the preprocessing pipeline's output axis
    axis_unit: str
    class_names: tuple[str, ...]
    Z: dict[str, np.ndarray]  # "train"/"val"/"test" -> preprocessed float32 (n, W')
    y: dict[str, np.ndarray]  # "train"/"val"/"test" -> int64 labels
    preprocessing: list[str]
    preprocess_time_s: float


def _pipeline_kind(requested: str, axis_unit: str) -> str:
    if requested != "auto":
        return requested
    return "raman" if axis_unit == "cm-1" else "ftir"


def split_indices(
    spectra: Any, seed: int, val_fraction: float = 0.1, test_fraction: float = 0.1
) -> tuple[tuple[np.ndarray, ...], str]:
    """(train, val, test) indices and the protocol in words, as the shared datasets README splits:
    a file's official train/test split with ``val_fraction`` of train held out, else stratified
    (grouped when the file has replicate ids) train/val/test."""
    if spectra.train_idx is not None and spectra.test_idx is not None:
        idx = official_split(spectra, val_fraction=val_fraction, seed=seed)
        return idx, f"official train/test split of the file, {val_fraction:.0%} of train (stratified, seeded) for validation"
    tr = 1.0 - val_fraction - test_fraction
    idx = train_val_test_split(spectra, ratios=(tr, val_fraction, test_fraction), seed=seed)
    ratio = f"{tr * 10:g}:{val_fraction * 10:g}:{test_fraction * 10:g}"
    if spectra.groups is not None:
        return idx, f"grouped stratified train/val/test ~{ratio} (replicates of one sample kept in one part)"
    return idx, f"stratified train/val/test {ratio} (random; the file has no replicate group ids)"


def prepare_split(spectra: Any, seed: int, cfg: BenchConfig) -> SplitData:
    """Split ``spectra`` for ``seed`` and fit the preprocessing on the training part only."""
    (tr, va, te), protocol = split_indices(spectra, seed, cfg.val_fraction, cfg.test_fraction)
    kind = _pipeline_kind(cfg.preprocessing, spectra.axis_unit)
    t0 = time.perf_counter()
    pipe = default_pipeline(kind)
    Z = {"train": pipe.fit_transform(spectra.X[tr], axis=spectra.axis)}
    Z.update(val=pipe.transform(spectra.X[va]), test=pipe.transform(spectra.X[te]))
    Z = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in Z.items()}
    out_axis = getattr(pipe, "output_axis_", None)
    return SplitData(
        name=str(spectra.source),
        seed=seed,
        protocol=protocol,
        axis=np.asarray(spectra.axis if out_axis is None else out_axis, dtype=np.float64),
        axis_unit=spectra.axis_unit,
        class_names=tuple(spectra.class_names),
        Z=Z,
        y={"train": spectra.y[tr], "val": spectra.y[va], "test": spectra.y[te]},
        preprocessing=[kind] + [type(s).__name__ for s in getattr(pipe, "steps", [])],
        preprocess_time_s=time.perf_counter() - t0,
    )


def discriminability(Z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-position one-way ANOVA F statistic of the classes (training spectra; claim d).

    The between-class over within-class variance at every point of the axis: high where the
    classes differ. Constant positions (F undefined) get 0. Rounded to 4 significant digits.
    """
    from sklearn.feature_selection import f_classif

    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Features [...] are constant": handled below
        f, _ = f_classif(np.asarray(Z, dtype=np.float64), np.asarray(y))
    f = np.nan_to_num(f, nan=0.0, posinf=0.0)
    return np.asarray([float(f"{v:.4g}") for v in f])

