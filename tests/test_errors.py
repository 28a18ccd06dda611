"""scai.errors: NotFittedError keeps scikit-learn's base, and reading files does not import scikit-learn."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError as SklearnNotFitted

import scai.errors
from scai.errors import NotFittedError, ScaiError


def test_not_fitted_error_is_scais_and_sklearns_one_class():
    assert issubclass(NotFittedError, ScaiError) and issubclass(NotFittedError, SklearnNotFitted)
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)  # sklearn's bases
    assert scai.errors.NotFittedError is NotFittedError  # defined once, then the module's attribute
    assert (NotFittedError.__module__, NotFittedError.__qualname__) == ("scai.errors", "NotFittedError")
    assert "NotFittedError" in scai.errors.__all__


def test_an_unfitted_pipeline_raises_what_sklearn_handlers_catch():
    from scai.preprocessing import SNV, Pipeline

    with pytest.raises(SklearnNotFitted, match="Pipeline is not fitted"):
        Pipeline([SNV()]).transform(np.ones((2, 5)))


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchError'"):
        scai.errors.NoSuchError  # noqa: B018


def test_reading_files_and_the_cli_do_not_import_sklearn():
    # the Ray read tasks, the edge and `scai --help` import these; scikit-learn with SciPy's stats
    # took ~1.8 s of a 2.2 s `scai --help` before it was left to the code that fits or loads models
    code = ("import sys; import scai.errors, scai.data, scai.datasets.archive, scai.distributed.shards, scai.cli.main; "
            "print('sklearn' in sys.modules, 'scipy.stats' in sys.modules); "
            "from scai.errors import NotFittedError; print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True"]


def test_threads_asking_first_at_once_get_one_class():
    # predict_dataset loads the model in a thread beside the calling one: both may ask first
    code = ("import threading, scai.errors as e; got = []; go = threading.Barrier(8)\n"
            "def ask():\n    go.wait(); got.append(e.NotFittedError)\n"
            "ts = [threading.Thread(target=ask) for _ in range(8)]; [t.start() for t in ts]; [t.join() for t in ts]\n"
            "print(len(got), len({id(c) for c in got}), got[0] is e.NotFittedError)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["8", "1", "True"]
