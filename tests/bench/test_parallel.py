"""``scai bench --jobs N``: (dataset, seed) parts in parallel processes, merged into one run."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest

from scai.bench import BenchConfig, Part, load_results, part_command, plan_parts, run_parallel
from scai.cli.bench import add_arguments, config_from_args
from scai.cli.main import main


def _bench(argv: list[str]) -> int:
    return main(["bench", *argv])


def _parse(argv: list[str]) -> BenchConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


@pytest.mark.parametrize(
    "cfg",
    [
        BenchConfig(seeds=(0, 1, 2), epochs=7, patience=3, depths=(2, 8), methods=("scai_plus", "svm_rbf"),
                    data_dir=str(Path(__file__).parent), preprocessing="ftir", threads=1, resume=True, out="o"),
        _parse(["--quick", "--seeds", "3,4", "--threads", "1", "--out", "q"]),
    ],
    ids=["full", "quick"],
)
def test_part_command_runs_one_dataset_and_seed_with_the_same_settings(cfg: BenchConfig):
    part = Part("ucr_meat", cfg.seeds[-1], Path(cfg.out) / "parts" / "x")
    argv = part_command(cfg, part)
    assert argv[1:4] == ["-m", "scai.cli.main", "bench"]
    child = _parse(argv[4:])  # what the child process will run, parsed by the real CLI
    assert child == replace(cfg, datasets=("ucr_meat",), seeds=(cfg.seeds[-1],), out=str(part.out))
    assert "--no-report" in argv


def test_parts_are_every_dataset_and_seed_in_their_own_folder(tmp_path: Path):
    parts = plan_parts(BenchConfig(seeds=(0, 1), out=str(tmp_path)), ["a", "b"])
    assert [(p.dataset, p.seed) for p in parts] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert len({p.out for p in parts}) == 4 and all(p.out.parent == tmp_path / "parts" for p in parts)
    with pytest.raises(ValueError, match="jobs=0 is not allowed; use jobs >= 1"):
        run_parallel(BenchConfig(out=str(tmp_path)), ["a"], jobs=0)


def _scores(results: dict) -> dict:
    """What a run measured, without the timings (which differ from run to run)."""
    keep = ("accuracy", "confusion", "exits", "anytime", "budgeted_batch")
    return {
        (ds, m, s): {k: run[k] for k in keep if k in run}
        for ds, methods in results["results"].items() for m, runs in methods.items() for s, run in runs.items()
    }


@pytest.mark.slow
def test_jobs_give_the_sequential_results_and_report_a_failed_part(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    common = ["--quick", "--seeds", "0,1", "--methods", "pls_da,logreg_snv", "--threads", "1"]
    assert _bench([*common, "--out", str(tmp_path / "seq"), "--no-report"]) == 0
    assert not (tmp_path / "seq" / "report.md").exists()  # --no-report: results only
    sequential = load_results(tmp_path / "seq" / "results.json")
    capsys.readouterr()

    # a dataset that does not exist fails its parts; the others are merged and reported
    par = tmp_path / "par"
    rc = _bench([*common, "--datasets", "milk_adulteration,no_such_set", "--jobs", "2", "--out", str(par)])
    err = capsys.readouterr().err
    assert rc == 1
    for seed in (0, 1):
        log = par / "parts" / f"no_such_set-s{seed}" / "log.txt"
        assert f"part no_such_set-s{seed} failed with exit status 2; see {log}" in err
        assert "no_such_set" in log.read_text()  # the child's own error message is kept
    assert "--resume" in err
    merged = load_results(par / "results.json")
    assert _scores(merged) == _scores(sequential)  # the same splits, preprocessing and seeds
    assert merged["config"]["seeds"] == [0, 1] and merged["config"]["jobs"] == 2
    assert [Path(m["source"]).parent.name for m in merged["merged_from"]] == ["milk_adulteration-s0", "milk_adulteration-s1"]
    assert (par / "report.md").is_file() and "milk_adulteration" in (par / "report.md").read_text(encoding="utf-8")
    assert not (par / "parts" / "milk_adulteration-s0" / "report.md").exists()  # one report, the merged one

    # --resume with other settings than a finished part is refused by the part, which says why
    rc = _bench([*common, "--epochs", "3", "--datasets", "milk_adulteration", "--jobs", "2", "--resume", "--out", str(par)])
    err = capsys.readouterr().err
    assert rc == 2 and "no part finished" in err
    for seed in (0, 1):
        log = par / "parts" / f"milk_adulteration-s{seed}" / "log.txt"
        assert f"part milk_adulteration-s{seed} failed with exit status 2; see {log}" in err
        assert "was written with other settings: epochs=2 (this run: 3)" in log.read_text()
    assert json.loads((par / "results.json").read_text()) == merged  # nothing overwritten
    # an unknown method is refused before any part starts
    assert _bench([*common[:3], "--methods", "no_such_method", "--jobs", "2", "--out", str(tmp_path / "u")]) == 2
    assert "unknown method(s) ['no_such_method']" in capsys.readouterr().err and not (tmp_path / "u" / "parts").exists()
