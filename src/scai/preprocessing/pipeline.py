"""A list of steps that threads the spectral axis through, and its two JSON forms.

- :meth:`Pipeline.to_json` / :meth:`Pipeline.from_json`: the fitted pipeline with its state, as a
  model directory stores it.
- :func:`pipeline_to_spec` / :func:`pipeline_from_spec`: the unfitted recipe, a list of
  ``{"step": name, **parameters}``, as a ``--config`` file writes it and as an estimator's
  ``preprocessing`` parameter is saved (so a custom pipeline can be refitted after loading).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from scai.errors import ConfigError, DataFormatError, NotFittedError, ScaiTypeError
from scai.preprocessing.base import Step, _decode, _encode, feature_names, from_frame, get_step, list_steps, to_frame
from scai.preprocessing.baseline import BaselineCorrection
from scai.preprocessing.cost import PreprocessingCost, pipeline_cost
from scai.preprocessing.steps import SNV, Despike, SavitzkyGolay

__all__ = [
    "Pipeline",
    "default_pipeline",
    "PIPELINE_KINDS",
    "AUTO_CANDIDATES",
    "RAMAN_COARSEN",
    "pipeline_to_spec",
    "pipeline_from_spec",
    "preprocessing_to_json",
    "preprocessing_from_json",
]

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

    def fit_transform(self, X: Any, y: Any = None, axis: Any = None, **_: Any) -> Any:
        X, y, axis = _unpack(X, y, axis)
        X, axis, frame = from_frame(X, axis, "Pipeline")
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
        return to_frame(frame, self._copy_if_same(out, X), current_axis, self.axis_)

    def transform(self, X: Any) -> Any:
        """Apply the fitted steps; ``X`` may be a ``Spectra`` (on the fitted axis) or a DataFrame."""
        if not hasattr(self, "axis_"):
            raise NotFittedError("Pipeline is not fitted; call fit(X, axis=...) first")
        X, _, _ = _unpack(X, None, None)
        X, _, frame = from_frame(X, None, "Pipeline", self.axis_)
        X = np.asarray(X)
        out = X
        for step in self.steps:
            out = step.transform(out)
        return to_frame(frame, self._copy_if_same(out, X), self.output_axis_, self.axis_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The output axis values as text (lets ``set_output(transform="pandas")`` name columns)."""
        return feature_names(self.output_axis_)

    def cost(
        self,
        n_points: int | None = None,
        X: Any = None,
        *,
        measure: bool = True,
        batch_size: int = 256,
        repeats: int = 3,
        clock: str = "wall",
    ) -> PreprocessingCost:
        """Cost per spectrum of each step and in total: counted MACs where the arithmetic is fixed,
        measured ms (here, now, on ``X`` or synthetic spectra) for every step.

        ``n_points`` defaults to the fitted width; an unfitted pipeline needs it, and then
        ``measure=False``. ``X`` (raw spectra on the fitted axis) makes the timing of
        data-dependent steps (baselines) representative; at most ``batch_size`` rows are timed,
        best of ``repeats``, by ``clock`` ("wall", or "cpu": the process's CPU time). Example:
        ``default_pipeline("raman").fit(X, axis=a).cost(X=X).table()``.
        """
        return pipeline_cost(self, n_points, X, measure=measure, batch_size=batch_size, repeats=repeats, clock=clock)

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


_SPEC_KEY = "step"


def pipeline_to_spec(pipeline: Pipeline) -> dict[str, Any]:
    """The unfitted recipe of ``pipeline``: ``{"steps": [{"step": name, **parameters}, ...]}``.

    Every step must be a registered :class:`~scai.preprocessing.Step` (``@register_step``) with
    JSON-able parameters (arrays are written as ``{"__array__": [...], "dtype": ...}``); fitted
    state is left out. :func:`pipeline_from_spec` rebuilds an equal, unfitted pipeline.

    Raises
    ------
    ScaiTypeError
        For a step that is not a registered scai step, or a parameter JSON cannot hold.
    """
    if not isinstance(pipeline, Pipeline):
        raise ScaiTypeError(f"pipeline_to_spec: expected a scai.preprocessing.Pipeline, got {type(pipeline).__name__}")
    steps = []
    for i, step in enumerate(pipeline.steps):
        name = type(step).__name__
        if not isinstance(step, Step) or name not in list_steps() or get_step(name) is not type(step):
            raise ScaiTypeError(
                f"pipeline step {i} ({name}) is not a registered scai preprocessing step; "
                "subclass scai.preprocessing.Step and decorate it with @register_step"
            )
        entry = {_SPEC_KEY: name, **_encode(step.get_params(deep=False))}
        for key, value in entry.items():
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                raise ScaiTypeError(f"pipeline step {i} ({name}): parameter {key}={value!r:.80} cannot be stored as JSON") from None
        steps.append(entry)
    return {"steps": steps}


def pipeline_from_spec(spec: dict[str, Any] | Sequence[dict[str, Any]], where: str = "preprocessing") -> Pipeline:
    """An unfitted :class:`Pipeline` from :func:`pipeline_to_spec` output, or from the bare list of
    step entries a ``--config`` file holds: ``[{"step": "SavitzkyGolay", "window": 15, "deriv": 1}, {"step": "SNV"}]``.

    Each step's parameters are checked at once (:meth:`Step.check_params`), so a bad value fails
    before any training. ``where`` prefixes the messages (a file name, a config section).

    Raises
    ------
    ConfigError
        For an unknown step, an unknown key (listing the valid ones) or a bad parameter value.
    """
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"steps"})
        if unknown or not isinstance(spec.get("steps"), list):
            raise ConfigError(f"{where}: a pipeline spec is {{'steps': [...]}} or a list of steps; unexpected key(s) {unknown or ['(no steps)']}")
        entries = spec["steps"]
    elif isinstance(spec, (list, tuple)):
        entries = list(spec)
    else:
        raise ConfigError(f"{where}: expected a list of steps like [{{'step': 'SNV'}}], got {type(spec).__name__}")
    return Pipeline([_step_from_entry(entry, f"{where}: step {i}") for i, entry in enumerate(entries)])


def _step_from_entry(entry: Any, where: str) -> Step:
    if not isinstance(entry, dict) or not isinstance(entry.get(_SPEC_KEY), str):
        raise ConfigError(f"{where}: each step is an object with a {_SPEC_KEY!r} name, e.g. {{'step': 'SNV'}}; got {entry!r:.80}")
    name = entry[_SPEC_KEY]
    if name not in list_steps():
        raise ConfigError(f"{where}: unknown preprocessing step {name!r}; known steps: {', '.join(list_steps())}")
    klass = get_step(name)
    params = {k: _decode(v) for k, v in entry.items() if k != _SPEC_KEY}
    valid = klass._get_param_names()
    takes_extra = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(klass).parameters.values())
    unknown = sorted(set(params) - set(valid))
    if unknown and not takes_extra:  # steps with **kwargs (BaselineCorrection) check their extras themselves
        raise ConfigError(f"{where} ({name}): unknown key(s) {unknown}; valid keys: {', '.join([_SPEC_KEY, *valid])}")
    try:
        step = klass(**params)
    except TypeError as e:
        raise ConfigError(f"{where} ({name}): bad parameters {params!r:.200}: {e}") from None
    try:
        step.check_params()
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    return step


def preprocessing_to_json(value: Any) -> Any:
    """An estimator's ``preprocessing`` parameter as JSON: a kind name or None as is, a Pipeline as its spec."""
    return pipeline_to_spec(value) if isinstance(value, Pipeline) else value


def preprocessing_from_json(value: Any) -> Any:
    """Inverse of :func:`preprocessing_to_json`: a stored spec becomes an unfitted Pipeline again."""
    return pipeline_from_spec(value) if isinstance(value, (dict, list)) else value


PIPELINE_KINDS = ("raman", "deriv", "nir", "ftir", "snv", "none")
#: What ``SCAIClassifier(preprocessing="auto")`` chooses among (by the inner-CV accuracy of exit 0).
AUTO_CANDIDATES = ("raman", "deriv", "ftir", "snv", "none")


#: ``coarsen`` of the "raman" preset's asls baseline (:class:`BaselineCorrection`): every 2nd point,
#: interpolated back. Chosen by measurement: on the nine dev sets it gave the exact fit's test
#: accuracy on every set (benchmarks/results/throughput/dev_suite.md, mean 0.977 both) at about half
#: the baseline's cost; ``default_pipeline("raman", coarsen=1)`` is the exact fit.
RAMAN_COARSEN = 2


def default_pipeline(kind: str = "raman", *, coarsen: int = RAMAN_COARSEN) -> Pipeline:
    """A sensible starting pipeline for a kind of spectra.

    - ``"raman"``: Despike (Whitaker–Hayes) → BaselineCorrection("asls", lam=1e6, p=0.01,
      coarsen=2) → SavitzkyGolay(11, 2) → SNV. asls was chosen over arPLS for speed (arPLS alone
      ~3.4 s on 500 x 1738 spectra on one core); ``coarsen=2`` fits the baseline on every 2nd
      point (:data:`RAMAN_COARSEN`, see docs/data.md "Preprocessing speed and cost");
      ``coarsen=1`` gives the exact asls fit (the preset before 2026-12). A saved model keeps the
      ``coarsen`` it was fitted with (it is stored with the step; a record without it is exact).
    - ``"deriv"``: SavitzkyGolay(11, 2, deriv=1) → SNV: the first derivative removes offsets and
      slow baselines of FTIR/NIR/UV spectra (and of index axes, where the unit is unknown).
    - ``"nir"`` / ``"ftir"``: SavitzkyGolay(11, 2) → SNV (no fluorescence background to remove).
    - ``"snv"``: SNV only. ``"none"``: identity (an empty pipeline).

    ``coarsen`` applies to "raman" only (the other kinds have no baseline step).
    """
    if kind == "raman":
        return Pipeline([Despike(), BaselineCorrection("asls", lam=1e6, p=0.01, coarsen=coarsen), SavitzkyGolay(11, 2), SNV()])
    if kind == "deriv":
        return Pipeline([SavitzkyGolay(11, 2, deriv=1), SNV()])
    if kind in ("nir", "ftir"):
        return Pipeline([SavitzkyGolay(11, 2), SNV()])
    if kind == "snv":
        return Pipeline([SNV()])
    if kind == "none":
        return Pipeline([])
    raise ConfigError(f"default_pipeline: kind={kind!r} is not one of {', '.join(map(repr, PIPELINE_KINDS))}")
