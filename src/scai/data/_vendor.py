"""Instrument vendors' binary formats, read through maintained packages of the ``io`` extra.

No binary parsing happens here: each format has one reader package, and this module only turns
what the package returns into rows, an axis, an axis unit and sample ids, and turns the
package's failures into errors that name the file.

- Galactic SPC ``.spc``: ``spc-io`` (MIT); one row per subfile, ids ``z=<z>`` (several) or the
  file name.
- Renishaw WiRE ``.wdf``: ``renishaw-wdf`` (Apache-2.0, by Renishaw); one row per collected
  spectrum; maps one per pixel with ids ``x=<x>,y=<y>`` (stage position), depth series ``z=<z>``.
- Thermo OMNIC ``.spa``/``.spg``: ``spectrochempy-omnic`` (CeCILL-B); one row per spectrum, ids
  from the spectrum titles.
- Bruker OPUS ``.0``, ``.1``, ...: ``brukeropus`` (MIT); the result spectrum (absorbance,
  transmittance, ..., else the single channel), one row per spectrum of a series.
- PerkinElmer ``.sp``: refused; no reader fits (docs/data.md lists the packages checked).
  ``spectrochempy-perkinelmer`` 0.1.6 (CeCILL-B) needs SpectroChemPy 1.1 (IPython, pint, dill,
  ...), which writes its preferences under the home folder and, outside pytest, asks PyPI for
  updates from a thread when its application starts, with no documented setting that turns this
  off; its wheel ships no ``.sp`` file. ``specio`` 0.1.0 (BSD-3-Clause) is a 2018 sdist, unmaintained
  (the fork ``specio-py310`` has one release and no ``.sp`` file); ``orange-spectroscopy``
  (GPL-3.0+) needs Orange3 and Qt.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scai.errors import AxisError, DataFormatError

__all__ = ["OPUS_RESULT_KEYS", "VENDOR_FORMATS", "VendorSpectra", "read_vendor"]

#: format name -> (reader module, pip name, what the format is)
VENDOR_FORMATS: dict[str, tuple[str, str, str]] = {
    "spc": ("spc_io", "spc-io", "Galactic/Thermo SPC files"),
    "wdf": ("wdf", "renishaw-wdf", "Renishaw WiRE .wdf files"),
    "omnic": ("spectrochempy_omnic", "spectrochempy-omnic", "Thermo OMNIC .spa/.spg files"),
    "opus": ("brukeropus", "brukeropus", "Bruker OPUS files"),
    "perkinelmer": ("", "", "PerkinElmer .sp files"),
}
#: OPUS result spectra, in the order one is picked when a file holds several (never interferograms).
OPUS_RESULT_KEYS = ("a", "t", "r", "ra", "km", "e", "pw", "logr", "atr", "pas")
#: OPUS single-channel spectra, read when a file holds no result spectrum.
OPUS_SINGLE_CHANNEL_KEYS = ("sm", "rf")

_SPC_UNITS = {"XWAVEN": "cm-1", "XRAMANS": "cm-1", "XUMETR": "um", "XNMETR": "nm", "XSECS": "s", "XMINUTS": "min",
              "XHERTZ": "Hz", "XMUNITS": "m/z", "XPPM": "ppm", "XEV": "eV", "XDIODE": "index", "XCHANL": "index",
              "XPOINT": "index", "XMSEC": "ms", "XMMETR": "mm", "XARB": "unknown"}
_WDF_UNITS = {"RamanShift": "cm-1", "Wavenumber": "cm-1", "Nanometre": "nm", "Micron": "um", "ElectronVolt": "eV",
              "Pixels": "index", "Arbitrary": "unknown"}
_OPUS_UNITS = {"WN": "cm-1", "MI": "um", "PNT": "index", "MIN": "min", "LGW": "log(cm-1)", "F": "Hz"}
_WDF_BLOCK = 4096  # spectra per read of a WDF file
_OMNIC_UNITS = {"cm^-1": "cm-1", "cm-1": "cm-1", "nm": "nm", "um": "um", "µm": "um"}


@dataclass(frozen=True)
class VendorSpectra:
    """What a vendor file holds, as scai needs it: rows on one axis, with ids."""

    X: np.ndarray
    axis: np.ndarray
    unit: str
    ids: list[str]


def _import(fmt: str, path: Path) -> Any:
    module, pip_name, what = VENDOR_FORMATS[fmt]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        raise DataFormatError(
            f"{path}: reading {what} needs the '{pip_name}' package"
            + (f" (its dependency '{missing}' is missing)" if missing != module else "")
            + f": pip install {pip_name} (or scai[io]); or export the spectra as CSV or JCAMP-DX"
        ) from None


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[io.StringIO]:
    """Keep a reader's own log lines and prints off the user's terminal; what matters is raised."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said):
            yield said
    finally:
        logger.setLevel(level)


def _corrupt(path: Path, what: str, e: BaseException) -> DataFormatError:
    return DataFormatError(f"{path}: not a readable {what} (truncated or corrupt? {type(e).__name__}: {e})")


def _stack(path: Path, rows: Sequence[tuple[np.ndarray, np.ndarray]], ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Stack rows that must share the first row's axis; name the first one that does not."""
    x0 = rows[0][0]
    span = max(float(abs(x0[-1] - x0[0])), 1.0)
    for (x, _), name in zip(rows, ids):
        if x.size != x0.size or not np.allclose(x, x0, rtol=0, atol=1e-6 * span):
            raise AxisError(
                f"{path}: spectrum {name!r} has {x.size} points on {x.min():g}..{x.max():g}, but {ids[0]!r} has "
                f"{x0.size} on {x0.min():g}..{x0.max():g}; the spectra of one file must share one axis"
            )
    return np.stack([np.asarray(y, dtype=np.float64) for _, y in rows]), x0


def _spc(path: Path) -> VendorSpectra:
    spc_io = _import("spc", path)
    try:
        with _quiet("spc_io"), open(path, "rb") as f:
            spc = spc_io.SPC.from_bytes_io(f)
            subs = [(np.asarray(s.xarray, dtype=np.float64), np.asarray(s.yarray, dtype=np.float64), s.z) for s in spc]
    except Exception as e:  # noqa: BLE001 - ctypes/pydantic/struct errors on damaged files
        raise _corrupt(path, "SPC file", e) from None
    if not subs:
        raise DataFormatError(f"{path}: the SPC file holds no spectra (no subfiles)")
    ids = [f"z={z:g}" if z is not None else f"{path.stem}#{k}" for k, (_, _, z) in enumerate(subs)]
    if len(subs) == 1:
        ids = [path.stem]
    X, axis = _stack(path, [(x, y) for x, y, _ in subs], ids)
    unit = _SPC_UNITS.get(str(spc.xtype), str(spc.xtype).lower())
    return VendorSpectra(X, axis, unit, ids)


def _wdf_coordinates(w: Any, wdf: Any, n: int) -> list[str] | None:
    """``x=..,y=..`` (and ``z=..``) per spectrum from the file's spatial data origins, if any."""
    kinds = (("x", wdf.WdfDataType.Spatial_X), ("y", wdf.WdfDataType.Spatial_Y), ("z", wdf.WdfDataType.Spatial_Z))
    origins = w.origins
    columns = [(name, origins[kind][0:n]) for name, kind in kinds if kind in origins]
    if not columns:
        return None
    return [",".join(f"{name}={values[i]:.6g}" for name, values in columns) for i in range(n)]


def _wdf(path: Path) -> VendorSpectra:
    wdf = _import("wdf", path)
    try:
        with wdf.Wdf(str(path)) as w:
            hdr = w.hdr
            n = int(hdr.ncollected)
            if n < 1:
                raise DataFormatError(f"{path}: the WDF file holds no collected spectra (0 of {hdr.nspectra})")
            xlist = w.xlist()
            axis = np.asarray(xlist, dtype=np.float64)
            X = np.empty((n, int(hdr.npoints)), dtype=np.float32)  # the file's own precision
            for start in range(0, n, _WDF_BLOCK):  # the reader returns tuples of floats: bound their size
                stop = min(start + _WDF_BLOCK, n)
                rows = w.spectrum(slice(start, stop)) if stop - start > 1 else (w.spectrum(start),)
                X[start:stop] = np.asarray(rows, dtype=np.float32).reshape(stop - start, -1)
            ids = _wdf_coordinates(w, wdf, n)
            title = str(hdr.title).strip() or path.stem
            unit = _WDF_UNITS.get(xlist.units.name, xlist.units.name.lower())
            total = int(hdr.nspectra)
    except DataFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - EOFError/struct.error/ValueError on damaged files
        raise _corrupt(path, "Renishaw WDF file", e) from None
    if X.shape[1] != axis.size:
        raise DataFormatError(f"{path}: WDF spectra have {X.shape[1]} points but the x list has {axis.size}")
    if n < total:
        warnings.warn(
            f"{path}: the measurement was stopped early: {n} of {total} spectra were collected and are read",
            UserWarning,
            stacklevel=4,
        )
    if ids is None:
        ids = [title] if n == 1 else [f"{title}#{k}" for k in range(n)]
    return VendorSpectra(X, axis, unit, ids)


def _omnic(path: Path) -> VendorSpectra:
    omnic = _import("omnic", path)
    try:
        with _quiet("spectrochempy-omnic"):
            r = omnic.OMNICReader(str(path))
            data = None if r.data is None else np.asarray(r.data, dtype=np.float64)
            axis = None if r.x is None else np.asarray(r.x, dtype=np.float64).ravel()
    except Exception as e:  # noqa: BLE001 - OMNICReaderError, struct.error, IndexError on damaged files
        raise _corrupt(path, "OMNIC file", e) from None
    if data is None or axis is None or data.size == 0:
        raise DataFormatError(f"{path}: the OMNIC file holds no spectra")
    data = data.reshape(-1, axis.size)
    labels = r.y_labels[1] if r.y_labels is not None and len(r.y_labels) > 1 else None
    if labels is not None and len(labels) == data.shape[0]:
        ids = [str(t).split(",", 1)[0].strip() or f"{path.stem}#{k}" for k, t in enumerate(labels)]
    else:
        ids = [path.stem] if data.shape[0] == 1 else [f"{path.stem}#{k}" for k in range(data.shape[0])]
    unit = _OMNIC_UNITS.get(str(r.x_units), str(r.x_units or "unknown"))
    return VendorSpectra(data, axis, unit, ids)


def _opus(path: Path) -> VendorSpectra:
    brukeropus = _import("opus", path)
    try:
        f = brukeropus.read_opus(str(path))
    except Exception as e:  # noqa: BLE001 - struct/index errors on damaged files
        raise _corrupt(path, "Bruker OPUS file", e) from None
    if not f:
        raise DataFormatError(f"{path}: not a Bruker OPUS file (no OPUS header)")
    keys = list(getattr(f, "all_data_keys", []))
    key = next((k for k in (*OPUS_RESULT_KEYS, *OPUS_SINGLE_CHANNEL_KEYS) if k in keys), None)
    if key is None:
        raise DataFormatError(
            f"{path}: the OPUS file holds no spectrum scai reads (blocks: {', '.join(keys) or 'none'}; "
            f"read are {', '.join(OPUS_RESULT_KEYS + OPUS_SINGLE_CHANNEL_KEYS)}, not interferograms or phases)"
        )
    d = getattr(f, key)
    axis = np.asarray(d.x, dtype=np.float64).ravel()
    X = np.asarray(d.y, dtype=np.float64).reshape(-1, axis.size)
    name = str(getattr(f.params, "snm", "") or path.name).strip()
    ids = [name] if X.shape[0] == 1 else [f"{name}#{k}" for k in range(X.shape[0])]
    dxu = str(getattr(d.params, "dxu", "") or "").upper()
    return VendorSpectra(X, axis, _OPUS_UNITS.get(dxu, dxu.lower() or "unknown"), ids)


def _perkinelmer(path: Path) -> VendorSpectra:
    raise DataFormatError(
        f"{path}: PerkinElmer .sp files are not read: no maintained, lightweight reader exists "
        "(spectrochempy-perkinelmer needs all of SpectroChemPy, which asks PyPI for updates at start; "
        "orange-spectroscopy needs Orange3 and Qt). "
        "Export the spectrum from PerkinElmer Spectrum as CSV or JCAMP-DX (.dx) and read that"
    )


_READERS = {"spc": _spc, "wdf": _wdf, "omnic": _omnic, "opus": _opus, "perkinelmer": _perkinelmer}


def read_vendor(path: Path, fmt: str) -> VendorSpectra:
    """Read a vendor file; ``fmt`` is a key of :data:`VENDOR_FORMATS`."""
    out = _READERS[fmt](path)
    if out.X.ndim != 2 or out.X.shape[1] != out.axis.size or out.X.shape[0] != len(out.ids):
        raise DataFormatError(f"{path}: the reader returned {out.X.shape} values for {out.axis.size} axis points")
    return out
