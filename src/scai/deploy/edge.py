"""The edge client: run exported ONNX stages under a compute budget, offload when unsure.

An edge spectrometer runs the exported stages one by one while the cumulative cost stays within
its budget ``Bmax`` and no exit is confident (DESIGN, "Edge device with budget Bmax"). A spectrum
that leaves the budget unconfident is offloaded to the computing centre with the smaller of two
payloads: the raw spectrum (float32 ``.npy`` to ``/v1/predict``) or the features of the last stage
run on the edge (float16 ``.npy`` to ``/v1/continue?stage=k``). When the centre is unreachable,
slow or refuses the request, the edge answers with its best local exit (the most confident one;
temperatures make exits comparable) and marks the result ``offload_failed``.

Only NumPy, SciPy/scikit-learn (preprocessing), ONNX Runtime and the standard library are
imported: an edge install needs no PyTorch. HTTP uses :mod:`urllib.request`, which keeps the edge
dependency set to what it already has.

Costs: an ONNX stage runs its full-compute MACs (PA blocks are exported on the dense masked
path), so ``macs_edge`` is the sum of the executed stages' ``stage_macs`` and the budget check
uses those same numbers before each stage. The edge also runs the model's preprocessing, which
can cost more than the network (issue 18), so every result carries it too:
``preprocessing_macs`` (the counted steps, :meth:`Pipeline.cost`), ``preprocessing_ms`` (measured
on this device, this call) and ``macs_edge_total`` (network plus counted preprocessing).

Reliability: the manifest's ``ood``, ``domain`` and ``conformal`` records
(:mod:`scai.inference.reliability`) are applied here as in Python and on the server: the exit loop
scores every exit for unknowns (with ``on_unknown="deeper"``, the default, a flagged sample does
not leave as confident: it runs deeper, and when Bmax stops it, it is offloaded), the domain check
runs on every spectrum before the network, and ``sets=LEVEL`` adds the conformal set (with
``on_ambiguous="deeper"`` a set of more than one class is held the same way: it runs deeper, or is
offloaded). ``held`` says why a spectrum was held (``"unknown"``, ``"ambiguous"``, both; ``""``
when it was not): its ``exit``, ``decided_at`` and ``offload`` then say where it went. An
offloaded spectrum's unknown flag and set are the centre's (it answered).
"""

from __future__ import annotations

import csv
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scai.deploy.manifest import load_manifest
from scai.deploy.payloads import MODEL_HEADER, NPY_CONTENT_TYPE, encode_npy, one_line
from scai.errors import BudgetError, ConfigError, DataValueError
from scai.inference.budget import parse_budget
from scai.inference.calibration import softmax
from scai.inference.combination import ExitCombination
from scai.inference.exit_loop import ExitResult, run_exit_loop
from scai.inference.policies import EdgeRule
from scai.inference.reliability import DEFAULT_ON_AMBIGUOUS, DEFAULT_ON_UNKNOWN, Reliability
from scai.inference.thresholds import as_thresholds, parse_thresholds
from scai.preprocessing import Pipeline, align_to_axis

__all__ = ["EdgeClient", "EdgeResult", "write_results_csv"]

#: Minimum share of the model's axis an input axis must cover to be resampled (as the estimator).
#: Largest centre response the edge reads.
MAX_RESPONSE_BYTES = 16 << 20


@dataclass
class EdgeResult:
    """What the edge answered for one spectrum and what it cost.

    Attributes
    ----------
    index : int
        Row of the spectrum in the input.
    prediction : str
        Class name.
    class_index : int
    exit : int
        0-based exit that answered (an edge exit, or the centre's).
    decided_at : str
        ``"edge"`` or ``"centre"``.
    offload : str
        ``"none"``, ``"raw"`` (raw spectrum sent) or ``"features"`` (fp16 stage features sent).
    offload_failed : bool
        The centre could not be used (refused, unreachable, too slow, or serving another model);
        the answer is the best local exit. This is the edge's flag: the answer is not the one
        the policy promised.
    confidence : float
        Temperature-scaled probability of the predicted class at the answering exit.
    macs_edge : int
        MACs executed on the edge (full-compute cost of the stages run).
    macs_centre : int
        MACs the centre reported spending on this spectrum.
    bytes_sent : int
        Request body bytes attributed to this spectrum (a group request's body split evenly);
        0 when the offload failed (refused, unreachable, timed out, another model), so the sum
        over results is the traffic of offloads that were answered.
    latency_ms : float
        From the start of the call (preprocessing included) to this spectrum's answer.
    error : str
        Why an offload failed, or why the edge exceeded its budget; empty otherwise.
    preprocessing_macs : int
        Counted MACs of the preprocessing this spectrum went through on the edge (resampling
        onto the model's axis included); steps that can only be timed (baselines, despiking)
        add nothing here, they show in ``preprocessing_ms``.
    preprocessing_ms : float
        Measured preprocessing time per spectrum on this device (the call's alignment and
        preprocessing time divided by its spectra).
    macs_edge_total : int
        ``macs_edge + preprocessing_macs``: the edge's counted cost for this spectrum.
    unknown_score : float or None
        Unknown-class score at the answering exit (None: the manifest holds no detector).
    unknown : bool or None
        The score is above that exit's calibrated threshold.
    out_of_domain : bool or None
        The spectrum failed the input-domain check (raw checks; T² and Q when the manifest holds
        the check).
    domain_reason : str
        Why ("" when in domain).
    prediction_set : list of str or None
        With ``sets=LEVEL``: the conformal set at the answering exit (empty: no plausible class).
    held : str
        Why the spectrum was kept from leaving as confident at an earlier exit, on the edge or at
        the centre (:data:`scai.inference.exit_loop.HELD`): ``"unknown"`` (flagged unknown
        there), ``"ambiguous"`` (its set there held more than one class, ``on_ambiguous="deeper"``),
        ``"unknown+ambiguous"``, or ``""``. A held spectrum ran deeper on the edge, or Bmax stopped
        it and it was offloaded (``decided_at="centre"``, or ``offload_failed``).
    """

    index: int
    prediction: str
    class_index: int
    exit: int
    decided_at: str
    offload: str
    offload_failed: bool
    confidence: float
    macs_edge: int
    macs_centre: int
    bytes_sent: int
    latency_ms: float
    error: str = ""
    preprocessing_macs: int = 0
    preprocessing_ms: float = 0.0
    macs_edge_total: int = 0
    unknown_score: float | None = None
    unknown: bool | None = None
    out_of_domain: bool | None = None
    domain_reason: str = ""
    prediction_set: list[str] | None = None
    held: str = ""


def _held(*values: Any) -> str:
    """The union of ``held`` values (the edge's and the centre's), as one of ``HELD``."""
    parts = {p for v in values if v for p in str(v).split("+")}
    return "+".join(p for p in ("unknown", "ambiguous") if p in parts)


def _bmax_macs(bmax: Any, exit_macs: np.ndarray) -> float:
    """The edge's per-spectrum budget in MACs (``"300k"``, ``1.2e6``, ``"50%"`` of the full path)."""
    try:
        b = parse_budget(bmax)
    except BudgetError as exc:
        raise BudgetError(f"bmax={bmax!r}: {exc}") from None
    if b.unit == "ms":
        raise BudgetError(f"bmax={bmax!r}: the edge budget is in MACs (e.g. 300k, 1.2M) or a share (50%), not time")
    return b.to_macs(exit_macs)


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _OffloadError(Exception):
    """The centre could not answer (network error, timeout, HTTP error, bad reply)."""


class EdgeClient:
    """Classify spectra on an edge device with a MAC budget, offloading to a centre when unsure.

    Parameters
    ----------
    export_dir : str or Path
        Directory written by ``scai export`` (``manifest.json`` + ``stage_k.onnx``).
    bmax : str or float
        Per-spectrum compute budget on the edge in MACs (``"300k"``, ``1.2e6``).
    server : str, optional
        Base URL of the computing centre (``http://host:8000``); ``None`` never offloads.
    token : str, optional
        Bearer token for the centre.
    threshold : float or sequence of float, optional
        Exit confidence threshold(s); default: the calibrated thresholds in the manifest.
    timeout_s : float
        Socket timeout of an offload request; beyond it the edge answers locally.
    centre_policy : str
        Policy the centre applies to offloaded spectra (``"full"``: its last exit).
    threads : int
        ONNX Runtime intra-op threads (small devices: 1).
    verify : bool
        Check the ONNX files' SHA-256 against the manifest on load.
    offload_rows : int
        Most spectra per offload request (keeps requests under the server's size limits).
    on_unknown : {"deeper", "answer"}, optional
        What a spectrum flagged unknown at a confident exit does: ``"deeper"`` (the default,
        :data:`~scai.inference.reliability.DEFAULT_ON_UNKNOWN`) runs it on, and offloads it when
        Bmax stops it; ``"answer"`` lets it leave flagged. Asked of the centre when given.
    sets : float, optional
        Confidence level of the conformal sets to return (one the model calibrated).
    on_ambiguous : {"answer", "deeper"}, optional
        ``"deeper"``: a spectrum whose set at ``sets`` holds more than one class at a confident
        exit runs on (offloaded when Bmax stops it); needs ``sets``. Default ``"answer"``. Asked
        of the centre when given.
    """

    def __init__(
        self,
        export_dir: str | Path,
        *,
        bmax: Any,
        server: str | None = None,
        token: str | None = None,
        threshold: Any = None,
        timeout_s: float = 2.0,
        centre_policy: str = "full",
        threads: int = 1,
        verify: bool = True,
        offload_rows: int = 16,
        on_unknown: str | None = None,
        sets: float | None = None,
        on_ambiguous: str | None = None,
    ) -> None:
        self.export_dir = Path(export_dir)
        self.manifest = load_manifest(self.export_dir, verify=verify)
        m = self.manifest
        self.n_exits = int(m["n_exits"])
        self.model_sha256 = str(m["model_sha256"])
        self.class_names = [str(c) for c in m["class_names"]]
        self.stage_macs = np.asarray(m["stage_macs"], dtype=np.float64)
        self.exit_macs = np.asarray(m["exit_macs"], dtype=np.float64)
        self.bmax = _bmax_macs(bmax, self.exit_macs)
        self.temperatures = np.asarray(m["temperatures"], dtype=np.float64)
        self.axis = np.asarray(m["axis"], dtype=np.float64)
        self.thresholds = as_thresholds(m["thresholds"], self.n_exits) if threshold is None else parse_thresholds(
            threshold, self.n_exits
        )
        if server is not None and not urllib.parse.urlsplit(server).scheme in ("http", "https"):
            raise ConfigError(f"server={server!r} must be an http:// or https:// URL")
        self.server = server.rstrip("/") if server else None
        self.token = token
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s={timeout_s!r} must be > 0")
        self.timeout_s = float(timeout_s)
        self.centre_policy = centre_policy
        self.threads = int(threads)
        if offload_rows < 1:
            raise ConfigError(f"offload_rows={offload_rows!r} must be >= 1")
        self.offload_rows = int(offload_rows)
        self._sessions: dict[int, Any] = {}
        self._pipeline = self._load_pipeline(m["preprocessing"])
        self.reliability = Reliability.from_config(m, str(self.export_dir / "manifest.json"))
        self.on_unknown = on_unknown or DEFAULT_ON_UNKNOWN
        self._asked_on_unknown = on_unknown  # sent to the centre only when asked for (an older centre refuses it)
        self._hook = self.reliability.hook(self.on_unknown)  # checks on_unknown
        if sets is not None:
            if self.reliability.conformal is None:
                raise ConfigError("sets: the manifest holds no conformal calibration; export a model that stores one")
            self.reliability.conformal._level_index(float(sets))  # a level it calibrated, else a ConfigError
        self.sets = None if sets is None else float(sets)
        self.on_ambiguous = on_ambiguous or DEFAULT_ON_AMBIGUOUS
        self._asked_on_ambiguous = on_ambiguous  # sent to the centre only when asked for
        self._ambiguity = self.reliability.ambiguity_hook(self.on_ambiguous, self.sets)  # checks on_ambiguous
        #: Counted preprocessing cost per spectrum (``.macs``, ``.counted``, per-step ``.steps``).
        self.preprocessing_cost = self._pipeline.cost(measure=False)
        # Loopback needs no proxy; elsewhere honour the environment's proxy settings.
        self._opener = (
            urllib.request.build_opener(urllib.request.ProxyHandler({}))
            if self.server and _is_loopback(self.server)
            else urllib.request.build_opener()
        )

    # ------------------------------------------------------------------ runtime pieces
    @staticmethod
    def _load_pipeline(spec: Any) -> Pipeline:
        return Pipeline.from_json(json.dumps(spec))

    def _session(self, k: int) -> Any:
        if k not in self._sessions:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            path = self.export_dir / self.manifest["stages"][k]["file"]
            self._sessions[k] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return self._sessions[k]

    def run_stage(self, k: int, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run ONNX stage ``k``: features (B, C, W) float32 -> (features_k, logits_k)."""
        sess = self._session(k)
        name = self.manifest["stages"][k]["inputs"][0]["name"]
        feats, logits = sess.run(None, {name: np.ascontiguousarray(features, dtype=np.float32)})
        return feats, logits

    def align(self, X: Any, axis: Any = None) -> np.ndarray:
        """Raw spectra onto the model's axis (resampled when ``axis`` differs), float32 (n, W)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.size == 0:
            raise DataValueError(f"X must be 2-D (n_spectra, n_points); got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            row, col = (int(v) for v in np.argwhere(~np.isfinite(X))[0])
            raise DataValueError(f"X holds NaN/inf, first at row {row}, column {col}")
        return align_to_axis(X, axis, self.axis, owner="the model")

    def preprocess(self, X_aligned: np.ndarray) -> np.ndarray:
        """The model's fitted preprocessing (NumPy), float32 (n, W')."""
        return np.asarray(self._pipeline.transform(X_aligned), dtype=np.float32)

    # ------------------------------------------------------------------ offloading
    def _post(self, path: str, body: bytes, params: dict[str, Any]) -> dict[str, Any]:
        assert self.server is not None
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.server}{path}" + (f"?{query}" if query else "")
        headers = {"Content-Type": NPY_CONTENT_TYPE, "Accept": "application/json", MODEL_HEADER: self.model_sha256}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                raw = resp.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            detail = ""
            try:
                detail = json.loads(exc.read(4096).decode("utf-8")).get("detail", "")
            except Exception:  # noqa: BLE001 - the status alone is enough
                pass
            if exc.code == 409:
                raise _OffloadError(f"centre serves another model (HTTP 409 {detail})") from None
            raise _OffloadError(f"centre answered HTTP {exc.code} {detail}".strip()) from None
        except (socket.timeout, TimeoutError):
            raise _OffloadError(f"centre did not answer within {self.timeout_s:g} s") from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise _OffloadError(f"centre did not answer within {self.timeout_s:g} s") from None
            raise _OffloadError(f"centre unreachable ({reason})") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise _OffloadError("centre reply too large")
        try:
            reply = json.loads(raw.decode("utf-8"))
            results = reply["results"]
            if not isinstance(results, list):
                raise TypeError("results is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise _OffloadError(f"centre reply is not the expected JSON ({one_line(exc, 120)})") from None
        served = reply.get("model_sha256") if isinstance(reply, dict) else None
        if served != self.model_sha256:
            # A centre that does not check the request header still names its model in the reply.
            raise _OffloadError(
                f"centre serves another model ({str(served)[:16]}..., this edge runs {self.model_sha256[:16]}...); "
                "its answer was not used"
            )
        return reply

    def payload_bytes(self, stage: int) -> dict[str, int]:
        """Body bytes of one spectrum's offload: raw float32 vs stage features in float16."""
        raw = len(encode_npy(np.zeros((1, self.axis.size), dtype=np.float32)))
        if stage < 0:
            return {"raw": raw}
        shape = self.manifest["stages"][stage]["outputs"][0]["shape"][1:]
        feat = len(encode_npy(np.zeros((1, *shape), dtype=np.float16)))
        return {"raw": raw, "features": feat}

    # ------------------------------------------------------------------ the policy
    def classify(self, X: Any, axis: Any = None) -> list[EdgeResult]:
        """Classify raw spectra ``X`` (n, W) on the edge, offloading what it cannot settle.

        Returns
        -------
        list of EdgeResult
            One per row of ``X``, in order.
        """
        t0 = time.perf_counter()
        raw = self.align(X, axis)
        Z = self.preprocess(raw)
        n = Z.shape[0]
        pre_ms = (time.perf_counter() - t0) * 1e3 / max(n, 1)
        resampled = axis is not None and not (
            np.shape(axis) == self.axis.shape and np.allclose(np.asarray(axis, dtype=np.float64), self.axis)
        )
        pre_macs = self.preprocessing_cost.macs + (2 * self.axis.size if resampled else 0)  # as Resample.macs
        rule = EdgeRule(self.thresholds.values, self.bmax, self.stage_macs)
        t_loop = (time.perf_counter() - t0) * 1e3
        res = run_exit_loop(_OnnxStages(self), Z, rule, temperatures=self.temperatures, batch_size=max(n, 1),
                            unknown=self._hook, ambiguous=self._ambiguity)
        domain = self.reliability.domain_reasons(Z, raw)
        results: list[EdgeResult | None] = [None] * n
        for i in np.flatnonzero(res.settled).tolist():
            c = int(res.class_index[i])
            r = EdgeResult(i, self.class_names[c], c, int(res.exit[i]), "edge", "none", False,
                           float(res.confidence[i]), int(res.macs[i]), 0, 0, t_loop + 1e3 * float(res.elapsed_s[i]))
            results[i] = self._local_flags(r, res, i)
        pending = np.flatnonzero(~res.settled).tolist()
        if pending:
            self._offload(pending, raw, Z, res, results, t0)
        done = [r for r in results if r is not None]
        for r in done:
            r.preprocessing_macs, r.preprocessing_ms = int(pre_macs), float(pre_ms)
            r.macs_edge_total = r.macs_edge + r.preprocessing_macs
            r.domain_reason = domain[r.index]
            r.out_of_domain = r.domain_reason != ""
        return done

    def _local_flags(self, r: EdgeResult, res: ExitResult, i: int) -> EdgeResult:
        """The unknown flag, conformal set and hold of an answer the edge made itself (exit ``r.exit``)."""
        r.held = _held(res.held[i])
        if self._hook is not None and r.exit == int(res.exit[i]) and np.isfinite(res.unknown_score[i]):
            r.unknown_score, r.unknown = float(res.unknown_score[i]), bool(res.unknown[i])
        if self.sets is not None and r.exit >= 0:
            row = self.reliability.sets(np.array([r.exit]), res.probabilities[i : i + 1], self.sets)[0]
            r.prediction_set = [self.class_names[c] for c in np.flatnonzero(row)]
        return r

    def _offload(
        self,
        pending: Sequence[int],
        raw: np.ndarray,
        Z: np.ndarray,
        res: ExitResult,
        results: list[EdgeResult | None],
        t0: float,
    ) -> None:
        """Send what the edge could not settle to the centre; answer locally where that fails."""
        groups: dict[tuple[str, int], list[int]] = {}
        for i in pending:
            k = int(res.last_stage[i])
            sizes = self.payload_bytes(k)
            # A model whose exits combine earlier exits' logits (manifest "combination"), or whose
            # unknown-class score adds exit 0's (an anchored detector), offloads raw spectra: the
            # centre then reruns the edge's stages itself rather than trusting a state.
            small = "features" in sizes and sizes["features"] <= sizes["raw"]
            plain = self.manifest.get("combination") is None and not self.reliability.anchored
            kind = "features" if small and plain else "raw"
            groups.setdefault((kind, k if kind == "features" else -1), []).append(i)
        chunks = [(key, rows[s : s + self.offload_rows]) for key, rows in groups.items()
                  for s in range(0, len(rows), self.offload_rows)]
        for (kind, k), rows in chunks:
            asks = {"on_unknown": self._asked_on_unknown, "sets": None if self.sets is None else f"{self.sets:g}",
                    "on_ambiguous": self._asked_on_ambiguous}
            if kind == "raw":
                body = encode_npy(raw[rows])
                path, params = "/v1/predict", {"policy": self.centre_policy, **asks}
            else:
                body = encode_npy(np.stack([res.held_features[i] for i in rows]).astype(np.float16))
                path, params = "/v1/continue", {"stage": k, "policy": self.centre_policy, **asks}
            share = int(round(len(body) / len(rows)))
            error = ""
            replies: list[dict[str, Any]] = []
            if self.server is None:
                error = "no centre configured"
            else:
                try:
                    replies = self._post(path, body, params)["results"]
                    if len(replies) != len(rows):
                        raise _OffloadError(f"centre answered {len(replies)} results for {len(rows)} spectra")
                except _OffloadError as exc:
                    error, replies = str(exc), []
            now_ms = (time.perf_counter() - t0) * 1e3
            if replies:
                for i, rep in zip(rows, replies):
                    c = int(rep["class_index"])
                    r = EdgeResult(i, self.class_names[c], c, int(rep["exit"]), "centre", kind, False,
                                   float(rep["confidence"]), int(res.macs[i]), int(round(float(rep["macs"]))),
                                   share if self.server else 0, now_ms)
                    score, flag, pset = rep.get("unknown_score"), rep.get("unknown"), rep.get("prediction_set")
                    r.unknown_score = None if score is None else float(score)
                    r.unknown = None if flag is None else bool(flag)
                    r.prediction_set = None if pset is None else [str(v) for v in pset]
                    r.held = _held(res.held[i], rep.get("held"))
                    results[i] = r
                continue
            for i in rows:
                results[i] = self._local_fallback(i, Z, res, kind, 0, error, t0)  # nothing the centre answered

    def _local_fallback(
        self, i: int, Z: np.ndarray, res: ExitResult, kind: str, sent: int, error: str, t0: float,
    ) -> EdgeResult:
        """The best local exit (the most confident one run) for a spectrum the centre did not answer."""
        spent, exit_, conf, probs = float(res.macs[i]), int(res.exit[i]), float(res.confidence[i]), res.probabilities[i]
        if exit_ < 0:  # Bmax below exit 1: nothing ran locally; run stage 0 anyway
            _, logits = self.run_stage(0, Z[i : i + 1, None, :])
            spent += self.stage_macs[0]
            probs = softmax(logits, float(self.temperatures[0]))[0]
            exit_, conf = 0, float(probs.max())
            error += f"; ran exit 1 locally beyond Bmax ({self.stage_macs[0]:,.0f} > {self.bmax:,.0f} MACs)"
        c = int(np.argmax(probs))
        r = EdgeResult(i, self.class_names[c], c, exit_, "edge", kind, True, conf,
                       int(spent), 0, sent, (time.perf_counter() - t0) * 1e3, error)
        if int(res.exit[i]) >= 0:
            return self._local_flags(r, res, i)
        if self.sets is not None:  # exit 1 run beyond Bmax just now
            row = self.reliability.sets(np.array([exit_]), probs[None, :], self.sets)[0]
            r.prediction_set = [self.class_names[k] for k in np.flatnonzero(row)]
        return r


class _OnnxStages:
    """The exit loop's stage runner over an edge client's ONNX Runtime sessions.

    ONNX stages run their full-compute MACs (PA blocks are exported on the dense path), so the
    MACs of stage ``k`` are the manifest's ``stage_macs[k]`` for every sample.
    """

    def __init__(self, client: EdgeClient) -> None:
        self.client = client
        self.n_exits = client.n_exits
        self.n_classes = len(client.class_names)
        self.uses = client.manifest.get("exits_used")  # a cascade's skipped exits
        comb = client.manifest.get("combination")  # ... and how its exits build on earlier ones
        self.combination = None if comb is None else ExitCombination.from_dict(comb, "manifest combination")

    def inputs(self, X: np.ndarray, start_stage: int) -> np.ndarray:
        return X[:, None, :] if start_stage == 0 and X.ndim == 2 else X

    def run(self, k: int, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feats, logits = self.client.run_stage(k, features)
        return feats, np.asarray(logits, dtype=np.float64), np.full(feats.shape[0], self.client.stage_macs[k])

    def take(self, features: np.ndarray, keep: np.ndarray) -> np.ndarray:
        return features[keep]

    def rows(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.asarray(features[mask])


def write_results_csv(results: Sequence[EdgeResult], path: str | Path) -> Path:
    """Write edge results as CSV (one row per spectrum, columns as :class:`EdgeResult`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in fields(EdgeResult)]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=names)
        w.writeheader()
        for r in results:
            row = asdict(r)
            row["latency_ms"] = f"{r.latency_ms:.3f}"
            row["preprocessing_ms"] = f"{r.preprocessing_ms:.4f}"
            row["confidence"] = f"{r.confidence:.6f}"
            row["prediction_set"] = "" if r.prediction_set is None else "|".join(r.prediction_set)
            w.writerow(row)
    return path
