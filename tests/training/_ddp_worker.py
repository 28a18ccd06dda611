"""Run by tests/training/test_ddp.py under torchrun: train tiny networks data-parallel, write per-rank results.

``python -m torch.distributed.run --standalone --nproc_per_node=2 _ddp_worker.py OUT_DIR`` writes
``OUT_DIR/rank{R}.json``: per case (network), the state digest of the trained weights, (SCAI+) a second
fit's digest with the same seed, the per-epoch training loss and ponder cost, and the most units
a PA position ran before training; plus whether a check between ranks refused differing values, and
the process group's threads still alive once the group was destroyed (there must be none).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scai.models import create_model
from scai.training import TrainConfig, Trainer, ddp
from scai.training.cross_fit import default_n_jobs
from tests.conftest import TINY_SCAI, make_peaks

#: name -> (registry model, extra model config, extra training config)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "scai": ("scai", {}, {"lr_schedule": "plateau"}),
    # every loss term: distillation with the exit's own cross-entropy, ponder cost and compute target
    "scai_plus": ("scai_plus", {}, {"ponder_target": 0.5, "tau": 1e-3}),
    # halting scores start at sigmoid(20) > 1 - eps: every position halts after its first unit, so
    # the other units never run (parameters without gradients, which DDP must be told about)
    "scai_plus_halted": ("scai_plus", {"halting_bias_init": 20.0}, {}),
}


def _fit(name: str, X: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray) -> dict[str, Any]:
    model, model_cfg, train_cfg = CASES[name]
    cfg = TrainConfig(max_epochs=5, patience=50, batch_size=12, lr=3e-3, progress=False, threads=1, alpha=0.3,
                      ema_decay=0.9, **train_cfg)
    digests, losses, ponders, units_max = [], [], [], None
    for _ in range(2 if name == "scai_plus" else 1):  # the same seed twice: the same weights
        torch.manual_seed(0)
        net = create_model(model, in_length=X.shape[1], n_classes=3, **{**TINY_SCAI, **model_cfg})
        out = net.train().forward_detailed(torch.from_numpy(X[tr]).unsqueeze(1))
        if out.units_executed is not None:
            units_max = max(float(u.max()) for u in out.units_executed)
        history = Trainer(cfg).fit(net, X[tr], y[tr], X[va], y[va])
        digests.append(ddp.state_digest(net))
        losses.append([e["train_loss"] for e in history.epochs])
        ponders.append([e["train_ponder"] for e in history.epochs])
    return {"digests": digests, "train_loss": losses, "train_ponder": ponders, "units_max_before": units_max,
            "units_per_block": TINY_SCAI["units_per_block"]}


def _estimator(X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The estimator's own steps (preprocessing search, exit 0, cross-fitting, calibration) on every rank."""
    from scai.estimators import SCAIClassifier

    # skip_exits=False: the network is trained even where exit 0 alone gets every spectrum right
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, preprocessing="auto", exit0="auto", cross_fit=2,
                         skip_exits=False, train_config={"max_epochs": 3, "batch_size": 12, "threads": 1},
                         random_state=0)
    est.fit(X, y)
    extra = json.dumps([est.temperatures_.tolist(), est.thresholds_, repr(est.pipeline_), est.exit0_["kind"]],
                       sort_keys=True, default=str).encode()
    return {"digest": ddp.state_digest(est.network_, extra), "network": est.cross_fit_["network"],
            "preprocessing": (est.preprocessing_selection_ or {}).get("chosen"), "exit0": est.exit0_["kind"]}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    X, y, _ = make_peaks(n_per_class=16, seed=1)
    _, codes = np.unique(y, return_inverse=True)
    X = ((X - X.mean(1, keepdims=True)) / X.std(1, keepdims=True)).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(X))
    tr, va = order[:36], order[36:]
    with ddp.process_group() as env:
        record: dict[str, Any] = {"rank": env.rank, "world_size": env.world_size, "n_jobs": default_n_jobs(5)}
        record["cases"] = {name: _fit(name, X, codes, tr, va) for name in CASES}
        record["estimator"] = _estimator(X, codes)
        try:
            ddp.check_same(f"rank {env.rank}", "test value")
            record["mismatch_refused"] = False
        except ddp.ReplicaMismatchError as exc:
            record["mismatch_refused"] = str(exc)
    record["threads_after"] = ddp.group_threads()  # the group's threads must end with it
    (out / f"rank{env.rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
