"""Predictor, server and edge run one exit loop: the same (prediction, exit, MACs, flags) for the
same spectra and policy, checked against an independent reference.

The reference never touches the Predictor, the exit loop, the policies module or
``scai.inference.reliability``: it runs the network's ``forward_detailed`` (every exit, every
sample), applies softmax with the temperatures read from the model's config.json, and applies each
policy by hand as the docs describe it. The runtimes hold a spectrum flagged unknown at a confident
exit (``on_unknown="deeper"``, the default), so the reference scores every exit for unknowns by
hand too: each exit head's input (a forward pre-hook), pooled by hand as the head pools it, and the
Mahalanobis distance to the stored class means with the stored precision (config.json ``ood``),
above the stored threshold. With ``on_ambiguous="deeper"`` a conformal set of more than one class
(``1 - p <= q`` with config.json's ``conformal`` quantile of the exit) is held the same way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scai.models.knob import compute_scale

from .conftest import TINY

N = 16  # the live server's max_rows


@pytest.fixture(scope="module")
def scai_dir(tmp_path_factory: pytest.TempPathFactory, milk: Any) -> Path:
    """A tiny static-cost SCAI (no PA blocks): MACs per exit are the same on every runtime."""
    import torch

    from scai import SCAIClassifier

    torch.manual_seed(1)
    idx = np.concatenate([np.flatnonzero(milk.y == c)[:4] for c in range(len(milk.class_names))])
    # random_state=1: on these 40 spectra whether the MiniRocket exit helps out of fold is a one-spectrum
    # call; with seed 1 the defaults keep it, so the edge's MiniRocket stage is covered (asserted below)
    est = SCAIClassifier(model="scai", model_config=TINY, train_config={"max_epochs": 1}, val_fraction=0.25,
                         skip_exits=False, random_state=1)
    est.fit(milk.X[idx], np.asarray(milk.class_names)[milk.y[idx]], axis=milk.axis)
    return est.save(tmp_path_factory.mktemp("scai") / "milk_scai")


def _pool_by_hand(x: np.ndarray, bins: int) -> np.ndarray:
    """What an exit head classifies: the mean over positions, or over ``bins`` equal segments
    concatenated channel by channel (segment j covers positions floor(jW/b) .. ceil((j+1)W/b))."""
    if bins <= 1:
        return x.mean(axis=-1)
    W = x.shape[-1]
    segs = [x[..., (j * W) // bins : -((-(j + 1) * W) // bins)].mean(axis=-1) for j in range(bins)]
    return np.stack(segs, axis=-1).reshape(x.shape[0], -1)


def _exit_features(est: Any, Z: np.ndarray) -> list[np.ndarray]:
    """Per exit, its classifier's input: the spectrum for exit 0 (and a MiniRocket exit after it),
    the pooled block output for a head."""
    import torch

    from scai.models.layers import ExitHead

    n_pre = getattr(est.network_, "net_start", 1)  # exits before the network: they see the spectrum
    heads = [m for m in est.network_.modules() if isinstance(m, ExitHead)]
    assert len(heads) == len(est.exit_macs_) - n_pre  # one head per network exit
    seen: list[list[np.ndarray]] = [[] for _ in heads]
    hooks = [h.register_forward_pre_hook(lambda m, inp, k=k: seen[k].append(inp[0].double().numpy()))
             for k, h in enumerate(heads)]
    try:
        with torch.no_grad():
            est.network_.forward_detailed(torch.from_numpy(Z).unsqueeze(1))
    finally:
        for h in hooks:
            h.remove()
    return [np.asarray(Z, np.float64)] * n_pre + [_pool_by_hand(np.concatenate(f), h.bins) for f, h in zip(seen, heads)]


def _unknown_by_hand(cfg: dict[str, Any], est: Any, Z: np.ndarray, probs: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Bool (n_exits, n): the unknown flag of every exit, from config.json's ``ood`` record."""
    ood = cfg["ood"]
    if ood["score"] == "msp":
        score = -probs.max(axis=2)
    elif ood["score"] == "energy":
        m = logits.max(axis=2, keepdims=True)
        score = -(m[..., 0] + np.log(np.exp(logits - m).sum(axis=2)))
    else:
        rows = []
        scorers = ood["scorers"]
        for f, sc in zip(_exit_features(est, Z), scorers):
            sc = scorers[sc["same_as"]] if "same_as" in sc else sc  # stored once for equal exits
            if sc["pca_components"] is not None:
                f = (f - np.asarray(sc["pca_mean"])) @ np.asarray(sc["pca_components"]).T
            d = f[:, None, :] - np.asarray(sc["means"])[None]
            row = np.einsum("ncd,de,nce->nc", d, np.asarray(sc["precision"]), d).min(axis=1)
            if sc.get("relative"):  # minus the distance to the background Gaussian
                e = f - np.asarray(sc["global_mean"])
                row = row - np.einsum("nd,de,ne->n", e, np.asarray(sc["global_precision"]), e)
            rows.append(row)
        score = np.stack(rows)
    if ood.get("anchored"):  # exit k's standardised score plus exit 0's, weighted
        z = (score - np.asarray(ood["anchor_mean"])[:, None]) / np.asarray(ood["anchor_std"])[:, None]
        score = z + ood.get("anchor_weight", 1.0) * z[0]
    return score > np.asarray(ood["thresholds"])[:, None]


def _ambiguous_by_hand(ref: dict[str, Any], level: float | None) -> np.ndarray:
    """Bool (n_exits, n): the LAC set at exit k (1 - p <= q_k) holds more than one class."""
    probs = ref["probs"]
    if level is None:
        return np.zeros(probs.shape[:2], dtype=bool)
    conf = ref["config"]["conformal"]
    q = np.asarray(conf["quantiles"])[:, [abs(c - level) < 1e-9 for c in conf["confidence_levels"]].index(True)]
    return ((1.0 - probs) - q[:, None, None] <= 1e-8).sum(axis=2) > 1


def _reference(model_dir: Path, X: np.ndarray, axis: np.ndarray, compute_scale: float = 1.0) -> dict[str, Any]:
    """Per-exit probabilities (n_exits, n, C), cumulative MACs (n, n_exits) and unknown flags
    (n_exits, n), computed independently; ``compute_scale``: with the PA blocks at that knob."""
    import torch

    import scai

    est = scai.load(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    temps = np.asarray(cfg["temperatures"], dtype=np.float64)
    Z = est.transform_input(X, axis)
    for m in est.network_.modules():  # the knob by hand: every PA block's halting scale
        if hasattr(m, "compute_scale") and hasattr(m, "halting"):
            m.compute_scale = float(compute_scale)
    with torch.no_grad():
        out = est.network_.forward_detailed(torch.from_numpy(Z).unsqueeze(1))
    probs, logits = [], []
    for k, lg in enumerate(out.logits):
        logits.append(lg.double().numpy())
        z = logits[-1] / temps[k]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
    P, raw = np.stack(probs), np.stack(logits)
    return {"probs": P, "costs": out.macs.double().numpy(), "static": np.asarray(est.exit_macs_, float),
            "unknown": _unknown_by_hand(cfg, est, Z, P, raw), "config": cfg}


def _holds(ref: dict[str, Any], on_unknown: str, level: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per exit and spectrum: held as unknown, held as ambiguous (where it is confident enough)."""
    unk = ref["unknown"] if on_unknown == "deeper" else np.zeros_like(ref["unknown"])
    return unk, _ambiguous_by_hand(ref, level)


def _held_text(u: bool, a: bool) -> str:
    return "+".join(w for w, on in (("unknown", u), ("ambiguous", a)) if on)


def _answer(ref: dict[str, np.ndarray], exits: np.ndarray, costs: np.ndarray) -> dict[str, np.ndarray]:
    idx = np.arange(exits.size)
    p = ref["probs"][exits, idx]
    return {"class_index": p.argmax(axis=1), "exit": exits, "macs": costs[idx, exits]}


def _by_hand(ref: dict[str, Any], policy: str, *, th: np.ndarray | None = None, budget: float = 0.0,
             cal: dict[str, Any] | None = None, on_unknown: str = "deeper",
             level: float | None = None) -> dict[str, np.ndarray]:
    """A confident spectrum flagged unknown (``on_unknown="deeper"``, the default) or ambiguous
    (``level``: ``on_ambiguous="deeper"`` at that set level) does not leave: it runs on; one
    held so to the last exit answers with reason unknown (or ambiguous). Budget and guard exits
    are not held."""
    probs, costs, static = ref["probs"], ref["costs"], ref["static"]
    L, n = probs.shape[0], probs.shape[1]
    conf = probs.max(axis=2)
    unk, amb = _holds(ref, on_unknown, level)
    exits = np.full(n, L - 1)
    flagged = np.zeros(n, dtype=bool)
    held_u, held_a = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    reason = np.full(n, "last", dtype=object)
    if policy == "threshold":
        for i in range(n):
            for k in range(L - 1):
                if conf[k, i] >= th[k]:
                    held_u[i] |= unk[k, i]
                    held_a[i] |= amb[k, i]
                    if not (unk[k, i] or amb[k, i]):
                        exits[i], reason[i] = k, "confident"
                        break
    elif policy == "anytime":
        step = np.diff(static)  # full-compute cost of the next stage
        for i in range(n):
            exits[i] = next((k for k in range(L - 1) if costs[i, k] + step[k] > budget), L - 1)
            flagged[i] = costs[i, exits[i]] > budget
    elif policy == "batch":
        # thresholds, then the guard: with E the planned cost per sample still ahead, only
        # floor((n * B - spent) / E) of those still running may go on; the most confident leave.
        assert cal is not None
        t, c, shares = cal["thresholds"], cal["exit_costs"], cal["exit_shares"]
        # a confident spectrum held as unknown counts as staying: the guard may send it out
        running = list(range(n))
        gone = 0.0
        for k in range(L - 1):
            confident = [i for i in running if conf[k, i] >= t[k]]
            held = [i for i in confident if unk[k, i] or amb[k, i]]
            leave = [i for i in confident if i not in held]
            stay = [i for i in running if i not in leave]
            spent = gone + sum(costs[i, k] for i in running)
            w = np.asarray(shares[k + 1 :], float)
            w = w / w.sum() if w.sum() > 0 else np.eye(w.size)[0]
            per = float(w @ (np.asarray(c[k + 1 :]) - c[k]))
            if "bounds" in cal:  # a sample that goes on is priced at no less than its next stage's most
                per = max(per, float(cal["bounds"][k + 1] - cal["bounds"][k]))
            may = max(int(math.floor((n * cal["budget"] - spent) / per + 1e-9)), 0) if per > 0 else len(stay)
            forced = sorted(stay, key=lambda i: -conf[k, i])[: max(len(stay) - may, 0)]
            for i in leave + forced:
                exits[i] = k
                gone += costs[i, k]
                reason[i] = "confident" if i in leave else "guard"
            for i in held:
                held_u[i] |= unk[k, i]
                held_a[i] |= amb[k, i]
            flagged[forced] = True
            running = [i for i in stay if i not in forced]
    last = reason == "last"
    reason[last & held_u] = "unknown"
    reason[last & ~held_u & held_a] = "ambiguous"
    out = _answer(ref, exits, costs)
    out["flagged"] = flagged
    if policy in ("threshold", "batch", "full"):
        out["reason"] = reason.astype(str)
        out["held"] = np.array([_held_text(u, a) for u, a in zip(held_u, held_a)])
    return out


def _edge_by_hand(ref: dict[str, Any], th: np.ndarray, bmax: float, *, on_unknown: str = "deeper",
                  level: float | None = None) -> dict[str, np.ndarray]:
    """Edge: stages run while the dense cost fits bmax; a confident exit flagged unknown (or, with
    ``level``, ambiguous) does not settle a spectrum; unsettled spectra (no centre) take the most
    confident exit run."""
    probs, static = ref["probs"], ref["static"]
    L, n = probs.shape[0], probs.shape[1]
    conf = probs.max(axis=2)
    unk, amb = _holds(ref, on_unknown, level)
    exits, flagged, spent = np.zeros(n, dtype=int), np.zeros(n, dtype=bool), np.zeros(n)
    held = []
    for i in range(n):
        ran = [k for k in range(L) if static[k] <= bmax]
        done = next((k for k in ran if k == L - 1 or (conf[k, i] >= th[k] and not (unk[k, i] or amb[k, i]))), None)
        before = [k for k in ran if k < L - 1 and (done is None or k < done) and conf[k, i] >= th[k]]
        held.append(_held_text(any(unk[k, i] for k in before), any(amb[k, i] for k in before)))
        spent[i] = static[done if done is not None else ran[-1]]  # every stage run is paid for
        if done is None:
            flagged[i] = True
            done = max(ran, key=lambda k: (conf[k, i], k))
        exits[i] = done
    out = _answer(ref, exits, np.broadcast_to(static, (n, L)))
    out["macs"], out["flagged"], out["held"] = spent, flagged, np.array(held)
    return out


def _check(got: dict[str, Any], want: dict[str, np.ndarray], who: str) -> None:
    for key in ("class_index", "exit", "flagged", "reason", "held"):
        if key in got and key in want:
            np.testing.assert_array_equal(np.asarray(got[key]), want[key], err_msg=f"{who}: {key}")
    np.testing.assert_allclose(np.asarray(got["macs"], float), want["macs"], rtol=1e-9, err_msg=f"{who}: macs")


def _server(client: Any, X: np.ndarray, axis: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
    from scai.deploy.payloads import NPY_CONTENT_TYPE, encode_npy

    params = {k: (",".join(str(v) for v in val) if isinstance(val, (list, np.ndarray)) else str(val))
              for k, val in options.items()}
    r = client.post("/v1/predict", content=encode_npy(X.astype(np.float32)), params=params,
                    headers={"Content-Type": NPY_CONTENT_TYPE})
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    return {k: np.asarray([row[k] for row in rows]) for k in ("class_index", "exit", "macs", "flagged", "reason", "held")}


def _predictor(est: Any, X: np.ndarray, axis: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
    r = est.predict_detailed(X, axis, **options)
    return {"class_index": r.class_index, "exit": r.exit, "macs": r.macs, "flagged": r.flagged, "reason": r.reason,
            "held": r.held}


@pytest.fixture(scope="module")
def spectra(milk: Any) -> np.ndarray:
    rng = np.random.default_rng(3)
    return milk.X[rng.choice(len(milk.X), N, replace=False)]


def test_predictor_and_server_agree_with_the_reference_under_every_policy(
    model_dir: Path, estimator: Any, client: Any, service: Any, spectra: np.ndarray, milk: Any
) -> None:
    ref = _reference(model_dir, spectra, milk.axis)
    macs = estimator.exit_macs_
    th = np.asarray(service.default_thresholds.values)
    # a threshold half the spectra meet at exit 1, and an anytime budget that PA's per-sample
    # savings at exit 1 decide: both policies then send spectra to different exits
    L = ref["probs"].shape[0]
    assert L == 4  # exit 0 + the network's three
    t = float(np.median(ref["probs"][0].max(axis=1)))
    step = float(macs[1] - macs[0])
    b = float(np.round(np.median(ref["costs"][:, 0]) + step))
    def th_(v: float) -> np.ndarray:
        return np.array([v] * (L - 1) + [0.0])

    # on_unknown is the default ("deeper") unless a case names it; the threshold 0 lets every
    # spectrum leave at exit 0 unless it is held there
    cases: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = [
        ({"policy": "full"}, _by_hand(ref, "full")),
        ({"policy": "threshold", "threshold": t}, _by_hand(ref, "threshold", th=th_(t))),
        # the model's calibrated default, at the compute knob it was calibrated at
        ({"policy": "threshold"}, _by_hand(_reference(model_dir, spectra, milk.axis, service.default_scale), "threshold",
                                           th=th)),
        ({"policy": "anytime", "budget": b}, _by_hand(ref, "anytime", budget=b)),
        ({"policy": "threshold", "threshold": 0.0}, _by_hand(ref, "threshold", th=th_(0.0))),
        ({"policy": "threshold", "threshold": 0.0, "on_unknown": "answer"},
         _by_hand(ref, "threshold", th=th_(0.0), on_unknown="answer")),
        ({"policy": "threshold", "threshold": t, "on_ambiguous": "deeper", "sets": 0.9},
         _by_hand(ref, "threshold", th=th_(t), level=0.9)),
        ({"policy": "threshold", "threshold": 0.0, "on_unknown": "answer", "on_ambiguous": "deeper", "sets": 0.95},
         _by_hand(ref, "threshold", th=th_(0.0), on_unknown="answer", level=0.95)),
    ]
    assert len(set(cases[1][1]["exit"])) > 1
    if len(set(ref["costs"][:, 0])) > 1:  # PA costs vary per spectrum
        assert len(set(cases[3][1]["exit"])) > 1
    # the holds change answers here: some spectra run deeper as unknown, some as ambiguous
    assert (cases[4][1]["held"] == "unknown").any() and (cases[4][1]["exit"] > 0).any()
    assert (cases[5][1]["exit"] == 0).all() and (cases[5][1]["held"] == "").all()
    assert (cases[7][1]["held"] == "ambiguous").any()
    for options, want in cases:
        server_opts = dict(options)
        pred_opts = {("confidence_level" if k == "sets" else k): v for k, v in options.items()}
        scale = 1.0
        if options["policy"] == "threshold" and "threshold" not in options:
            pred_opts["threshold"], scale = th, service.default_scale
        with compute_scale(estimator.network_, scale):
            _check(_predictor(estimator, spectra, milk.axis, **pred_opts), want, f"predictor {options}")
        _check(_server(client, spectra, milk.axis, **server_opts), want, f"server {options}")


def test_server_batch_policy_keeps_the_guard(
    model_dir: Path, estimator: Any, client: Any, spectra: np.ndarray, milk: Any
) -> None:
    """A tight mean budget: the guard must send spectra out early on the server as in scai predict."""
    macs = estimator.exit_macs_
    budget = macs[0] + 0.15 * (macs[1] - macs[0])
    cal = estimator.calibrate_batch(budget)["calibration"]
    ref = _reference(model_dir, spectra, milk.axis, cal.compute_scale)  # the knob the solver chose
    hand = {"thresholds": cal.thresholds, "exit_costs": cal.exit_costs, "exit_shares": cal.exit_shares,
            "budget": cal.budget, "bounds": np.asarray(estimator.exit_macs_, float)}
    want = _by_hand(ref, "batch", cal=hand)
    pred = _predictor(estimator, spectra, milk.axis, policy="batch", budget=budget)
    srv = _server(client, spectra, milk.axis, policy="batch", budget=budget)
    _check(pred, want, "predictor batch")
    _check(srv, want, "server batch")
    assert srv["macs"].mean() <= budget * (1 + 1e-9) + (macs[-1] - macs[0]) / N  # within one sample's overshoot
    np.testing.assert_array_equal(srv["reason"], pred["reason"])


def test_server_batch_guard_fires(estimator: Any, client: Any, spectra: np.ndarray, milk: Any) -> None:
    """With every calibrated threshold out of reach, only the guard can make spectra leave early."""
    from scai.inference import BatchCalibration

    macs = np.asarray(estimator.exit_macs_, float)
    cal = estimator.calibrate_batch(macs[0] + 0.3 * (macs[1] - macs[0]))["calibration"]
    strict = BatchCalibration(**{**cal.__dict__, "thresholds": np.array([np.inf] * (len(macs) - 1) + [0.0])})
    Z = estimator.transform_input(spectra, milk.axis)
    r = estimator.predictor().predict(Z, policy="batch", calibration=strict)
    assert r.flagged.sum() > 0 and set(r.reason[r.flagged]) == {"guard"}
    assert r.mean_macs <= strict.budget + (macs[-1] - macs[0]) / N


def test_batch_guard_counts_held_spectra(model_dir: Path, estimator: Any, spectra: np.ndarray, milk: Any) -> None:
    """Thresholds of 0: every spectrum may leave at exit 0 but those flagged unknown, which stay
    and count against the batch's budget, so the guard sends the most confident of them out."""
    from scai.inference import BatchCalibration

    macs = np.asarray(estimator.exit_macs_, float)
    cal = estimator.calibrate_batch(macs[0] + 0.3 * (macs[1] - macs[0]))["calibration"]
    ref = _reference(model_dir, spectra, milk.axis, cal.compute_scale)
    loose = BatchCalibration(**{**cal.__dict__, "thresholds": np.zeros(len(macs))})
    hand = {"thresholds": loose.thresholds, "exit_costs": loose.exit_costs, "exit_shares": loose.exit_shares,
            "budget": loose.budget, "bounds": macs}
    Z = estimator.transform_input(spectra, milk.axis)
    for on_unknown in ("deeper", "answer"):
        want = _by_hand(ref, "batch", cal=hand, on_unknown=on_unknown)
        r = estimator.predictor().predict(Z, policy="batch", calibration=loose, on_unknown=on_unknown)
        got = {"class_index": r.class_index, "exit": r.exit, "macs": r.macs, "flagged": r.flagged, "reason": r.reason,
               "held": r.held}
        _check(got, want, f"predictor batch, on_unknown={on_unknown}")
        assert r.mean_macs <= loose.budget * (1 + 1e-9) + (macs[-1] - macs[0]) / N
    deeper = _by_hand(ref, "batch", cal=hand)
    assert (deeper["held"] == "unknown").any() and "guard" in set(deeper["reason"][deeper["held"] == "unknown"])
    assert (want["exit"] == 0).all() and (want["held"] == "").all()  # on_unknown="answer": nobody is held


@pytest.mark.parametrize("which", ["scai_plus", "scai"])
def test_edge_runs_the_same_loop(which: str, model_dir: Path, scai_dir: Path, tmp_path: Path, spectra: np.ndarray,
                                 milk: Any) -> None:
    pytest.importorskip("onnxruntime")
    import scai
    from scai.deploy import EdgeClient, export_onnx

    mdir = model_dir if which == "scai_plus" else scai_dir
    out = export_onnx(mdir, tmp_path / "onnx")
    ref = _reference(mdir, spectra, milk.axis)
    est = scai.load(mdir)
    macs = np.asarray(est.exit_macs_, float)

    def edge(threshold: Any, bmax: Any, **options: Any) -> dict[str, np.ndarray]:
        res = EdgeClient(out, bmax=bmax, threshold=threshold, **options).classify(spectra, milk.axis)
        return {"class_index": np.array([r.class_index for r in res]), "exit": np.array([r.exit for r in res]),
                "macs": np.array([r.macs_edge for r in res], float), "flagged": np.array([r.offload_failed for r in res]),
                "held": np.array([r.held for r in res])}

    L = len(macs)
    # exit 0 (and, in the SCAI model, the MiniRocket exit the defaults kept) run on the edge too
    assert L == 3 + est.network_.net_start and est.network_.exit0.macs == macs[0]
    assert which == "scai_plus" or est.network_.rocket is not None  # the default model's MiniRocket exit is covered

    def th(v: float) -> np.ndarray:
        return np.array([v] * (L - 1) + [0.0])

    t = float(np.median(ref["probs"][1].max(axis=1)))
    _check(edge([None] * (L - 1), "100%"), _edge_by_hand(ref, th(np.inf), macs[-1]), f"{which} edge full")
    _check(edge(t, "100%"), _edge_by_hand(ref, th(t), macs[-1]), f"{which} edge threshold")
    _check(edge(0.999, macs[2]), _edge_by_hand(ref, th(0.999), macs[2]), f"{which} edge Bmax")
    # every spectrum is confident at exit 0: only the holds keep spectra on the edge's deeper
    # stages, and Bmax = exit 1 makes a held spectrum unsettled (no centre: offload_failed)
    for bmax in (macs[-1], macs[1]):
        want = _edge_by_hand(ref, th(0.0), bmax)
        assert (want["held"] == "unknown").any()
        _check(edge(0.0, bmax), want, f"{which} edge held, Bmax {bmax:g}")
        _check(edge(0.0, bmax, on_unknown="answer"), _edge_by_hand(ref, th(0.0), bmax, on_unknown="answer"),
               f"{which} edge on_unknown=answer, Bmax {bmax:g}")
    want = _edge_by_hand(ref, th(t), macs[-1], level=0.9)
    assert (want["held"] != "").any()
    _check(edge(t, "100%", sets=0.9, on_ambiguous="deeper"), want, f"{which} edge on_ambiguous=deeper")
    if which == "scai":  # static costs: the edge, the predictor and the server's MACs are the same numbers
        pred = _predictor(est, spectra, milk.axis, policy="threshold", threshold=t)
        _check(pred, _edge_by_hand(ref, th(t), macs[-1]), "scai predictor threshold")


def test_batch_calibrations_per_budget_are_bounded(service: Any) -> None:
    """A server asked for many distinct budgets keeps the last 32 calibrations and does not grow the model's."""
    from scai.deploy.service import CALIBRATION_CACHE_SIZE
    from scai.inference import parse_budget

    stored = dict(service.estimator.thresholds_)
    macs = service.exit_macs
    for i in range(CALIBRATION_CACHE_SIZE + 8):
        service.calibration_for(parse_budget(float(macs[0] + (i + 1) * (macs[-1] - macs[0]) / 50)))
    assert len(service._calibrations) == CALIBRATION_CACHE_SIZE
    assert service.estimator.thresholds_ == stored
