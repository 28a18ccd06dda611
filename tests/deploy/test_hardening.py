"""Hardening of the computing centre on loopback (issue 19): JSON bombs, slow clients, a big body
parsed while health checks keep answering, model identity between edge and centre, the manifest's
own hash, what health tells strangers, tokens in URLs, option checks. Every case ends in a 4xx or
a one-line error, never a 5xx or a traceback."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scai.deploy.payloads import MODEL_HEADER, NPY_CONTENT_TYPE, encode_npy

from .conftest import TOKEN, start_server

W = 1738
NPY = {"Content-Type": NPY_CONTENT_TYPE}
ROW = ",".join(["1.5"] * W)
BIG_INT = "1" + "0" * 400  # 1e400 written out as an integer literal
ADDRESS = re.compile(r"at 0x[0-9a-fA-F]+|object at|<[a-zA-Z_.]+ object")


def _one_line_4xx(r: Any, status: int | None = None) -> str:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    if status is not None:
        assert r.status_code == status, r.text[:300]
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail and len(detail) < 600, detail
    assert not ADDRESS.search(detail), detail
    return detail


# --------------------------------------------------------------------------- JSON bombs

@pytest.mark.parametrize(
    "body, match",
    [
        ('{"spectra": [[%s,%s]]}' % (BIG_INT, ROW[4:]), "outside the float range"),
        ('{"spectra": [[1.0, 2.0]], "axis": [1.0, %s]}' % BIG_INT, "outside the float range"),
        ('{"spectra": [[%s]], "policy": "anytime", "budget": %s}' % (ROW, BIG_INT), "outside the float range"),
        ('{"spectra": [[%s]], "policy": "threshold", "threshold": %s}' % (ROW, BIG_INT), "outside the float range"),
        ('{"spectra": [[%s]], "policy": "threshold", "threshold": [0.5, %s]}' % (ROW, BIG_INT), "outside the float range"),
        ('{"spectra": [[%s]]}' % ("9" * 5000), "outside the float range"),  # past Python's 4,300-digit limit
        ('{"spectra": [[-%s]]}' % ("9" * 320), "outside the float range"),
        ('{"spectra": [[1e400]]}', "outside the float range"),
        ('{"spectra": [[%s]], "policy": "anytime", "budget": -1e999}' % ROW, "outside the float range"),
        ('{"spectra": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested"),  # RecursionError in the decoder
        ('{"spectra": [[1]], "policy": ' + "[" * 200 + "]" * 200 + "}", "nested"),  # within recursion, past the depth limit
        ('{"spectra": [%s]}' % ",".join(["1.0"] * 40), "send one spectrum as [[...]]"),  # flat list: 400, not 413
        ('{"spectra": [[%s]], "policy": {"a": [1, 2]}}' % ROW, "policy=a JSON object"),
        ('{"spectra": [[%s]], "budget": "%s", "policy": "anytime"}' % (ROW, "9" * 5000), "budget"),
        ('{"spectra": [[1e39]], "axis": [100.0]}', "float32 range"),
    ],
)
def test_json_bombs_get_one_line_4xx(client: Any, body: str, match: str) -> None:
    r = client.post("/v1/predict", content=body.encode(), headers={"Content-Type": "application/json"})
    detail = _one_line_4xx(r, 400)
    assert match.lower() in detail.lower(), detail


def test_float64_npy_beyond_float32_is_refused(client: Any) -> None:
    r = client.post("/v1/predict", content=encode_npy(np.full((1, W), 1e300)), headers=NPY)
    assert "float32 range" in _one_line_4xx(r, 400)


def test_infinite_budget_is_called_infinite(client: Any) -> None:
    r = client.post("/v1/predict", content=encode_npy(np.ones((1, W), np.float32)), headers=NPY,
                    params={"policy": "anytime", "budget": "inf"})
    assert "greater than zero" not in _one_line_4xx(r, 400)


# --------------------------------------------------------------------------- slow clients

@pytest.fixture(scope="module")
def impatient(service: Any) -> Any:
    """A centre with short header, body and keep-alive deadlines."""
    from scai.deploy.server import ServerConfig

    srv = start_server(service, config=ServerConfig(header_timeout_s=0.5, body_timeout_s=0.5, keep_alive_s=1))
    yield srv
    srv.stop()


def _closed_within(sock: socket.socket, seconds: float, drip: bytes = b"") -> tuple[bool, bytes]:
    """Read (dripping ``drip`` one byte at a time) until the server closes; (closed?, bytes read)."""
    sock.settimeout(0.1)
    got = b""
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        if i < len(drip):
            try:
                sock.sendall(drip[i : i + 1])
            except OSError:
                return True, got
            i += 1
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            return True, got
        if not chunk:
            return True, got
        got += chunk
    return False, got


def test_idle_connection_is_closed(impatient: Any) -> None:
    with socket.create_connection(("127.0.0.1", impatient.port)) as s:
        closed, _ = _closed_within(s, 8)
    assert closed, "a connection that never sends a request is closed"


def test_slowloris_headers_are_cut_off(impatient: Any) -> None:
    drip = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 400
    with socket.create_connection(("127.0.0.1", impatient.port)) as s:
        t0 = time.monotonic()
        closed, got = _closed_within(s, 8, drip)
    assert closed and time.monotonic() - t0 < 8 and b"200 OK" not in got


def test_slow_body_gets_408(impatient: Any) -> None:
    head = (f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100000\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", impatient.port)) as s:
        s.sendall(head + b'{"spectra": [[')
        closed, got = _closed_within(s, 8, b"1," * 200)
    assert b" 408 " in got.split(b"\r\n", 1)[0], got[:200]


def test_keep_alive_connection_is_closed_after_its_answer(impatient: Any) -> None:
    with socket.create_connection(("127.0.0.1", impatient.port)) as s:
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        closed, got = _closed_within(s, 8)
    assert got.startswith(b"HTTP/1.1 200") and closed


# --------------------------------------------------------------------------- big body vs health

def test_health_answers_while_a_big_body_is_parsed(service: Any, monkeypatch: Any) -> None:
    """The JSON parser is held mid-parse until health has answered: were parsing on the event
    loop, health could not answer at all. Bounded: every wait has a timeout."""
    import httpx

    import scai.deploy.server as server
    from scai.deploy.server import ServerConfig

    started, release = threading.Event(), threading.Event()
    real = server.parse_json_body

    def held(body: bytes) -> Any:
        started.set()
        release.wait(30)
        return real(body)

    monkeypatch.setattr(server, "parse_json_body", held)
    srv = start_server(service, config=ServerConfig(max_body_bytes=9 << 20))
    try:
        rows = ",".join(["[" + ",".join(["1.2345678"] * W) + "]"] * 480)
        body = ('{"spectra": [%s], "policy": "none-such"}' % rows).encode()
        assert len(body) > 8_000_000
        big: dict[str, Any] = {}

        def post() -> None:
            with httpx.Client(timeout=60) as c:
                big["r"] = c.post(f"{srv.url}/v1/predict", content=body, headers={"Content-Type": "application/json"})

        t = threading.Thread(target=post)
        t.start()
        assert started.wait(30), "the big body reached the parser"
        t0 = time.perf_counter()
        h = httpx.get(f"{srv.url}/v1/health", timeout=10)
        health_s = time.perf_counter() - t0
        assert h.status_code == 200 and "r" not in big, "health answered while the big body was still being parsed"
        release.set()
        t.join(60)
        assert "policy" in _one_line_4xx(big["r"], 400)  # the whole body was parsed and validated, then refused
        assert health_s < 10
    finally:
        release.set()
        srv.stop()


# --------------------------------------------------------------------------- model identity

def test_requests_for_another_model_get_409(client: Any, service: Any, estimator: Any, milk: Any) -> None:
    sha = service.manifest["model_sha256"]
    other = "0" * 64
    X = encode_npy(milk.X[:1])
    r = client.post("/v1/predict", content=X, headers={**NPY, MODEL_HEADER: other})
    assert "model mismatch" in _one_line_4xx(r, 409)
    feats = np.zeros((1, *service.shapes[0]), dtype=np.float16)
    r = client.post("/v1/continue", params={"stage": 0}, content=encode_npy(feats), headers={**NPY, MODEL_HEADER: other})
    _one_line_4xx(r, 409)
    r = client.post("/v1/continue", params={"stage": 0}, content=encode_npy(feats), headers={**NPY, MODEL_HEADER: ""})
    _one_line_4xx(r, 409)
    import httpx

    r = httpx.post(f"{client.base_url}/v1/continue", params={"stage": 0}, content=encode_npy(feats),
                   headers={**NPY, "Authorization": f"Bearer {TOKEN}"})
    assert MODEL_HEADER in _one_line_4xx(r, 400)
    r = client.post("/v1/predict", content=X, headers={**NPY, MODEL_HEADER: sha.upper()})
    assert r.status_code == 200 and r.headers[MODEL_HEADER] == sha and r.json()["model_sha256"] == sha
    assert client.get("/v1/model").headers[MODEL_HEADER] == sha


def _export_for_another_model(export_dir: Path, dest: Path) -> Path:
    """An export that claims another model (its manifest re-hashed, so it loads)."""
    from scai.deploy.manifest import manifest_digest

    shutil.copytree(export_dir, dest)
    m = json.loads((dest / "manifest.json").read_text())
    m["model_sha256"] = "f" * 64
    m["manifest_sha256"] = manifest_digest(m)
    (dest / "manifest.json").write_text(json.dumps(m))
    return dest


def test_edge_falls_back_locally_when_the_centre_serves_another_model(live: Any, export_dir: Path, milk: Any,
                                                                       tmp_path: Path) -> None:
    from scai.deploy import EdgeClient

    other = _export_for_another_model(export_dir, tmp_path / "other")
    edge = EdgeClient(other, bmax="1", server=live.url, token=TOKEN, timeout_s=10)  # nothing fits: all offloaded
    res = edge.classify(milk.X[:3], milk.axis)
    assert all(r.offload_failed and r.decided_at == "edge" for r in res)
    assert all("another model" in r.error and "409" in r.error for r in res)
    assert all(r.bytes_sent == 0 for r in res), "refused offloads are not counted as traffic"


class _OldCentre:
    """A centre that ignores the model header and answers for another model."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers["Content-Length"])
                self.rfile.read(n)
                body = json.dumps({"model_sha256": "e" * 64, "n": 1, "results": [
                    {"class_index": 0, "exit": 3, "confidence": 1.0, "macs": 1.0, "prediction": "x"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_edge_refuses_an_answer_for_another_model(export_dir: Path, milk: Any) -> None:
    from scai.deploy import EdgeClient

    old = _OldCentre()
    try:
        res = EdgeClient(export_dir, bmax="1", server=old.url, timeout_s=10).classify(milk.X[:1], milk.axis)
    finally:
        old.httpd.shutdown()
    assert res[0].offload_failed and "another model" in res[0].error and res[0].bytes_sent == 0


def test_edited_manifest_is_refused(export_dir: Path, tmp_path: Path) -> None:
    from scai.deploy import EdgeClient
    from scai.deploy.manifest import load_manifest
    from scai.errors import ModelFileError

    copy = tmp_path / "edited"
    shutil.copytree(export_dir, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["class_names"] = m["class_names"][::-1]
    (copy / "manifest.json").write_text(json.dumps(m, indent=1))
    with pytest.raises(ModelFileError, match="edited after export"):
        load_manifest(copy)
    with pytest.raises(ModelFileError, match="edited after export"):
        EdgeClient(copy, bmax="1M")
    del m["manifest_sha256"]
    m["format_version"] = 1
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFileError, match="export the model again"):
        load_manifest(copy)
    # re-indenting does not change the digest
    good = json.loads((export_dir / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(good, indent=4, sort_keys=True))
    assert load_manifest(copy)["manifest_sha256"] == good["manifest_sha256"]


# --------------------------------------------------------------------------- budgets, flags

def test_continue_flags_an_answer_over_budget(client: Any, service: Any, estimator: Any, milk: Any) -> None:
    import torch

    Z = estimator.transform_input(milk.X[:2], milk.axis)
    with torch.no_grad():
        f, _ = estimator.network_.run_stage(0, torch.from_numpy(Z).unsqueeze(1))
        f, _ = estimator.network_.run_stage(1, f)
    body = encode_npy(f.numpy())
    over = client.post("/v1/continue", params={"stage": 1, "policy": "anytime", "budget": "1000"}, content=body, headers=NPY)
    fine = client.post("/v1/continue", params={"stage": 1, "policy": "anytime", "budget": "1G"}, content=body, headers=NPY)
    assert over.status_code == 200 and fine.status_code == 200
    assert all(x["flagged"] and x["reason"] == "over_budget" for x in over.json()["results"])
    assert not any(x["flagged"] for x in fine.json()["results"])


# --------------------------------------------------------------------------- exposure decisions

def test_health_tells_strangers_only_that_it_is_up(live: Any) -> None:
    import httpx

    assert httpx.get(f"{live.url}/v1/health").json() == {"status": "ok"}
    full = httpx.get(f"{live.url}/v1/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert len(full["model_sha256"]) == 64 and "batching" in full


def test_open_centre_health_shows_everything(service: Any) -> None:
    import httpx

    srv = start_server(service)
    try:
        assert len(httpx.get(f"{srv.url}/v1/health").json()["model_sha256"]) == 64
    finally:
        srv.stop()


@pytest.mark.parametrize("name", ["token", "access_token", "api_key", "Authorization"])
def test_token_in_the_url_is_refused_and_redacted(live: Any, client: Any, name: str) -> None:
    import logging

    from scai.deploy.server import _RedactQuery

    r = client.get("/v1/model", params={name: TOKEN})
    assert "never in the URL" in _one_line_4xx(r, 400)
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:1", "GET", f"/v1/predict?policy=full&{name}={TOKEN}", "1.1", 400), None)
    assert _RedactQuery().filter(record)
    text = record.getMessage()
    assert TOKEN not in text and "policy=full" in text and f"{name}=***" in text


def test_unknown_query_parameter_is_refused(client: Any) -> None:
    r = client.post("/v1/predict", params={"polcy": "full"}, content=encode_npy(np.ones((1, W), np.float32)), headers=NPY)
    assert "unknown query parameter" in _one_line_4xx(r, 400)


def test_docs_can_be_switched_off(service: Any) -> None:
    import httpx

    from scai.deploy.server import ServerConfig

    srv = start_server(service, config=ServerConfig(docs=False))
    try:
        assert httpx.get(f"{srv.url}/docs").status_code == 404 and httpx.get(f"{srv.url}/redoc").status_code == 404
        assert httpx.get(f"{srv.url}/openapi.json").status_code == 200
    finally:
        srv.stop()


def test_openapi_states_the_real_limits(client: Any, service: Any) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/predict"]["post"]
    body = post["requestBody"]["content"]
    assert body["application/json"]["schema"]["properties"]["spectra"]["maxItems"] == 16  # the live server's max_rows
    assert f"{256 << 10:,} bytes" in body[NPY_CONTENT_TYPE]["description"]
    assert {"400", "401", "409", "413", "415"} <= set(post["responses"])
    cont = spec["paths"]["/v1/continue"]["post"]
    stage = next(p for p in cont["parameters"] if p["name"] == "stage")
    assert stage["schema"]["maximum"] == service.n_exits - 2
    assert next(p for p in cont["parameters"] if p["name"] == MODEL_HEADER)["required"] is True


# --------------------------------------------------------------------------- options

def test_server_config_is_checked() -> None:
    from scai.deploy.server import ServerConfig
    from scai.errors import ConfigError

    for bad in ({"max_body_bytes": -1}, {"max_batch_rows": 0}, {"batch_wait_ms": -1}, {"threads": 0},
                {"header_timeout_s": 0}, {"max_connections": 0}, {"request_timeout_s": float("inf")}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ServerConfig(**bad)


@pytest.mark.parametrize("option, value", [("--max-batch", "0"), ("--batch-wait-ms", "-1"), ("--threads", "0"),
                                           ("--max-body-mb", "-1"), ("--max-body-mb", "0.0001"),
                                           ("--max-connections", "0"), ("--header-timeout", "0")])
def test_serve_options_are_one_line_errors(model_dir: Path, option: str, value: str, capsys: Any) -> None:
    from scai.cli.main import main

    try:
        code = main(["serve", str(model_dir), "--port", "0", option, value])
    except SystemExit as exc:  # argparse
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert option in err and "Traceback" not in err and len(err.splitlines()) <= 2, err


def test_a_bug_answers_500_once_logged_and_never_escapes(service, monkeypatch, caplog):
    """The last resort: an unexpected exception is a one-line 500, logged once, not re-raised."""
    import logging

    from fastapi.testclient import TestClient

    from scai.deploy.server import create_app

    class Broken(dict):
        def __getitem__(self, key):
            raise RuntimeError("simulated bug")

    app = create_app(service)
    monkeypatch.setattr(service, "manifest", Broken(service.manifest))
    with caplog.at_level(logging.ERROR), TestClient(app, raise_server_exceptions=True) as tc:
        r = tc.get("/v1/health")
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error (RuntimeError); see the server log"}
    assert [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR] == ["unexpected error"]
