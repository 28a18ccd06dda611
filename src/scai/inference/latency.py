"""Stage latency tables: what turns a millisecond budget into MACs, stored so the same command gives
the same answer.

A budget in milliseconds is converted with per-stage latencies measured on the machine
(:meth:`scai.inference.Predictor.measure_stage_latency`). Measured afresh on every run they vary
(a shared 2-core machine gave 4.2 M MACs for a budget on one run and 5.7 M on the next), so the
same command could give different predictions. A :class:`LatencyTable` written once
(``scai predict --latency-table FILE``) and read back on later runs makes ms budgets
reproducible; it names the model it was measured for and is refused for another.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scai.errors import ConfigError

__all__ = ["LatencyTable"]

_FIELDS = ("model_sha256", "batch_size", "ms_per_spectrum", "machine", "measured_at", "preprocessing_ms")


@dataclass(frozen=True)
class LatencyTable:
    """Milliseconds per spectrum of each stage of one model, at one batch size, on one machine."""

    model_sha256: str
    batch_size: int
    ms_per_spectrum: tuple[float, ...]
    machine: str = ""
    measured_at: str = ""
    #: Preprocessing ms per spectrum that a millisecond budget also pays (None: not included).
    preprocessing_ms: float | None = None

    @classmethod
    def measured(cls, model_sha256: str, batch_size: int, ms: Any, preprocessing_ms: float | None = None) -> LatencyTable:
        return cls(model_sha256, int(batch_size), tuple(float(v) for v in np.asarray(ms, dtype=np.float64)),
                   machine=f"{platform.node()} ({platform.machine()}, {platform.processor() or 'cpu'})",
                   measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   preprocessing_ms=None if preprocessing_ms is None else float(preprocessing_ms))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table; a malformed file is a :class:`ConfigError` naming it and the field."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a latency table ({exc})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: a latency table is a JSON object; got {type(d).__name__}")
        unknown = sorted(set(d) - set(_FIELDS))
        missing = [k for k in ("model_sha256", "batch_size", "ms_per_spectrum") if k not in d]
        if unknown or missing:
            raise ConfigError(f"{path}: latency table fields: unknown {unknown}, missing {missing}; valid: {', '.join(_FIELDS)}")
        ms = d["ms_per_spectrum"]
        if (not isinstance(ms, list) or not ms
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v >= 0 for v in ms)):
            raise ConfigError(f"{path}: ms_per_spectrum must be a list of finite numbers >= 0, one per stage")
        if isinstance(d["batch_size"], bool) or not isinstance(d["batch_size"], int) or d["batch_size"] < 1:
            raise ConfigError(f"{path}: batch_size must be an integer >= 1; got {d['batch_size']!r}")
        pre = d.get("preprocessing_ms")
        if pre is not None and (isinstance(pre, bool) or not isinstance(pre, (int, float)) or not np.isfinite(pre) or pre < 0):
            raise ConfigError(f"{path}: preprocessing_ms must be a finite number >= 0 or null; got {pre!r}")
        return cls(str(d["model_sha256"]), int(d["batch_size"]), tuple(float(v) for v in ms),
                   str(d.get("machine", "")), str(d.get("measured_at", "")), None if pre is None else float(pre))

    def check(self, model_sha256: str, n_stages: int, source: str = "latency table") -> np.ndarray:
        """The per-stage ms for this model, or a :class:`ConfigError` when the table is another model's."""
        if self.model_sha256 != model_sha256:
            raise ConfigError(f"{source} was measured for model {self.model_sha256[:12]}..., not this one "
                              f"({model_sha256[:12]}...); delete it to measure again")
        if len(self.ms_per_spectrum) != n_stages:
            raise ConfigError(f"{source} has {len(self.ms_per_spectrum)} stages; the model has {n_stages}")
        return np.asarray(self.ms_per_spectrum, dtype=np.float64)
