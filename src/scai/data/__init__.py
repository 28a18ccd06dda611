"""Spectra in, ``Spectra`` out: the data model, file readers and dataset splits.

NumPy/SciPy only (the optional ``io`` extra reads HDF5, JCAMP-DX, Excel and instrument vendors'
formats); no torch, so the edge runtime can use the readers.
"""

from scai.data.readers import FILE_ID_FORMATS, FORMATS, format_of, iter_chunks, read
from scai.data.spectra import Spectra, sort_class_names, validate_training
from scai.data.splits import official_split, train_val_test_split

__all__ = [
    "Spectra",
    "read",
    "iter_chunks",
    "FORMATS",
    "FILE_ID_FORMATS",
    "format_of",
    "validate_training",
    "sort_class_names",
    "train_val_test_split",
    "official_split",
]
