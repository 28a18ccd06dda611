"""One harness over every registered model (tiny inputs), plus registry behaviour.

Every model also goes through a model directory (save/load, identical per-exit logits) and an
ONNX export (each stage against PyTorch with ONNX Runtime, <= 1e-4).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import scai
from scai import SCAIClassifier
from scai.deploy import export_onnx, load_manifest
from scai.models import EXECUTION_MODES, ModelConfigError, NetworkOutput, create_model, list_models, model_config_class
from scai.models._registry import register_model
from scai.models.pa_block import PABlock

IN_LENGTH = 96
N_CLASSES = 3
TINY = {"channels": (4, 6, 8, 8)}
ALL = list_models()


def tiny(name: str, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return create_model(name, IN_LENGTH, N_CLASSES, **TINY, **extra)


def batch(n: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, IN_LENGTH, generator=g)


def full_compute(net) -> None:
    """Make every PA position run every unit (halting scores ~ 0)."""
    for m in net.modules():
        if isinstance(m, PABlock):
            for head in m.halting:
                head.local.bias.data.fill_(-60.0)


def test_registry_names():
    for name in ("scai", "scai_plus", "resnet1d", "drsn_cs", "drsn_cw", "resnet1d_4", "resnet1d_16",
                 "drsn_cs_8", "drsn_cw_12"):
        assert name in ALL


def test_duplicate_registration_is_an_error():
    with pytest.raises(ModelConfigError, match="already registered"):
        register_model("scai", lambda *a: None, model_config_class("scai"))


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ModelConfigError, match="valid keys: .*channels"):
        create_model("scai", 128, 2, chanels=(4, 8))
    assert issubclass(ModelConfigError, ValueError)


def test_unknown_name_and_fixed_depth():
    with pytest.raises(ModelConfigError, match="registered models"):
        create_model("nope", 128, 2)
    with pytest.raises(ModelConfigError, match="fixed"):
        create_model("resnet1d_4", 128, 2, depth=8)
    assert create_model("resnet1d_4", 128, 2, depth=4).config.depth == 4


def test_configs_are_frozen_dataclasses():
    for name in ALL:
        cls = model_config_class(name)
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_exits(name):
    net = tiny(name).eval()
    x = batch()
    expected_exits = len(TINY["channels"]) if name.startswith("scai") else 1
    assert net.n_exits == expected_exits
    assert (net.name, net.in_length, net.n_classes) == (name, IN_LENGTH, N_CLASSES)
    with torch.no_grad():
        assert net(x).shape == (4, N_CLASSES)
        exits = net.forward_exits(x)
        assert len(exits) == net.n_exits and all(e.shape == (4, N_CLASSES) for e in exits)
        assert len(net.forward_exits(x, stop_at=0)) == 1
        out = net.forward_detailed(x)
    assert isinstance(out, NetworkOutput)
    assert out.macs.shape == (4, net.n_exits) and out.macs.dtype == torch.int64
    assert out.ponder.dim() == 0
    assert torch.allclose(out.logits[-1], exits[-1])
    if name == "scai_plus":
        assert len(out.units_executed) == net.n_exits
        for u, (_, w) in zip(out.units_executed, net.stage_shapes()):
            assert u.shape == (4, w)
    else:
        assert out.units_executed is None and out.ponder.item() == 0.0
        assert (out.macs == torch.tensor(net.exit_macs())).all()


@pytest.mark.parametrize("name", ALL)
def test_backward_reaches_all_parameters(name):
    net = tiny(name).train()
    x, y = batch(), torch.tensor([0, 1, 2, 0])
    out = net.forward_detailed(x)
    loss = sum(F.cross_entropy(z, y) for z in out.logits) + 1e-2 * out.ponder
    loss.backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ALL)
def test_macs_match_flop_counter(name):
    net = tiny(name).eval()
    full_compute(net)
    x = batch(2)
    for stop in range(net.n_exits):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net.forward_exits(x, stop_at=stop)
        assert counter.get_total_flops() == 2 * 2 * net.exit_macs()[stop], (name, stop)
    with torch.no_grad():
        spent = net.forward_detailed(x).macs
    assert (spent == torch.tensor(net.exit_macs())).all()


@pytest.mark.parametrize("name", ALL)
def test_seeded_determinism(name):
    a, b = tiny(name, seed=3).eval(), tiny(name, seed=3).eval()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    x = batch()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", ALL)
def test_stage_by_stage_equals_full_forward(name):
    net = tiny(name).eval()
    x = batch()
    with torch.no_grad():
        full = net.forward_detailed(x)
        feats, total = x, torch.zeros(4, dtype=torch.int64)
        for i in range(net.n_exits):
            feats, logits, macs = net.run_stage(i, feats, return_macs=True)
            total = total + macs
            assert torch.allclose(logits, full.logits[i], atol=1e-6)
            assert (total == full.macs[:, i]).all()
            assert tuple(feats.shape[1:]) == net.stage_shapes()[i]
    with pytest.raises(ModelConfigError):
        net.run_stage(net.n_exits, feats)


@pytest.mark.parametrize("name", ALL)
def test_config_round_trip(name):
    net = tiny(name)
    cfg = dataclasses.asdict(net.config)
    again = create_model(name, IN_LENGTH, N_CLASSES, **cfg)
    assert again.config == net.config
    via_json = create_model(name, IN_LENGTH, N_CLASSES, **json.loads(json.dumps(cfg)))
    assert via_json.config == net.config
    assert again.exit_macs() == net.exit_macs()


def test_bad_input_shape():
    net = tiny("scai")
    with pytest.raises(ValueError, match="shape"):
        net(torch.zeros(2, 1, IN_LENGTH + 1))


# ---- persistence and ONNX, every registered model ------------------------------------------
#
# One tiny SCAIClassifier per model (1 epoch on 12 random spectra, no preprocessing), saved and
# loaded through the model directory, then exported stage by stage. PA blocks get halting
# biases of 0 so that positions stop after different numbers of units and the exported
# ``Where`` logic is exercised, not just the all-units path.

MIXED_HALTING_BIAS = 0.0


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """name -> (fitted estimator, its saved model directory), built on first use."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, IN_LENGTH)).astype(np.float32)
    y = np.repeat(np.arange(N_CLASSES), 12 // N_CLASSES)
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            est = SCAIClassifier(model=name, model_config=TINY, train_config={"max_epochs": 1},
                                 preprocessing="none", standardize="none", calibrate=False,
                                 val_fraction=0.25, random_state=0)
            est.fit(X, y)
            for m in est.network_.modules():
                if isinstance(m, PABlock):
                    for head in m.halting:
                        head.local.bias.data.fill_(MIXED_HALTING_BIAS)
            cache[name] = (est, est.save(tmp_path_factory.mktemp("models") / name))
        return cache[name]

    return get


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip(name, fitted):
    est, directory = fitted(name)
    again = scai.load(directory)
    a, b = est.network_, again.network_
    assert type(b) is type(a) and b.name == name and b.config == a.config
    assert b.exit_macs() == a.exit_macs() == again.exit_macs_
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    x = batch(5)
    for mode in EXECUTION_MODES:
        a.set_execution(mode)
        b.set_execution(mode)
        with torch.no_grad():
            la, lb = a.forward_exits(x), b.forward_exits(x)
        assert len(la) == len(lb) == a.n_exits
        for k, (za, zb) in enumerate(zip(la, lb)):
            assert torch.equal(za, zb), (mode, k)
    a.set_execution("auto")
    b.set_execution("auto")
    Z = x.squeeze(1).numpy()
    assert (est.exit_logits(Z, preprocessed=True) == again.exit_logits(Z, preprocessed=True)).all()


@pytest.mark.parametrize("name", ALL)
def test_onnx_stages_match_torch(name, fitted, tmp_path):
    pytest.importorskip("onnx")  # the optional "onnx" extra
    ort = pytest.importorskip("onnxruntime")
    _, directory = fitted(name)
    net = scai.load(directory).network_
    out = export_onnx(directory, tmp_path / "onnx", thresholds=0.5)
    manifest = load_manifest(out)
    assert len(manifest["stages"]) == net.n_exits
    x = batch(5, seed=7)  # neither the traced batch (2) nor export's own check batch (3)
    # ONNX stages return each stage's own logits (the exit loop combines them): compare with those
    raw = net.combined(None) if getattr(net, "combination", None) is not None else net
    with torch.no_grad():
        detailed = raw.forward_detailed(x)
    if detailed.units_executed is not None:  # PA: positions stop after different numbers of units
        assert any(u.min() < u.max() for u in detailed.units_executed)
    feats_torch, feats_onnx = x, x.numpy()
    for k, stage in enumerate(manifest["stages"]):
        sess = ort.InferenceSession(str(out / stage["file"]), providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
        with torch.no_grad():
            f_t, z_t = net.run_stage(k, feats_torch)
        # this stage alone, on the features PyTorch computed ...
        f_o, z_o = sess.run(None, {in_name: feats_torch.numpy()})
        assert np.max(np.abs(z_o - z_t.numpy())) <= 1e-4, (name, k, "logits")
        assert np.max(np.abs(f_o - f_t.numpy())) <= 1e-4, (name, k, "features")
        # ... and chained on ONNX's own features, as an edge device runs it
        feats_onnx, z_chain = sess.run(None, {in_name: feats_onnx})
        assert np.max(np.abs(z_chain - detailed.logits[k].numpy())) <= 1e-4, (name, k, "chained")
        feats_torch = f_t
