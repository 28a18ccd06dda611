"""Compute-targeted training of PA blocks: the penalty's value and gradient, and a short training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scai.cli.main import build_parser
from scai.cli.train import _settings
from scai.errors import ConfigError, ScaiTypeError
from scai.models import create_model
from scai.training import TrainConfig, Trainer
from scai.training.losses import allocation_penalty, allocation_weights, exit_losses, target_penalty


def one_block_net(h: float, units: int = 3) -> torch.nn.Module:
    """SCAI+ with one PA block whose halting heads output ``h`` at every position (weights zero)."""
    torch.manual_seed(0)
    net = create_model("scai_plus", 32, 2, channels=(2,), units_per_block=units, head_bins=1)
    for head in net.blocks[0].halting:
        head.local.weight.data.zero_()
        head.glob.weight.data.zero_()
        head.local.bias.data.fill_(math.log(h / (1 - h)))  # sigmoid(b) = h
    return net.train()


def bias_grads(net: torch.nn.Module, units_fraction: torch.Tensor, target: float, kind: str, weight: float) -> list[float]:
    target_penalty(units_fraction, target, kind, weight).backward()
    return [0.0 if hd.local.bias.grad is None else float(hd.local.bias.grad) for hd in net.blocks[0].halting]


@pytest.mark.parametrize("kind", ["squared", "abs", "hinge"])
def test_gradient_above_target_pushes_towards_halting(kind):
    # h = 0.3, S = 3: cumulative 0.3, 0.6 < 0.98, so N = 3 everywhere, R = 1 - 0.6 = 0.4.
    # u = N / S = 1. d u / d b_s = d (N + R) / S / d b_s = -h (1 - h) / S for both heads.
    net = one_block_net(0.3)
    out = net.forward_detailed(torch.randn(4, 1, 32))
    assert torch.allclose(out.units_fraction, torch.ones(4))
    du_db = -0.3 * 0.7 / 3
    dpen_du = {"squared": 2 * 10.0 * (1.0 - 0.5), "abs": 10.0, "hinge": 10.0}[kind]
    grads = bias_grads(net, out.units_fraction, 0.5, kind, 10.0)
    assert grads == pytest.approx([dpen_du * du_db] * 2, rel=1e-5)
    assert all(g < 0 for g in grads)  # gradient descent raises the scores: positions halt sooner


@pytest.mark.parametrize("kind, expected", [("squared", 2 * 10.0 * (2 / 3 - 0.9)), ("abs", -10.0), ("hinge", 0.0)])
def test_gradient_below_target_pushes_towards_computing(kind, expected):
    # h = 0.6, S = 3: cumulative 0.6, then 1.2 >= 0.98, so N = 2, R = 0.4, u = 2/3 below 0.9.
    # Only h_1 enters R: d u / d b_1 = -h (1 - h) / S; the head after unit 2 gets no gradient.
    net = one_block_net(0.6)
    out = net.forward_detailed(torch.randn(4, 1, 32))
    assert torch.allclose(out.units_fraction, torch.full((4,), 2 / 3))
    grads = bias_grads(net, out.units_fraction, 0.9, kind, 10.0)
    assert grads == pytest.approx([expected * (-0.6 * 0.4 / 3), 0.0], rel=1e-5, abs=1e-12)
    if kind != "hinge":  # the hinge only acts above the target
        assert grads[0] > 0  # gradient descent lowers the score: positions run more units


def test_exit_losses_adds_the_penalty_only_with_a_target():
    net = one_block_net(0.3)
    out = net.forward_detailed(torch.randn(4, 1, 32))
    y = torch.tensor([0, 1, 0, 1])
    paper = exit_losses(out.logits, y, ponder=out.ponder, tau=1e-5)
    assert "target" not in paper
    ce = torch.nn.functional.cross_entropy(out.logits[-1], y)
    assert torch.allclose(paper["total"], ce + 1e-5 * out.ponder)
    targeted = exit_losses(out.logits, y, ponder=out.ponder, tau=1e-5, ponder_target=0.5,
                           units_fraction=out.units_fraction, penalty="squared", target_weight=10.0)
    assert float(targeted["units"]) == pytest.approx(1.0)
    assert float(targeted["target"].detach()) == pytest.approx(10.0 * 0.5**2)
    assert torch.allclose(targeted["total"], paper["total"] + 2.5)
    # a network without PA blocks has no units fraction: no penalty, no error
    plain = exit_losses(out.logits, y, ponder_target=0.5, units_fraction=None)
    assert "target" not in plain
    with pytest.raises(ConfigError, match="ponder_target must be in"):
        exit_losses(out.logits, y, ponder_target=1.5, units_fraction=out.units_fraction)
    with pytest.raises(ConfigError, match="squared"):
        target_penalty(out.units_fraction, 0.5, "cubic")


def synthetic(n: int = 96, width: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes: one Gaussian band whose position depends on the class, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    t = np.arange(width)
    X = rng.normal(0, 0.3, (n, width)) + 2 * np.exp(-0.5 * ((t - 40 - 20 * y[:, None]) / 4) ** 2)
    return X.astype(np.float32), y


@pytest.mark.parametrize("target", [0.5, 0.7])
def test_training_reaches_the_target(target):
    """40 epochs of 12 steps on a synthetic set: units executed within 0.05 of the target (~10 s).

    Untargeted, these networks run ~97 % of their units (the heads start at sigmoid(-1)).
    """
    X, y = synthetic()
    net = create_model("scai_plus", 128, 2, channels=(4, 8), units_per_block=4, head_bins=4)
    cfg = TrainConfig(max_epochs=40, batch_size=8, ponder_target=target, ema_decay=0.0, progress=False, threads=1)
    Trainer(cfg).fit(net, X, y, None, None, epochs=40)
    with torch.inference_mode():
        out = net.forward_detailed(torch.from_numpy(X).unsqueeze(1))
    measured = float(out.units_fraction.mean())
    by_block = [float(u.mean()) / 4 for u in out.units_executed]
    assert measured == pytest.approx(float(np.mean(by_block)), abs=1e-6)  # the fraction is N / S
    assert abs(measured - target) <= 0.05, (measured, by_block)
    assert float((out.logits[-1].argmax(1).numpy() == y).mean()) >= 0.95  # and it still classifies


@pytest.mark.parametrize(
    "bad, error",
    [(0.0, ConfigError), (1.5, ConfigError), (-0.2, ConfigError), (float("nan"), ConfigError), ("0.5", ScaiTypeError), (True, ScaiTypeError)],
)
def test_config_refuses_bad_targets(bad, error):
    with pytest.raises(error, match="ponder_target"):
        TrainConfig(ponder_target=bad)


def test_config_and_cli_carry_the_target():
    assert TrainConfig().ponder_target == 0.5  # the default; None is the paper's tau-only training
    assert TrainConfig.from_dict(TrainConfig(ponder_target=0.5).to_dict()).ponder_target == 0.5
    parser = build_parser()
    args = parser.parse_args(["train", "data.csv", "--ponder-target", "0.6"])
    assert _settings(args)["train"]["ponder_target"] == 0.6
    args = parser.parse_args(["train", "data.csv", "--ponder-target", "none"])
    assert _settings(args)["train"]["ponder_target"] is None
    assert "ponder_target" not in _settings(parser.parse_args(["train", "data.csv"]))["train"]
    args = parser.parse_args(["train", "data.csv", "--ponder-target", "0.5", "--ponder-allocation", "anova"])
    assert _settings(args)["train"]["ponder_allocation"] == "anova"
    assert TrainConfig.from_dict(_settings(args)["train"]).ponder_allocation == "anova"


@pytest.mark.parametrize("units, target, n_star", [(4, 0.25, 1), (4, 0.5, 2), (4, 0.6, 2), (4, 0.75, 3), (4, 1.0, 4), (3, 0.5, 2), (2, 0.3, 1)])
def test_init_halting_starts_every_position_at_the_target(units, target, n_star):
    """With the heads' weights at zero, the initialised bias alone puts h -HALTING_INIT_MARGIN
    logits above the boundary (1 - eps) / N* of N* = round(target * S): every position runs N*
    units, counted by the dense path (S when N* = S)."""
    from scai.models.pa_block import HALTING_INIT_MARGIN

    net = one_block_net(0.5, units=units).eval()
    block = net.blocks[0]
    block.init_halting(target)
    bias = block.halting[0].local.bias.item()
    limit = 1 - block.eps
    expected = n_star
    if n_star < units:
        assert torch.sigmoid(torch.tensor(bias + HALTING_INIT_MARGIN)).item() == pytest.approx(limit / n_star)
    with torch.no_grad():
        x = torch.randn(3, 2, 16)
        steps = block._forward_dense(x).units_executed
    assert torch.equal(steps, torch.full_like(steps, float(expected)))


def test_init_halting_refuses_a_target_outside_0_1():
    block = one_block_net(0.5).blocks[0]
    with pytest.raises(ConfigError, match="target"):
        block.init_halting(0.0)


def test_training_on_a_real_set_reaches_the_target(shared_datasets):
    """ucr_meat (60 training spectra of 448 points, the UCR split), trained as a user would
    (SCAIClassifier, its preprocessing and validation split; a small SCAI+, no exit 0): with
    ponder_target 0.5 it runs within 0.05 of half its units on the test spectra, and its
    positions do not all run the same number of units (it adapts). Before the halting heads
    started next to the target, 50 epochs left SCAI+ at 0.87 of its units there
    (benchmarks/results/pa_target/meat-200)."""
    from scai.estimators import SCAIClassifier

    d = np.load(shared_datasets / "ucr_meat.npz")
    X, y, axis = d["X"], d["y"], d["axis"]
    tr, te = d["train_idx"], d["test_idx"]
    est = SCAIClassifier(model="scai_plus", model_config={"channels": (8, 16), "units_per_block": 4},
                         exit0="none", rocket="none", cross_fit=0, ood="none", confidence_levels=None,
                         train_config={"max_epochs": 40, "ponder_target": 0.5, "progress": False, "threads": 1})
    est.fit(X[tr], y[tr], axis=axis)
    _, Z = est.prepare_input(X[te], axis)
    with torch.inference_mode():
        out = est.network_.eval().forward_detailed(torch.from_numpy(np.asarray(Z, np.float32)).unsqueeze(1))
    assert abs(float(out.units_fraction.mean()) - 0.5) <= 0.05
    assert any(len(torch.unique(u)) > 1 for u in out.units_executed)
    assert float(np.mean(est.predict(X[te], axis=axis) == y[te])) > 0.6  # and it learnt the three classes (chance: 1/3)


def test_allocation_weights_rank_the_scores_and_centre_them():
    """c = 0.5 - rank/(L-1), mapped onto each block by relative position, mean 0 per block."""
    scores = np.array([0.0, 3.0, 1.0, 2.0, 4.0])  # ranks 0 3 1 2 4
    full, half = allocation_weights(scores, [5, 3])
    assert np.allclose(full.numpy(), [0.5, -0.25, 0.25, 0.0, -0.5])
    assert np.allclose(half.numpy(), np.array([0.5, 0.25, -0.5]) - np.mean([0.5, 0.25, -0.5]))  # positions 0, 2, 4
    assert abs(float(half.sum())) < 1e-6


def test_allocation_penalty_moves_units_towards_informative_positions():
    """Hand check on one block whose heads give h at every position: the penalty's gradient on
    the halting conv's per-position output raises h (halt sooner) where c > 0 and lowers it where
    c < 0; its value is the c-weighted mean of N / S, so zero when N is the same everywhere."""
    net = one_block_net(0.3, units=3)  # N = 3 everywhere: h1 + h2 = 0.6 < 0.98
    block = net.blocks[0]
    width = net.stage_shapes()[0][1]
    logit = torch.zeros(1, width, requires_grad=True)  # added to the first head's pre-sigmoid output
    orig = block.halting[0].forward
    block.halting[0].forward = lambda x: torch.sigmoid(orig(x).logit() + logit)
    out = net.forward_detailed(torch.randn(2, 1, 32))
    c = torch.linspace(0.5, -0.5, width)  # first half uninformative, second half informative
    penalty = allocation_penalty(out.units_executed, [c], [3], weight=1.0)
    assert float(penalty.detach()) == pytest.approx(0.0, abs=1e-6)  # N = 3 at every position
    penalty.backward()
    g = logit.grad[0]
    # dP/dlogit_i = c_i d(N + R)_i/dh_i dh_i/dlogit_i = -c_i h (1 - h): negative where c > 0, so
    # descent raises the logit (halts sooner) there and lowers it where c < 0
    half = width // 2
    assert bool((g[:half] < 0).all()) and bool((g[half:] > 0).all())


def test_anova_allocation_trains_and_puts_units_on_the_band():
    """The synthetic classes differ only at positions 30-70: with ponder_allocation="anova" the
    trained network runs more units there than elsewhere, at the same mean target."""
    X, y = synthetic()
    torch.manual_seed(0)
    net = create_model("scai_plus", 128, 2, channels=(4, 8), units_per_block=4, head_bins=4)
    cfg = TrainConfig(max_epochs=30, batch_size=8, ponder_target=0.5, ponder_allocation="anova", ema_decay=0.0,
                      progress=False, threads=1)
    Trainer(cfg).fit(net, X, y, None, None, epochs=30)
    with torch.inference_mode():
        out = net.eval().forward_detailed(torch.from_numpy(X).unsqueeze(1))
    gaps = []
    for u in out.units_executed:
        u = u.mean(0).numpy()
        pos = np.linspace(0, 127, len(u))  # the block's positions spread over the input
        band = (pos >= 30) & (pos <= 70)
        gaps.append(u[band].mean() - u[~band].mean())
    assert np.mean(gaps) > 0.3, gaps  # uniform allocation: ~0.07 (losses.ALLOCATION_WEIGHT)
    assert abs(float(out.units_fraction.mean()) - 0.5) <= 0.05
    with pytest.raises(ConfigError, match="ponder_allocation"):
        TrainConfig(ponder_allocation="saliency")
