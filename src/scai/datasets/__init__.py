"""Named datasets: the embedded ``milk_adulteration`` set, a data folder of ``.npz``, and a generator.

``milk_adulteration`` ships inside the package so demos and tests run offline: 500 Raman spectra
(1738 points, 50–3400 cm-1) of goat milk adulterated with 0–100 % cow milk, 10 classes. Source:
qsi-tk 1.4.1 (Quality-Safety research Institute, Y. Zhang et al.), file ``adulteration.CSV``;
cite "Analytical chemistry kernel library for spectroscopic profiling data", Food Chemistry
Advances 3 (2023) 100342.

Other sets load by name from a data folder (``data_dir=`` or the ``SCAI_DATA_DIR`` environment
variable) holding ``<name>.npz`` files with keys ``X``, ``y``, ``axis``, ``class_names`` and
optionally ``train_idx``/``test_idx``, as in the project's shared ``datasets/`` folder.
"""

from __future__ import annotations

import builtins
import os
from importlib import resources
from pathlib import Path

import numpy as np

from scai.data import Spectra, read
from scai.datasets.archive import write_archive
from scai.datasets.synthetic import synthetic_liquor
from scai.errors import DataFormatError

__all__ = ["list", "load", "default_data_dir", "synthetic_liquor", "EMBEDDED", "ENV_VAR"]

ENV_VAR = "SCAI_DATA_DIR"
#: Datasets shipped inside the package.
EMBEDDED = ("milk_adulteration",)


def default_data_dir() -> Path | None:
    """The data folder used when none is given.

    ``$SCAI_DATA_DIR`` when set; otherwise, for developers of a checkout laid out as
    ``<work>/main`` beside ``<work>/shared/datasets``, the first existing ``../shared/datasets``
    relative to the current directory or to the repository; else None.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    for base in (Path.cwd(), repo):
        candidate = (base / ".." / "shared" / "datasets").resolve()
        if candidate.is_dir():
            return candidate
    return None


def _folder(data_dir: str | Path | None) -> Path | None:
    return Path(data_dir) if data_dir is not None else default_data_dir()


def _folder_names(folder: Path | None) -> builtins.list[str]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.npz") if p.is_file())


def list(data_dir: str | Path | None = None) -> builtins.list[str]:  # noqa: A001 - the documented name
    """Names that :func:`load` accepts: embedded sets plus ``*.npz`` in the data folder."""
    return sorted(set(EMBEDDED) | set(_folder_names(_folder(data_dir))))


def _axis_unit(path: Path) -> str:
    with np.load(path, allow_pickle=False) as d:
        if "axis" not in d.files:
            return "index"
        axis = d["axis"]
    return "index" if np.array_equal(axis, np.arange(axis.size)) else "cm-1"


def load(name: str, data_dir: str | Path | None = None) -> Spectra:
    """Load a dataset by name (embedded first, then ``<data folder>/<name>.npz``).

    Raises
    ------
    DataFormatError
        For an unknown name, listing the available ones and how to point at a data folder.
    """
    if name in EMBEDDED:
        ref = resources.files("scai.datasets") / "_data" / f"{name}.npz"
        with resources.as_file(ref) as path:
            s = read(path, axis_unit="cm-1")
    else:
        folder = _folder(data_dir)
        path = None if folder is None else folder / f"{name}.npz"
        if path is None or not path.is_file():
            where = f"data folder {folder}" if folder is not None else f"no data folder (set {ENV_VAR})"
            raise DataFormatError(
                f"unknown dataset {name!r} ({where}); available: {', '.join(list(data_dir))}. "
                f"Point {ENV_VAR} (or data_dir=) at a folder of <name>.npz files such as ../shared/datasets"
            )
        s = read(path, axis_unit=_axis_unit(path))
    return Spectra(s.X, s.axis, s.y, s.class_names, s.groups, s.axis_unit, name, s.train_idx, s.test_idx)
