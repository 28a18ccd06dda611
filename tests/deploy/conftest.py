"""Fixtures of the deploy tests: one tiny SCAI+ trained on real milk spectra, its ONNX export,
and live servers on loopback (uvicorn in a thread on a port the OS chose)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TINY = {"channels": (4, 6, 8), "units_per_block": 2, "stem_stride": 4}
TOKEN = "test-token-0123456789"


@pytest.fixture(scope="session")
def milk() -> Any:
    from scai.datasets import load

    return load("milk_adulteration")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, milk: Any) -> Path:
    """Tiny SCAI+ (3 network exits behind the linear exit 0, all kept: 4 exits) fitted for 1 epoch
    on 4 spectra per class, default Raman preprocessing.

    Accuracy is irrelevant here; what matters is a real fitted pipeline, real weights and
    real spectra, trained in seconds.
    """
    import torch

    from scai import SCAIClassifier

    torch.manual_seed(0)
    idx = np.concatenate([np.flatnonzero(milk.y == c)[:4] for c in range(len(milk.class_names))])
    labels = np.asarray(milk.class_names)[milk.y[idx]]
    # combine_exits=False: these tests cover offloading stage features to /v1/continue, which a model
    # with combined exits refuses (tests/deploy/test_combination_parity.py covers that model);
    # rocket="none": they cover the network's (PA) stages; a MiniRocket exit is covered by
    # tests/deploy/test_exit_parity.py (the SCAI model) and tests/models/test_rocket.py
    est = SCAIClassifier(model="scai_plus", model_config=TINY, train_config={"max_epochs": 1}, skip_exits=False,
                         preprocessing="raman", val_fraction=0.25, combine_exits=False, rocket="none")
    est.fit(milk.X[idx], labels, axis=milk.axis)
    return est.save(tmp_path_factory.mktemp("model") / "milk_scai_plus")


@pytest.fixture(scope="session")
def estimator(model_dir: Path) -> Any:
    import scai

    return scai.load(model_dir)


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    from scai.deploy import export_onnx

    return export_onnx(model_dir, tmp_path_factory.mktemp("export") / "onnx")


@pytest.fixture(scope="session")
def service(model_dir: Path) -> Any:
    from scai.deploy.service import ModelService

    return ModelService(model_dir, threads=1)


class LiveServer:
    """uvicorn serving an app in a daemon thread on 127.0.0.1 with an OS-chosen port, with the
    uvicorn settings of ``scai serve`` (``uvicorn_config``)."""

    def __init__(self, app: Any, config: Any = None) -> None:
        import uvicorn

        from scai.deploy.server import uvicorn_config

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        uv = uvicorn_config(app, config=config, log_level="warning")
        uv.timeout_graceful_shutdown = 2
        self.server = uvicorn.Server(uv)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def start_server(service: Any, **kwargs: Any) -> LiveServer:
    from scai.deploy.server import create_app

    return LiveServer(create_app(service, **kwargs), kwargs.get("config")).start()


@pytest.fixture(scope="session")
def live(service: Any) -> Iterator[LiveServer]:
    """The computing centre with a bearer token and a small body limit (256 KiB)."""
    from scai.deploy.server import ServerConfig

    srv = start_server(service, token=TOKEN, config=ServerConfig(max_body_bytes=256 << 10, max_rows=16))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(live: LiveServer) -> Iterator[Any]:
    import httpx

    from scai.deploy.server import MODEL_HEADER

    sha = live.server.config.app.state.service.manifest["model_sha256"]
    with httpx.Client(base_url=live.url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}", MODEL_HEADER: sha}) as c:
        yield c
