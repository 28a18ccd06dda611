"""Exit 0 and the cascade: MACs by hand, stages equal the full forward, skipped exits carry the
previous answer through the one exit loop, ONNX stage 0 equals PyTorch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from scai.errors import ModelConfigError
from scai.inference.exit_loop import carry_forward, run_exit_loop
from scai.inference.policies import FullRule, ThresholdRule
from scai.inference.predictor import TorchStages
from scai.models import create_model
from scai.models.cascade import Cascade, CascadeSpec, LinearExit

W, C = 48, 3
TINY = {"channels": (4, 6, 8), "units_per_block": 1, "stem_stride": 2}


def _cascade(rank: int | None = None, seed: int = 0) -> Cascade:
    torch.manual_seed(seed)
    net = create_model("scai_plus", W, C, **TINY).eval()
    head = LinearExit(W, C, rank=rank)
    rng = np.random.default_rng(seed)
    if rank is None:
        head.set_weights(rng.normal(size=(C, W)), rng.normal(size=C))
    else:
        head.set_weights(bias=rng.normal(size=C), projection=rng.normal(size=(rank, W)), head=rng.normal(size=(C, rank)))
    return Cascade(net, head, CascadeSpec("pls" if rank else "logistic", rank)).eval()


def test_exit0_macs_are_the_hand_count_and_lead_the_cumulative_costs() -> None:
    dense, pls = _cascade(), _cascade(rank=5)
    assert dense.exit0.macs == W * C
    assert pls.exit0.macs == W * 5 + 5 * C
    net_macs = dense.network.exit_macs()
    assert dense.exit_macs() == [W * C] + [m + W * C for m in net_macs]
    assert dense.n_exits == dense.network.n_exits + 1
    assert dense.stage_shapes()[0] == (1, W) and dense.stage_shapes()[1:] == dense.network.stage_shapes()


def test_exit0_is_the_linear_map_and_the_network_exits_are_unchanged() -> None:
    casc = _cascade(rank=4)
    x = torch.randn(7, 1, W)
    with torch.no_grad():
        logits = casc.forward_exits(x)
        det = casc.forward_detailed(x)
        own = casc.network.forward_exits(x)
    P, H, b = (casc.exit0.projection.numpy(), casc.exit0.head.numpy(), casc.exit0.bias.numpy())
    np.testing.assert_allclose(logits[0].numpy(), x[:, 0].numpy() @ P.T @ H.T + b, rtol=1e-5, atol=1e-5)
    for a, b2 in zip(logits[1:], own):
        np.testing.assert_allclose(a.numpy(), b2.numpy(), atol=1e-6)
    for a, b2 in zip(det.logits, logits):
        np.testing.assert_allclose(a.numpy(), b2.numpy(), atol=1e-6)
    assert det.macs.shape == (7, casc.n_exits) and torch.all(det.macs[:, 0] == casc.exit0.macs)


def test_cut_drops_later_stages_and_skips_exits() -> None:
    casc = _cascade()
    cut = casc.cut([True, False, True, False])
    assert cut.n_exits == 3 and cut.uses == [True, False, True]
    assert cut.exit_macs() == casc.exit_macs()[:3]
    assert casc.cut([True, False, False, False]).n_exits == 1  # exit 0 alone: the network never runs
    with pytest.raises(ModelConfigError, match="exit 0 used"):
        casc.cut([False, True, True, True])


def test_a_skipped_exit_answers_with_the_previous_used_exit() -> None:
    casc = _cascade(seed=2).cut([True, False, True, True])
    X = np.random.default_rng(1).normal(size=(20, W)).astype(np.float32)
    temps = np.ones(casc.n_exits)
    with torch.no_grad():
        raw = [torch.softmax(z, 1).double().numpy() for z in casc.forward_exits(torch.from_numpy(X).unsqueeze(1))]
    # everyone leaves at exit 1 (skipped): the answer must be exit 0's
    res = run_exit_loop(TorchStages(casc), X, ThresholdRule(np.array([np.inf, 0.0, np.inf, 0.0])), temperatures=temps)
    assert np.all(res.exit == 1)
    np.testing.assert_allclose(res.probabilities, raw[0], atol=1e-6)
    np.testing.assert_allclose(res.macs, casc.exit_macs()[1])
    full = run_exit_loop(TorchStages(casc), X, FullRule(), temperatures=temps)
    np.testing.assert_allclose(full.probabilities, raw[-1], atol=1e-6)
    carried = carry_forward(np.stack(raw), casc.uses)
    np.testing.assert_array_equal(carried[1], carried[0])
    np.testing.assert_array_equal(carried[2], raw[2])


def test_onnx_stage0_matches_torch(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from scai.deploy.onnx_export import _stage_module

    casc = _cascade(rank=3)
    module = _stage_module(casc, 0)
    x = torch.randn(2, 1, W)
    path = tmp_path / "s0.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["spectrum"],
                          output_names=["features_0", "logits_0"], dynamic_axes={"spectrum": {0: "batch"}})
    xb = torch.randn(5, 1, W)
    feats, logits = ort.InferenceSession(str(path)).run(None, {"spectrum": xb.numpy()})
    with torch.no_grad():
        f_ref, l_ref = module(xb)
    np.testing.assert_allclose(feats, f_ref.numpy(), atol=1e-6)
    np.testing.assert_allclose(logits, l_ref.numpy(), atol=1e-4)
