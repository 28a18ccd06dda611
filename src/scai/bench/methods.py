"""The benchmark's methods: the paper's networks at their depths and the classical anchors.

A method is a :class:`MethodSpec` — the key it has in results.json, its family (a key of
:data:`FAMILIES`, which also sets the table order) and the overrides it trains with.
:func:`default_methods` lists them in table order; :func:`select_methods` keeps the ones a run
asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scai.errors import BenchSettingsError

__all__ = [
    "FAMILIES",
    "ADAPTIVE",
    "STATIC",
    "CLASSICAL",
    "DEFAULT_DEPTHS",
    "QUICK_DEPTHS",
    "MethodSpec",
    "default_methods",
    "select_methods",
]

#: Display name of each method family, in table order.
FAMILIES: dict[str, str] = {
    "scai": "SCAI",
    "scai_plus": "SCAI+",
    "scai_plus_nokd": "SCAI+ w/o KD",
    "resnet1d": "ResNet-1D",
    "drsn_cs": "DRSN-CS",
    "drsn_cw": "DRSN-CW",
    "svm_rbf": "SVM-RBF",
    "pls_da": "PLS-DA",
    "logreg_snv": "logistic (SNV)",
    "minirocket": "MiniRocket",
}
ADAPTIVE = ("scai", "scai_plus", "scai_plus_nokd")
STATIC = ("resnet1d", "drsn_cs", "drsn_cw")
CLASSICAL = ("svm_rbf", "pls_da", "logreg_snv", "minirocket")
DEFAULT_DEPTHS = (2, 4, 8, 16)
QUICK_DEPTHS = (1, 2)
#: Tiny networks for ``--quick``: the point is to exercise the pipeline, not to score.
QUICK_SCAI = {"channels": (4, 4, 4, 4), "units_per_block": 2, "stem_stride": 8}
QUICK_STATIC = {"channels": (4, 4, 4, 4), "stem_stride": 8}


@dataclass(frozen=True)
class MethodSpec:
    """One method of the benchmark.

    ``name`` is the key in results.json (``resnet1d_d4`` for ResNet-1D with 4 units);
    ``family`` a key of :data:`FAMILIES`.
    """

    name: str  # key in results.json
    family: str  # key of FAMILIES
    model: str | None = None  # registered network (None for classical anchors)
    depth: int | None = None  # residual units of a static network
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides of the family's config
    train_config: dict[str, Any] = field(default_factory=dict)  # overrides of TrainConfig (e.g. distill)
    estimator_params: dict[str, Any] = field(default_factory=dict)  # extra SCAIClassifier parameters

    @property
    def kind(self) -> str:
        """``"adaptive"``, ``"static"`` or ``"classical"``."""
        return "adaptive" if self.family in ADAPTIVE else "static" if self.family in STATIC else "classical"


def default_methods(depths: Sequence[int] = DEFAULT_DEPTHS, quick: bool = False) -> list[MethodSpec]:
    """The paper's methods plus the classical anchors, in table order."""
    scai_cfg = dict(QUICK_SCAI) if quick else {}
    static_cfg = dict(QUICK_STATIC) if quick else {}
    methods = [
        MethodSpec("scai", "scai", "scai", model_config=scai_cfg),
        # the paper's SCAI+: tau-only ponder cost, no compute target (TrainConfig's default is 0.5)
        MethodSpec("scai_plus", "scai_plus", "scai_plus", model_config=scai_cfg, train_config={"ponder_target": None}),
        MethodSpec("scai_plus_nokd", "scai_plus_nokd", "scai_plus", model_config=scai_cfg,
                   train_config={"distill": "none", "ponder_target": None}),
    ]
    for family in STATIC:
        for d in sorted(depths):
            methods.append(MethodSpec(f"{family}_d{d}", family, family, depth=d, model_config={**static_cfg, "depth": d}))
    methods.extend(MethodSpec(f, f) for f in CLASSICAL)
    return methods


def select_methods(methods: list[MethodSpec], wanted: Sequence[str]) -> list[MethodSpec]:
    """Keep methods named in ``wanted`` (a method name or a family name selects all its depths)."""
    if not wanted:
        return methods
    known = {m.name for m in methods} | {m.family for m in methods}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise BenchSettingsError(f"unknown method(s) {unknown}; choose from {', '.join(sorted(known))}")
    return [m for m in methods if m.name in wanted or m.family in wanted]

