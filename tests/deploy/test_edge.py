"""The edge client: torch-free, budgeted local stages, offloads to a live centre, and local
answers when the centre is gone or too slow."""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import TOKEN, start_server

pytest.importorskip("onnxruntime")


def test_edge_client_never_imports_torch(export_dir: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from scai.datasets import load
        from scai.deploy.edge import EdgeClient
        from scai.deploy import EdgeClient as Lazy
        milk = load("milk_adulteration")
        edge = EdgeClient({str(export_dir)!r}, bmax="1G")
        res = edge.classify(milk.X[:3], milk.axis)
        assert len(res) == 3 and all(r.decided_at == "edge" for r in res)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "fastapi", "uvicorn"))
        print("HEAVY", heavy)
        assert not heavy, heavy
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout


def test_whole_network_within_bmax_decides_on_edge(export_dir: Path, estimator: Any, milk: Any) -> None:
    from scai.deploy.edge import EdgeClient

    X = milk.X[:6]
    edge = EdgeClient(export_dir, bmax=estimator.exit_macs_[-1], threshold=1.0)  # never confident early
    res = edge.classify(X, milk.axis)
    ref = estimator.predict_detailed(X, milk.axis, policy="full")
    assert [r.prediction for r in res] == [str(p) for p in ref.prediction]
    assert all(r.exit == len(estimator.exit_macs_) - 1 and r.decided_at == "edge" and r.offload == "none" for r in res)
    assert all(r.macs_edge == estimator.exit_macs_[-1] and r.bytes_sent == 0 for r in res)
    # threshold 0 and on_unknown="answer": everybody leaves at exit 0, spending exactly its cost
    res = EdgeClient(export_dir, bmax="1G", threshold=0.0, on_unknown="answer").classify(X, milk.axis)
    assert all(r.exit == 0 and r.macs_edge == estimator.exit_macs_[0] and r.held == "" for r in res)
    # by default a spectrum flagged unknown at exit 0 runs deeper, and says so
    flagged = [r.unknown for r in res]
    res = EdgeClient(export_dir, bmax="1G", threshold=0.0).classify(X, milk.axis)
    assert [r.held for r in res] == ["unknown" if f else "" for f in flagged]
    assert all((r.exit > 0) == bool(f) and r.decided_at == "edge" for r, f in zip(res, flagged))


def test_offloads_agree_with_the_centre(live: Any, export_dir: Path, estimator: Any, milk: Any) -> None:
    from scai.deploy.edge import EdgeClient

    X = milk.X[40:48]
    ref = estimator.predict_detailed(X, milk.axis, policy="full")
    macs = estimator.exit_macs_
    # Budget for two stages, never confident: features of stage 1 (fp16) go to /v1/continue.
    edge = EdgeClient(export_dir, bmax=macs[1], server=live.url, token=TOKEN, threshold=1.0)
    sizes = edge.payload_bytes(1)
    assert sizes["features"] < sizes["raw"]
    res = edge.classify(X, milk.axis)
    assert all(r.decided_at == "centre" and r.offload == "features" and not r.offload_failed for r in res)
    assert all(r.exit == len(macs) - 1 and r.macs_edge == macs[1] and 0 < r.macs_centre <= macs[-1] - macs[1] for r in res)
    assert all(0 < r.bytes_sent <= sizes["features"] for r in res)
    agree = np.mean([r.prediction == str(p) for r, p in zip(res, ref.prediction)])
    assert agree == 1.0
    assert np.allclose([r.confidence for r in res], ref.confidence, atol=1e-2)  # fp16 features

    # Budget below exit 1: nothing runs locally; the raw spectrum goes to /v1/predict.
    edge = EdgeClient(export_dir, bmax=macs[0] - 1, server=live.url, token=TOKEN)
    res = edge.classify(X[:3], milk.axis)
    assert all(r.offload == "raw" and r.decided_at == "centre" and r.macs_edge == 0 for r in res)
    assert [r.prediction for r in res] == [str(p) for p in ref.prediction[:3]]
    assert np.allclose([r.confidence for r in res], ref.confidence[:3], atol=1e-9)
    assert np.allclose([r.macs_centre for r in res], ref.macs[:3], rtol=0, atol=1)


def _best_local(edge: Any, X: np.ndarray, axis: np.ndarray, n_stages: int) -> tuple[list[int], list[int]]:
    from scai.inference import softmax

    feats = edge.preprocess(edge.align(X, axis))[:, None, :]
    confs, classes = [], []
    for k in range(n_stages):
        feats, logits = edge.run_stage(k, feats)
        p = softmax(logits, float(edge.temperatures[k]))
        confs.append(p.max(axis=1))
        classes.append(p.argmax(axis=1))
    confs_a, classes_a = np.stack(confs), np.stack(classes)
    best = (n_stages - 1) - np.argmax(confs_a[::-1], axis=0)  # ties -> deeper exit
    return best.tolist(), classes_a[best, np.arange(len(X))].tolist()


def test_centre_killed_answers_with_best_local_exit(service: Any, export_dir: Path, estimator: Any, milk: Any) -> None:
    from scai.deploy.edge import EdgeClient

    srv = start_server(service)
    url = srv.url
    X = milk.X[60:66]
    macs = estimator.exit_macs_
    edge = EdgeClient(export_dir, bmax=macs[1], server=url, threshold=1.0, timeout_s=2)
    assert all(r.decided_at == "centre" for r in edge.classify(X[:2], milk.axis)), "centre alive first"
    srv.stop()
    res = edge.classify(X, milk.axis)
    exits, classes = _best_local(edge, X, milk.axis, 2)
    assert all(r.offload_failed and r.decided_at == "edge" and r.macs_centre == 0 for r in res)
    assert all("unreachable" in r.error for r in res)
    assert [r.exit for r in res] == exits
    assert [r.class_index for r in res] == classes
    assert all(r.macs_edge == macs[1] for r in res)

    # Below exit 1 and no centre: exit 1 runs locally anyway, flagged in `error`.
    res = EdgeClient(export_dir, bmax=1, server=url).classify(X[:2], milk.axis)
    assert all(r.offload_failed and r.exit == 0 and r.macs_edge == macs[0] and "beyond Bmax" in r.error for r in res)


def test_slow_centre_times_out(export_dir: Path, estimator: Any, milk: Any) -> None:
    from scai.deploy.edge import EdgeClient

    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        edge = EdgeClient(export_dir, bmax=estimator.exit_macs_[0], server=url, threshold=1.0, timeout_s=0.3)
        res = edge.classify(milk.X[:2], milk.axis)
    assert all(r.offload_failed and r.exit == 0 and "did not answer within 0.3 s" in r.error for r in res)
    assert all(r.latency_ms < 5000 for r in res)


def test_wrong_token_is_an_offload_failure(live: Any, export_dir: Path, estimator: Any, milk: Any) -> None:
    from scai.deploy.edge import EdgeClient

    edge = EdgeClient(export_dir, bmax=estimator.exit_macs_[0], server=live.url, token="nope", threshold=1.0)
    res = edge.classify(milk.X[:1], milk.axis)
    assert res[0].offload_failed and "HTTP 401" in res[0].error


def test_edge_input_checks(export_dir: Path, milk: Any) -> None:
    from scai.deploy.edge import EdgeClient
    from scai.errors import AxisError, BudgetError, DataValueError

    with pytest.raises(BudgetError, match="MACs"):
        EdgeClient(export_dir, bmax="2ms")
    with pytest.raises(BudgetError):
        EdgeClient(export_dir, bmax="-1")
    with pytest.raises(ValueError, match="threshold"):
        EdgeClient(export_dir, bmax="1M", threshold=2.0)
    edge = EdgeClient(export_dir, bmax="1M")
    with pytest.raises(AxisError, match="1738"):
        edge.classify(milk.X[:1, :100])
    with pytest.raises(DataValueError, match="NaN"):
        edge.classify(np.full((1, 1738), np.nan))
    with pytest.raises(AxisError, match="overlap"):
        edge.classify(milk.X[:1], milk.axis + 5000)
    with pytest.warns(UserWarning) as caught:  # resampled, and 6 points extrapolated
        res = edge.classify(milk.X[:1], milk.axis + 10)
    assert len(res) == 1 and any("resampled" in str(w.message) for w in caught)


def test_cli_export_and_edge(live: Any, model_dir: Path, tmp_path: Path, estimator: Any, capsys: Any) -> None:
    from scai.cli.main import main

    out = tmp_path / "exp"
    assert main(["export", str(model_dir), "--out", str(out), "--threshold", "0.99"]) == 0
    assert (out / "manifest.json").is_file() and (out / "stage_2.onnx").is_file()
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    csv_path = tmp_path / "edge.csv"
    rc = main(["edge", str(out), "milk_adulteration", "--bmax", str(estimator.exit_macs_[0]), "--server", live.url,
               "--token-file", str(token), "--threshold", "1.0", "--batch-size", "250", "--out", str(csv_path)])
    assert rc == 0
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 500 and [int(r["index"]) for r in rows] == list(range(500))
    assert {r["decided_at"] for r in rows} == {"centre"}
    assert set(rows[0]) >= {"prediction", "exit", "decided_at", "macs_edge", "macs_centre", "bytes_sent", "latency_ms", "offload_failed"}
    assert "500 spectra" in capsys.readouterr().out
    # errors are one line, exit status 2
    assert main(["edge", str(tmp_path), "milk_adulteration", "--bmax", "1M", "--out", str(csv_path)]) == 2
    assert main(["export", str(model_dir), "--out", str(out), "--threshold", "3"]) == 2
