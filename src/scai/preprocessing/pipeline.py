"""A list of steps that threads the spectral axis through, and its JSON form."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from scai.errors import ConfigError, DataFormatError, NotFittedError, ScaiTypeError
from scai.preprocessing.base import Step, _decode, _encode
from scai.preprocessing.baseline import BaselineCorrection
from scai.preprocessing.steps import SNV, Despike, SavitzkyGolay

__all__ = ["Pipeline", "default_pipeline", "PIPELINE_KINDS", "AUTO_CANDIDATES"]

_FORMAT = "scai-preprocessing"
_VERSION = 1


def _unpack(X: Any, y: Any, axis: Any) -> tuple[Any, Any, Any]:
    """Accept a :class:`~scai.data.Spectra` in place of ``X`` (axis and labels come with it)."""
    if hasattr(X, "X") and hasattr(X, "axis"):
        return X.X, (X.y if y is None else y), (X.axis if axis is None else axis)
    return X, y, axis


class Pipeline(TransformerMixin, BaseEstimator):
    """Steps applied in order; each is fitted on the previous step's output and axis.

    Unlike :class:`sklearn.pipeline.Pipeline` it carries the spectral axis (``output_axis_``)
    and serialises to JSON with fitted state, so a saved model never needs pickle.
    """

    def __init__(self, steps: Sequence[Step] = ()) -> None:
        self.steps = steps

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> Step:
        return list(self.steps)[i]

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def fit(self, X: Any, y: Any = None, axis: Any = None) -> Pipeline:
        """Fit every step in turn on the running output; ``X`` may be a ``Spectra``."""
        self.fit_transform(X, y, axis=axis)
        return self

    def fit_transform(self, X: Any, y: Any = None, axis: Any = None, **_: Any) -> np.ndarray:
        X, y, axis = _unpack(X, y, axis)
        for step in self.steps:
            if not isinstance(step, Step):
                raise ScaiTypeError(f"Pipeline: {step!r} is not a scai preprocessing Step (see scai.preprocessing.list_steps())")
        X = np.asarray(X)
        current_axis = np.arange(X.shape[-1], dtype=np.float64) if axis is None else np.asarray(axis, dtype=np.float64)
        self.axis_ = current_axis
        self.n_features_in_ = int(X.shape[-1]) if X.ndim else 0
        out = X
        for step in self.steps:
            step.fit(out, y, axis=current_axis)
            out = step.transform(out)
            current_axis = step.output_axis_
        self._output_axis = current_axis
        return self._copy_if_same(out, X)

    def transform(self, X: Any) -> np.ndarray:
        """Apply the fitted steps; ``X`` may be a ``Spectra`` (on the fitted axis)."""
        if not hasattr(self, "axis_"):
            raise NotFittedError("Pipeline is not fitted; call fit(X, axis=...) first")
        X, _, _ = _unpack(X, None, None)
        X = np.asarray(X)
        out = X
        for step in self.steps:
            out = step.transform(out)
        return self._copy_if_same(out, X)

    @staticmethod
    def _copy_if_same(out: np.ndarray, X: np.ndarray) -> np.ndarray:
        # An empty pipeline must still hand back a new float array, never the caller's.
        if out is X:
            return np.array(X, dtype=np.float32 if X.dtype == np.float32 else np.float64)
        return out

    @property
    def output_axis_(self) -> np.ndarray:
        """The axis of the transformed spectra (cropping/resampling steps change it)."""
        if not hasattr(self, "_output_axis"):
            raise NotFittedError("Pipeline is not fitted; output_axis_ is unknown")
        return self._output_axis

    def to_json(self) -> str:
        """JSON with each step's name, parameters and fitted state (arrays as lists)."""
        doc: dict[str, Any] = {
            "format": _FORMAT,
            "version": _VERSION,
            "steps": [step.to_dict() for step in self.steps],
        }
        if hasattr(self, "axis_"):
            doc["axis"] = _encode(self.axis_)
            doc["output_axis"] = _encode(self.output_axis_)
            doc["n_features_in"] = self.n_features_in_
        return json.dumps(doc)

    @classmethod
    def from_json(cls, s: str) -> Pipeline:
        """Rebuild a pipeline (fitted when the JSON carries state) through the step registry."""
        try:
            doc = json.loads(s)
        except (json.JSONDecodeError, TypeError) as e:
            raise DataFormatError(f"preprocessing JSON does not parse: {e}") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT or not isinstance(doc.get("steps"), list):
            raise DataFormatError(f"not a scai preprocessing pipeline (expected format {_FORMAT!r} with a 'steps' list)")
        if doc.get("version") != _VERSION:
            raise DataFormatError(f"preprocessing JSON version {doc.get('version')!r} is not supported (expected {_VERSION})")
        pipe = cls([Step.from_dict(d) for d in doc["steps"]])
        if "axis" in doc:
            pipe.axis_ = _decode(doc["axis"])
            pipe._output_axis = _decode(doc["output_axis"])
            pipe.n_features_in_ = int(doc["n_features_in"])
        return pipe


PIPELINE_KINDS = ("raman", "deriv", "nir", "ftir", "snv", "none")
#: What ``SCAIClassifier(preprocessing="auto")`` chooses among (by the inner-CV accuracy of exit 0).
AUTO_CANDIDATES = ("raman", "deriv", "ftir", "snv", "none")


def default_pipeline(kind: str = "raman") -> Pipeline:
    """A sensible starting pipeline for a kind of spectra.

    - ``"raman"``: Despike (Whitaker–Hayes) → BaselineCorrection("asls", lam=1e6, p=0.01) →
      SavitzkyGolay(11, 2) → SNV. asls was chosen over arPLS for speed: the whole pipeline takes
      ~1 s on 500 x 1738 spectra on one core (arPLS alone ~3.4 s) — see docs/data.md.
    - ``"deriv"``: SavitzkyGolay(11, 2, deriv=1) → SNV: the first derivative removes offsets and
      slow baselines of FTIR/NIR/UV spectra (and of index axes, where the unit is unknown).
    - ``"nir"`` / ``"ftir"``: SavitzkyGolay(11, 2) → SNV (no fluorescence background to remove).
    - ``"snv"``: SNV only. ``"none"``: identity (an empty pipeline).
    """
    if kind == "raman":
        return Pipeline([Despike(), BaselineCorrection("asls", lam=1e6, p=0.01), SavitzkyGolay(11, 2), SNV()])
    if kind == "deriv":
        return Pipeline([SavitzkyGolay(11, 2, deriv=1), SNV()])
    if kind in ("nir", "ftir"):
        return Pipeline([SavitzkyGolay(11, 2), SNV()])
    if kind == "snv":
        return Pipeline([SNV()])
    if kind == "none":
        return Pipeline([])
    raise ConfigError(f"default_pipeline: kind={kind!r} is not one of {', '.join(map(repr, PIPELINE_KINDS))}")
