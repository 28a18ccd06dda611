"""Unknown-class, out-of-domain and conformal benchmark on the dev sets (issue 17).

Protocol (per dev set in ``--data-dir`` and seed; splits as the datasets README gives them, through
:func:`scai.bench.splits.split_indices`: qsi-tk sets stratified 8:1:1, UCR sets the official
train/test with 10 % of train for validation):

* **Leave-one-class-out** (sets with >= 3 classes): train without class k (train and validation
  parts), score the test part of the other classes (in-distribution) and *every* spectrum of class
  k (none was trained on) as unknown. Scores per exit: max-softmax (``msp``), ``energy``,
  Mahalanobis on the exit head's pooled features (``maha``) and on globally averaged features
  (``maha_gap``), and the relative Mahalanobis distance on the same two (``rmd``, the library's
  default, and ``rmd_gap``); both with the library's settings (OAS, 64 principal components);
  and ``rmd`` / ``maha`` anchored on exit 0 as the library fits them (``UnknownDetector(anchored=True,
  anchor_weight=w)``, standardised on validation): ``rmd_anchor`` (w = 1), ``rmd_anchor_w2`` (w = 2),
  ``rmd_anchor_w4`` (w = 4, the library's default), ``maha_anchor`` (w = 1). Reported: AUROC per
  exit; the detection rate at a 5 % false-reject rate with the threshold set on the validation split (what a user gets)
  and the false-reject rate that threshold has on the test split; the detection rate at 5 %
  false-reject on the test split itself (TPR at 5 % FPR). Also the domain check's detection rate.
* **Cross-domain**, for a model of each set trained on all classes: up to 200 spectra of every
  other set; a set on another axis unit, or whose axis overlaps too little to resample, is
  *refused* (counts as detected); otherwise resampled to the model's axis and flagged by the
  domain check (raw checks, Hotelling T², Q) and/or the unknown flag at the last exit.
  Junk: noise-only, constant and saturated (top 20 % of each test spectrum clipped flat) spectra.
* **Conformal** (MAPIE split conformal, LAC) calibrated on the validation split per exit:
  coverage and mean set size on the test split at 0.9 and 0.95, share of empty sets.

Training: ``SCAIClassifier(train_config={"max_epochs": 20, "threads": 1}, skip_exits=False,
verbose=False, random_state=seed)`` (defaults otherwise: preprocessing="auto", exit 0 "auto"), so
every exit is kept and scored; ``skip_exits=False`` changes no exit's answer, only which are kept.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/ood.py --seeds 0 1 2          # resumes finished (set, seed) pairs
    python benchmarks/ood.py --report-only                          # rewrite results.json + report.md
    OMP_NUM_THREADS=1 python benchmarks/ood.py --seeds 0 1 2 --dump /tmp/ood-dump   # + raw scores (ood_anchor_weights.py)

Writes ``benchmarks/results/ood/records.jsonl`` (one line per set and seed), ``results.json``
(records + summary) and ``report.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from scai.inference.ood import DEFAULT_ANCHOR_WEIGHT

DATASETS = ("milk_adulteration", "milk_species", "cheese_brands", "raspberry_origin", "astragalus_origin",
            "liquor_vintage", "ucr_strawberry", "ucr_meat", "chemotools_coffee")
RAMAN = {"milk_adulteration", "milk_species", "cheese_brands", "raspberry_origin", "astragalus_origin",
         "liquor_vintage"}
TRAIN_CONFIG = {"max_epochs": 20, "threads": 1}
#: These scores again as the library's anchored detector (``UnknownDetector(anchored=True)``):
#: each exit's standardised score plus ``anchor_weight`` x exit 0's, standardised on validation.
ANCHORED = ("maha", "rmd")
#: name suffix -> anchor_weight (the suffixed ones only for the rmd score): 1, 2 and the library's
ANCHOR_WEIGHTS = {"": 1.0, "_w2": 2.0, f"_w{DEFAULT_ANCHOR_WEIGHT:g}": DEFAULT_ANCHOR_WEIGHT}
#: The rmd score anchored as every library model with an exit combination scores it.
LIBRARY = f"rmd_anchor_w{DEFAULT_ANCHOR_WEIGHT:g}"
#: The anchored rmd scores recorded for the cross-domain sets.
RMD_ANCHORED = tuple(f"rmd_anchor{tag}" for tag in ANCHOR_WEIGHTS)
SCORES = ("msp", "energy", "maha", "maha_gap", "rmd", "rmd_gap", "maha_anchor", *RMD_ANCHORED)
#: The library's default score (``ood="auto"``): what the cross-domain flags and false rejects use.
DEFAULT = "rmd"
FEATURE = {"maha": "mahalanobis", "rmd": "relative_mahalanobis"}
REJECT_RATE = 0.05
LEVELS = (0.9, 0.95)
MAX_CROSS = 200
#: ``--dump DIR`` (None: off)
DUMP: Path | None = None
OUT = Path(__file__).resolve().parent / "results" / "ood"


def _load(name: str, data_dir: Path) -> Any:
    from scai.data import read

    # The qsi-tk files carry Raman shifts in cm-1 (datasets README); the others a point index.
    return read(data_dir / f"{name}.npz", axis_unit="cm-1" if name in RAMAN else "index")


def _fit(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, sp: Any, seed: int) -> Any:
    from scai import SCAIClassifier

    est = SCAIClassifier(train_config=TRAIN_CONFIG, skip_exits=False, verbose=False, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y, axis=sp.axis, X_val=Xv, y_val=yv, axis_unit=sp.axis_unit)


def _detectors(est: Any, Xtr: np.ndarray, ytr: np.ndarray, Xva: np.ndarray) -> dict[str, Any]:
    from scai.inference.ood import UnknownDetector, exit_batch

    out: dict[str, Any] = {}
    for pooling in ("head", "gap"):
        btr, bva = exit_batch(est, Xtr, pooling=pooling), exit_batch(est, Xva, pooling=pooling)
        names = ("msp", "energy", "maha", "rmd") if pooling == "head" else ("maha_gap", "rmd_gap")
        for name in names:
            score = FEATURE.get(name.removesuffix("_gap"), name)
            out[name] = (pooling, UnknownDetector(score=score, reject_rate=REJECT_RATE).fit(btr, est._encode(ytr, "y"), bva))
        if pooling == "head":
            bva_head = bva
    for name in ANCHORED:  # each exit's score plus exit 0's (the library's anchored detector)
        pooling, base = out[name]
        raw_val = base.score(bva_head)  # the unanchored detector's scores: the same fitted scorers
        for tag, w in ANCHOR_WEIGHTS.items():
            if tag and name != DEFAULT:
                continue
            det = copy.copy(base)
            det.anchor_weight = w
            det.set_anchor(raw_val)
            det.recalibrate(bva_head, REJECT_RATE)
            out[f"{name}_anchor{tag}"] = (pooling, det)
    return out


def _domain(est: Any, Xtr: np.ndarray, Xva: np.ndarray) -> dict[str, Any]:
    from scai.inference.domain import DomainCheck

    theory = DomainCheck().fit(est.transform_input(Xtr))
    cal = DomainCheck().fit(est.transform_input(Xtr)).calibrate(est.transform_input(Xva))
    return {"theory": theory, "heldout": cal}


def _domain_flags(check: Any, est: Any, X: np.ndarray) -> np.ndarray:
    from scai.inference.domain import raw_reasons

    raw = np.array([bool(r) for r in raw_reasons(X)])
    with np.errstate(all="ignore"):
        Z = est.transform_input(X)
    finite = np.all(np.isfinite(Z), axis=1)
    flags = raw | ~finite
    if finite.any():
        flags[finite] |= check.out_of_domain(Z[finite])
    return flags


def _auroc(id_scores: np.ndarray, unk_scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(id_scores)), np.ones(len(unk_scores))]
    return float(roc_auc_score(y, np.r_[id_scores, unk_scores]))


def _score_all(dets: dict[str, Any], est: Any, X: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (scores (E, n), flags (E, n))."""
    from scai.inference.ood import exit_batch

    batches = {p: exit_batch(est, X, pooling=p) for p in ("head", "gap")}
    return {name: (det.score(batches[p]), det.flag(batches[p])) for name, (p, det) in dets.items()}


def _dump(tag: str, **arrays: Any) -> None:
    """With ``--dump DIR``: the raw (unanchored) rmd scores per exit behind a record, for offline study."""
    if DUMP is not None:
        DUMP.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(DUMP / f"{tag}.npz", **arrays)


def loco(sp: Any, idx: tuple[np.ndarray, ...], seed: int, k: int, name: str = "") -> dict[str, Any]:
    tr, va, te = idx
    keep = lambda ix: ix[sp.y[ix] != k]
    t0 = time.perf_counter()
    est = _fit(sp.X[keep(tr)], sp.y[keep(tr)], sp.X[keep(va)], sp.y[keep(va)], sp, seed)
    dets = _detectors(est, sp.X[keep(tr)], sp.y[keep(tr)], sp.X[keep(va)])
    dom = _domain(est, sp.X[keep(tr)], sp.X[keep(va)])
    unk = np.flatnonzero(sp.y == k)
    s_id, s_unk = _score_all(dets, est, sp.X[keep(te)]), _score_all(dets, est, sp.X[unk])
    if DUMP is not None:
        _dump(f"loco_{name}_{seed}_{k}", val=_score_all(dets, est, sp.X[keep(va)])[DEFAULT][0],
              id=s_id[DEFAULT][0], unk=s_unk[DEFAULT][0], n_pre=_n_pre_exits(est))
    rec: dict[str, Any] = {"class": int(k), "class_name": str(sp.class_names[k]), "n_id": len(keep(te)),
                           "n_unknown": len(unk), "exit_macs": [int(m) for m in est.exit_macs_],
                           "first_exit_number": est.first_exit_number, "n_pre_exits": _n_pre_exits(est), "scores": {}}
    for name in SCORES:
        (a, fa), (b, fb) = s_id[name], s_unk[name]
        oracle = [float(np.mean(bb > np.quantile(aa, 1 - REJECT_RATE, method="higher"))) for aa, bb in zip(a, b)]
        rec["scores"][name] = {
            "auroc": [_auroc(aa, bb) for aa, bb in zip(a, b)],
            "detected_val_threshold": fb.mean(axis=1).tolist(),
            "false_reject_test": fa.mean(axis=1).tolist(),
            "detected_at_5pct_test": oracle,
        }
    rec["domain"] = {kind: {"detected": float(_domain_flags(c, est, sp.X[unk]).mean()),
                            "false_reject_test": float(_domain_flags(c, est, sp.X[keep(te)]).mean())}
                     for kind, c in dom.items()}
    rec["fit_s"] = time.perf_counter() - t0
    return rec


def _junk(sp: Any, te: np.ndarray, tr: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    Xtr = sp.X[tr].astype(np.float64)
    mu, sd = float(Xtr.mean()), float(Xtr.std())
    n, W = 100, sp.X.shape[1]
    sat = sp.X[te].astype(np.float64) * 3.0
    sat = np.minimum(sat, np.quantile(sat, 0.8, axis=1, keepdims=True))
    return {
        "noise": rng.normal(mu, sd, size=(n, W)),
        "constant": np.repeat(rng.uniform(Xtr.min(), Xtr.max(), size=(n, 1)), W, axis=1),
        "saturated": sat,
    }


def full_model(sp: Any, name: str, idx: tuple[np.ndarray, ...], seed: int, others: dict[str, Any]) -> dict[str, Any]:
    from scai.errors import AxisError
    from scai.inference.conformal import ConformalSets
    from scai.preprocessing import align_to_axis

    tr, va, te = idx
    t0 = time.perf_counter()
    est = _fit(sp.X[tr], sp.y[tr], sp.X[va], sp.y[va], sp, seed)
    dets = _detectors(est, sp.X[tr], sp.y[tr], sp.X[va])
    dom = _domain(est, sp.X[tr], sp.X[va])
    y_te = est._encode(sp.y[te], "y")
    probs_te = est.exit_proba(sp.X[te])
    rec: dict[str, Any] = {"exit_macs": [int(m) for m in est.exit_macs_], "first_exit_number": est.first_exit_number,
                           "n_pre_exits": _n_pre_exits(est),
                           "exit_accuracy": [float(np.mean(p.argmax(1) == y_te)) for p in probs_te],
                           "preprocessing": (est.preprocessing_selection_ or {}).get("chosen")}
    # in-distribution false rejects of every flag on the test split
    s_te = _score_all(dets, est, sp.X[te])
    if DUMP is not None:
        _dump(f"full_{name}_{seed}", val=_score_all(dets, est, sp.X[va])[DEFAULT][0], id=s_te[DEFAULT][0],
              n_pre=_n_pre_exits(est))
    rec["id_false_reject"] = {n: f.mean(axis=1).tolist() for n, (_, f) in s_te.items()}
    rec["id_false_reject"].update({f"domain_{k}": float(_domain_flags(c, est, sp.X[te]).mean()) for k, c in dom.items()})
    # conformal
    cs = ConformalSets(LEVELS).fit(est.validation_outputs()[0], est.validation_["y"])
    rec["conformal"] = {"n_calibration": cs.n_calibration_, "too_few": cs.too_few_}
    for lvl in LEVELS:
        sets = cs.predict_sets(probs_te, lvl)
        cover = sets[:, np.arange(len(y_te)), y_te]
        rec["conformal"][str(lvl)] = {"coverage": cover.mean(axis=1).tolist(), "mean_size": sets.sum(2).mean(1).tolist(),
                                      "empty": (sets.sum(2) == 0).mean(1).tolist()}
    # cross-domain + junk
    cross: dict[str, Any] = {}
    rng = np.random.default_rng(seed)
    sources = {f"set:{o}": osp for o, osp in others.items() if o != name}
    for src, osp in sources.items():
        pick = np.sort(rng.choice(osp.n_samples, size=min(MAX_CROSS, osp.n_samples), replace=False))
        if osp.axis_unit != sp.axis_unit:
            cross[src] = {"n": int(pick.size), "refused": f"axis unit {osp.axis_unit} vs {sp.axis_unit}"}
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                X = align_to_axis(osp.X[pick], osp.axis, est.axis_)
        except AxisError as exc:
            cross[src] = {"n": int(pick.size), "refused": str(exc)[:120]}
            continue
        cross[src] = _flag_rates(est, dets, dom, X, np.asarray(osp.class_names)[osp.y[pick]], f"{name}_{seed}_{src[4:]}")
    for kind, X in _junk(sp, te, tr, seed).items():
        cross[f"junk:{kind}"] = _flag_rates(est, dets, dom, X, tag=f"{name}_{seed}_junk_{kind}")
    rec["cross"] = cross
    rec["fit_s"] = time.perf_counter() - t0
    return rec


def _flag_rates(est: Any, dets: dict[str, Any], dom: dict[str, Any], X: np.ndarray,
                labels: np.ndarray | None = None, tag: str = "") -> dict[str, Any]:
    """Shares of ``X`` flagged; with ``labels`` (the source set's class names) also per source class."""
    from scai.inference.domain import raw_reasons

    out: dict[str, Any] = {"n": len(X)}
    raw = np.array([bool(r) for r in raw_reasons(X)])
    with np.errstate(all="ignore"):
        Z = est.transform_input(X)
    ok = np.all(np.isfinite(Z), axis=1) & ~raw
    out["raw_flagged"] = float(raw.mean())
    for kind, c in dom.items():
        f = ~ok.copy()
        if ok.any():
            f[ok] |= c.out_of_domain(Z[ok])
        out[f"domain_{kind}"] = float(f.mean())
    s = _score_all(dets, est, X[ok]) if ok.any() else {}
    last: dict[str, np.ndarray] = {}
    for name in ("maha", "rmd", *RMD_ANCHORED):
        last[name] = ~ok.copy()
        if ok.any():
            _, flags = s[name]
            last[name][ok] = flags[-1]
            out[f"unknown_first_{name}"] = float(np.r_[flags[0], np.ones((~ok).sum())].mean())
        out[f"unknown_last_{name}"] = float(last[name].mean())
    f = ~ok.copy()
    if ok.any():
        f[ok] |= dom["heldout"].out_of_domain(Z[ok])
    for name in ("rmd", *RMD_ANCHORED):
        out["either" if name == DEFAULT else f"either_{name}"] = float((f | last[name]).mean())
    if labels is not None:
        for name in RMD_ANCHORED:
            either = f | last[name]
            out[f"either_{name}_by_class"] = {str(c): float(either[labels == c].mean()) for c in np.unique(labels)}
        out["domain_heldout_by_class"] = {str(c): float(f[labels == c].mean()) for c in np.unique(labels)}
    if DUMP is not None and ok.any():
        _dump(f"cross_{tag}", rmd=s[DEFAULT][0], ok=ok, domain=f, labels=np.asarray(labels if labels is not None else []).astype(str))
    return out


def _n_pre_exits(est: Any) -> int:
    """Exits in front of the network: exit 0, and the MiniRocket exit when there is one."""
    net = est.network_
    return 1 + int(getattr(net, "rocket", None) is not None) if hasattr(net, "exit0") else 0


def run_pair(name: str, seed: int, data_dir: Path) -> dict[str, Any]:
    import torch

    from scai.bench.splits import split_indices

    torch.set_num_threads(1)
    sp = _load(name, data_dir)
    idx, protocol = split_indices(sp, seed, 0.1, 0.1)
    others = {o: _load(o, data_dir) for o in DATASETS}
    rec: dict[str, Any] = {"dataset": name, "seed": seed, "protocol": protocol, "n_classes": int(sp.n_classes),
                           "axis_unit": sp.axis_unit, "train_config": dict(TRAIN_CONFIG)}
    rec["full"] = full_model(sp, name, idx, seed, others)
    rec["loco"] = [loco(sp, idx, seed, k, name) for k in range(sp.n_classes)] if sp.n_classes >= 3 else []
    return rec


# --------------------------------------------------------------------------- summary and report
def _mean(v: list[float]) -> float | None:
    v = [x for x in v if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def _aligned(r: dict[str, Any], v: Any) -> Any:
    """A per-exit list as exit 0 then the network exits: a MiniRocket exit (exit 1 where the
    cascade kept one, ``n_pre_exits`` 2) is dropped so that runs with and without one line up."""
    if not isinstance(v, list) or _n_pre(r) != 2:
        return v
    return [v[0], *v[2:]]


def _n_pre(r: dict[str, Any]) -> int:
    """Exits before the network; records written before it was stored: the default SCAI+ has 4
    network exits, so it follows from the number of exits."""
    return int(r["n_pre_exits"]) if "n_pre_exits" in r else len(r["exit_macs"]) - 4


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    sets = sorted({r["dataset"] for r in records}, key=DATASETS.index)
    out: dict[str, Any] = {"datasets": {}, "seeds": sorted({r["seed"] for r in records})}
    for d in sets:
        rs = [r for r in records if r["dataset"] == d]
        s: dict[str, Any] = {"seeds": [r["seed"] for r in rs]}
        loco_recs = [c for r in rs for c in r["loco"]]
        if loco_recs:
            for name in SCORES:
                have = [c for c in loco_recs if name in c["scores"]]  # scores added after a run have no entry there
                if not have:
                    continue
                get = lambda key: np.array([_aligned(c, c["scores"][name][key]) for c in have])  # noqa: E731
                au, det, det5, frr = (get(k) for k in ("auroc", "detected_val_threshold", "detected_at_5pct_test",
                                                       "false_reject_test"))
                s[name] = {"auroc": au.mean(0).tolist(), "detected_val_threshold": det.mean(0).tolist(),
                           "detected_at_5pct_test": det5.mean(0).tolist(), "false_reject_test": frr.mean(0).tolist(),
                           "auroc_rocket": _mean([c["scores"][name]["auroc"][1] for c in have if _n_pre(c) == 2]),
                           "runs_with_rocket": sum(_n_pre(c) == 2 for c in have), "runs": len(have)}
            s["domain_loco"] = {k: {m: _mean([c["domain"][k][m] for c in loco_recs]) for m in ("detected", "false_reject_test")}
                                for k in ("theory", "heldout")}
        full = [r["full"] for r in rs]
        s["exit_accuracy"] = np.mean([_aligned(f, f["exit_accuracy"]) for f in full], axis=0).tolist()
        s["id_false_reject"] = {k: np.mean([_aligned(f, f["id_false_reject"][k]) for f in full], axis=0).tolist()
                                for k in full[0]["id_false_reject"]}
        s["conformal"] = {str(l): {m: np.mean([_aligned(f, f["conformal"][str(l)][m]) for f in full], axis=0).tolist()
                                   for m in ("coverage", "mean_size", "empty")} for l in LEVELS}
        s["conformal"]["n_calibration"] = [f["conformal"]["n_calibration"] for f in full]
        cross: dict[str, Any] = {}
        for src in full[0]["cross"]:
            vals = [f["cross"][src] for f in full]
            if "refused" in vals[0]:
                cross[src] = {"refused": vals[0]["refused"], "either": 1.0, **{f"either_{n}": 1.0 for n in RMD_ANCHORED},
                              "domain_heldout": 1.0, "domain_theory": 1.0}
            else:
                keys = dict.fromkeys(k for v in vals for k in v if k != "n")  # later runs may record more
                cross[src] = {}
                for k in keys:
                    have = [v[k] for v in vals if k in v]
                    cross[src][k] = ({c: _mean([h[c] for h in have]) for c in have[0]} if isinstance(have[0], dict)
                                     else _mean(have))
        s["cross"] = cross
        out["datasets"][d] = s
    # headline numbers
    loco_sets = [d for d in sets if "maha" in out["datasets"][d]]
    first_net = {d: 1 for d in loco_sets}  # after _aligned: exit 0, then the network exits
    head: dict[str, Any] = {}
    for name in SCORES:
        ls = [d for d in loco_sets if name in out["datasets"][d]]
        if ls:
            head[name] = {
                "auroc_last": _mean([out["datasets"][d][name]["auroc"][-1] for d in ls]),
                "auroc_first_network_exit": _mean([out["datasets"][d][name]["auroc"][first_net[d]] for d in ls
                                                    if first_net[d] < len(out["datasets"][d][name]["auroc"])]),
                "auroc_exit0": _mean([out["datasets"][d][name]["auroc"][0] for d in ls]),
                "detected_val_threshold_last": _mean([out["datasets"][d][name]["detected_val_threshold"][-1] for d in ls]),
                "detected_at_5pct_test_last": _mean([out["datasets"][d][name]["detected_at_5pct_test"][-1] for d in ls]),
                "sets": len(ls), "runs": sum(out["datasets"][d][name]["runs"] for d in ls),
            }
    xs = [v for d in sets for k, v in out["datasets"][d]["cross"].items() if k.startswith("set:")]
    js = [v for d in sets for k, v in out["datasets"][d]["cross"].items() if k.startswith("junk:")]
    head["cross_domain_either"] = _mean([v["either"] for v in xs])
    for name in RMD_ANCHORED:
        xa = [v for v in xs if f"either_{name}" in v]  # pairs whose runs recorded it (and refused pairs)
        head[f"cross_domain_either_{name}"] = _mean([v[f"either_{name}"] for v in xa])
        head[f"cross_domain_either_{name}_pairs"] = len(xa)
    head["cross_domain_pairs"] = len(xs)
    head["cross_domain_domain_heldout"] = _mean([v["domain_heldout"] for v in xs])
    head["junk_either"] = _mean([v["either"] for v in js])
    head["junk_domain_heldout"] = _mean([v["domain_heldout"] for v in js])
    for l in LEVELS:
        # sets whose calibration split is large enough for a set smaller than every class at this
        # level (MAPIE's rule n >= 1/alpha - 1; below it the set is all classes, coverage 1)
        enough = [d for d in sets if not any(l in r["full"]["conformal"]["too_few"] for r in records if r["dataset"] == d)]
        head[f"sets_enough_{l}"] = enough
        for tag, e in (("exit0", 0), ("last", -1)):
            head[f"coverage_{l}_{tag}"] = _mean([out["datasets"][d]["conformal"][str(l)]["coverage"][e] for d in sets])
            head[f"size_{l}_{tag}"] = _mean([out["datasets"][d]["conformal"][str(l)]["mean_size"][e] for d in sets])
            head[f"coverage_{l}_{tag}_enough"] = _mean([out["datasets"][d]["conformal"][str(l)]["coverage"][e] for d in enough])
    out["headline"] = head
    return out


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def report(summary: dict[str, Any], command: str) -> str:
    h = summary["headline"]
    lines = ["# Unknown-class, out-of-domain and conformal benchmark (issue 17)", "",
             f"Command: `{command}`  ", (f"Seeds: {summary['seeds']}; training {TRAIN_CONFIG}, skip_exits=False; "
                                        "protocol in the docstring of benchmarks/ood.py."), "",
             "## Leave-one-class-out (sets with >= 3 classes), mean over held-out classes and seeds", "",
             "| score | AUROC exit 0 | AUROC first network exit | AUROC last exit | detected @ val threshold (last) | detected @ 5% FRR on test (last) | sets / runs |",
             "|---|---|---|---|---|---|---|"]
    for name in SCORES:
        if name in h:
            v = h[name]
            lines.append(f"| {name} | {_f(v['auroc_exit0'])} | {_f(v['auroc_first_network_exit'])} | {_f(v['auroc_last'])} | "
                         f"{_f(v['detected_val_threshold_last'])} | {_f(v['detected_at_5pct_test_last'])} | {v['sets']} / {v['runs']} |")
    lines += ["", "AUROC per exit (exit 0 = linear exit, then the MiniRocket exit where there is one, then the network exits):", "",
              "| dataset | " + " | ".join(SCORES) + " | domain det. (held-out limits) | domain FRR |", "|---|" + "---|" * (len(SCORES) + 2)]
    for d, s in summary["datasets"].items():
        if "maha" not in s:
            continue
        cells = [" ".join(f"{a:.2f}" for a in s[n]["auroc"]) if n in s else "-" for n in SCORES]
        dl = s["domain_loco"]["heldout"]
        lines.append(f"| {d} | " + " | ".join(cells) + f" | {_f(dl['detected'])} | {_f(dl['false_reject_test'])} |")
    lines += ["", f"False-reject rate on in-distribution test spectra, threshold from validation (target 0.05), {DEFAULT} per exit:", "",
              f"| dataset | {DEFAULT} per exit | domain (theory limits) | domain (held-out limits) | accuracy per exit |", "|---|---|---|---|---|"]
    for d, s in summary["datasets"].items():
        fr = s["id_false_reject"]
        lines.append(f"| {d} | {' '.join(f'{a:.2f}' for a in fr.get(DEFAULT, fr['maha']))} | {_f(fr['domain_theory'][0] if isinstance(fr['domain_theory'], list) else fr['domain_theory'])} | "
                     f"{_f(fr['domain_heldout'][0] if isinstance(fr['domain_heldout'], list) else fr['domain_heldout'])} | "
                     f"{' '.join(f'{a:.2f}' for a in s['exit_accuracy'])} |")
    lines += ["", "## Cross-domain and junk spectra (share flagged; refused = 1)", "",
              (f"Mean over the {h['cross_domain_pairs']} (model set, other set) pairs, share flagged by the domain check "
               f"or unknown at the last exit: {_f(h.get(f'cross_domain_either_{LIBRARY}'))} with the library's default "
               f"({LIBRARY}: anchored, weight {DEFAULT_ANCHOR_WEIGHT:g}), "
               f"{_f(h['cross_domain_either_rmd_anchor_w2'])} with weight 2, {_f(h['cross_domain_either_rmd_anchor'])} with weight 1, "
               f"{_f(h['cross_domain_either'])} with rmd alone; the domain check alone {_f(h['cross_domain_domain_heldout'])}. Junk spectra "
               f"{_f(h['junk_either'])} (domain check alone {_f(h['junk_domain_heldout'])})."), "",
              f"| model set | source | refused | domain (theory) | domain (held-out) | unknown last exit ({DEFAULT}) | either ({DEFAULT}) | either ({LIBRARY}) |",
              "|---|---|---|---|---|---|---|---|"]
    partial = []
    for d, s in summary["datasets"].items():
        for src, v in s["cross"].items():
            if "refused" in v:
                lines.append(f"| {d} | {src} | yes ({v['refused'][:40]}) | 1 | 1 | 1 | 1 | 1 |")
                continue
            lines.append(f"| {d} | {src} | no | {_f(v['domain_theory'])} | {_f(v['domain_heldout'])} | "
                         f"{_f(v.get(f'unknown_last_{DEFAULT}', v['unknown_last_maha']))} | {_f(v['either'])} | "
                         f"{_f(v.get(f'either_{LIBRARY}'))} |")
            if (v.get(f"either_{LIBRARY}") or 0.0) < 0.99 and any(k.endswith("_by_class") for k in v):
                partial.append((d, src, v))
    if partial:
        lines += ["", f"Pairs flagged below 0.99 ({LIBRARY}), per class of the source set (domain check held-out limits / "
                  "either):", ""]
        for d, src, v in partial:
            cls = ", ".join(f"{c} {_f(v['domain_heldout_by_class'][c])} / {_f(e)}" for c, e in v[f"either_{LIBRARY}_by_class"].items())
            lines.append(f"- {d} model, {src}: {cls}")
    lines += ["", "## Conformal prediction sets (MAPIE, LAC, calibrated on the validation split)", "",
              (f"Mean coverage at 0.9: exit 0 {_f(h['coverage_0.9_exit0'])} (mean set size {_f(h['size_0.9_exit0'])}), "
               f"last exit {_f(h['coverage_0.9_last'])} (size {_f(h['size_0.9_last'])}); at 0.95: exit 0 "
               f"{_f(h['coverage_0.95_exit0'])} (size {_f(h['size_0.95_exit0'])}), last exit {_f(h['coverage_0.95_last'])} "
               f"(size {_f(h['size_0.95_last'])}). With fewer than 20 calibration spectra the 0.95 level puts every class "
               "in the set (MAPIE's sample-size rule)."), "",
              *[(f"On the sets whose calibration split is large enough at {l} ({', '.join(h[f'sets_enough_{l}'])}): "
                 f"coverage exit 0 {_f(h[f'coverage_{l}_exit0_enough'])}, last exit {_f(h[f'coverage_{l}_last_enough'])}.  ")
                for l in LEVELS], "",
              "| dataset | n calib | exit | cov 0.9 | size 0.9 | empty 0.9 | cov 0.95 | size 0.95 | empty 0.95 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for d, s in summary["datasets"].items():
        c9, c95 = s["conformal"]["0.9"], s["conformal"]["0.95"]
        for tag, e in (("0", 0), ("last", -1)):
            lines.append(f"| {d} | {s['conformal']['n_calibration']} | {tag} | {c9['coverage'][e]:.3f} | {c9['mean_size'][e]:.2f} | "
                         f"{c9['empty'][e]:.3f} | {c95['coverage'][e]:.3f} | {c95['mean_size'][e]:.2f} | {c95['empty'][e]:.3f} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("/work/shared/datasets"))
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--dump", type=Path, default=None, help="also save the raw rmd scores behind each record here (npz)")
    p.add_argument("--max-epochs", type=int, default=TRAIN_CONFIG["max_epochs"],
                   help=f"network training epochs (default {TRAIN_CONFIG['max_epochs']}; write other values to another --out)")
    args = p.parse_args(argv)
    TRAIN_CONFIG["max_epochs"] = args.max_epochs
    global DUMP
    DUMP = args.dump
    args.out.mkdir(parents=True, exist_ok=True)
    jsonl = args.out / "records.jsonl"
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()] if jsonl.is_file() else []
    done = {(r["dataset"], r["seed"]) for r in records}
    if not args.report_only:
        for seed in args.seeds:
            for name in args.datasets:
                if (name, seed) in done:
                    continue
                t0 = time.perf_counter()
                rec = run_pair(name, seed, args.data_dir)
                rec["wall_s"] = time.perf_counter() - t0
                with jsonl.open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                records.append(rec)
                print(f"{name} seed {seed}: {rec['wall_s']:.0f} s", flush=True)
    if not records:
        print("no records yet")
        return 0
    summary = summarise(records)
    command = "OMP_NUM_THREADS=1 python benchmarks/ood.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.report_only:  # name the run that produced the records, not this rewrite
        seeds = " ".join(str(x) for x in sorted({r["seed"] for r in records}))
        command = f"OMP_NUM_THREADS=1 python benchmarks/ood.py --seeds {seeds}  (report rewritten with --report-only)"
    meta = {"command": command, "python": platform.python_version(), "train_config": TRAIN_CONFIG,
            "reject_rate": REJECT_RATE, "levels": list(LEVELS)}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "summary": summary, "records": records}, indent=1))
    (args.out / "report.md").write_text(report(summary, command))
    print(json.dumps(summary["headline"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
