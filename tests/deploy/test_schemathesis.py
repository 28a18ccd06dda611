"""schemathesis against the live centre on loopback, every check but positive_data_acceptance
(see schemathesis.toml for why): no 5xx, no reply outside the schema, no schema-violating request
accepted, auth and required headers enforced. Takes about 45 s; marked slow.

By hand: ``scai serve MODEL --token-file t.txt``, then
``SCHEMATHESIS_HOOKS=tests.deploy.schemathesis_hooks st --config-file tests/deploy/schemathesis.toml run
http://127.0.0.1:8000/openapi.json --checks all --exclude-checks positive_data_acceptance
-H "Authorization: Bearer $(cat t.txt)" -H "X-Scai-Model: <model sha256>"``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import TOKEN, start_server

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_no_schema_violation(service: Any) -> None:
    pytest.importorskip("schemathesis")
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        pytest.skip("the schemathesis command `st` is not installed")
    from scai.deploy.server import ServerConfig

    srv = start_server(service, token=TOKEN, config=ServerConfig(max_rows=16, max_body_bytes=256 << 10))
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.deploy.schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run(
            [st, "--config-file", str(HERE / "schemathesis.toml"), "run", f"{srv.url}/openapi.json",
             "--checks", "all", "--exclude-checks", "positive_data_acceptance",
             "-H", f"Authorization: Bearer {TOKEN}", "-H", f"X-Scai-Model: {service.manifest['model_sha256']}",
             "--max-time", "40", "-n", "100", "--seed", "3", "--no-color", "--generation-database", "none"],
            env=env, capture_output=True, text=True, timeout=150,
        )
    finally:
        srv.stop()
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout, tail
