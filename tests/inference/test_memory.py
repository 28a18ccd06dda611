"""Long-running predicting processes cap oneDNN's compiled-convolution cache before their first
convolution (a Ray worker's memory grew with every new batch shape, benchmarks/results/scale),
and keep a cap the user set."""

from __future__ import annotations

import os
import subprocess
import sys

from scai.cli.main import PREDICTING, main
from scai.inference.memory import ONEDNN_CACHE_CAPACITY, ONEDNN_CACHE_ENV, bound_onednn_cache


def test_the_cap_is_set_unless_the_environment_has_one(monkeypatch):
    monkeypatch.delenv(ONEDNN_CACHE_ENV, raising=False)
    bound_onednn_cache()
    assert os.environ[ONEDNN_CACHE_ENV] == str(ONEDNN_CACHE_CAPACITY) == "64"
    monkeypatch.setenv(ONEDNN_CACHE_ENV, "7")
    bound_onednn_cache()
    assert os.environ[ONEDNN_CACHE_ENV] == "7"


def test_predicting_commands_set_the_cap_before_they_run(monkeypatch, tmp_path, capsys):
    assert {"predict", "evaluate", "serve", "edge"} == set(PREDICTING)
    (tmp_path / "no-model").mkdir()
    (tmp_path / "no.csv").write_text("")
    for command in ("predict", "evaluate"):
        monkeypatch.delenv(ONEDNN_CACHE_ENV, raising=False)
        # the command fails on the missing model, after the cap is set (nothing ran a convolution)
        assert main([command, str(tmp_path / "no-model"), str(tmp_path / "no.csv"), "--out", str(tmp_path / "o")]) == 2
        assert os.environ[ONEDNN_CACHE_ENV] == "64"
    monkeypatch.delenv(ONEDNN_CACHE_ENV, raising=False)
    assert main(["train", str(tmp_path / "no.csv"), "--out", str(tmp_path / "m")]) == 2
    assert ONEDNN_CACHE_ENV not in os.environ  # training keeps oneDNN's default
    capsys.readouterr()


def test_scai_predict_in_a_fresh_process_runs_with_the_cap(tmp_path):
    (tmp_path / "none").mkdir()
    (tmp_path / "x.csv").write_text("")
    # what the user's shell runs: the cap is in the environment when the command starts predicting
    code = ("import os; from scai.cli import main as m; import scai.inference.memory as mem;"
            "seen = [];"
            "orig = mem.bound_onednn_cache;"
            "mem.bound_onednn_cache = lambda: (orig(), seen.append(os.environ.get(mem.ONEDNN_CACHE_ENV)));"
            f"rc = m.main(['predict', {str(tmp_path / 'none')!r}, {str(tmp_path / 'x.csv')!r}, '--out', {str(tmp_path / 'o.csv')!r}]);"
            "print(rc, seen)")
    env = {k: v for k, v in os.environ.items() if k != ONEDNN_CACHE_ENV}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rc, rest = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert rc == "2" and rest.startswith("['64']")
