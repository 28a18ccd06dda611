"""The paper benchmark: helpers on hand-made curves, and ``scai bench --quick`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import f_oneway

from scai.bench import (
    SCHEMA,
    BenchConfig,
    SplitData,
    allocation_bands,
    allocation_vs_discriminability,
    allocation_vs_intensity,
    build_blocks,
    compute_spent,
    curve_at,
    default_methods,
    discriminability,
    fill_discriminability,
    macs_to_reach,
    mean_curve,
    run_classical,
    select_methods,
    summarize,
    write_report,
)
from scai.cli.main import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _toy_split(scale: np.ndarray | None = None) -> SplitData:
    """Two classes told apart by point 0 only; the other points are wide noise."""
    rng = np.random.default_rng(0)
    n, width = 120, 30
    y = np.repeat([0, 1], n // 2)
    Z = rng.normal(0.0, 1.0, (n, width))
    Z[:, 0] = np.where(y == 1, 3.0, -3.0) + rng.normal(0.0, 0.3, n)
    if scale is not None:
        Z = Z * scale
    Z = Z.astype(np.float32)
    tr, te = np.arange(n) % 3 != 0, np.arange(n) % 3 == 0
    return SplitData(
        name="toy", seed=0, protocol="toy", axis=np.arange(width, dtype=float), axis_unit="index",
        class_names=("a", "b"), Z={"train": Z[tr], "val": Z[te], "test": Z[te]},
        y={"train": y[tr], "val": y[te], "test": y[te]}, preprocessing=[], preprocess_time_s=0.0,
    )


@pytest.mark.parametrize("name", ["svm_rbf", "logreg_snv"])
def test_svm_and_logistic_anchors_standardise_each_point(name: str) -> None:
    """Shrinking the informative point 1000-fold changes nothing for a per-point standardised
    anchor (an unscaled RBF kernel would no longer see it); MACs add W for the scaling."""
    spec = next(m for m in default_methods() if m.name == name)
    cfg = BenchConfig(threads=1)
    shrink = np.ones(30)
    shrink[0] = 1e-3
    plain, shrunk = run_classical(spec, _toy_split(), cfg), run_classical(spec, _toy_split(shrink), cfg)
    assert plain["accuracy"] >= 0.9
    assert shrunk["accuracy"] == pytest.approx(plain["accuracy"], abs=0.03)
    macs = plain["exits"][0]["macs"]
    if name == "logreg_snv":
        assert macs == 30 + 30 * 2  # scaling + one weight per point and class
    else:
        assert (macs - 30) % (30 + 2) == 0 and macs > 30  # scaling + n_sv x (W + classes)


# --------------------------------------------------------------------------- helpers
def test_curve_at_anytime_is_a_step_and_batch_interpolates():
    rows = [{"budget_macs": 10.0, "mean_macs": 10.0, "accuracy": 0.5}, {"budget_macs": 100.0, "mean_macs": 100.0, "accuracy": 0.9}]
    assert curve_at(rows, 5.0, "anytime") is None
    assert curve_at(rows, 50.0, "anytime") == 0.5
    assert curve_at(rows, 1000.0, "anytime") == 0.9
    assert curve_at(rows, np.sqrt(1000.0), "batch") == pytest.approx(0.7)


def test_mean_curve_averages_seeds_on_a_common_grid():
    a = [{"mean_macs": 10.0, "accuracy": 0.4}, {"mean_macs": 100.0, "accuracy": 0.8}]
    b = [{"mean_macs": 10.0, "accuracy": 0.6}, {"mean_macs": 100.0, "accuracy": 1.0}]
    rows = mean_curve([a, b], "batch", n=5)
    assert rows[0]["accuracy"] == pytest.approx(0.5) and rows[-1]["accuracy"] == pytest.approx(0.9)


def test_macs_to_reach_interpolates_and_says_not_reached():
    pts = [(100.0, 0.6), (1000.0, 0.8), (10000.0, 0.9)]
    macs, note = macs_to_reach(pts, 0.7)
    assert note == "interpolated" and macs == pytest.approx(np.sqrt(100.0 * 1000.0))
    assert macs_to_reach(pts, 0.5) == (100.0, "shallowest depth")
    assert macs_to_reach(pts, 0.95) == (None, "not reached")


def test_allocation_bands_find_the_busy_region():
    axis = np.linspace(400.0, 1800.0, 200)
    units = [np.where((axis > 1000) & (axis < 1100), 4.0, 1.0), np.ones(50)]
    bands = allocation_bands(units, axis, top_fraction=0.05)
    assert 990 <= bands[0]["from"] <= bands[0]["to"] <= 1110


def test_discriminability_is_the_one_way_anova_f_of_each_point():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 20)
    Z = rng.normal(size=(60, 12))
    Z[:, 3] += y  # the classes differ at point 3 only
    Z[:, 7] = 2.0  # constant: F undefined -> 0
    f = discriminability(Z, y)
    expected = [f_oneway(*(Z[y == c, j] for c in range(3))).statistic for j in range(12) if j != 7]
    np.testing.assert_allclose(np.delete(f, 7), expected, rtol=1e-3)
    assert f[7] == 0.0 and int(np.argmax(f)) == 3


def test_allocation_vs_discriminability_scores_agreement_and_disagreement():
    axis = np.linspace(400.0, 1800.0, 100)
    f = np.exp(-0.5 * ((axis - 1000.0) / 40.0) ** 2) * 50.0 + 1.0  # one informative band
    same = allocation_vs_discriminability([1.0 + f / 50.0, 1.0 + f[::2] / 50.0], f, axis)
    assert same["spearman"] > 0.95 and same["top_overlap"] == 1.0 and same["holds"]
    assert 900 <= same["f_bands"][0]["from"] <= 1000 <= same["f_bands"][0]["to"] <= 1100  # 10 % of 100 points
    opposite = allocation_vs_discriminability([4.0 - f / 50.0], f, axis)
    assert opposite["spearman"] < -0.95 and opposite["top_overlap"] == 0.0 and not opposite["holds"]
    assert opposite["chance"] == pytest.approx(0.1, abs=0.01)


def test_allocation_vs_intensity_finds_units_saved_at_the_peaks():
    axis = np.linspace(400.0, 1800.0, 200)
    peak = np.exp(-0.5 * ((axis - 1450.0) / 15.0) ** 2) * 6.0 + axis / 1800.0  # one strong band on a gentle ramp
    skip = allocation_vs_intensity([4.0 - peak / 3.0, 4.0 - peak[::2] / 3.0], peak, axis)  # blocks at two resolutions
    assert skip["skip_overlap"] == 1.0 and skip["skips_peaks"]
    assert allocation_vs_intensity([4.0 - peak / 3.0], peak, axis)["spearman"] == pytest.approx(-1.0)
    assert skip["chance"] == pytest.approx(0.05, abs=0.01)
    quietest = skip["quiet_bands"][0]
    inside = (axis >= quietest["from"]) & (axis <= quietest["to"])
    assert quietest["from"] <= 1450.0 <= quietest["to"] and inside.sum() == 10  # 5 % of 200 points
    assert quietest["mean_units"] == pytest.approx(np.mean(4.0 - peak[inside] / 3.0), abs=0.05)  # units, not negated
    spend = allocation_vs_intensity([2.0 + peak / 3.0], peak, axis)  # more units at the peak: none saved there
    assert spend["spearman"] > 0.9 and spend["skip_overlap"] == 0.0 and not spend["skips_peaks"]


def test_methods_cover_the_paper_and_the_anchors():
    names = {m.name for m in default_methods()}
    assert {"scai", "scai_plus", "scai_plus_nokd", "svm_rbf", "pls_da", "logreg_snv", "minirocket"} <= names
    for family in ("resnet1d", "drsn_cs", "drsn_cw"):
        assert sum(n.startswith(family + "_d") for n in names) >= 4
    assert [m.name for m in select_methods(default_methods((1, 2)), ["resnet1d"])] == ["resnet1d_d1", "resnet1d_d2"]
    with pytest.raises(ValueError, match="unknown method"):
        select_methods(default_methods(), ["nope"])


# --------------------------------------------------------------------------- end to end
def _bench(args: list[str]) -> int:
    return main(["bench", *args])


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "paper"
    assert _bench(["--quick", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_quick_run_writes_results_with_the_schema(quick_run: Path):
    results = json.loads((quick_run / "results.json").read_text())
    assert results["schema"] == SCHEMA
    runs = results["results"]["milk_adulteration"]
    expected = {m.name for m in default_methods((1, 2), quick=True)}
    assert set(runs) == expected
    info = results["datasets"]["milk_adulteration"]
    assert "8:1:1" in info["protocol"] and len(info["axis"]) == 1738
    for method, by_seed in runs.items():
        run = by_seed["0"]
        for key in ("exits", "anytime", "budgeted_batch", "accuracy", "train_time_s", "inference_time_s", "cpu_time_s"):
            assert key in run, (method, key)
        assert 0.0 <= run["accuracy"] <= 1.0 and run["exits"][-1]["accuracy"] == run["accuracy"]
        if run["kind"] == "adaptive":
            assert len(run["exits"]) == 4 and run["anytime"] and run["budgeted_batch"] and run["history"]
            assert all(len(e["val_acc"]) == 4 for e in run["history"])
        elif run["kind"] == "static":
            assert len(run["exits"]) == 1 and run["exits"][0]["macs"] > 0
    assert len(runs["scai_plus"]["0"]["allocation"]) == 4
    assert len(info["f_score"]["0"]) == len(info["axis"]) and max(info["f_score"]["0"]) > 0


@pytest.mark.slow
def test_discriminability_is_refilled_for_results_that_predate_it(quick_run: Path):
    results = json.loads((quick_run / "results.json").read_text())
    stored = results["datasets"]["milk_adulteration"].pop("f_score")
    messages: list[str] = []
    assert fill_discriminability(results, log=messages.append) == 1 and not messages
    np.testing.assert_allclose(results["datasets"]["milk_adulteration"]["f_score"]["0"], stored["0"], rtol=1e-3)
    for part in ("datasets", "results"):  # a dataset that cannot be loaded here: said, not raised
        results[part]["no_such_set"] = results[part].pop("milk_adulteration")
    results["datasets"]["no_such_set"].pop("f_score")
    assert fill_discriminability(results, log=messages.append) == 0
    assert "no_such_set" in messages[0] and "claim (d)" in messages[0]


@pytest.mark.slow
def test_quick_run_writes_reports_and_figures(quick_run: Path):
    md = (quick_run / "report.md").read_text(encoding="utf-8")
    html = (quick_run / "report.html").read_text(encoding="utf-8")
    labels = ["SCAI", "SCAI+", "SCAI+ w/o KD", "ResNet-1D (1 unit)", "ResNet-1D (2 units)", "DRSN-CS (1 unit)",
              "DRSN-CW (2 units)", "SVM-RBF", "PLS-DA", "logistic (SNV)", "MiniRocket"]
    table = md.split("## Final-exit test accuracy")[1].split("##")[0]
    for label in labels:
        assert f"| {label} |" in table, label
    assert table.count("\n| ") == 1 + 13  # header + one row per method
    for claim in ("(a)", "(b)", "(c)", "(d)"):
        assert claim in md
    assert "Spearman ρ(units, F)" in md and "Most discriminative (ANOVA F" in md
    figures = sorted((quick_run / "figures").glob("*.png"))
    assert {p.name.split("_")[0] for p in figures} == {"fig9a", "fig9b", "fig10", "fig11"}
    for png in figures:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, png
        assert f"figures/{png.name}" in md
    assert html.count('src="data:image/png;base64,') == len(figures)
    assert "<table>" in html and "figures/" not in html


@pytest.mark.slow
def test_resume_skips_finished_runs_and_report_only_rerenders(quick_run: Path, capsys: pytest.CaptureFixture[str]):
    before = (quick_run / "results.json").read_text()
    assert _bench(["--quick", "--out", str(quick_run), "--resume"]) == 0
    assert "seed=0" not in capsys.readouterr().out  # nothing was re-run
    assert json.loads((quick_run / "results.json").read_text()) == json.loads(before)
    (quick_run / "report.md").unlink()
    assert _bench(["--quick", "--out", str(quick_run), "--report-only"]) == 0
    assert (quick_run / "report.md").is_file()


@pytest.mark.slow
def test_report_counts_compute_and_marks_methods_run_on_fewer_seeds(quick_run: Path, tmp_path: Path):
    results = json.loads((quick_run / "results.json").read_text())
    runs = results["results"]["milk_adulteration"]
    extra = json.loads(json.dumps(runs["scai_plus"]["0"]))  # a second seed of SCAI+ only
    extra.update(seed=1, cpu_time_s=100.0, train_time_s=60.0, inference_time_s=0.5, accuracy=0.25)
    runs["scai_plus"]["1"] = extra
    cpu_by_hand = sum(r["cpu_time_s"] for by_seed in runs.values() for r in by_seed.values())
    n_runs = sum(len(by_seed) for by_seed in runs.values())
    spent = compute_spent(results, "milk_adulteration")
    assert spent["runs"] == n_runs and spent["seeds"] == [0, 1]
    assert spent["cpu_time_s"] == pytest.approx(cpu_by_hand)
    assert spent["cpu_time_s_per_seed"][1] == pytest.approx(100.0)
    assert spent["cpu_time_s_per_seed"][0] == pytest.approx(cpu_by_hand - 100.0)
    write_report(results, tmp_path)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    table = md.split("## Final-exit test accuracy")[1].split("##")[0]
    scai_plus_row = next(line for line in table.splitlines() if line.startswith("| SCAI+ |"))
    mean = (runs["scai_plus"]["0"]["accuracy"] + 0.25) / 2
    assert f"{mean:.3f} ±" in scai_plus_row and "seeds" not in scai_plus_row  # complete: two of two
    svm_row = next(line for line in table.splitlines() if line.startswith("| SVM-RBF |"))
    assert "(1 of 2 seeds)" in svm_row  # ran on one seed only: said, not averaged silently
    assert "## Compute spent" in md and f"| milk_adulteration | {n_runs} | 0,1 |" in md


@pytest.mark.slow
def test_claim_b_is_not_tested_without_resnet_runs(quick_run: Path):
    results = json.loads((quick_run / "results.json").read_text())
    b = summarize(results)["datasets"]["milk_adulteration"]["claim_b"]
    assert b is not None and b["target_accuracy"] == pytest.approx(results["results"]["milk_adulteration"]["scai_plus"]["0"]["accuracy"])
    # how far "not reached" was looked for: the deepest ResNet-1D's MACs over SCAI+'s
    deepest = max(r["0"]["exits"][-1]["macs"] for m, r in results["results"]["milk_adulteration"].items() if m.startswith("resnet1d_"))
    assert b["deepest_ratio"] == pytest.approx(deepest / b["scai_plus_macs"])
    for method in [m for m in results["results"]["milk_adulteration"] if m.startswith("resnet1d_")]:
        del results["results"]["milk_adulteration"][method]
    # no ResNet-1D ran: "no depth reaches SCAI+" would be vacuous, so the claim is not tested (not "holds")
    assert summarize(results)["datasets"]["milk_adulteration"]["claim_b"] is None


def test_claim_a_is_tabled_per_dataset_method_and_setting():
    def comparison(method: str, setting: str, win: bool) -> dict:
        return {"method": method, "setting": setting, "baseline": "resnet1d", "macs": 1e6, "baseline_acc": 0.9,
                "acc": 0.95 if win else 0.8, "win": win}

    made = [comparison("scai_plus", "anytime", w) for w in (True, True, False)] + [comparison("scai", "batch", False)]
    summary = {"datasets": {"toy": {"table": [], "claim_a": {"comparisons": made, "wins": 2, "losses": 2, "skipped": 0},
                                    "claim_b": None, "claim_c": None, "claim_d": None}}}
    results = {"config": {"seeds": [0], "epochs": 1, "patience": 1, "batch_size": 1, "depths": [2], "threads": 1},
               "environment": {"scai": "x", "torch": "x", "sklearn": "x", "cpu_count": 1}, "mac_convention": "MACs",
               "results": {}, "datasets": {}}
    blocks = build_blocks(results, summary, {})
    text = next(b[1] for b in blocks if b[0] == "p" and b[1].startswith("**(a)"))
    assert "does not reproduce" in text and "at least as accurate in 2 of 4 comparisons" in text
    table = next(b for b in blocks if b[0] == "table" and b[1][0] == "dataset" and "SCAI+ anytime" in b[1])
    assert table[1] == ["dataset", "SCAI+ anytime", "SCAI+ batch", "SCAI anytime", "SCAI batch"]
    assert table[2] == [["toy", "2 / 3", "-", "-", "0 / 1"]]


def test_report_only_without_results_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert _bench(["--quick", "--out", str(tmp_path), "--report-only"]) == 2
    assert "results.json does not exist" in capsys.readouterr().err


def _split_by_method(results: dict, methods: set[str]) -> dict:
    part = json.loads(json.dumps(results))
    for ds in part["results"]:
        part["results"][ds] = {m: v for m, v in part["results"][ds].items() if m in methods}
    part["config"]["methods"] = sorted(methods)
    return part


def test_merge_combines_runs_done_apart_and_refuses_duplicates(quick_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    whole = json.loads((quick_run / "results.json").read_text())
    ds = next(iter(whole["results"]))
    methods = sorted(whole["results"][ds])
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, chosen in ((a, set(methods[::2])), (b, set(methods[1::2]))):
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps(_split_by_method(whole, chosen)))
    out = tmp_path / "merged"
    assert _bench(["--merge", str(a), str(b / "results.json"), "--out", str(out)]) == 0
    merged = json.loads((out / "results.json").read_text())
    assert merged["results"] == whole["results"]  # every run back, none lost or doubled
    assert sorted(merged["config"]["methods"]) == methods
    assert [m["source"] for m in merged["merged_from"]] == [str(a / "results.json"), str(b / "results.json")]
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    # the same run in two parts is refused, naming it
    assert _bench(["--merge", str(a), str(a), "--out", str(tmp_path / "dup")]) == 2
    first = next(iter(json.loads((a / "results.json").read_text())["results"][ds]))
    assert f"{ds} / {first} / seed 0 is in both" in capsys.readouterr().err
    assert _bench(["--merge", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().err
