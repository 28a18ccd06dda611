"""Spectra in, ``Spectra`` out: the data model, file readers and dataset splits.

NumPy/SciPy only (optional h5py and jcamp for HDF5/JCAMP-DX); no torch, so the edge runtime can
use the readers.
"""

from scai.data.readers import FORMATS, iter_chunks, read
from scai.data.spectra import Spectra, sort_class_names, validate_training
from scai.data.splits import official_split, train_val_test_split

__all__ = [
    "Spectra",
    "read",
    "iter_chunks",
    "FORMATS",
    "validate_training",
    "sort_class_names",
    "train_val_test_split",
    "official_split",
]
