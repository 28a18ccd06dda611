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
