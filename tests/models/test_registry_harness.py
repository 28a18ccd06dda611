"""One harness over every registered model (tiny inputs), plus registry behaviour."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from scai.models import ModelConfigError, NetworkOutput, create_model, list_models, model_config_class
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
