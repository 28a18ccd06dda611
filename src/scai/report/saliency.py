"""Band importance: where along the spectral axis the model's answer is sensitive to the input.

Vanilla saliency (Simonyan et al., 2014): the magnitude of the gradient of the answering exit's
logit for each spectrum's true class with respect to the preprocessed input, averaged over the
spectra and normalised to a maximum of 1. It is a local, first-order measure (it says which
points move the logit, not why), cheap enough to draw for every evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["band_importance"]


def _answering_exit(network: Any) -> int:
    """The last exit that answers (exits marked as repeating the one before carry its answer)."""
    uses = getattr(network, "uses", None)
    n = int(network.n_exits)
    if uses is None:
        return n - 1
    used = [k for k in range(min(n, len(uses))) if uses[k]]
    return used[-1] if used else n - 1


def band_importance(
    estimator: Any, Z: np.ndarray, y_idx: np.ndarray, *, batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Mean |d logit_true / d input| per preprocessed point, normalised to max 1.

    Parameters
    ----------
    estimator : SCAIClassifier
        Fitted.
    Z : ndarray (n, W')
        Preprocessed spectra (``estimator.transform_input``).
    y_idx : ndarray (n,)
        Class indices of the true labels.

    Returns
    -------
    (axis, importance) : the preprocessed axis (W',) and the importance (W',).
    """
    import torch

    net = estimator.network_
    k = _answering_exit(net)
    total = np.zeros(Z.shape[1], dtype=np.float64)
    was_training = net.training
    net.eval()
    try:
        for start in range(0, len(Z), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(Z[start : start + batch_size], dtype=np.float32)).unsqueeze(1)
            xb.requires_grad_(True)
            outs = net.forward_exits(xb, stop_at=k)[: k + 1]
            # a MiniRocket exit's logits are piecewise constant in the input (PPV counts): no gradient.
            # Then the latest exit before it that has one answers for the saliency (exit 0 at worst).
            logits = next((z for z in reversed(outs) if z.requires_grad), None)
            if logits is None:
                continue
            yb = torch.as_tensor(y_idx[start : start + batch_size], dtype=torch.long)
            logits.gather(1, yb[:, None]).sum().backward()
            total += xb.grad.detach().abs().sum(dim=(0, 1)).double().numpy()
    finally:
        net.train(was_training)
        net.zero_grad(set_to_none=True)
    importance = total / max(len(Z), 1)
    top = float(importance.max()) if importance.size else 0.0
    if top > 0:
        importance = importance / top
    out_axis = getattr(estimator.pipeline_, "output_axis_", None)
    axis = np.asarray(out_axis, dtype=np.float64) if out_axis is not None and len(out_axis) == Z.shape[1] else np.arange(Z.shape[1], dtype=np.float64)
    return axis, importance
