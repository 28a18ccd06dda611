"""`scai export/serve/edge` wiring and their one-line errors (the server itself is tested in test_server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def test_commands_are_registered(capsys: Any) -> None:
    from scai.cli.main import main

    for cmd in ("export", "serve", "edge"):
        with pytest.raises(SystemExit) as info:
            main([cmd, "--help"])
        assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--token-file" in out and "--bmax" in out and "manifest.json" in out


def test_serve_refuses_bad_token_files(tmp_path: Path, capsys: Any) -> None:
    from scai.cli.main import main

    assert main(["serve", str(tmp_path), "--token-file", str(tmp_path / "missing")]) == 2
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    assert main(["serve", str(tmp_path), "--token-file", str(empty)]) == 2
    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "empty" in err and "--port" in err


def test_edge_refuses_bad_arguments(export_dir: Path, tmp_path: Path, capsys: Any) -> None:
    from scai.cli.main import main

    out = str(tmp_path / "r.csv")
    assert main(["edge", str(export_dir), "milk_adulteration", "--bmax", "2ms", "--out", out]) == 2
    assert main(["edge", str(export_dir), "milk_adulteration", "--bmax", "1M", "--batch-size", "0", "--out", out]) == 2
    assert main(["edge", str(export_dir), "no_such_dataset", "--bmax", "1M", "--out", out]) == 2
    assert "MACs" in capsys.readouterr().err


def test_edge_holds_and_writes_the_held_column(export_dir: Path, tmp_path: Path, milk: Any, capsys: Any) -> None:
    """`scai edge --threshold 0`: a spectrum flagged unknown at exit 0 runs deeper (held=unknown, the
    default --on-unknown deeper); --on-ambiguous deeper needs --sets."""
    pytest.importorskip("onnxruntime")
    import csv

    from scai.cli.main import main
    from scai.deploy import EdgeClient

    data = tmp_path / "x.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f"{v:g}" for v in milk.axis])
        w.writerows(milk.X[:10].tolist())
    out = tmp_path / "r.csv"
    assert main(["edge", str(export_dir), str(data), "--bmax", "100%", "--threshold", "0", "--batch-size", "10",
                 "--sets", "0.9", "--on-ambiguous", "deeper", "--out", str(out)]) == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    want = EdgeClient(export_dir, bmax="100%", threshold=0.0, sets=0.9, on_ambiguous="deeper").classify(milk.X[:10])
    assert [r["held"] for r in rows] == [r.held for r in want]
    assert [int(r["exit"]) for r in rows] == [r.exit for r in want]
    assert all(int(r["exit"]) > 0 for r in rows if r["held"]) and all(int(r["exit"]) == 0 for r in rows if not r["held"])
    assert main(["edge", str(export_dir), str(data), "--bmax", "100%", "--on-ambiguous", "deeper", "--out", str(out)]) == 2
    assert "--sets" in capsys.readouterr().err
