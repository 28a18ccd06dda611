"""Which unknown-class score for the exits that see the spectrum (exit 0, the MiniRocket exit)?

Leave-one-class-out on every dev set with >= 3 classes, seeds 0-2, splits as
``scai.bench.splits.split_indices(spectra, seed, 0.1, 0.1)`` (qsi-tk sets stratified 8:1:1, UCR sets
the official split with 10 % of train as validation):

* training rows = train + val without class k; in-distribution = the test rows of the other
  classes; unknown = every spectrum of class k (none was trained on);
* no network is trained: the preprocessing and exit 0 are fitted the way the estimator does
  (``SCAIClassifier._auto_pipeline``: ``preprocessing="auto"``, ``exit0="auto"``), and the scores
  are computed on the preprocessed spectra (what exit 0 and the MiniRocket exit classify);
* AUROC (in-distribution test vs unknown) of each score fitted on all training rows;
* the detection rate at a 5 % false-reject rate with the threshold from out-of-fold
  in-distribution scores, as ``fit_reliability`` calibrates under cross-fitting (the default):
  5 stratified folds of the training rows (``scai.training.cross_fit.stratified_folds``), the
  scorer fitted on 4 and scoring the 5th (the preprocessing fitted on all training rows, as in the
  estimator); threshold ``calibrate_threshold(oof, 0.05)``; and the false-reject rate that
  threshold has on the in-distribution test rows. For msp / energy the out-of-fold scores come
  from exit 0 refitted on 4 folds (its chosen kind and C / PLS components).

Scores (higher = more unknown; scikit-learn / SciPy for PCA, covariance and neighbours):

* ``rmd`` -- the relative Mahalanobis distance (Ren et al., 2021) with the library's settings
  (:class:`scai.inference.ood.MahalanobisScorer`, ``relative=True``, OAS, 64 PCs): minus the
  distance to one Gaussian of all training rows; the library's default since this benchmark;
* ``maha_oas64`` -- the plain distance with the same settings;
* ``maha`` -- the plain distance as the library had it before (Ledoit-Wolf, 32 PCs);
* ``maha_q`` -- ``maha`` plus the Q residual off its 32-PC subspace, each divided by its mean on
  the training rows;
* ``simca{a}`` -- SIMCA-style class models: per class a PCA of ``a`` components (capped at
  n_c - 2), Hotelling T² and Q of the spectrum to that class model, each divided by its mean on
  the class's training spectra, summed; the score is the minimum over classes;
* ``ddsimca{a}`` -- the same class models with the DD-SIMCA statistic (Pomerantsev 2008):
  ``Nh*h/h0 + Nv*v/v0`` with moment-estimated degrees of freedom, divided by its chi² 95 % quantile
  (so classes are comparable), minimum over classes;
* ``pca_t2q{a}`` -- one global PCA of ``a`` components on the training rows, T²/mean + Q/mean;
* ``knn{k}`` -- distance to the k-th nearest training spectrum in a whitened 32-PC space;
* ``msp`` / ``energy`` -- of exit 0's logits (temperature 1), the baseline;
* ``max(maha,msp)`` -- exploratory, not one of the candidates asked for: the larger of ``maha`` and
  ``msp``, each standardised by the mean and standard deviation of its out-of-fold
  in-distribution scores (the same out-of-fold scores then set its threshold, so its calibration
  is slightly optimistic).

Usage (one thread; about 10-15 minutes on one core)::

    OMP_NUM_THREADS=1 python benchmarks/ood_exit0.py            # caches the fitted exit 0 per run
    OMP_NUM_THREADS=1 python benchmarks/ood_exit0.py --report-only

Writes ``benchmarks/results/ood_exit0/results.json`` and ``report.md``; the per-run preprocessed
spectra are cached under ``--cache`` (not committed).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ood_exit0"
DATA_DIR = ROOT.parent / "shared" / "datasets"
DATASETS = ("milk_adulteration", "milk_species", "cheese_brands", "raspberry_origin", "astragalus_origin",
            "ucr_meat", "chemotools_coffee")  # the dev sets with >= 3 classes
RAMAN = {"milk_adulteration", "milk_species", "cheese_brands", "raspberry_origin", "astragalus_origin"}
REJECT_RATE = 0.05
N_FOLDS = 5
N_PCS = 32


# --------------------------------------------------------------------------- the fitted runs
def prepare(name: str, seed: int, k: int, cache: Path) -> dict[str, np.ndarray]:
    """Preprocessing + exit 0 on the training rows without class k (cached)."""
    f = cache / f"{name}_{seed}_{k}.npz"
    if f.exists():
        d = np.load(f, allow_pickle=False)
        return {key: d[key] for key in d.files}
    from scai import SCAIClassifier
    from scai.bench.splits import split_indices
    from scai.data import read

    sp = read(DATA_DIR / f"{name}.npz", axis_unit="cm-1" if name in RAMAN else "index")
    (tr, va, te), _ = split_indices(sp, seed, 0.1, 0.1)
    labels = np.asarray(sp.class_names)[sp.y]
    rows = np.sort(np.concatenate([tr, va]))
    rows = rows[sp.y[rows] != k]
    te_in = te[sp.y[te] != k]
    unk = np.flatnonzero(sp.y == k)
    t0 = time.perf_counter()
    clf = SCAIClassifier(random_state=seed)
    X = sp.X[rows]
    clf.classes_, y = np.unique(labels[rows], return_inverse=True)
    clf.axis_ = clf._validated_axis(sp.axis, X.shape[1])
    clf.axis_unit_ = sp.axis_unit
    clf.network_ = type("Net", (), {"n_exits": 5})()  # _auto_pipeline only asks whether there is more than one exit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe, Z, fit0 = clf._auto_pipeline(X, y)
        Zin = np.asarray(pipe.transform(sp.X[te_in]), np.float32)
        Zunk = np.asarray(pipe.transform(sp.X[unk]), np.float32)
        from scai.training.cross_fit import stratified_folds

        folds = stratified_folds(y, N_FOLDS, seed)
        # exit 0 refitted on K-1 folds with its chosen kind and hyperparameter: out-of-fold logits
        oof = np.zeros((len(y), len(clf.classes_)), np.float64)
        for a, b in folds:
            oof[b] = _refit(Z[a], y[a], fit0, len(clf.classes_), seed).logits(Z[b])
    out = {"Z": Z, "y": y, "Zin": Zin, "Zunk": Zunk, "l_in": fit0.logits(Zin), "l_unk": fit0.logits(Zunk),
           "l_oof": oof, "fold": np.concatenate([np.full(len(b), i) for i, (_, b) in enumerate(folds)])[
               np.argsort(np.concatenate([b for _, b in folds]))],
           "meta": np.array(json.dumps({"set": name, "seed": seed, "k": k, "n_train": len(y), "n_in": len(te_in),
                                        "n_unknown": len(unk), "preprocessing": clf.preprocessing_selection_["chosen"],
                                        "exit0": fit0.kind, "params": fit0.params,
                                        "fit_s": round(time.perf_counter() - t0, 1)}))}
    np.savez(f, **out)
    return out


def _refit(Z: np.ndarray, y: np.ndarray, fit0: Any, C: int, seed: int) -> Any:
    from scai.training.linear_exit import fit_linear_exit

    if fit0.kind == "logistic":
        return fit_linear_exit(Z, y, kind="logistic", seed=seed, n_classes=C, c_grid=(float(fit0.params["C"]),), cv=2)
    # PLS: at most the chosen number of components (a 2-fold inner CV picks up to it)
    return fit_linear_exit(Z, y, kind="pls", seed=seed, n_classes=C, max_components=int(fit0.params["n_components"]), cv=2)


# --------------------------------------------------------------------------- candidate scores
# Each factory returns fit(Z, y) -> score(Z') -> (n,) array, higher = more unknown.
Scorer = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


def maha(Z: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    from scai.inference.ood import MahalanobisScorer

    return MahalanobisScorer(shrinkage="ledoit_wolf", n_components=N_PCS).fit(Z, y).score


def library(score: str) -> Scorer:
    """The library's detector settings for ``score`` (what ``ood="auto"`` fits)."""
    def fit(Z: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        from scai.inference.ood import UnknownDetector

        return UnknownDetector(score=score).new_scorer().fit(Z, y).score

    return fit


def _pca(Z: np.ndarray, a: int) -> Any:
    from sklearn.decomposition import PCA

    return PCA(n_components=max(1, min(a, Z.shape[1], len(Z) - 1)), svd_solver="full").fit(Z)


def _t2_q(pca: Any, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    T = pca.transform(Z)
    t2 = np.sum(T**2 / pca.explained_variance_, axis=1)
    q = np.sum((Z - pca.inverse_transform(T)) ** 2, axis=1)
    return t2, q


def maha_q(Z: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    from scai.inference.ood import MahalanobisScorer

    m = MahalanobisScorer(shrinkage="ledoit_wolf", n_components=N_PCS).fit(Z, y)
    P, mu = m.pca_components_, m.pca_mean_

    def q(X: np.ndarray) -> np.ndarray:
        D = X - mu
        return np.sum((D - (D @ P.T) @ P) ** 2, axis=1)

    d0, q0 = m.score(Z).mean(), q(Z).mean()
    return lambda X: m.score(X) / d0 + q(X) / q0


def simca(a: int, dd: bool = False) -> Scorer:
    def fit(Z: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        from scipy.stats import chi2

        models = []
        for c in np.unique(y):
            Zc = Z[y == c]
            pca = _pca(Zc, min(a, len(Zc) - 2))
            t2, q = _t2_q(pca, Zc)
            h0, v0 = t2.mean(), q.mean()
            if dd:  # DD-SIMCA: scaled chi² with moment-estimated degrees of freedom
                nh = max(1.0, round(2 * h0**2 / max(t2.var(ddof=1), 1e-300)))
                nv = max(1.0, round(2 * v0**2 / max(q.var(ddof=1), 1e-300)))
                models.append((pca, h0, v0, nh, nv, chi2.ppf(0.95, nh + nv)))
            else:
                models.append((pca, h0, v0, 1.0, 1.0, 2.0))

        def score(X: np.ndarray) -> np.ndarray:
            out = []
            for pca, h0, v0, nh, nv, lim in models:
                t2, q = _t2_q(pca, X)
                out.append((nh * t2 / h0 + nv * q / v0) / lim)
            return np.min(out, axis=0)

        return score

    return fit


def pca_t2q(a: int) -> Scorer:
    def fit(Z: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        pca = _pca(Z, a)
        t2, q = _t2_q(pca, Z)
        h0, v0 = t2.mean(), q.mean()

        def score(X: np.ndarray) -> np.ndarray:
            t, r = _t2_q(pca, X)
            return t / h0 + r / v0

        return score

    return fit


def knn(k: int) -> Scorer:
    def fit(Z: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        from sklearn.decomposition import PCA
        from sklearn.neighbors import NearestNeighbors

        pca = PCA(n_components=min(N_PCS, Z.shape[1], len(Z) - 1), whiten=True, svd_solver="full").fit(Z)
        nn = NearestNeighbors(n_neighbors=min(k, len(Z))).fit(pca.transform(Z))
        return lambda X: nn.kneighbors(pca.transform(X))[0][:, -1]

    return fit


FEATURE_SCORES: dict[str, Scorer] = {
    "rmd": library("relative_mahalanobis"), "maha_oas64": library("mahalanobis"),
    "maha": maha, "maha_q": maha_q,
    "simca3": simca(3), "simca8": simca(8), "ddsimca3": simca(3, True), "ddsimca8": simca(8, True),
    "pca_t2q8": pca_t2q(8), "pca_t2q32": pca_t2q(32), "knn1": knn(1), "knn5": knn(5),
}
LOGIT_SCORES = ("msp", "energy")
#: Exploratory, beyond the candidates asked for: the larger of two scores, each standardised by the
#: mean and standard deviation of its out-of-fold in-distribution scores.
COMBINED = {"max(maha,msp)": ("maha", "msp")}
ALL_SCORES = (*FEATURE_SCORES, *LOGIT_SCORES, *COMBINED)


def _logit_score(name: str, logits: np.ndarray) -> np.ndarray:
    from scai.inference.ood import energy_score, msp_score
    from scipy.special import softmax

    return msp_score(softmax(logits, axis=-1)) if name == "msp" else energy_score(logits)


def evaluate(d: dict[str, np.ndarray]) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from scai.inference.ood import calibrate_threshold

    Z, y, Zin, Zunk, fold = d["Z"].astype(np.float64), d["y"], d["Zin"], d["Zunk"], d["fold"]
    n_in = len(Zin)
    truth = np.r_[np.zeros(n_in), np.ones(len(Zunk))]
    res: dict[str, Any] = {}
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in ALL_SCORES:
        t0 = time.perf_counter()
        if name in COMBINED:
            a, b = COMBINED[name]
            (sa, oa), (sb, ob) = raw[a], raw[b]
            z = lambda v, o: (v - o.mean()) / max(o.std(), 1e-300)  # noqa: E731
            s, oof = np.maximum(z(sa, oa), z(sb, ob)), np.maximum(z(oa, oa), z(ob, ob))
        elif name in FEATURE_SCORES:
            s = FEATURE_SCORES[name](Z, y)(np.vstack([Zin, Zunk]).astype(np.float64))
            oof = np.zeros(len(y))
            for i in np.unique(fold):
                m = fold == i
                oof[m] = FEATURE_SCORES[name](Z[~m], y[~m])(Z[m])
        else:
            s = _logit_score(name, np.vstack([d["l_in"], d["l_unk"]]).astype(np.float64))
            oof = _logit_score(name, d["l_oof"])
        raw[name] = (s, oof)
        thr = calibrate_threshold(oof, REJECT_RATE)
        res[name] = {"auroc": float(roc_auc_score(truth, s)), "detected": float(np.mean(s[n_in:] > thr)),
                     "frr_test": float(np.mean(s[:n_in] > thr)), "s": round(time.perf_counter() - t0, 3)}
    return res


# --------------------------------------------------------------------------- report
def _result(mean: dict[str, dict[str, float]]) -> str:
    best = max(mean, key=lambda m: mean[m]["auroc"])
    return (f"**Result:** the best mean AUROC is `{best}`'s, {mean[best]['auroc']:.3f} (detected at the 5 % "
            f"threshold {mean[best]['detected']:.3f}); the library's default (`rmd`) {mean['rmd']['auroc']:.3f}; "
            f"the plain distance as the library had it before (`maha`) {mean['maha']['auroc']:.3f}, with the same "
            f"settings as `rmd` (`maha_oas64`) {mean['maha_oas64']['auroc']:.3f}; the baseline `msp` "
            f"{mean['msp']['auroc']:.3f}.")


def summarise(records: list[dict[str, Any]], command: str) -> str:
    sets = [s for s in DATASETS if any(r["set"] == s for r in records)]
    per: dict[str, dict[str, dict[str, float]]] = {}
    for s in sets:
        rs = [r for r in records if r["set"] == s]
        per[s] = {m: {q: float(np.mean([r["scores"][m][q] for r in rs])) for q in ("auroc", "detected", "frr_test")}
                  for m in ALL_SCORES}
    mean = {m: {q: float(np.mean([per[s][m][q] for s in sets])) for q in ("auroc", "detected", "frr_test")}
            for m in ALL_SCORES}
    L = ["# Unknown-class score of the exits that see the spectrum (exit 0, MiniRocket exit)", "",
         f"Command: `{command}`  ",
         f"Runs: {len(records)} (set x seed x held-out class); python {platform.python_version()}, one thread.  ",
         "Protocol: the docstring of `benchmarks/ood_exit0.py` (leave-one-class-out; preprocessing and exit 0 "
         "fitted as `SCAIClassifier._auto_pipeline`; no network; thresholds at 5 % false-reject on 5-fold "
         "out-of-fold in-distribution scores of the training rows). Each set's number is the mean over held-out "
         "classes and seeds 0-2; the mean is over sets.", "",
         _result(mean), "",
         "## AUROC (in-distribution test rows vs every spectrum of the held-out class)", "",
         "| score | " + " | ".join(sets) + " | **mean** | min |", "|---|" + "---|" * (len(sets) + 2)]
    order = sorted(ALL_SCORES, key=lambda m: -mean[m]["auroc"])
    for m in order:
        L.append(f"| {m} | " + " | ".join(f"{per[s][m]['auroc']:.3f}" for s in sets)
                 + f" | **{mean[m]['auroc']:.3f}** | {min(per[s][m]['auroc'] for s in sets):.3f} |")
    L += ["", "## Detected unknowns at the out-of-fold 5 % false-reject threshold (and that threshold's "
          "false-reject rate on the in-distribution test rows)", "",
          "| score | " + " | ".join(sets) + " | **mean detected** | mean FRR test |", "|---|" + "---|" * (len(sets) + 2)]
    for m in order:
        L.append(f"| {m} | " + " | ".join(f"{per[s][m]['detected']:.2f} ({per[s][m]['frr_test']:.2f})" for s in sets)
                 + f" | **{mean[m]['detected']:.3f}** | {mean[m]['frr_test']:.3f} |")
    pre = {}
    for r in records:
        pre.setdefault(r["set"], set()).add(f"{r['preprocessing']}/{r['exit0']}")
    L += ["", "Preprocessing / exit 0 chosen: " + "; ".join(f"{s}: {', '.join(sorted(pre[s]))}" for s in sets),
          f"Time: fitting {sum(r['fit_s'] for r in records):.0f} s, scoring "
          f"{sum(sum(v['s'] for v in r['scores'].values()) for r in records):.0f} s "
          "(scoring per score: " + ", ".join(f"{m} {sum(r['scores'][m]['s'] for r in records):.0f}" for m in ALL_SCORES)
          + " s)."]
    (OUT / "results.json").write_text(json.dumps({"command": command, "per_set": per, "mean": mean,
                                                  "records": records}, indent=1))
    text = "\n".join(L) + "\n"
    (OUT / "report.md").write_text(text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cache", type=Path, default=Path("/tmp/scai_ood_exit0_cache"))
    p.add_argument("--report-only", action="store_true", help="rescore the cached runs only")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    records = []
    for seed in args.seeds:
        for name in args.datasets.split(","):
            n_classes = len(np.load(DATA_DIR / f"{name}.npz", allow_pickle=False)["class_names"])
            for k in range(n_classes):
                if args.report_only and not (args.cache / f"{name}_{seed}_{k}.npz").exists():
                    continue
                d = prepare(name, seed, k, args.cache)
                meta = json.loads(str(d["meta"]))
                records.append({**meta, "scores": evaluate(d)})
                print(name, seed, k, meta["fit_s"], round(sum(v["s"] for v in records[-1]["scores"].values()), 1),
                      {m: round(v["auroc"], 3) for m, v in records[-1]["scores"].items()}, flush=True)
    print(summarise(records, "OMP_NUM_THREADS=1 python " + " ".join(["benchmarks/ood_exit0.py", *sys.argv[1:]])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
