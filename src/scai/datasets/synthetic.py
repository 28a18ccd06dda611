"""Synthetic liquor-like Raman spectra for scale tests (any number of brands, samples, points).

Each spectrum is a mixture of water and ethanol bands at their real positions, a brand
fingerprint of minor flavour-compound peaks, a broad fluorescence background, then laser-power
drift (multiplicative), a small wavenumber shift and shot noise::

    counts = gain * L * [abv * E(x - d) + (1 - abv) * W(x - d) + a * T_brand(x - d) + f * (G(x) + s * R(x))]
    X      = counts + sqrt(counts + read_noise^2) * N(0, 1)

The shift uses a first-order expansion on precomputed templates, ``T(x - d) ~ T(x) - d T'(x)``, so
one block of spectra is a single small matrix product plus a gather; shot noise uses the normal
approximation of the Poisson law (exact enough at the hundreds-to-thousands of counts here), its
N(0, 1) draws cut from a seeded pool (see ``_Model``) because drawing 1e9 normals is too slow.
Randomness is drawn per fixed block of rows from ``default_rng([seed, block])``, so the data do
not depend on ``chunk_size`` and blocks can be generated on several threads.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from scai.data import Spectra
from scai.errors import ConfigError

__all__ = ["synthetic_liquor", "WATER_BANDS", "ETHANOL_BANDS", "FLAVOUR_BANDS"]

_BLOCK = 4096  # rows per random block: fixed, so output never depends on chunk_size
_POOL = 1 << 21  # size of the pool of normal draws the noise rows are cut from

#: (centre cm-1, half width cm-1, relative height, shape): water H–O–H bend and O–H stretch.
WATER_BANDS = ((1640.0, 40.0, 0.10, "lorentz"), (3250.0, 120.0, 0.80, "gauss"), (3430.0, 110.0, 0.65, "gauss"))
#: Ethanol Raman bands; 883 cm-1 (C–C–O symmetric stretch) is the strongest in the fingerprint region.
ETHANOL_BANDS = (
    (433.0, 14.0, 0.25, "lorentz"),
    (883.0, 9.0, 1.00, "lorentz"),
    (1052.0, 10.0, 0.40, "lorentz"),
    (1095.0, 10.0, 0.35, "lorentz"),
    (1275.0, 10.0, 0.20, "lorentz"),
    (1454.0, 12.0, 0.45, "lorentz"),
    (2930.0, 14.0, 0.85, "lorentz"),
    (2975.0, 12.0, 0.70, "lorentz"),
)
#: Candidate flavour-compound band positions: ethyl acetate (~848, ~1740), ethyl hexanoate and
#: acids (C=O ~1720), CH2 twist/deformation (~1300, ~1440), C–O (~1115), ring/skeletal (~636),
#: plus a few fingerprint positions; each brand picks several and jitters them.
FLAVOUR_BANDS = (636.0, 780.0, 848.0, 1002.0, 1115.0, 1180.0, 1300.0, 1340.0, 1440.0, 1600.0, 1720.0, 1740.0)


def _shape(x: np.ndarray, centre: float, width: float, kind: str) -> np.ndarray:
    u = (x - centre) / width
    return np.exp(-0.5 * u * u) if kind == "gauss" else 1.0 / (1.0 + u * u)


def _bands(x: np.ndarray, bands: tuple[tuple[float, float, float, str], ...]) -> np.ndarray:
    return sum(h * _shape(x, c, w, k) for c, w, h, k in bands)  # type: ignore[return-value]


class _Model:
    """Templates on the axis and per-brand parameters: everything shared by all blocks."""

    def __init__(self, n_classes: int, n_points: int, seed: int, axis_range: tuple[float, float]) -> None:
        lo, hi = float(axis_range[0]), float(axis_range[1])
        self.axis = np.linspace(lo, hi, n_points)
        x = self.axis
        rng = np.random.default_rng([seed, 0x5CA1])
        k = min(6, len(FLAVOUR_BANDS))
        templates = np.empty((n_classes, n_points))
        for c in range(n_classes):
            centres = rng.choice(FLAVOUR_BANDS, size=k, replace=False) + rng.uniform(-4.0, 4.0, size=k)
            widths = rng.uniform(8.0, 16.0, size=k)
            heights = rng.uniform(0.03, 0.12, size=k)
            templates[c] = sum(h / (1.0 + ((x - m) / w) ** 2) for m, w, h in zip(centres, widths, heights))
        self.abv = rng.uniform(0.35, 0.55, size=n_classes)  # alcohol by volume per brand
        self.fluor = rng.uniform(0.2, 0.6, size=n_classes)  # typical fluorescence level per brand
        grad = (lambda a: np.gradient(a, x, axis=-1)) if n_points > 1 else (lambda a: np.zeros_like(a))
        ethanol, water = _bands(x, ETHANOL_BANDS), _bands(x, WATER_BANDS)
        centre, span = 0.5 * (lo + hi), max(hi - lo, 1.0)
        fluorescence = np.exp(-0.5 * ((x - (lo + 0.35 * span)) / (0.45 * span)) ** 2)
        ramp = (x - centre) / span
        self.basis = np.stack([ethanol, grad(ethanol), water, grad(water), fluorescence, ramp]).astype(np.float32)
        self.templates = templates.astype(np.float32)
        self.templates_grad = grad(templates).astype(np.float32)
        self.n_classes = n_classes
        self._local = threading.local()
        # Normal draws cost ~40 ns each here, too slow for 1e9 values. Noise rows are instead the
        # sum of two randomly offset windows of a seeded pool of normals (scaled by 1/sqrt 2):
        # still N(0, 1) per point, and two rows share noise only if both offsets collide.
        pool = np.random.default_rng([seed, 0x9015E]).standard_normal(_POOL + n_points, dtype=np.float32)
        self.noise_windows = np.lib.stride_tricks.sliding_window_view(pool, n_points)

    def block(self, seed: int, b: int, n_total: int, gain: float, read_noise: float) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``b*_BLOCK ...`` in this thread's scratch buffer (valid until its next call).

        Random numbers are always drawn for a full block, then cut, so row values do not depend
        on ``n_total``. Scratch buffers are reused because first-touch page faults on fresh
        16 MB temporaries cost more than the arithmetic.
        """
        rng = np.random.default_rng([seed, b])
        y_full = (np.arange(b * _BLOCK, (b + 1) * _BLOCK) % self.n_classes).astype(np.int64)
        f32 = np.float32
        abv = self.abv[y_full].astype(f32) + f32(0.005) * rng.standard_normal(_BLOCK, dtype=f32)
        minor = f32(1.0) + f32(0.1) * rng.standard_normal(_BLOCK, dtype=f32)
        fluor = self.fluor[y_full].astype(f32) * np.maximum(f32(0.0), f32(1.0) + f32(0.3) * rng.standard_normal(_BLOCK, dtype=f32))
        slope = f32(0.3) * rng.standard_normal(_BLOCK, dtype=f32)
        laser = np.exp(f32(0.08) * rng.standard_normal(_BLOCK, dtype=f32))
        shift = rng.uniform(-2.0, 2.0, size=_BLOCK).astype(f32)
        offsets = rng.integers(0, self.noise_windows.shape[0], size=(2, _BLOCK))
        m = min(_BLOCK, n_total - b * _BLOCK)
        y = y_full[:m]
        X, work, noise = (buf[:m] for buf in self._scratch())
        coef = np.stack([abv, -abv * shift, 1 - abv, -(1 - abv) * shift, fluor, fluor * slope], axis=1)[:m]
        coef *= laser[:m, None] * f32(gain)
        np.matmul(coef, self.basis, out=X)
        scale = (minor * laser * f32(gain))[:m, None]
        np.take(self.templates, y, axis=0, out=work, mode="clip")  # "clip": unbuffered out
        work *= scale
        X += work
        np.take(self.templates_grad, y, axis=0, out=work, mode="clip")
        work *= scale * shift[:m, None]
        X -= work
        sigma = np.maximum(X, f32(0.0), out=work)  # shot noise ~ sqrt(counts), plus read noise
        sigma += f32(read_noise * read_noise)
        np.sqrt(sigma, out=sigma)
        np.add(self.noise_windows[offsets[0, :m]], self.noise_windows[offsets[1, :m]], out=noise)
        sigma *= f32(np.sqrt(0.5))
        sigma *= noise
        X += sigma
        return X, y

    def _scratch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = tuple(np.empty((_BLOCK, self.basis.shape[1]), dtype=np.float32) for _ in range(3))
            self._local.bufs = bufs
        return bufs


def synthetic_liquor(
    n_samples: int = 1000,
    n_classes: int = 5,
    n_points: int = 1024,
    seed: int = 0,
    axis_range: tuple[float, float] = (200.0, 3800.0),
    chunk_size: int | None = None,
    *,
    gain: float = 2000.0,
    read_noise: float = 10.0,
    n_jobs: int | None = None,
) -> Spectra | Iterator[Spectra]:
    """Liquor-like Raman spectra of ``n_classes`` brands (balanced, ``y = row % n_classes``).

    Parameters
    ----------
    n_samples, n_classes, n_points : int
        Size of the set; any positive values.
    seed : int
        Same seed, same arrays (also chunked vs. unchunked, and for any ``n_jobs``).
    axis_range : (float, float)
        Raman shift range in cm-1, sampled at ``n_points`` evenly spaced points.
    chunk_size : int, optional
        When given, return an iterator of ``Spectra`` chunks instead of one set (streaming).
    gain : float
        Detector counts per unit band height (sets the shot-noise level).
    read_noise : float
        Detector read noise, counts (standard deviation).
    n_jobs : int, optional
        Threads filling blocks (default: up to 2); does not change the result.

    Returns
    -------
    Spectra or iterator of Spectra
        float32 counts on an axis in cm-1; class names ``brand_01``, ``brand_02``, ...
    """
    for name, value in (("n_samples", n_samples), ("n_classes", n_classes), ("n_points", n_points)):
        if int(value) < 1:
            raise ConfigError(f"synthetic_liquor: {name}={value} must be a positive integer")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ConfigError(f"synthetic_liquor: chunk_size={chunk_size} must be a positive integer or None")
    if not axis_range[1] > axis_range[0]:
        raise ConfigError(f"synthetic_liquor: axis_range={axis_range} must be increasing (lo, hi)")
    n_samples, n_classes, n_points = int(n_samples), int(n_classes), int(n_points)
    model = _Model(n_classes, n_points, seed, axis_range)
    names = tuple(f"brand_{c + 1:0{max(2, len(str(n_classes)))}d}" for c in range(n_classes))
    gen = _Generator(model, seed, n_samples, gain, read_noise, n_jobs or min(2, os.cpu_count() or 1))
    source = f"synthetic_liquor(seed={seed})"
    if chunk_size is None:
        X, y = next(gen.chunks(n_samples))
        return Spectra(X, model.axis, y, names, axis_unit="cm-1", source=source)
    return (Spectra(X, model.axis, y, names, axis_unit="cm-1", source=source) for X, y in gen.chunks(int(chunk_size)))


class _Generator:
    """Fills chunk arrays from fixed-size blocks computed on a small thread pool."""

    def __init__(self, model: _Model, seed: int, n: int, gain: float, read_noise: float, workers: int) -> None:
        self.model, self.seed, self.n, self.gain, self.read_noise, self.workers = model, seed, n, gain, read_noise, workers

    def _fill(self, b: int, targets: list[tuple[np.ndarray, np.ndarray, int, int, int]]) -> None:
        X, y = self.model.block(self.seed, b, self.n, self.gain, self.read_noise)
        for dest_x, dest_y, d0, s0, s1 in targets:
            dest_x[d0:d0 + s1 - s0] = X[s0:s1]
            dest_y[d0:d0 + s1 - s0] = y[s0:s1]

    def chunks(self, chunk_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n, w = self.n, self.model.basis.shape[1]
        n_blocks = -(-n // _BLOCK)
        open_chunks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending: deque[tuple[int, Future]] = deque()
            next_chunk = 0
            for b in range(n_blocks + 1):
                if b < n_blocks:
                    r0, r1 = b * _BLOCK, min((b + 1) * _BLOCK, n)
                    targets = []
                    for k in range(r0 // chunk_size, (r1 - 1) // chunk_size + 1):
                        c0 = k * chunk_size
                        if k not in open_chunks:
                            size = min(chunk_size, n - c0)
                            open_chunks[k] = (np.empty((size, w), np.float32), np.empty(size, np.int64))
                        lo, hi = max(r0, c0), min(r1, c0 + chunk_size)
                        targets.append((*open_chunks[k], lo - c0, lo - r0, hi - r0))
                    pending.append((r1, pool.submit(self._fill, b, targets)))
                # Wait when the pool is full (or at the end), then hand out every finished chunk.
                while pending and (len(pending) > self.workers or b == n_blocks):
                    done_rows, fut = pending.popleft()
                    fut.result()
                    while next_chunk in open_chunks and done_rows >= min((next_chunk + 1) * chunk_size, n):
                        yield open_chunks.pop(next_chunk)
                        next_chunk += 1
