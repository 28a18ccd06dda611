"""Exit 0 and the cascade: a linear chemometric exit in front of any multi-exit network.

Classical chemometrics (logistic regression, PLS-DA on the preprocessed spectrum) is often as
accurate as a network on small spectral data sets at 100-1000x fewer MACs. :class:`Cascade` puts
such a linear classifier (:class:`LinearExit`, fitted by
:func:`scai.training.linear_exit.fit_linear_exit`) in front of a network as **exit 0**, the
cheap end of every anytime curve. Exit k + 1 of the cascade is the network's exit k.

Deeper exits can only add: ``uses`` marks the exits whose held-out accuracy beats every earlier
exit's (chosen in ``SCAIClassifier.fit``). An exit that does not is *skipped*: the exit loop
answers there with the answer of the last exit used before it
(:func:`scai.inference.exit_loop.carry_forward`), so accuracy cannot fall with depth on held-out
data; network stages after the last used exit are dropped (:meth:`Cascade.truncated`), so they
cost nothing.

Deeper exits can also *build on* earlier ones: an optional
:class:`~scai.inference.combination.ExitCombination` (fitted on out-of-fold logits in
``SCAIClassifier.fit``) makes exit k's logits a learned combination of its own log-probabilities
and exit k - 1's combined logits. :meth:`forward_detailed` / :meth:`forward_exits` return the
combined logits; ``run_stage`` keeps returning each stage's own logits (the stage contract), and
the exit loop combines them as it goes (:func:`scai.inference.exit_loop.run_exit_loop`).

An optional **MiniRocket exit** (:class:`scai.models.rocket.RocketExit`) follows exit 0 as stage
1 when cross-validation finds it useful; the network's stages then start at stage 2
(``net_start``).

Stage contract (docs/CONTRACTS.md): stage 0 (and the MiniRocket stage) takes the (B, 1, W) input
and passes it on unchanged as its features; stage k >= ``net_start`` is the network's stage
k - ``net_start``. MACs: exit 0 costs W*C (dense) or
W*k + k*C (PLS-DA, factorised), counted like every linear layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scai.errors import ModelConfigError
from scai.inference.combination import ExitCombination
from scai.models.base import MultiExitNetwork, NetworkOutput, StageResult, constant_macs
from scai.models.rocket import RocketExit

__all__ = ["LinearExit", "Cascade", "CascadeSpec"]


class LinearExit(nn.Module):
    """Exit 0: ``logits = x @ weight.T + bias`` on the flattened (B, 1, W) input.

    Parameters
    ----------
    in_length : int
    n_classes : int
    rank : int, optional
        When given, the weight is factorised as ``head @ projection`` with ``projection``
        (rank, W) and ``head`` (C, rank), as PLS-DA fits it, and costs ``W*rank + rank*C`` MACs.
    """

    def __init__(self, in_length: int, n_classes: int, rank: int | None = None) -> None:
        super().__init__()
        self.in_length, self.n_classes = int(in_length), int(n_classes)
        self.rank = None if rank is None else int(rank)
        if self.rank is not None and self.rank < 1:
            raise ModelConfigError(f"LinearExit rank must be >= 1; got {rank}")
        if self.rank is None:
            self.weight = nn.Parameter(torch.zeros(self.n_classes, self.in_length), requires_grad=False)
        else:
            self.projection = nn.Parameter(torch.zeros(self.rank, self.in_length), requires_grad=False)
            self.head = nn.Parameter(torch.zeros(self.n_classes, self.rank), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(self.n_classes), requires_grad=False)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per spectrum."""
        if self.rank is None:
            return self.in_length * self.n_classes
        return self.in_length * self.rank + self.rank * self.n_classes

    def set_weights(self, weight: Any = None, bias: Any = None, *, projection: Any = None, head: Any = None) -> None:
        """Copy fitted NumPy weights in (dense ``weight`` or factorised ``projection``/``head``)."""
        with torch.no_grad():
            if self.rank is None:
                self.weight.copy_(torch.as_tensor(np.asarray(weight, dtype=np.float32)))
            else:
                self.projection.copy_(torch.as_tensor(np.asarray(projection, dtype=np.float32)))
                self.head.copy_(torch.as_tensor(np.asarray(head, dtype=np.float32)))
            self.bias.copy_(torch.as_tensor(np.asarray(bias, dtype=np.float32)))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        if self.rank is None:
            return F.linear(flat, self.weight, self.bias)
        return F.linear(F.linear(flat, self.projection), self.head, self.bias)


@dataclass(frozen=True)
class CascadeSpec:
    """What config.json stores about a cascade (the weights live in model.safetensors).

    Attributes
    ----------
    kind : str
        How exit 0 was fitted ("logistic" or "pls").
    rank : int or None
        Factorisation rank of exit 0 (PLS components), None for a dense weight.
    """

    kind: str
    rank: int | None = None
    #: The MiniRocket exit after exit 0 (:class:`scai.models.rocket.RocketExit`): its
    #: ``dilations`` and ``features_per_dilation``; None when the cascade has none.
    rocket: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rank": self.rank, "rocket": self.rocket}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CascadeSpec:
        try:
            rocket = d.get("rocket")
            if rocket is not None:
                rocket = {"dilations": [int(v) for v in rocket["dilations"]],
                          "features_per_dilation": [int(v) for v in rocket["features_per_dilation"]],
                          **({"input_affine": True} if rocket.get("input_affine") is True else {})}
            return cls(kind=str(d["kind"]), rank=None if d.get("rank") is None else int(d["rank"]), rocket=rocket)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelConfigError(f"cascade spec {d!r} is not valid ({exc})") from None


class Cascade(MultiExitNetwork):
    """A network with a linear exit 0 in front; exit k + 1 is the network's exit k.

    Parameters
    ----------
    network : MultiExitNetwork
        The (trained) network; its exits become exits 1..L.
    exit0 : LinearExit
        The fitted linear exit.
    spec : CascadeSpec
    uses : sequence of bool, optional
        Per cascade exit, whether it answers (default: all). Exit 0 and the last exit are
        always used.
    n_exits : int, optional
        Keep only the first ``n_exits`` cascade exits (default: all ``network.n_exits + 1``):
        later network stages are never run, exported or counted (their weights stay in the
        file, so the model can be re-cut).
    rocket : RocketExit, optional
        A MiniRocket exit after exit 0.
    combination : ExitCombination, optional
        How each exit combines its logits with the exits before it (None: every exit answers
        for itself); one entry per cascade exit kept.
    """

    def __init__(
        self,
        network: MultiExitNetwork,
        exit0: LinearExit,
        spec: CascadeSpec,
        uses: Any = None,
        n_exits: int | None = None,
        rocket: RocketExit | None = None,
        combination: ExitCombination | None = None,
    ) -> None:
        if exit0.in_length != network.in_length or exit0.n_classes != network.n_classes:
            raise ModelConfigError(
                f"exit 0 is for ({exit0.in_length} points, {exit0.n_classes} classes) but the network for "
                f"({network.in_length}, {network.n_classes})"
            )
        if (rocket is None) != (spec.rocket is None):
            raise ModelConfigError("the cascade spec and the modules disagree on whether there is a MiniRocket exit")
        if rocket is not None and (rocket.in_length != network.in_length or rocket.n_classes != network.n_classes):
            raise ModelConfigError("the MiniRocket exit is for another input length or class count than the network")
        #: cascade stage of the network's first stage (after exit 0 and the MiniRocket exit)
        self.net_start = 1 if rocket is None else 2
        full = network.n_exits + self.net_start
        n = full if n_exits is None else int(n_exits)
        if not 1 <= n <= full:
            raise ModelConfigError(f"n_exits={n_exits} is not allowed; use 1..{full}")
        super().__init__(network.name, network.in_length, network.n_classes, network.config, n)
        self.network = network
        self.exit0 = exit0
        self.rocket = rocket
        self.spec = spec
        self.execution = network.execution
        self.uses = self._check_uses(uses)
        if combination is not None and (combination.n_exits != n or combination.n_classes != network.n_classes):
            raise ModelConfigError(
                f"the exit combination is for {combination.n_exits} exits and {combination.n_classes} classes; "
                f"the cascade has {n} exits and {network.n_classes} classes"
            )
        self.combination = None if combination is None or combination.is_identity else combination

    def _check_uses(self, uses: Any) -> list[bool]:
        if uses is None:
            return [True] * self.n_exits
        flags = [bool(u) for u in uses]
        if len(flags) != self.n_exits or not flags[0] or not flags[-1]:
            raise ModelConfigError(
                f"uses={flags} is not allowed; give {self.n_exits} flags with exit 0 and the last exit used"
            )
        return flags

    def cut(self, uses: Any) -> Cascade:
        """The same weights with per-exit ``uses``; exits after the last used one are dropped."""
        flags = [bool(u) for u in uses]
        if len(flags) != self.n_exits or not flags[0]:
            raise ModelConfigError(f"uses={flags} is not allowed; give {self.n_exits} flags with exit 0 used")
        n = max(i for i, f in enumerate(flags) if f) + 1
        comb = self.combination
        if comb is not None:
            comb = ExitCombination(comb.a[:n], comb.b[:n], comb.c[:n])
        return Cascade(self.network, self.exit0, self.spec, uses=flags[:n], n_exits=n, rocket=self.rocket,
                       combination=comb)

    def combined(self, combination: ExitCombination | None) -> Cascade:
        """The same cascade with another exit combination (None: every exit for itself)."""
        return Cascade(self.network, self.exit0, self.spec, uses=self.uses, n_exits=self.n_exits,
                       rocket=self.rocket, combination=combination).eval()

    def _combine(self, logits: list[Tensor]) -> list[Tensor]:
        """Each exit's combined logits (see :mod:`scai.inference.combination`), in torch."""
        comb = self.combination
        if comb is None:
            return logits
        out, state = [logits[0]], logits[0]
        for k in range(1, len(logits)):
            c = torch.as_tensor(comb.c[k], dtype=logits[k].dtype, device=logits[k].device)
            state = float(comb.a[k]) * state + float(comb.b[k]) * torch.log_softmax(logits[k], dim=1) + c
            out.append(state)
        return out

    def forward_exits(self, x: Tensor, stop_at: int | None = None) -> list[Tensor]:
        return self._combine(super().forward_exits(x, stop_at))

    def forward_detailed(self, x: Tensor) -> NetworkOutput:
        out = super().forward_detailed(x)
        out.logits = self._combine(out.logits)
        return out

    def stage_macs(self, i: int) -> int:
        self._check_stage(i)
        if i == 0:
            return self.exit0.macs
        if i < self.net_start:
            return self.rocket.macs  # type: ignore[union-attr]
        return self.network.stage_macs(i - self.net_start)

    def stage_shapes(self) -> list[tuple[int, int]]:
        return [*[(1, self.in_length)] * self.net_start, *self.network.stage_shapes()[: self.n_exits - self.net_start]]

    def _stage(self, i: int, features: Tensor) -> StageResult:
        if i == 0:
            macs = constant_macs(self.exit0.macs, features.shape[0], features.device)
            return StageResult(features, self.exit0(features), macs)
        if i < self.net_start:  # the MiniRocket exit also passes the input on unchanged
            assert self.rocket is not None
            macs = constant_macs(self.rocket.macs, features.shape[0], features.device)
            return StageResult(features, self.rocket(features), macs)
        return self.network._stage(i - self.net_start, features)

    def set_execution(self, mode: str) -> Cascade:
        super().set_execution(mode)
        self.network.set_execution(mode)
        return self

    def extra_repr(self) -> str:
        rocket = ", rocket" if self.rocket is not None else ""
        comb = ", combined" if self.combination is not None else ""
        return super().extra_repr() + f", exit0={self.spec.kind!r}{rocket}, uses={self.uses}{comb}"
